"""Memory recall benchmark: quality on our household evaluation set, and search latency.

Run: `.venv/bin/python bench/memory_recall.py [--sizes 1000,10000,100000] [--queries 200]`

- Quality (bench/memory_eval_set.json: facts, paraphrased questions, updates): recall@1 and
  recall@5 of the fact a question is about; after the updates, the stale-fact rate (a
  superseded version among the top 5) and whether the new version is found.
- Latency: search p50/p95 with 1k, 10k and 100k facts in one household, for the backends
  that run here (SQLite, PostgreSQL on 127.0.0.1:5432 when reachable), and the cost of an
  add. The Shodh row uses the fake server from the tests: quality only, not a latency
  target (the real Shodh server cannot run on these machines).
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

from cloud_server.db.base import new_id, utcnow  # noqa: E402
from cloud_server.db.engine import create_engine, make_sessionmaker, upgrade_database  # noqa: E402
from cloud_server.db.models import User  # noqa: E402
from cloud_server.memory import text as memtext  # noqa: E402
from cloud_server.memory.backend import MemoryBackend  # noqa: E402
from cloud_server.memory.models import Memory  # noqa: E402
from cloud_server.memory.shodh import ShodhClient, ShodhMemoryBackend  # noqa: E402
from cloud_server.memory.sql_backend import SqlMemoryBackend, sql_backend_for  # noqa: E402

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
        hits = await backend.search(user, update["question"], limit=5)
        hit_ids = [r.id for r in hits]
        stale += any(
            update["stale"].lower() in r.content.lower() and r.id != ids[update["fact"]]
            for r in hits
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


async def bulk_load(store: SqlMemoryBackend, sessionmaker: Any, user: str, count: int) -> float:
    rng = random.Random(count)
    start = time.perf_counter()
    chunk = 5_000
    for offset in range(0, count, chunk):
        rows = []
        for n in range(offset, min(count, offset + chunk)):
            content = synthetic_fact(rng, n)
            now = utcnow()
            rows.append(
                {
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
            )
        async with sessionmaker() as session, session.begin():
            await session.execute(insert(Memory), rows)
    return time.perf_counter() - start


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latency(
    store: SqlMemoryBackend, sessionmaker: Any, sizes: list[int], queries: list[str]
) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        user = await new_user(sessionmaker)
        load = await bulk_load(store, sessionmaker, user, size)
        # The household's real facts among the noise, so queries have true matches.
        for q in queries[:20]:
            await store.add(user, f"Remembered: {q}")
        for q in queries[:10]:  # warm-up
            await store.search(user, q, limit=10)
        times = []
        for q in queries:
            start = time.perf_counter()
            await store.search(user, q, limit=10)
            times.append((time.perf_counter() - start) * 1000)
        adds = []
        rng = random.Random(7)
        for n in range(100):
            start = time.perf_counter()
            await store.add(user, synthetic_fact(rng, 10_000_000 + n))
            adds.append((time.perf_counter() - start) * 1000)
        rows.append(
            {
                "size": size,
                "load_s": load,
                "p50": statistics.median(times),
                "p95": pct(times, 0.95),
                "add_p50": statistics.median(adds),
                "add_p95": pct(adds, 0.95),
            }
        )
    return rows


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


async def run(sizes: list[int], n_queries: int) -> None:
    data = json.loads(EVAL_SET.read_text())
    queries = [q["q"] for q in data["questions"]]
    queries = (queries * (n_queries // len(queries) + 1))[:n_queries]
    quality_rows: list[tuple[str, dict[str, Any]]] = []
    latency_rows: list[tuple[str, list[dict[str, Any]]]] = []

    with tempfile.TemporaryDirectory() as tmp:
        targets = [("sqlite", f"sqlite+aiosqlite:///{tmp}/bench.db")]
        pg_name = await pg_database()
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
                if name == "sqlite":
                    sys.path.insert(0, str(ROOT))
                    from tests.server.memory_eval.fake_shodh import FakeShodh

                    fake = FakeShodh()
                    await fake.start()
                    shodh = ShodhMemoryBackend(store, ShodhClient(fake.base_url, fake.api_key))
                    quality_rows.append(("shodh (fake)", await quality(shodh, sessionmaker, data)))
                    await shodh.close()
                    await fake.close()
                latency_rows.append((name, await latency(store, sessionmaker, sizes, queries)))
                await engine.dispose()
        finally:
            if pg_name:
                await drop_pg(pg_name)

    print("\nRecall quality (household evaluation set)")
    print(
        f"{'backend':<14} {'questions':>9} {'recall@1':>9} {'recall@5':>9} "
        f"{'updates':>8} {'stale':>6} {'new@5':>6}"
    )
    for name, r in quality_rows:
        print(
            f"{name:<14} {r['questions']:>9} {r['recall@1']:>9.3f} {r['recall@5']:>9.3f} "
            f"{r['updates']:>8} {r['stale_rate']:>6.3f} {r['new_found@5']:>6.3f}"
        )
    misses = quality_rows[0][1]["misses"]
    if misses:
        print(f"\nMissed at 5 ({quality_rows[0][0]}): " + "; ".join(misses))

    print(f"\nSearch latency, one household, {n_queries} queries (ms), and the cost of an add")
    print(
        f"{'backend':<12} {'facts':>8} {'load s':>7} {'p50':>7} {'p95':>7} "
        f"{'add p50':>8} {'add p95':>8}"
    )
    for name, rows in latency_rows:
        for r in rows:
            print(
                f"{name:<12} {r['size']:>8} {r['load_s']:>7.1f} {r['p50']:>7.2f} {r['p95']:>7.2f} "
                f"{r['add_p50']:>8.2f} {r['add_p95']:>8.2f}"
            )
    print("\nShodh: quality through the test fake only; not a latency target.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    asyncio.run(run(sizes, args.queries))


if __name__ == "__main__":
    main()
