"""HOMEMIND_EMBEDDER=voyage: the real Voyage embedder against the fake API on 127.0.0.1.

The fake (tests/fakes/voyage.py) gives texts a test marks as meaning the same thing one
direction, so a paraphrase sharing no word is found only through the dense path.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from cloud_server.db.base import utcnow
from cloud_server.db.engine import create_engine, make_sessionmaker, upgrade_database
from cloud_server.db.models import User
from cloud_server.memory.cli import reindex
from cloud_server.memory.embedder import EmbedderError, build_embedder
from cloud_server.memory.models import MemoryVector
from cloud_server.memory.sql_backend import SqlMemoryBackend, sql_backend_for
from cloud_server.memory.vectors import VectorIndex
from cloud_server.memory.voyage import VoyageEmbedder
from cloud_server.settings import Settings
from tests.fakes.voyage import FakeVoyage

BRUNO = "Bruno has a sensitive stomach and is on a vet-ordered diet."
CAKE = "Is it OK to give the dog a bit of chocolate cake?"
OTHERS = ["The bins go out on Monday evening.", "The wifi password is on the fridge."]


@pytest.fixture
async def fake() -> AsyncIterator[FakeVoyage]:
    server = FakeVoyage()
    await server.start()
    yield server
    await server.close()


class Env:
    def __init__(self, tmp_path: Path, fake: FakeVoyage) -> None:
        self.engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'voyage.db'}")
        self.fake = fake
        self.user = secrets.token_hex(16)
        self.embedders: list[VoyageEmbedder] = []

    def embedder(self, model: str = "voyage-3.5-lite") -> VoyageEmbedder:
        embedder = VoyageEmbedder(self.fake.api_key, model=model, base_url=self.fake.base_url)
        self.embedders.append(embedder)
        return embedder

    def backend(self, embedder: VoyageEmbedder | None = None) -> SqlMemoryBackend:
        index = VectorIndex(self.engine, embedder or self.embedder())
        return sql_backend_for(self.engine, make_sessionmaker(self.engine), index)

    async def models(self) -> list[str]:
        async with self.engine.connect() as connection:
            rows = await connection.scalars(
                select(MemoryVector.model_id).where(MemoryVector.user_id == self.user).distinct()
            )
            return sorted(rows.all())

    async def vector_count(self) -> int:
        async with self.engine.connect() as connection:
            stmt = select(func.count()).where(MemoryVector.user_id == self.user)
            return int(await connection.scalar(stmt) or 0)


@pytest.fixture
async def env(tmp_path: Path, fake: FakeVoyage) -> AsyncIterator[Env]:
    env = Env(tmp_path, fake)
    await upgrade_database(env.engine)
    async with make_sessionmaker(env.engine)() as session, session.begin():
        email = f"{env.user}@example.test"
        session.add(
            User(
                id=env.user,
                email=email,
                email_normalized=email,
                password_hash="x",
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )
    try:
        yield env
    finally:
        for embedder in env.embedders:
            await embedder.close()
        await env.engine.dispose()


async def test_a_paraphrase_is_recalled_through_voyage(env: Env) -> None:
    env.fake.means(BRUNO, "dog diet")
    env.fake.means(CAKE, "dog diet")
    backend = env.backend()
    for content in [BRUNO, *OTHERS]:
        await backend.add(env.user, content)
    hits = [r.content for r in await backend.search(env.user, CAKE, limit=3)]
    assert hits[:1] == [BRUNO]
    documents = [r for r in env.fake.requests if r.input_type == "document"]
    queries = [r for r in env.fake.requests if r.input_type == "query"]
    assert [r.inputs for r in documents] == [[BRUNO], [OTHERS[0]], [OTHERS[1]]]
    assert [r.inputs for r in queries] == [[CAKE]]
    assert {r.model for r in env.fake.requests} == {"voyage-3.5-lite"}
    assert await env.models() == ["voyage:voyage-3.5-lite"]


async def test_an_outage_leaves_recall_lexical_and_the_key_out_of_the_logs(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    backend = env.backend()
    env.fake.down = True
    stored = (await backend.add(env.user, "The piano tuner comes every spring")).record
    assert await env.vector_count() == 0  # the fact is stored, its vector is not
    hits = await backend.search(env.user, "When is the piano tuner coming?")
    assert [r.id for r in hits] == [stored.id]  # found lexically
    assert "Dense recall failed" in caplog.text
    assert env.fake.api_key not in caplog.text
    # Back up: the next reindex embeds what the outage missed.
    env.fake.down = False
    assert await reindex(VectorIndex(env.engine, env.embedder()), progress=lambda d, t: None) == 1
    assert await env.vector_count() == 1


async def test_a_rate_limited_query_falls_back_to_lexical(env: Env) -> None:
    backend = env.backend()
    stored = (await backend.add(env.user, "Grandma Rosa drinks chamomile tea")).record
    env.fake.failures.append((429, "Rate limit exceeded."))
    hits = await backend.search(env.user, "What tea does Rosa drink?")
    assert [r.id for r in hits] == [stored.id]


async def test_a_refused_key_is_a_clear_error_without_the_key(fake: FakeVoyage) -> None:
    embedder = VoyageEmbedder(
        "pa-wrong-" + secrets.token_hex(8), model="voyage-3.5", base_url=fake.base_url
    )
    try:
        with pytest.raises(EmbedderError, match="HTTP 401") as caught:
            await embedder.embed_query("hello")
        assert "pa-wrong" not in str(caught.value) and caught.value.__cause__ is None
        assert "pa-wrong" not in repr(embedder)
    finally:
        await embedder.close()


async def test_a_model_change_makes_reindex_re_embed(env: Env) -> None:
    backend = env.backend(env.embedder("voyage-3.5-lite"))
    for content in [BRUNO, *OTHERS]:
        await backend.add(env.user, content)
    assert await env.models() == ["voyage:voyage-3.5-lite"]
    env.fake.requests.clear()
    newer = VectorIndex(env.engine, env.embedder("voyage-3.5"))
    assert await reindex(newer, progress=lambda d, t: None) == 3
    assert await env.models() == ["voyage:voyage-3.5"]
    assert {r.model for r in env.fake.requests} == {"voyage-3.5"}
    assert await reindex(newer, progress=lambda d, t: None) == 0  # nothing left to do


def test_voyage_needs_its_key_and_a_known_model(tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match="VOYAGE_API_KEY"):
        build_embedder("voyage", Settings(data_dir=tmp_path))
    with pytest.raises(EmbedderError, match="HOMEMIND_VOYAGE_MODEL"):
        build_embedder(
            "voyage",
            Settings(data_dir=tmp_path, voyage_api_key=SecretStr("k"), voyage_model="gpt-2"),
        )
    embedder = build_embedder("voyage", Settings(data_dir=tmp_path, voyage_api_key=SecretStr("k")))
    assert isinstance(embedder, VoyageEmbedder) and embedder.model_id == "voyage:voyage-3.5-lite"
