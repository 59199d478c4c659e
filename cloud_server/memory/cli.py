"""`homemind-server memory reindex`: embed every active fact that has no vector of the
configured model (a new install, an embedding that failed, a model change).

Idempotent and resumable: it only ever picks facts still missing a vector, in batches
committed one by one, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import defaultdict
from collections.abc import Callable

from ..db.engine import create_engine, upgrade_database
from ..settings import Settings
from .embedder import build_embedder
from .vectors import VectorIndex

BATCH = 64


async def reindex(index: VectorIndex, *, progress: Callable[[int, int], None]) -> int:
    """Embed the missing vectors; returns how many were written."""
    total = await index.count_missing()
    done = 0
    progress(done, total)
    while True:
        batch = await index.missing(None, BATCH)
        if not batch:
            break
        by_user: defaultdict[str, list[tuple[str, str]]] = defaultdict(list)
        for user_id, memory_id, content in batch:
            by_user[user_id].append((memory_id, content))
        for user_id, facts in by_user.items():
            await index.store(user_id, facts)
        done += len(batch)
        progress(done, max(total, done))
    # Vectors of another model are no longer read by anything.
    await index.drop_other_models()
    return done


def _bar(done: int, total: int) -> None:
    width = 30
    filled = width if total == 0 else width * done // total
    sys.stdout.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    sys.stdout.flush()


def cmd_reindex(args: argparse.Namespace, settings: Settings) -> int:
    embedder = build_embedder(settings.memory_embedder, settings)
    if embedder is None:
        print("HOMEMIND_EMBEDDER=none: recall is lexical, nothing to index.")
        return 0

    async def main() -> int:
        engine = create_engine(settings.effective_database_url)
        try:
            await upgrade_database(engine)
            return await reindex(VectorIndex(engine, embedder), progress=_bar)
        finally:
            await engine.dispose()

    try:
        written = asyncio.run(main())
    finally:
        asyncio.run(embedder.close())
    print(f"\nEmbedded {written} facts with {embedder.model_id}.")
    return 0


def register_commands(sub: argparse._SubParsersAction, commands: dict[str, object]) -> None:  # type: ignore[type-arg]
    memory = sub.add_parser("memory", help="memory administration")
    memory_sub = memory.add_subparsers(dest="memory_command", required=True)
    memory_sub.add_parser("reindex", help="embed every fact missing a vector of the model")
    commands["memory"] = cmd_reindex
