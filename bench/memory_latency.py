"""Memory recall latency at 1k, 10k and 100k facts per household, SQLite and PostgreSQL.

Run: `.venv/bin/python bench/memory_latency.py [--sizes 1000,10000,100000] [--queries 200]`
(also the latency part of `bench/memory_recall.py`).

- One database per backend holds one household of every size at once, so the 1k and
  10k figures are taken with a 100k co-tenant household present. Filler facts are the
  `varied` distribution of bench/memory_recall.py, plus the evaluation set's facts (so
  the questions have true matches); every fact has its vector (the configured model).
- Seeding uses bulk inserts and embeds every fact once; the seeded database is cached
  (a file under ~/.cache/homemind/bench for SQLite, a database `hmbench_seed_<key>` on
  PostgreSQL) and copied for each run, so later runs start in seconds. `--no-cache`
  seeds afresh.
- Measured per question: the query embedding alone, and the chat's recall
  (`MemoryService.recall`, embedding included: count, list when all could fit, hybrid
  search). Every recall embeds its question afresh, as a turn's first recall does
  (`FreshQueries`: the embedder's query cache only serves a turn's second search; a bench
  that asks the same questions again would otherwise time cache hits). The embedder is
  the server's default (`--embedder` for another). Wall time p50/p95, and the process CPU
  time of the recall (every thread of this process: event loop, embedder and SQLite
  threads; PostgreSQL's own server processes are not in it). The machine is shared: CPU
  time is the steadier figure.
- `--against REF` (a commit, e.g. main): the same measurement of that commit's code, run
  first in the same invocation (its tree from `git archive`, this script copied in), so
  the "base" columns sit beside "ours" from one run on one machine state.
Prints tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from bench.memory_recall import VariedFacts, fact_row, new_user  # noqa: E402
from cloud_server.accounts.principal import InstallationPrincipal  # noqa: E402
from cloud_server.db.engine import create_engine, make_sessionmaker, upgrade_database  # noqa: E402
from cloud_server.memory import text as memtext  # noqa: E402
from cloud_server.memory.embedder import build_embedder  # noqa: E402
from cloud_server.memory.models import Memory, MemoryVector  # noqa: E402
from cloud_server.memory.provider import MemoryService  # noqa: E402
from cloud_server.memory.sql_backend import sql_backend_for  # noqa: E402
from cloud_server.memory.vectors import VectorIndex, to_bytes  # noqa: E402
from cloud_server.settings import Settings  # noqa: E402
from homemind_client.models import ChatRequest  # noqa: E402

EVAL_SET = ROOT / "bench" / "memory_eval_set.json"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "homemind" / "bench"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
SEED_VERSION = 1
ROUNDS = 40
EMBED_BATCH = 256


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def schema_key() -> str:
    """The migrations in this tree: a cached seed is only reused on the same revisions
    (`--no-cache` after editing a migration)."""
    versions = ROOT / "cloud_server" / "migrations" / "versions"
    names = sorted(path.name for path in versions.glob("*.py"))
    return hashlib.sha256(json.dumps(names).encode()).hexdigest()[:12]


def seed_key(sizes: list[int], model_id: str) -> str:
    raw = json.dumps([SEED_VERSION, sizes, model_id, schema_key()])
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


class EmbeddingCache:
    """Fact vectors for the seed, cached on disk per model.

    The evaluation facts get their real embedding. A filler fact's vector is the
    normalised sum of its words' embeddings (each distinct word embedded once): embedding
    111k sentences took over half an hour on the loaded machine, a few thousand words take
    a minute. The vectors keep the fillers' shared words close together, so dense search
    finds as many near candidates as real facts would give; only latency is measured here.
    """

    def __init__(self, embedder: Any, real: set[str]) -> None:
        self.embedder = embedder
        self.real = real
        name = hashlib.sha256(embedder.model_id.encode()).hexdigest()[:12]
        self.path = CACHE / f"vectors-{name}-v{SEED_VERSION}.npz"
        self.known: dict[str, Any] = {}
        self.dirty = False
        if self.path.exists():
            with np.load(self.path, allow_pickle=False) as data:
                self.known = dict(zip(data["texts"].tolist(), data["vectors"], strict=True))

    def _embed(self, texts: list[str]) -> None:
        todo = list(dict.fromkeys(t for t in texts if t not in self.known))
        for i in range(0, len(todo), EMBED_BATCH):
            batch = todo[i : i + EMBED_BATCH]
            for text, vector in zip(batch, self.embedder.embed_sync(batch), strict=True):
                self.known[text] = vector
            self.dirty = True

    def of(self, texts: list[str]) -> Any:
        words = {t: memtext.words(t) for t in texts if t not in self.real}
        self._embed([t for t in texts if t in self.real])
        self._embed([w for ws in words.values() for w in ws])
        out = np.zeros((len(texts), self.embedder.dimension), dtype=np.float32)
        for n, text in enumerate(texts):
            if text in self.real:
                out[n] = self.known[text]
                continue
            total = np.sum([self.known[w] for w in words[text]], axis=0)
            out[n] = total / max(float(np.linalg.norm(total)), 1e-9)
        return out

    def save(self) -> None:
        if not self.dirty:
            return
        CACHE.mkdir(parents=True, exist_ok=True)
        texts = list(self.known)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, texts=np.array(texts), vectors=np.stack([self.known[t] for t in texts]))
        tmp.replace(self.path)
        self.dirty = False


class FreshQueries:
    """The embedder, without its query cache: every `embed_query` runs the model."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dimension = inner.dimension
        self.min_similarity = inner.min_similarity
        self.margin = inner.margin

    async def embed_query(self, text: str) -> Any:
        return (await self.inner.embed_documents([text]))[0]

    async def embed_documents(self, texts: list[str]) -> Any:
        return await self.inner.embed_documents(texts)

    def embed_sync(self, texts: list[str]) -> Any:
        return self.inner.embed_sync(texts)

    async def close(self) -> None:
        await self.inner.close()


async def seed(url: str, sizes: list[int], embedder: Any) -> dict[str, str]:
    """Migrate, fill one household per size, embed every fact; returns size -> user id."""
    engine = create_engine(url)
    await upgrade_database(engine)
    sessionmaker = make_sessionmaker(engine)
    facts = [f["content"] for f in json.loads(EVAL_SET.read_text())["facts"]]
    users: dict[str, str] = {}
    embeddings = EmbeddingCache(embedder, set(facts))
    try:
        plan: list[tuple[str, list[str]]] = []
        for size in sizes:
            user = await new_user(sessionmaker)
            users[str(size)] = user
            make = VariedFacts(size).fact
            rng = random.Random(size)
            plan.append((user, facts + [make(rng, n) for n in range(size - len(facts))]))
        # The households grow together (interleaved rows, as on a real server), in ROUNDS.
        for round_ in range(ROUNDS):
            rows: list[dict[str, Any]] = []
            for user, contents in plan:
                step = -(-len(contents) // ROUNDS)
                rows += [
                    fact_row(user, content)
                    for content in contents[round_ * step : (round_ + 1) * step]
                ]
            started = time.perf_counter()
            vectors = embeddings.of([r["content"] for r in rows])
            embedded = time.perf_counter() - started
            async with engine.begin() as connection:
                await connection.execute(insert(Memory), rows)
                await connection.execute(
                    insert(MemoryVector),
                    [
                        {
                            "memory_id": r["id"],
                            "model_id": embedder.model_id,
                            "user_id": r["user_id"],
                            "vector": to_bytes(v),
                        }
                        for r, v in zip(rows, vectors, strict=True)
                    ],
                )
            print(
                f"  seeding round {round_ + 1}/{ROUNDS} ({len(rows)} facts, "
                f"embedding {embedded:.1f} s)",
                flush=True,
            )
            embeddings.save()
        async with engine.begin() as connection:
            for user, _ in plan:
                await VectorIndex.bump(connection, user)
    finally:
        embeddings.save()
        await engine.dispose()
    return users


async def _pg(sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def _pg_exists(name: str) -> bool:
    import asyncpg

    connection = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        return bool(await connection.fetchval("SELECT 1 FROM pg_database WHERE datname=$1", name))
    finally:
        await connection.close()


async def prepared(backend: str, sizes: list[int], embedder: Any, tmp: Path, fresh: bool) -> Any:
    """(url to measure on, users, cleanup) with the seed cached between runs."""
    key = seed_key(sizes, embedder.model_id)
    if backend == "sqlite":
        CACHE.mkdir(parents=True, exist_ok=True)
        cached = CACHE / f"latency-{key}.db"
        users_file = cached.with_suffix(".json")
        if fresh or not cached.exists() or not users_file.exists():
            print(f"Seeding SQLite ({', '.join(map(str, sizes))} facts) into {cached}")
            cached.unlink(missing_ok=True)
            partial = cached.with_suffix(".partial")
            partial.unlink(missing_ok=True)
            users = await seed(f"sqlite+aiosqlite:///{partial}", sizes, embedder)
            partial.rename(cached)
            users_file.write_text(json.dumps(users))
        copy = tmp / "latency.db"
        shutil.copyfile(cached, copy)
        return f"sqlite+aiosqlite:///{copy}", json.loads(users_file.read_text()), None
    seed_db = f"hmbench_seed_{key}"
    users_file = CACHE / f"latency-pg-{key}.json"
    if fresh or not await _pg_exists(seed_db) or not users_file.exists():
        print(f"Seeding PostgreSQL ({', '.join(map(str, sizes))} facts) into {seed_db}")
        await _pg(f'DROP DATABASE IF EXISTS "{seed_db}" WITH (FORCE)')
        await _pg(f'CREATE DATABASE "{seed_db}"')
        users = await seed(PG_URL.format(name=seed_db), sizes, embedder)
        CACHE.mkdir(parents=True, exist_ok=True)
        users_file.write_text(json.dumps(users))
    run_db = f"hmbench_run_{secrets.token_hex(4)}"
    await _pg(f'CREATE DATABASE "{run_db}" TEMPLATE "{seed_db}"')
    url = PG_URL.format(name=run_db)
    engine = create_engine(url)
    async with engine.connect() as connection:
        await connection.exec_driver_sql("COMMIT")
        # The steady state autovacuum keeps: statistics, GIN pending lists flushed.
        await connection.exec_driver_sql("VACUUM ANALYZE")
    await engine.dispose()

    async def cleanup() -> None:
        await _pg(f'DROP DATABASE IF EXISTS "{run_db}" WITH (FORCE)')

    return url, json.loads(users_file.read_text()), cleanup


async def measure(
    url: str, users: dict[str, str], sizes: list[int], embedder: Any, n: int, rounds: int
) -> list[dict[str, Any]]:
    engine = create_engine(url)
    await upgrade_database(engine)
    sessionmaker = make_sessionmaker(engine)
    settings = Settings(data_dir=Path(tempfile.gettempdir()), memory_extraction=False)
    questions = [q["q"] for q in json.loads(EVAL_SET.read_text())["questions"]]
    questions = (questions * (n // len(questions) + 1))[:n]
    rows: list[dict[str, Any]] = []
    try:
        modes = {
            "lexical": sql_backend_for(engine, sessionmaker),
            "hybrid": sql_backend_for(engine, sessionmaker, VectorIndex(engine, embedder)),
        }
        for size in sizes:
            user = users[str(size)]
            principal = InstallationPrincipal("bench", user, "Home", True)
            row: dict[str, Any] = {"size": size}
            embed: list[float] = []
            for q in questions:
                started = time.perf_counter()
                await embedder.embed_query(q)
                embed.append(time.perf_counter() - started)
            row["embed"] = (pct(embed, 0.5), pct(embed, 0.95))
            for mode, store in modes.items():
                service = MemoryService(store, settings)
                for q in questions[:10]:  # warm-up: the cached matrix, compiled statements
                    await service.recall(principal, ChatRequest(message=q), q)
                wall: list[float] = []
                cpu: list[float] = []
                server_before = await pg_server_cpu(engine)
                for _ in range(rounds):
                    for q in questions:
                        chat = ChatRequest(message=q)
                        started, cpu_started = time.perf_counter(), time.process_time()
                        await service.recall(principal, chat, q)
                        wall.append(time.perf_counter() - started)
                        cpu.append(time.process_time() - cpu_started)
                server_after = await pg_server_cpu(engine)
                await service.drain()
                if server_before is not None and server_after is not None:
                    spent = server_after - server_before
                    row.setdefault("pg_cpu", {})[mode] = spent / len(wall)
                row[mode] = (pct(wall, 0.5), pct(wall, 0.95))
                row[mode + "_cpu"] = (pct(cpu, 0.5), pct(cpu, 0.95))
            rows.append(row)
    finally:
        await engine.dispose()
    return rows


async def pg_server_cpu(engine: Any) -> float | None:
    """CPU seconds used so far by the PostgreSQL backends serving this database (same
    machine: /proc); None elsewhere. Our own pool's connections are the only ones."""
    if engine.dialect.name != "postgresql":
        return None
    async with engine.connect() as connection:
        pids = (
            await connection.exec_driver_sql(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            )
        ).scalars()
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in pids:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()  # noqa: ASYNC240 (procfs, tiny)
                fields = stat.rsplit(")", 1)[1].split()
            except OSError:
                return None
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _cell(pair: Any) -> str:
    if not pair:
        return "-"
    return f"{pair[0] * 1000:.2f} / {pair[1] * 1000:.2f}"


def print_tables(results: dict[str, list[dict[str, Any]]], baseline: dict[str, Any]) -> None:
    base_rows = {
        (name, r["size"]): r for name, rows in baseline.get("results", {}).items() for r in rows
    }
    commit = baseline.get("commit", "?")
    print(
        "\nRecall latency (ms, p50 / p95), the chat's call with the query embedding, "
        "every household size in one database (a 100k co-tenant present)"
    )
    if baseline:
        print(f"base = the code at {commit} (--against), measured in this run")
    else:
        print("base: not measured (--against REF measures a commit's code beside ours)")
    columns = [
        ("embed", lambda r, b: r.get("embed")),
        ("base lexical", lambda r, b: b.get("lexical")),
        ("base hybrid", lambda r, b: b.get("hybrid")),
        ("ours lexical", lambda r, b: r.get("lexical")),
        ("ours hybrid", lambda r, b: r.get("hybrid")),
    ]
    for title, suffix in (("wall time", ""), ("CPU time", "_cpu")):
        print(f"\n{title}:")
        print(f"{'backend':<10} {'facts':>7} " + " ".join(f"{c:>15}" for c, _ in columns))
        for name, rows in results.items():
            for r in rows:
                base = base_rows.get((name, r["size"]), {})
                cells = []
                for column, pick in columns:
                    if column == "embed":
                        cells.append(_cell(pick(r, base)) if not suffix else "-")
                        continue
                    mode = column.split()[1] + suffix
                    cells.append(_cell((r if column.startswith("ours") else base).get(mode)))
                print(f"{name:<10} {r['size']:>7} " + " ".join(f"{c:>15}" for c in cells))
    print(
        "\nembed = the query embedding alone (also inside hybrid). CPU = process CPU time per "
        "recall, every thread of the bench process; on PostgreSQL plus the database server's "
        "own CPU per recall (its backends' /proc times over the run, a mean: see pg_cpu)."
    )
    for name, rows in results.items():
        for r in rows:
            if "pg_cpu" in r:
                base = base_rows.get((name, r["size"]), {}).get("pg_cpu", {})
                cells = ", ".join(
                    f"{mode} {r['pg_cpu'][mode] * 1000:.2f}"
                    + (f" (base {base[mode] * 1000:.2f})" if mode in base else "")
                    for mode in ("lexical", "hybrid")
                )
                print(f"pg_cpu {r['size']:>7}: server ms per recall: {cells}")
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"machine: {os.cpu_count()} CPUs, load average {load}")
    except OSError:
        pass


async def run(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    sizes = [int(s) for s in args.sizes.split(",") if s]
    built = build_embedder(args.embedder)
    assert built is not None, "--embedder none has no dense recall to measure"
    embedder = FreshQueries(built)
    print(f"embedder: {args.embedder} ({embedder.model_id}), query embeddings not cached")
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in [b for b in args.backends.split(",") if b]:
            if backend == "postgresql":
                try:
                    await _pg("SELECT 1")
                except Exception as err:
                    print(f"(PostgreSQL not reachable: {type(err).__name__}; skipped)")
                    continue
            url, users, cleanup = await prepared(backend, sizes, embedder, Path(tmp), args.no_cache)
            try:
                results[backend] = await measure(
                    url, users, sizes, embedder, args.queries, args.rounds
                )
            finally:
                if cleanup is not None:
                    await cleanup()
    await embedder.close()
    return results


def measure_against(args: argparse.Namespace) -> dict[str, Any]:
    """Run this script on REF's tree (its code, this measurement) and return its figures."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", args.against],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp)
        archive = subprocess.run(
            ["git", "archive", commit], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        shutil.copyfile(Path(__file__), tree / "bench" / "memory_latency.py")
        out = tree / "figures.json"
        forwarded = [
            f"--sizes={args.sizes}",
            f"--queries={args.queries}",
            f"--rounds={args.rounds}",
            f"--backends={args.backends}",
            f"--embedder={args.embedder}",  # ours, not REF's default
            *(["--no-cache"] if args.no_cache else []),
        ]
        print(f"Measuring {commit} first (its code in {tree})", flush=True)
        env = {**os.environ, "PYTHONPATH": str(tree)}
        subprocess.run(
            [
                sys.executable,
                str(tree / "bench" / "memory_latency.py"),
                *forwarded,
                "--json-out",
                str(out),
            ],
            cwd=tree,
            env=env,
            check=True,
        )
        return {"commit": commit, "results": json.loads(out.read_text())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--embedder",
        default=Settings.model_fields["memory_embedder"].default,
        help="HOMEMIND_EMBEDDER value (default: the server's)",
    )
    parser.add_argument("--no-cache", action="store_true", help="seed afresh")
    parser.add_argument("--against", metavar="REF", help="also measure this commit's code")
    parser.add_argument("--json-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    baseline = measure_against(args) if args.against else {}
    results = asyncio.run(run(args))
    if args.json_out:
        args.json_out.write_text(json.dumps(results))
        return
    print_tables(results, baseline)


if __name__ == "__main__":
    main()
