"""Memory recall benchmark: quality on our household evaluation set, and search latency.

Run: `.venv/bin/python bench/memory_recall.py [--sizes 1000,10000,100000] [--queries 200]`

- Quality (bench/memory_eval_set.json: facts, paraphrased questions, updates): recall@1 and
  recall@5 of the fact a question is about; after the updates, the stale-fact rate (a
  superseded version among the top 5) and whether the new version is found.
- Latency: search p50/p95 with 1k, 10k and 100k facts in one household, for the backends
  that run here (SQLite, PostgreSQL on 127.0.0.1:5432 when reachable), and the cost of an
  add. The Shodh row uses the fake server from the tests: quality only, not a latency
  target (the real Shodh server cannot run on these machines).
- Two distributions of the filler facts (`--data`): `uniform60`, the original synthetic
  facts (60 words drawn uniformly, so every query word matches ~10 % of the household: a
  worst case for a ranked OR query), and `varied`, closer to a real household: a few
  family names that recur everywhere, a Zipf-distributed vocabulary of real household
  words and a long tail of rare ones (names, brands, places). Both are reported.
- `search` is the backend call at limit 10 (as before); `recall` is the call the chat
  makes on every turn (`MemoryService.recall`: a capped count, the list only when all
  could fit, a search at limit 50; the use counts are written in the background).
- Quality at scale: the evaluation facts inside a household filled with 10k facts of each
  distribution, recall@5 of the same questions.
- `--hybrid-only`: the paraphrase set (bench/memory_paraphrase_set.json), lexical / dense /
  hybrid recall@5 and "in the prompt" per embedder (`--embedders`), language and part (the
  TUNING part, labelled as such, and the REPORT part, the figures to quote), the CPU time of
  a query embedding, then hybrid latency at `--sizes`. `--tune`: the RRF-weight / similarity
  floor / margin grid, on the TUNING part only.
Each latency figure is over `--rounds` rounds of all queries; "p95 range" is the lowest and
highest per-round p95 (the machine is shared; one loaded round should not decide).
Prints tables; asserts nothing. Bounded: each phase has a fixed amount of work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from cloud_server.accounts.principal import InstallationPrincipal  # noqa: E402
from cloud_server.db.base import new_id, utcnow  # noqa: E402
from cloud_server.db.engine import create_engine, make_sessionmaker, upgrade_database  # noqa: E402
from cloud_server.db.models import User  # noqa: E402
from cloud_server.memory import text as memtext  # noqa: E402
from cloud_server.memory.backend import MemoryBackend  # noqa: E402
from cloud_server.memory.models import Memory  # noqa: E402
from cloud_server.memory.provider import MemoryService  # noqa: E402
from cloud_server.memory.shodh import ShodhClient, ShodhMemoryBackend  # noqa: E402
from cloud_server.memory.sql_backend import SqlMemoryBackend, sql_backend_for  # noqa: E402
from cloud_server.settings import Settings  # noqa: E402
from homemind_client.models import ChatRequest  # noqa: E402


def fact_row(user: str, content: str) -> dict[str, Any]:
    """One household-wide fact as a bulk-insert row of the memories table."""
    now = utcnow()
    return {
        "id": new_id(),
        "user_id": user,
        "speaker_id": None,
        "content": content,
        "content_hash": memtext.content_hash(content),
        "category": None,
        "source": "api",
        "use_count": 0,
        "created_at": now,
        "updated_at": now,
    }


EVAL_SET = ROOT / "bench" / "memory_eval_set.json"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"

PEOPLE = ["Ana", "Leo", "Maria", "Rosa", "Tom", "Ben", "Eva", "Noah", "Mia", "Finn"]
ROOMS = ["kitchen", "bedroom", "office", "hallway", "garage", "attic", "basement", "porch"]
THINGS = ["lamp", "blinds", "heater", "speaker", "fan", "plant", "shelf", "clock", "rug"]
VERBS = ["likes", "prefers", "wants", "uses", "cleans", "checks", "moves", "waters"]
WHEN = ["on Mondays", "every morning", "at night", "on weekends", "after school", "in winter"]


def synthetic_fact(rng: random.Random, n: int) -> str:
    return (
        f"{rng.choice(PEOPLE)} {rng.choice(VERBS)} the {rng.choice(ROOMS)} "
        f"{rng.choice(THINGS)} {rng.choice(WHEN)} (note {n})"
    )


# The `varied` distribution. Words a household really uses, most common first (Zipf
# weights), and a long tail of made-up rare words (names, brands, places).
V_PEOPLE = [*PEOPLE[:6], "grandma", "grandpa", "the neighbour", "the babysitter"]
V_VERBS = (  # noqa: SIM905
    "likes prefers wants uses needs cleans checks moves waters opens closes locks charges "
    "feeds walks visits calls watches plays reads cooks orders fixes tidies buys drinks eats "
    "borrows returns repaints sorts hangs"
).split()
V_NOUNS = (  # noqa: SIM905
    "lamp blinds heater speaker fan plant shelf clock rug kettle oven fridge freezer "
    "dishwasher window door gate bike car charger router printer laptop tablet phone piano "
    "guitar sofa table chair desk bed pillow blanket towel mirror curtain sink tap shower "
    "bath toilet bin recycling compost hose lawn hedge roses tomatoes basil coffee tea milk "
    "bread cheese pasta rice soup cereal juice wine beer cake cookies medicine vitamins "
    "passport keys wallet umbrella jacket boots shoes backpack lunchbox homework violin "
    "football tennis swimming yoga dentist doctor vet school office gym library bakery"
).split()
V_PLACES = (  # noqa: SIM905
    "kitchen bedroom office hallway garage attic basement porch garden balcony bathroom "
    "nursery cellar loft shed driveway terrace pantry study playroom"
).split()
V_WHEN = [
    "on Mondays",
    "every morning",
    "at night",
    "on weekends",
    "after school",
    "in winter",
    "before dinner",
    "after lunch",
    "on Sundays",
    "once a month",
    "in summer",
    "at 7 am",
    "every other Friday",
    "on holidays",
    "when it rains",
    "before bed",
]
_SYLLABLES = (  # noqa: SIM905
    "ka lo mi ren tas vel dor pin sua bek tor lin mar zo fen gri hal ost yun cre"
).split()


def _zipf(n: int, s: float = 1.1) -> list[float]:
    return [1 / (rank**s) for rank in range(1, n + 1)]


class VariedFacts:
    """Facts from templates; words drawn Zipf-weighted from real pools plus a rare tail."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        tail = sorted({"".join(rng.choices(_SYLLABLES, k=3)) for _ in range(6000)})
        rng.shuffle(tail)
        self.nouns = V_NOUNS + tail[:4000]
        self.names = V_PEOPLE + [t.capitalize() for t in tail[4000:4400]]
        self.w_nouns = _zipf(len(self.nouns))
        self.w_names = _zipf(len(self.names), 1.3)
        self.w_verbs = _zipf(len(V_VERBS), 0.9)
        self.w_places = _zipf(len(V_PLACES), 0.9)

    def fact(self, rng: random.Random, n: int) -> str:
        def pick(pool: list[str], weights: list[float]) -> str:
            return rng.choices(pool, weights)[0]

        who = pick(self.names, self.w_names)
        verb = pick(V_VERBS, self.w_verbs)
        noun = pick(self.nouns, self.w_nouns)
        other = pick(self.nouns, self.w_nouns)
        place = pick(V_PLACES, self.w_places)
        when = rng.choice(V_WHEN)
        template = n % 5
        if template == 0:
            return f"{who} {verb} the {noun} in the {place} {when}"
        if template == 1:
            return f"The {noun} is kept in the {place} next to the {other}"
        if template == 2:
            return f"{who}'s favourite {noun} is the {other}"
        if template == 3:
            return f"{who} {verb} {noun} {when}"
        return f"Remember that the {place} {noun} needs {other} {when}"


# Filler facts in the other languages of the paraphrase set: without them the household's
# only German (say) facts would be the questions' own, and an English-only model would
# find them by language alone.
LOCAL_FILLER = {
    "de": {
        "things": "die Lampe|den Kühlschrank|das Fahrrad|die Blumen|den Teppich|das Fenster|"
        "die Jalousien|den Drucker|die Heizung|den Backofen|die Waschmaschine|den Rasen|"
        "das Auto|die Tür|den Briefkasten|die Spülmaschine|das Regal|den Schreibtisch|"
        "die Gartenbank|den Staubsauger",
        "verbs": "putzt|repariert|prüft|öffnet|schließt|benutzt|reinigt|bewegt|streicht|sortiert",
        "places": "in der Küche|im Schlafzimmer|im Büro|im Flur|in der Garage|auf dem Dachboden|"
        "im Keller|auf der Terrasse",
        "when": "am Montag|jeden Morgen|am Wochenende|nach der Schule|im Winter|"
        "vor dem Abendessen|am Sonntag|einmal im Monat",
    },
    "fr": {
        "things": "la lampe|le frigo|le vélo|les fleurs|le tapis|la fenêtre|les stores|"
        "l'imprimante|le chauffage|le four|la machine à laver|la pelouse|la voiture|la porte|"
        "la boîte aux lettres|le lave-vaisselle|l'étagère|le bureau|le banc du jardin|"
        "l'aspirateur",
        "verbs": "nettoie|répare|vérifie|ouvre|ferme|utilise|range|déplace|repeint|trie",
        "places": "dans la cuisine|dans la chambre|au bureau|dans le couloir|au garage|"
        "au grenier|à la cave|sur la terrasse",
        "when": "le lundi|chaque matin|le week-end|après l'école|en hiver|avant le dîner|"
        "le dimanche|une fois par mois",
    },
    "es": {
        "things": "la lámpara|la nevera|la bici|las flores|la alfombra|la ventana|las persianas|"
        "la impresora|la calefacción|el horno|la lavadora|el césped|el coche|la puerta|"
        "el buzón|el lavavajillas|la estantería|el escritorio|el banco del jardín|la aspiradora",
        "verbs": "limpia|arregla|revisa|abre|cierra|usa|ordena|mueve|pinta|clasifica",
        "places": "en la cocina|en el dormitorio|en la oficina|en el pasillo|en el garaje|"
        "en el desván|en el sótano|en la terraza",
        "when": "los lunes|cada mañana|los fines de semana|después del colegio|en invierno|"
        "antes de cenar|los domingos|una vez al mes",
    },
    "nl": {
        "things": "de lamp|de koelkast|de fiets|de bloemen|het tapijt|het raam|de rolluiken|"
        "de printer|de verwarming|de oven|de wasmachine|het gazon|de auto|de deur|"
        "de brievenbus|de vaatwasser|de boekenkast|het bureau|de tuinbank|de stofzuiger",
        "verbs": "poetst|repareert|controleert|opent|sluit|gebruikt|verplaatst|schildert|"
        "sorteert|test",
        "places": "in de keuken|in de slaapkamer|op kantoor|in de gang|in de garage|op zolder|"
        "in de kelder|op het terras",
        "when": "op maandag|elke ochtend|in het weekend|na school|in de winter|"
        "voor het avondeten|op zondag|één keer per maand",
    },
}


def local_filler(language: str, count: int, seed: int) -> list[str]:
    """`count` distinct template facts in `language` (see LOCAL_FILLER)."""
    pools = {k: v.split("|") for k, v in LOCAL_FILLER[language].items()}
    rng = random.Random(seed)
    out: dict[str, None] = {}
    while len(out) < count:
        who, verb, thing = (
            rng.choice(PEOPLE),
            rng.choice(pools["verbs"]),
            rng.choice(pools["things"]),
        )
        place, when = rng.choice(pools["places"]), rng.choice(pools["when"])
        fact = (
            f"{who} {verb} {thing} {place} {when}"
            if rng.random() < 0.6
            else f"{who} {verb} {thing} {when}"
        )
        out[fact] = None
    return list(out)


def filler(kind: str, seed: int) -> Any:
    """fact(rng, n) for the filler distribution `kind`."""
    if kind == "varied":
        return VariedFacts(seed).fact
    return synthetic_fact


async def new_user(sessionmaker: Any) -> str:
    user_id = secrets.token_hex(16)
    async with sessionmaker() as session, session.begin():
        session.add(
            User(
                id=user_id,
                email=f"{user_id}@bench.test",
                email_normalized=f"{user_id}@bench.test",
                password_hash="x",
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )
    return user_id


async def quality(
    backend: MemoryBackend, sessionmaker: Any, data: dict[str, Any]
) -> dict[str, Any]:
    user = await new_user(sessionmaker)
    ids: dict[str, str] = {}
    for fact in data["facts"]:
        ids[fact["id"]] = (await backend.add(user, fact["content"])).record.id
    at1 = at5 = 0
    misses: list[str] = []
    for question in data["questions"]:
        hits = [r.id for r in await backend.search(user, question["q"], limit=5)]
        want = ids[question["fact"]]
        at1 += bool(hits[:1] == [want])
        at5 += want in hits
        if want not in hits:
            misses.append(question["q"])
    stale = found_new = 0
    for update in data["updates"]:
        old = ids[update["fact"]]
        new = await backend.supersede(user, old, update["content"])
        ids[update["fact"]] = new.id
    for update in data["updates"]:
        found = await backend.search(user, update["question"], limit=5)
        hit_ids = [r.id for r in found]
        stale += any(
            update["stale"].lower() in r.content.lower() and r.id != ids[update["fact"]]
            for r in found
        )
        found_new += ids[update["fact"]] in hit_ids
    n, u = len(data["questions"]), len(data["updates"])
    return {
        "questions": n,
        "recall@1": at1 / n,
        "recall@5": at5 / n,
        "updates": u,
        "stale_rate": stale / u,
        "new_found@5": found_new / u,
        "misses": misses,
    }


async def bulk_load(
    store: SqlMemoryBackend, sessionmaker: Any, user: str, count: int, kind: str = "uniform60"
) -> float:
    rng = random.Random(count)
    make = filler(kind, count)
    start = time.perf_counter()
    chunk = 5_000
    for offset in range(0, count, chunk):
        rows = []
        for n in range(offset, min(count, offset + chunk)):
            content = make(rng, n)
            rows.append(fact_row(user, content))
        async with sessionmaker() as session, session.begin():
            await session.execute(insert(Memory), rows)
    return time.perf_counter() - start


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def word_stats(store_kind: str, count: int) -> str:
    """How skewed a distribution is: distinct words, and the share of facts with the top word."""
    rng = random.Random(count)
    make = filler(store_kind, count)
    seen: dict[str, int] = {}
    for n in range(count):
        for word in set(memtext.content_terms(make(rng, n))):
            if not word.isdigit():  # the "(note n)" numbers
                seen[word] = seen.get(word, 0) + 1
    top = max(seen.values()) if seen else 0
    return f"{len(seen)} distinct words, the most common in {top / count:.0%} of facts"


async def timed(calls: list[Any], rounds: int) -> tuple[list[float], list[float]]:
    """All samples (ms) and the p95 of each round."""
    samples: list[float] = []
    per_round: list[float] = []
    for _ in range(rounds):
        times = []
        for call in calls:
            start = time.perf_counter()
            await call()
            times.append((time.perf_counter() - start) * 1000)
        samples.extend(times)
        per_round.append(pct(times, 0.95))
    return samples, per_round


async def latency(
    store: SqlMemoryBackend,
    sessionmaker: Any,
    sizes: list[int],
    queries: list[str],
    kind: str,
    rounds: int,
) -> list[dict[str, Any]]:
    rows = []
    settings = Settings(data_dir=Path(tempfile.gettempdir()))
    for size in sizes:
        service = MemoryService(store, settings)
        user = await new_user(sessionmaker)
        load = await bulk_load(store, sessionmaker, user, size, kind)
        # The household's real facts among the noise, so queries have true matches.
        for q in queries[:20]:
            await store.add(user, f"Remembered: {q}")
        for q in queries[:10]:  # warm-up
            await store.search(user, q, limit=10)
        principal = InstallationPrincipal("bench", user, "Bench", True)

        def search_call(q: str, user: str = user) -> Any:
            return lambda: store.search(user, q, limit=10)

        def recall_call(q: str, service: MemoryService = service, who: Any = principal) -> Any:
            return lambda: service.recall(who, ChatRequest(message=q), q)

        times, p95s = await timed([search_call(q) for q in queries], rounds)
        recall_times, _ = await timed([recall_call(q) for q in queries], rounds)
        await service.drain()  # the use counts recall schedules in the background
        adds = []
        rng = random.Random(7)
        make = filler(kind, 7)
        for n in range(100):
            start = time.perf_counter()
            await store.add(user, make(rng, 10_000_000 + n))
            adds.append((time.perf_counter() - start) * 1000)
        rows.append(
            {
                "size": size,
                "load_s": load,
                "p50": statistics.median(times),
                "p95": pct(times, 0.95),
                "p95_range": (min(p95s), max(p95s)),
                "recall_p50": statistics.median(recall_times),
                "recall_p95": pct(recall_times, 0.95),
                "add_p50": statistics.median(adds),
                "add_p95": pct(adds, 0.95),
            }
        )
    return rows


async def quality_at_scale(
    backend: MemoryBackend, sessionmaker: Any, data: dict[str, Any], kind: str, size: int
) -> float:
    """recall@5 of the evaluation questions with their facts among `size` filler facts."""
    user = await new_user(sessionmaker)
    assert isinstance(backend, SqlMemoryBackend)
    await bulk_load(backend, sessionmaker, user, size, kind)
    ids = {f["id"]: (await backend.add(user, f["content"])).record.id for f in data["facts"]}
    found = 0
    for question in data["questions"]:
        hits = [r.id for r in await backend.search(user, question["q"], limit=5)]
        found += ids[question["fact"]] in hits
    return found / len(data["questions"])


async def pg_database() -> str | None:
    try:
        import asyncpg

        connection = await asyncpg.connect(PG_ADMIN, timeout=3)
    except Exception as err:
        print(f"(PostgreSQL not reachable: {type(err).__name__}; skipped)")
        return None
    name = f"homemind_bench_{secrets.token_hex(4)}"
    await connection.execute(f'CREATE DATABASE "{name}"')
    await connection.close()
    return name


async def drop_pg(name: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(PG_ADMIN, timeout=3)
    await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await connection.close()


async def run(
    sizes: list[int],
    n_queries: int,
    kinds: list[str],
    rounds: int,
    scale: int,
    backends: list[str],
    embedders: tuple[str, ...] = (),
) -> None:
    from cloud_server.memory.embedder import build_embedder
    from cloud_server.memory.vectors import VectorIndex

    data = json.loads(EVAL_SET.read_text())
    queries = [q["q"] for q in data["questions"]]
    queries = (queries * (n_queries // len(queries) + 1))[:n_queries]
    quality_rows: list[tuple[str, dict[str, Any]]] = []
    scale_rows: list[tuple[str, str, float]] = []
    latency_rows: list[tuple[str, str, list[dict[str, Any]]]] = []

    with tempfile.TemporaryDirectory() as tmp:
        targets = [("sqlite", f"sqlite+aiosqlite:///{tmp}/bench.db")]
        pg_name = await pg_database() if "postgresql" in backends else None
        if pg_name:
            targets.append(
                ("postgresql", f"postgresql+asyncpg://postgres@127.0.0.1:5432/{pg_name}")
            )
        try:
            for name, url in targets:
                engine = create_engine(url)
                await upgrade_database(engine)
                sessionmaker = make_sessionmaker(engine)
                store = sql_backend_for(engine, sessionmaker)
                quality_rows.append((name, await quality(store, sessionmaker, data)))
                for embedder_name in embedders:
                    embedder = build_embedder(embedder_name)
                    assert embedder is not None
                    hybrid = sql_backend_for(engine, sessionmaker, VectorIndex(engine, embedder))
                    label = f"{name} hybrid {embedder_name}"
                    quality_rows.append((label, await quality(hybrid, sessionmaker, data)))
                if name == "sqlite":
                    sys.path.insert(0, str(ROOT))
                    from tests.server.memory_eval.fake_shodh import FakeShodh

                    fake = FakeShodh()
                    await fake.start()
                    shodh = ShodhMemoryBackend(store, ShodhClient(fake.base_url, fake.api_key))
                    quality_rows.append(("shodh (fake)", await quality(shodh, sessionmaker, data)))
                    await shodh.close()
                    await fake.close()
                for kind in kinds:
                    if scale:
                        at = await quality_at_scale(store, sessionmaker, data, kind, scale)
                        scale_rows.append((name, kind, at))
                    rows = await latency(store, sessionmaker, sizes, queries, kind, rounds)
                    latency_rows.append((name, kind, rows))
                await engine.dispose()
        finally:
            if pg_name:
                await drop_pg(pg_name)

    print_report(quality_rows, scale_rows, latency_rows, kinds, scale, n_queries, rounds)


def print_report(
    quality_rows: list[tuple[str, dict[str, Any]]],
    scale_rows: list[tuple[str, str, float]],
    latency_rows: list[tuple[str, str, list[dict[str, Any]]]],
    kinds: list[str],
    scale: int,
    n_queries: int,
    rounds: int,
) -> None:
    print("\nRecall quality (household evaluation set)")
    print(
        f"{'backend':<30} {'questions':>9} {'recall@1':>9} {'recall@5':>9} "
        f"{'updates':>8} {'stale':>6} {'new@5':>6}"
    )
    for name, r in quality_rows:
        print(
            f"{name:<30} {r['questions']:>9} {r['recall@1']:>9.3f} {r['recall@5']:>9.3f} "
            f"{r['updates']:>8} {r['stale_rate']:>6.3f} {r['new_found@5']:>6.3f}"
        )
    misses = quality_rows[0][1]["misses"]
    if misses:
        print(f"\nMissed at 5 ({quality_rows[0][0]}): " + "; ".join(misses))

    if scale_rows:
        print(f"\nRecall@5 of the same questions among {scale} filler facts")
        print(f"{'backend':<12} {'data':<10} {'recall@5':>9}")
        for name, kind, at in scale_rows:
            print(f"{name:<12} {kind:<10} {at:>9.3f}")

    print("\nFiller data:")
    for kind in kinds:
        print(f"  {kind:<10} {word_stats(kind, 10_000)} (at 10k)")

    print(
        f"\nSearch latency, one household, {n_queries} queries x {rounds} rounds (ms); "
        "recall = the chat's call; the cost of an add"
    )
    print(
        f"{'backend':<11} {'data':<10} {'facts':>7} {'load s':>7} {'p50':>6} {'p95':>6} "
        f"{'p95 range':>12} {'recall p50':>10} {'recall p95':>10} {'add p50':>8} {'add p95':>8}"
    )
    for name, kind, rows in latency_rows:
        for r in rows:
            low, high = r["p95_range"]
            spread = f"{low:.2f}-{high:.2f}"
            print(
                f"{name:<11} {kind:<10} {r['size']:>7} {r['load_s']:>7.1f} {r['p50']:>6.2f} "
                f"{r['p95']:>6.2f} {spread:>12} {r['recall_p50']:>10.2f} "
                f"{r['recall_p95']:>10.2f} {r['add_p50']:>8.2f} {r['add_p95']:>8.2f}"
            )
    print("\nShodh: quality through the test fake only; not a latency target.")


PARAPHRASE_SET = Path(__file__).with_name("memory_paraphrase_set.json")
HYBRID_FILLER = 400
PARTS = ("report", "tuning")
MODES = ("lexical", "dense", "hybrid")


async def hybrid_quality(
    url: str, data: dict[str, Any], embedder_name: str
) -> list[dict[str, Any]]:
    """Per language and part: recall@5 of lexical, dense and hybrid, and "in the prompt"
    (the chat's recall, budget included; for dense alone its nearest budget/20) for each,
    in a household of that language's facts (both parts), the eval set's facts and
    HYBRID_FILLER filler facts (so not everything fits). Also the CPU time of one query
    embedding (CPU time: the machine is shared)."""
    from cloud_server.memory.embedder import build_embedder
    from cloud_server.memory.vectors import VectorIndex

    embedder = build_embedder(embedder_name)
    assert embedder is not None
    engine = create_engine(url)
    await upgrade_database(engine)
    sessionmaker = make_sessionmaker(engine)
    dense_store = sql_backend_for(engine, sessionmaker, VectorIndex(engine, embedder))
    lexical_store = sql_backend_for(engine, sessionmaker)
    settings = Settings(data_dir=Path(tempfile.gettempdir()), memory_extraction=False)
    principal_of = lambda user: InstallationPrincipal("bench", user, "Home", True)  # noqa: E731
    rows: list[dict[str, Any]] = []
    rng = random.Random(7)
    fill = filler("varied", 7)
    base = [f["content"] for f in json.loads(EVAL_SET.read_text())["facts"]]
    extra = [fill(rng, n) for n in range(HYBRID_FILLER)]
    stores = {"lexical": lexical_store, "dense": dense_store, "hybrid": dense_store}
    try:
        for language, parts in data["languages"].items():
            user = await new_user(sessionmaker)
            ids = {
                part: [(await dense_store.add(user, fact)).record.id for fact, _ in parts[part]]
                for part in PARTS
            }
            local = local_filler(language, HYBRID_FILLER, 7) if language != "en" else []
            for content in base + extra + local:
                await dense_store.add(user, content)
            for part in PARTS:
                pairs = parts[part]
                row: dict[str, Any] = {
                    "model": embedder.model_id,
                    "language": language,
                    "part": part,
                    "questions": len(pairs),
                    "misses": [],
                }
                embed_cpu = []
                for mode in MODES:
                    at5 = prompt = 0
                    service = MemoryService(stores[mode], settings)
                    for want, (_, question) in zip(ids[part], pairs, strict=True):
                        if mode == "dense":
                            cpu = time.process_time()
                            nearest = await dense_store.search_dense(user, question, limit=50)
                            embed_cpu.append(time.process_time() - cpu)
                            found = [i for i, _ in nearest][:5]
                            # Dense alone in the chat's budget: the nearest while they fit.
                            got = [i for i, _ in nearest][: service.budget_tokens // 20]
                        else:
                            search = (
                                lexical_store.search_lexical
                                if mode == "lexical"
                                else dense_store.search
                            )
                            found = [r.id for r in await search(user, question, limit=5)]
                            chat = ChatRequest(message=question)
                            recalled = await service.recall(principal_of(user), chat, question)
                            got = [f.id for f in recalled]
                        at5 += want in found
                        prompt += want in got
                        if mode == "hybrid" and want not in got:
                            row["misses"].append(question)
                    await service.drain()
                    row[f"{mode}@5"] = at5 / len(pairs)
                    row[f"{mode}_prompt"] = prompt / len(pairs)
                row["embed_ms"] = 1000 * statistics.median(embed_cpu)
                rows.append(row)
    finally:
        await engine.dispose()
        await embedder.close()
    return rows


# The grid `--tune` searches, on the TUNING part only.
TUNE_DENSE_WEIGHTS = (1.0, 2.0, 3.0)
TUNE_FLOORS = (0.1, 0.2, 0.3)
TUNE_MARGINS = (0.2, 0.3, 0.5)


async def tune(
    url: str,
    data: dict[str, Any],
    embedder_name: str,
    floors: tuple[float, ...] = TUNE_FLOORS,
    margins: tuple[float, ...] = TUNE_MARGINS,
) -> None:
    """Hybrid recall@5 and "in the prompt" on the TUNING part for each RRF dense weight,
    similarity floor and margin of the grid; prints the grid (the report part is not
    read here)."""
    from cloud_server.memory import sql_backend
    from cloud_server.memory.embedder import build_embedder
    from cloud_server.memory.vectors import VectorIndex

    embedder = build_embedder(embedder_name)
    assert embedder is not None
    engine = create_engine(url)
    await upgrade_database(engine)
    sessionmaker = make_sessionmaker(engine)
    store = sql_backend_for(engine, sessionmaker, VectorIndex(engine, embedder))
    settings = Settings(data_dir=Path(tempfile.gettempdir()), memory_extraction=False)
    rng = random.Random(7)
    fill = filler("varied", 7)
    base = [f["content"] for f in json.loads(EVAL_SET.read_text())["facts"]]
    extra = [fill(rng, n) for n in range(HYBRID_FILLER)]
    households: list[tuple[str, str, list[tuple[str, str]]]] = []
    for language, parts in data["languages"].items():
        user = await new_user(sessionmaker)
        wanted = [
            ((await store.add(user, fact)).record.id, question)
            for fact, question in parts["tuning"]
        ]
        for fact, _ in parts["report"]:  # the same household, as reported
            await store.add(user, fact)
        local = local_filler(language, HYBRID_FILLER, 7) if language != "en" else []
        for content in base + extra + local:
            await store.add(user, content)
        households.append((language, user, wanted))
    print(f"\nTuning grid, {embedder.model_id}, TUNING part only: hybrid in the prompt (recall@5)")
    print(
        f"{'weight':>6} {'floor':>5} {'margin':>6} " + " ".join(f"{h[0]:>11}" for h in households)
    )
    saved = (sql_backend.DENSE_WEIGHT, embedder.min_similarity, embedder.margin)
    try:
        for weight in TUNE_DENSE_WEIGHTS:
            for floor in floors:
                for margin in margins:
                    sql_backend.DENSE_WEIGHT = weight
                    embedder.min_similarity, embedder.margin = floor, margin
                    cells = []
                    for _, user, wanted in households:
                        service = MemoryService(store, settings)
                        principal = InstallationPrincipal("bench", user, "Home", True)
                        at5 = prompt = 0
                        for want, question in wanted:
                            found = [r.id for r in await store.search(user, question, limit=5)]
                            chat = ChatRequest(message=question)
                            got = [f.id for f in await service.recall(principal, chat, question)]
                            at5 += want in found
                            prompt += want in got
                        await service.drain()
                        cells.append(f"{prompt / len(wanted):.2f} ({at5 / len(wanted):.2f})")
                    print(
                        f"{weight:>6} {floor:>5} {margin:>6} " + " ".join(f"{c:>11}" for c in cells)
                    )
    finally:
        sql_backend.DENSE_WEIGHT, embedder.min_similarity, embedder.margin = saved
        await engine.dispose()
        await embedder.close()


def print_hybrid(rows: list[dict[str, Any]], part: str) -> None:
    label = {
        "report": "REPORT part (nothing was tuned on these questions)",
        "tuning": "TUNING part (weights and thresholds were chosen on these; not a result)",
    }[part]
    print(
        f"\nParaphrases sharing no content word (bench/memory_paraphrase_set.json), {label}.\n"
        f"Household = the language's facts + eval facts + {HYBRID_FILLER} filler "
        f"(+ {HYBRID_FILLER} template facts in the language, not en); "
        "recall@5 / in the prompt; embed = CPU ms of one query embedding (median)"
    )
    print(
        f"{'model':<22} {'lang':<5} {'n':>3} {'lexical':>13} {'dense':>13} {'hybrid':>13} "
        f"{'embed ms':>9}"
    )
    for r in rows:
        if r["part"] != part:
            continue
        cells = [f"{r[m + '@5']:.2f} / {r[m + '_prompt']:.2f}" for m in MODES]
        print(
            f"{r['model']:<22} {r['language']:<5} {r['questions']:>3} "
            + " ".join(f"{c:>13}" for c in cells)
            + f" {r['embed_ms']:>9.2f}"
        )
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model and r["part"] == part]
        others = [r for r in mine if r["language"] != "en"]
        n = sum(r["questions"] for r in others)
        share = sum(r["hybrid_prompt"] * r["questions"] for r in others) / max(1, n)
        en = next((r["hybrid_prompt"] for r in mine if r["language"] == "en"), 0.0)
        print(f"  {model}: hybrid in the prompt, en {en:.2f}; de/fr/es/nl together {share:.2f}")


def print_misses(rows: list[dict[str, Any]], part: str) -> None:
    for r in rows:
        if r["part"] == part and r["misses"]:
            print(
                f"  not in the prompt ({r['model']}, {r['language']}): " + " | ".join(r["misses"])
            )


async def hybrid_latency(
    url: str, sizes: list[int], n_queries: int, embedder_name: str = "multilingual"
) -> list[dict[str, Any]]:
    """One household of `size` facts with vectors (the reindex path embeds them), the
    database also holding the other sizes' households: p50/p95 of the query embedding
    alone, dense search on the cached matrix, and the chat's hybrid recall (embedding
    included)."""
    from cloud_server.memory.cli import reindex
    from cloud_server.memory.embedder import build_embedder
    from cloud_server.memory.vectors import VectorIndex

    embedder = build_embedder(embedder_name)
    assert embedder is not None
    engine = create_engine(url)
    await upgrade_database(engine)
    sessionmaker = make_sessionmaker(engine)
    index = VectorIndex(engine, embedder)
    store = sql_backend_for(engine, sessionmaker, index)
    settings = Settings(data_dir=Path(tempfile.gettempdir()), memory_extraction=False)
    questions = [q["q"] for q in json.loads(EVAL_SET.read_text())["questions"]][:n_queries]
    users: dict[int, str] = {}
    rows: list[dict[str, Any]] = []
    try:
        for size in sizes:
            users[size] = await new_user(sessionmaker)
            await bulk_load(store, sessionmaker, users[size], size, "varied")
        start = time.perf_counter()
        await reindex(index, progress=lambda d, t: None)
        embed_all = time.perf_counter() - start
        service = MemoryService(store, settings)
        for size in sizes:
            user = users[size]
            principal = InstallationPrincipal("bench", user, "Home", True)
            await store.search(user, "warm up", limit=5)  # builds the cached matrix
            embed, dense, recall = [], [], []
            for q in questions:
                t0 = time.perf_counter()
                vector = await embedder.embed_query(q)
                t1 = time.perf_counter()
                await index.search(user, vector, speaker_ids=[], limit=50)
                t2 = time.perf_counter()
                await service.recall(principal, ChatRequest(message=q), q)
                t3 = time.perf_counter()
                embed.append(t1 - t0)
                dense.append(t2 - t1)
                recall.append(t3 - t2)
            rows.append(
                {
                    "size": size,
                    "embed": (pct(embed, 0.5), pct(embed, 0.95)),
                    "dense": (pct(dense, 0.5), pct(dense, 0.95)),
                    "recall": (pct(recall, 0.5), pct(recall, 0.95)),
                    "embed_all_s": embed_all,
                }
            )
        await service.drain()
    finally:
        await engine.dispose()
    return rows


def print_hybrid_latency(name: str, rows: list[dict[str, Any]]) -> None:
    print(f"\nHybrid recall latency, {name} (ms, p50 / p95); the DB holds every size at once")
    print(f"{'facts':>7} {'query embed':>14} {'dense search':>14} {'chat recall':>14}")
    for r in rows:
        cells = [
            f"{r[k][0] * 1000:.2f} / {r[k][1] * 1000:.2f}" for k in ("embed", "dense", "recall")
        ]
        print(f"{r['size']:>7} " + " ".join(f"{c:>14}" for c in cells))
    if rows:
        print(f"(embedding every fact for the index took {rows[0]['embed_all_s']:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--data", default="uniform60,varied", help="filler distributions")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=int, default=10_000, help="0: skip quality at scale")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--hybrid-only", action="store_true", help="only the lexical/dense/hybrid tables"
    )
    parser.add_argument(
        "--embedders", default="minilm,multilingual", help="models compared side by side"
    )
    parser.add_argument(
        "--tune", action="store_true", help="the weight/threshold grid on the TUNING part"
    )
    parser.add_argument(
        "--floors",
        default=",".join(map(str, TUNE_FLOORS)),
        help="similarity floors of the grid (cosine scales differ per model)",
    )
    parser.add_argument("--margins", default=",".join(map(str, TUNE_MARGINS)))
    args = parser.parse_args()
    if args.tune:
        floors = tuple(float(f) for f in args.floors.split(","))
        margins = tuple(float(m) for m in args.margins.split(","))
        with tempfile.TemporaryDirectory() as tmp:
            data = json.loads(PARAPHRASE_SET.read_text())
            for n, name in enumerate(e for e in args.embedders.split(",") if e):
                url = f"sqlite+aiosqlite:///{tmp}/t{n}.db"
                asyncio.run(tune(url, data, name, floors, margins))
        return
    if args.hybrid_only:
        embedders = [e for e in args.embedders.split(",") if e]
        hybrid_sizes = [int(n) for n in args.sizes.split(",") if n]
        with tempfile.TemporaryDirectory() as tmp:
            data = json.loads(PARAPHRASE_SET.read_text())
            rows = []
            for n, name in enumerate(embedders):
                url = f"sqlite+aiosqlite:///{tmp}/h{n}.db"
                rows += asyncio.run(hybrid_quality(url, data, name))
            print_hybrid(rows, "tuning")
            print_hybrid(rows, "report")
            print_misses(rows, "report")
            for n, name in enumerate(embedders if hybrid_sizes else []):
                url = f"sqlite+aiosqlite:///{tmp}/lat{n}.db"
                lat = asyncio.run(hybrid_latency(url, hybrid_sizes, args.queries, name))
                print_hybrid_latency(f"SQLite, {name}", lat)
        return
    sizes = [int(s) for s in args.sizes.split(",") if s]
    kinds = [k for k in args.data.split(",") if k]
    backends = [b for b in args.backends.split(",") if b]
    embedders = tuple(e for e in args.embedders.split(",") if e)
    asyncio.run(run(sizes, args.queries, kinds, args.rounds, args.scale, backends, embedders))


if __name__ == "__main__":
    main()
