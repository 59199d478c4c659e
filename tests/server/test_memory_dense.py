"""Hybrid recall: dense vectors fused with the lexical search, on SQLite and PostgreSQL.

The embedder is the real in-process model (the pinned ONNX file); nothing is mocked.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cloud_server.db.engine import create_engine, make_sessionmaker, upgrade_database
from cloud_server.memory import text as memtext
from cloud_server.memory.cli import reindex
from cloud_server.memory.embedder import Embedder, EmbedderError, build_embedder, verified
from cloud_server.memory.models import MemoryVector
from cloud_server.memory.recall import Recall
from cloud_server.memory.sql_backend import SqlMemoryBackend, sql_backend_for
from cloud_server.memory.vectors import VectorIndex
from tests.server.conftest import add_user_row

BRUNO = "Bruno has a sensitive stomach and is on a vet-ordered diet."
CHALET = "Our mountain chalet has its own smart heater."
TAP = "The garden tap must be drained before the first frost."
BRUNO_DE = "Bruno hat einen empfindlichen Magen und bekommt Diätfutter vom Tierarzt."
CHALET_DE = "Unser Ferienhaus in den Bergen hat eine eigene smarte Heizung."
CHALET_FR = "Notre chalet à la montagne a son propre radiateur connecté."
OTHERS_DE = [
    "Der Müll wird am Montagabend rausgestellt.",
    "Das WLAN-Passwort hängt am Kühlschrank.",
    "Papa ist Fan des örtlichen Fußballvereins.",
]
OTHERS = [
    "The bins go out on Monday evening.",
    "Ana prefers the bedroom at 19 degrees.",
    "The wifi password is on the fridge.",
    "Dad supports the local football club.",
]


@dataclass
class Env:
    engine: AsyncEngine
    user: str
    embedder: Embedder

    def backend(self, *, dense: bool = True) -> SqlMemoryBackend:
        vectors = VectorIndex(self.engine, self.embedder) if dense else None
        return sql_backend_for(self.engine, make_sessionmaker(self.engine), vectors)

    async def vector_count(self) -> int:
        async with self.engine.connect() as connection:
            stmt = select(func.count()).where(MemoryVector.user_id == self.user)
            return int(await connection.scalar(stmt) or 0)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'dense.db'}"
    url: str = request.getfixturevalue("pg_session_url")
    return "postgresql+asyncpg://" + url.removeprefix("postgresql://")


@pytest.fixture
async def env(db_url: str) -> AsyncIterator[Env]:
    engine = create_engine(db_url)
    await upgrade_database(engine)
    user = await add_user_row(make_sessionmaker(engine))
    embedder = build_embedder("minilm")
    assert embedder is not None
    try:
        yield Env(engine, user, embedder)
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("question", "fact"),
    [
        ("Is it OK to give the dog a bit of chocolate cake?", BRUNO),
        ("Warm up the cabin before we get there.", CHALET),
        ("It's freezing tonight, anything outside to protect?", TAP),
    ],
)
async def test_a_paraphrase_sharing_no_word_is_recalled(env: Env, question: str, fact: str) -> None:
    backend = env.backend()
    for content in [BRUNO, CHALET, TAP, *OTHERS]:
        await backend.add(env.user, content)
    # Not one content word in common: only meaning connects them.
    assert not set(memtext.content_terms(question)) & set(memtext.content_terms(fact))
    hybrid = [r.content for r in await backend.search(env.user, question, limit=3)]
    assert fact in hybrid


@pytest.mark.parametrize(
    ("question", "fact"),
    [
        ("Is it OK to give the dog a bit of chocolate cake?", BRUNO),
        ("It's freezing tonight, anything outside to protect?", TAP),
        ("Darf der Hund ein Stück Schokoladenkuchen haben?", BRUNO_DE),
        ("Mach die Hütte warm, bevor wir ankommen.", CHALET_DE),
        ("Réchauffe la cabane avant notre arrivée.", CHALET_FR),
    ],
)
async def test_the_multilingual_model_recalls_paraphrases_in_other_languages(
    env: Env, question: str, fact: str
) -> None:
    embedder = build_embedder("multilingual")
    assert embedder is not None and embedder.model_id == "use-multilingual-v3"
    backend = Env(env.engine, env.user, embedder).backend()
    for content in [BRUNO, CHALET, TAP, BRUNO_DE, CHALET_DE, CHALET_FR, *OTHERS, *OTHERS_DE]:
        await backend.add(env.user, content)
    assert not set(memtext.content_terms(question)) & set(memtext.content_terms(fact))
    hits = [r.content for r in await backend.search(env.user, question, limit=3)]
    assert fact in hits


class QueryCounter:
    """The real embedder, counting the queries it embeds."""

    def __init__(self, embedder: Embedder) -> None:
        self.inner = embedder
        self.model_id = embedder.model_id
        self.dimension = embedder.dimension
        self.min_similarity = embedder.min_similarity
        self.margin = embedder.margin
        self.queries: list[str] = []

    async def embed_query(self, text: str) -> Any:
        self.queries.append(text)
        return await self.inner.embed_query(text)

    async def embed_documents(self, texts: Sequence[str]) -> Any:
        return await self.inner.embed_documents(texts)

    async def close(self) -> None:
        await self.inner.close()


async def test_the_query_is_embedded_only_for_a_household_whose_facts_do_not_fit(
    env: Env,
) -> None:
    counter = QueryCounter(env.embedder)
    backend = Env(env.engine, env.user, counter).backend()
    tasks: list[asyncio.Task[Any]] = []

    def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        tasks.append(asyncio.ensure_future(coro))
        return tasks[-1]

    recall = Recall(backend, 60, spawn)
    for content in [BRUNO, CHALET, TAP]:
        await backend.add(env.user, content)
    # Three facts fit 60 tokens: all of them, the one sharing the turn's words first.
    question = "Should the garden tap be drained tonight?"
    assert [f.content for f in await recall.facts(env.user, None, question)] == [
        TAP,
        CHALET,
        BRUNO,
    ]
    assert counter.queries == []
    # Seven do not: the turn's question is embedded, and the paraphrase is found by meaning.
    for content in OTHERS:
        await backend.add(env.user, content)
    paraphrase = "Is it OK to give the dog a bit of chocolate cake?"
    assert BRUNO in [f.content for f in await recall.facts(env.user, None, paraphrase)]
    assert counter.queries == [paraphrase]
    # The household is known to be large now: the next question is embedded once, early.
    assert CHALET in [f.content for f in await recall.facts(env.user, None, "Warm up the cabin")]
    assert counter.queries == [paraphrase, "Warm up the cabin"]
    recall.flush_now()
    await asyncio.gather(*tasks)


async def test_a_fact_without_vector_is_still_found_lexically(env: Env) -> None:
    backend = env.backend()
    fact = (await backend.add(env.user, "The piano tuner comes every spring")).record
    async with env.engine.begin() as connection:
        await connection.execute(delete(MemoryVector).where(MemoryVector.memory_id == fact.id))
    await backend.vectors.changed(env.user)  # type: ignore[union-attr]
    assert [r.id for r in await backend.search(env.user, "piano tuner")] == [fact.id]


async def test_vectors_follow_add_supersede_and_delete(env: Env) -> None:
    backend = env.backend()
    old = (await backend.add(env.user, "The bins go out on Monday")).record
    assert await env.vector_count() == 1
    new = await backend.supersede(env.user, old.id, "The bins go out on Tuesday")
    assert await env.vector_count() == 1  # one row per active fact
    hits = await backend.search(env.user, "When is rubbish collected?")
    assert [r.id for r in hits] == [new.id]  # never the stale version
    await backend.delete(env.user, new.id)
    assert await env.vector_count() == 0


async def test_a_write_on_one_instance_is_seen_by_another(env: Env) -> None:
    first, second = env.backend(), env.backend()
    await first.add(env.user, BRUNO)
    assert [r.content for r in await second.search(env.user, "chocolate for the dog?")] == [BRUNO]
    await first.add(env.user, CHALET)  # `second` holds a cached matrix: it must notice
    hits = [r.content for r in await second.search(env.user, "heat the cabin", limit=1)]
    assert hits == [CHALET]


async def test_reindex_fills_gaps_once_and_re_embeds_on_model_change(env: Env) -> None:
    lexical_only = env.backend(dense=False)
    for content in [BRUNO, CHALET, *OTHERS]:
        await lexical_only.add(env.user, content)
    assert await env.vector_count() == 0
    index = VectorIndex(env.engine, env.embedder)
    seen: list[tuple[int, int]] = []
    assert await reindex(index, progress=lambda d, t: seen.append((d, t))) >= 6
    assert await env.vector_count() == 6 and seen[-1][0] == seen[-1][1]
    assert await reindex(index, progress=lambda d, t: None) == 0  # idempotent
    # Vectors of an older model do not count: the next reindex embeds with the current one.
    async with env.engine.begin() as connection:
        await connection.execute(
            update(MemoryVector)
            .where(MemoryVector.user_id == env.user)
            .values(model_id="an-older-model")
        )
    assert await reindex(index, progress=lambda d, t: None) >= 6
    async with env.engine.connect() as connection:
        models = (
            await connection.scalars(
                select(MemoryVector.model_id).where(MemoryVector.user_id == env.user).distinct()
            )
        ).all()
    assert models == [env.embedder.model_id]


async def test_switching_models_recalls_lexically_until_reindex_re_embeds(env: Env) -> None:
    """The upgrade path of the new default: minilm vectors, then HOMEMIND_EMBEDDER=multilingual."""
    old = env.backend()  # minilm
    for content in [BRUNO_DE, CHALET_DE, *OTHERS_DE]:
        await old.add(env.user, content)
    multilingual = build_embedder("multilingual")
    assert multilingual is not None
    new = Env(env.engine, env.user, multilingual).backend()
    question = "Darf der Hund ein Stück Schokoladenkuchen haben?"
    # No vector of the new model yet: nothing dense, the lexical ranking still answers.
    assert await new.search_dense(env.user, question, limit=5) == []
    # At least this household's five (the PostgreSQL database is shared by the session).
    assert await reindex(VectorIndex(env.engine, multilingual), progress=lambda d, t: None) >= 5
    async with env.engine.connect() as connection:
        models = (
            await connection.scalars(
                select(MemoryVector.model_id).where(MemoryVector.user_id == env.user).distinct()
            )
        ).all()
    assert models == ["use-multilingual-v3"]
    assert [r.content for r in await new.search(env.user, question, limit=1)] == [BRUNO_DE]


def test_a_model_file_with_the_wrong_hash_is_refused(tmp_path: Path) -> None:
    tampered = tmp_path / "model.onnx"
    tampered.write_bytes(b"not the model")
    with pytest.raises(EmbedderError, match="SHA-256"):
        verified(tampered, "0" * 64)


def test_the_default_embedder_is_the_multilingual_one(tmp_path: Path) -> None:
    from cloud_server.settings import Settings

    embedder = build_embedder(Settings(data_dir=tmp_path).memory_embedder)
    assert embedder is not None and embedder.model_id == "use-multilingual-v3"
    assert embedder.dimension == 512


def test_unknown_embedder_name_is_a_clear_error() -> None:
    assert build_embedder("none") is None
    with pytest.raises(EmbedderError, match="HOMEMIND_EMBEDDER"):
        build_embedder("word2vec")


async def test_cached_matrices_stay_within_the_vector_bound(env: Env) -> None:
    """The LRU keeps at most `max_vectors` vectors across households, newest use first;
    an evicted household is rebuilt from the database and still found."""
    index = VectorIndex(env.engine, env.embedder, max_vectors=3)
    backend = sql_backend_for(env.engine, make_sessionmaker(env.engine), index)
    for content in [BRUNO, CHALET]:
        await backend.add(env.user, content)
    other = await add_user_row(make_sessionmaker(env.engine))
    await backend.add(other, TAP)
    await backend.add(other, OTHERS[0])
    await backend.search(env.user, "dog food", limit=1)
    assert index.cached_households == [env.user]
    await backend.search(other, "frost outside", limit=1)
    # 2 + 2 vectors exceed the bound of 3: the least recently used household went.
    assert index.cached_households == [other]
    hits = [r.content for r in await backend.search(env.user, "heat the cabin", limit=1)]
    assert hits == [CHALET]
