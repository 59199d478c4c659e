"""The same behavioural suite against every memory backend: SQLite (FTS5), PostgreSQL
(tsvector) and Shodh (through its fake). Tables come from the real migrations."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from cloud_server.db.engine import create_engine, make_sessionmaker, upgrade_database
from cloud_server.memory import text as memtext
from cloud_server.memory.backend import MemoryBackend, MemoryNotFoundError
from cloud_server.memory.embedder import build_embedder
from cloud_server.memory.shodh import ShodhClient, ShodhMemoryBackend, shodh_user_id
from cloud_server.memory.sql_backend import sql_backend_for
from cloud_server.memory.vectors import VectorIndex
from tests.server.conftest import add_user_row
from tests.server.memory_eval.fake_shodh import FakeShodh


@dataclass
class Env:
    backend: MemoryBackend
    engine: AsyncEngine
    new_user: Callable[[], Awaitable[str]]
    shodh: FakeShodh | None = None


def _url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "postgresql":
        url: str = request.getfixturevalue("pg_session_url")
        return "postgresql+asyncpg://" + url.removeprefix("postgresql://")
    return f"sqlite+aiosqlite:///{tmp_path / 'memory.db'}"


# "+dense": the same suite with hybrid (dense + lexical) recall.
@pytest.fixture(params=["sqlite", "postgresql", "shodh", "sqlite+dense", "postgresql+dense"])
def kind_url(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    # Synchronous: the PostgreSQL database fixture runs its own event loop.
    return request.param, _url(request.param.removesuffix("+dense"), tmp_path, request)


@pytest.fixture
async def env(kind_url: tuple[str, str]) -> AsyncIterator[Env]:
    kind, url = kind_url
    engine = create_engine(url)
    await upgrade_database(engine)
    sessionmaker = make_sessionmaker(engine)

    async def new_user() -> str:
        return await add_user_row(sessionmaker)

    vectors = None
    if kind.endswith("+dense"):
        embedder = build_embedder("minilm")
        assert embedder is not None
        vectors = VectorIndex(engine, embedder)
    store = sql_backend_for(engine, sessionmaker, vectors)
    shodh = None
    backend: MemoryBackend = store
    if kind == "shodh":
        shodh = FakeShodh()
        await shodh.start()
        backend = ShodhMemoryBackend(store, ShodhClient(shodh.base_url, shodh.api_key))
    try:
        yield Env(backend, engine, new_user, shodh)
    finally:
        await backend.close()
        if shodh is not None:
            await shodh.close()
        await engine.dispose()


def contents(records: list) -> list[str]:  # type: ignore[type-arg]
    return [r.content for r in records]


async def test_add_is_idempotent_on_normalised_content(env: Env) -> None:
    user = await env.new_user()
    first = await env.backend.add(user, "My daughter is called Ana")
    again = await env.backend.add(user, "  my daughter is called   ANA. ")
    assert first.created and not again.created
    assert again.record.id == first.record.id
    assert await env.backend.count(user) == 1
    # The same words in another scope are another fact.
    other = await env.backend.add(user, "My daughter is called Ana", speaker_id="dad")
    assert other.created and other.record.id != first.record.id


async def test_paraphrased_question_finds_the_fact(env: Env) -> None:
    user = await env.new_user()
    await env.backend.add(user, "My daughter is called Ana")
    await env.backend.add(user, "The bins go out on Tuesday evening")
    await env.backend.add(user, "I like the bedroom at 19 degrees")
    hits = await env.backend.search(user, "What's my daughter's name?")
    assert contents(hits)[:1] == ["My daughter is called Ana"]
    hits = await env.backend.search(user, "make the bedroom comfortable")
    assert contents(hits)[:1] == ["I like the bedroom at 19 degrees"]


async def test_search_is_scoped_to_household_and_the_speaker(env: Env) -> None:
    user = await env.new_user()
    await env.backend.add(user, "The family likes jazz music at dinner")
    await env.backend.add(user, "Ana likes pop music", speaker_id="ana")
    await env.backend.add(user, "Dad likes rock music", speaker_id="dad")
    ana = contents(await env.backend.search(user, "music", speaker_id="ana"))
    assert sorted(ana) == ["Ana likes pop music", "The family likes jazz music at dinner"]
    household = contents(await env.backend.search(user, "music"))
    assert household == ["The family likes jazz music at dinner"]
    everyone = await env.backend.search(user, "music", all_speakers=True)
    assert len(everyone) == 3


async def test_another_users_facts_are_invisible(env: Env) -> None:
    alice, bob = await env.new_user(), await env.new_user()
    fact = (await env.backend.add(alice, "The garage door code is 4321")).record
    assert await env.backend.search(bob, "garage code") == []
    assert await env.backend.list(bob) == []
    with pytest.raises(MemoryNotFoundError):
        await env.backend.get(bob, fact.id)
    with pytest.raises(MemoryNotFoundError):
        await env.backend.delete(bob, fact.id)
    assert await env.backend.count(alice) == 1


async def test_facts_by_id_keep_the_asked_order_and_the_owner(env: Env) -> None:
    if env.shodh is not None:
        pytest.skip("get_many is the SQL store's (Shodh's hybrid search calls the store's)")
    alice, bob = await env.new_user(), await env.new_user()
    first, second, third = [
        (await env.backend.add(alice, text, speaker_id=speaker)).record
        for text, speaker in (
            ("The garage door code is 4321", None),
            ("Ana likes pop music", "ana"),
            ("The bins go out on Tuesday evening", None),
        )
    ]
    bobs = (await env.backend.add(bob, "Bob's boat is called Wanda")).record
    # More ids than one statement takes (most unknown), the owner's among them, in this order.
    asked = [f"unknown-{n}" for n in range(600)] + [third.id, bobs.id, first.id, second.id]
    got = await env.backend.get_many(alice, asked)
    assert [r.id for r in got] == [third.id, first.id, second.id]
    # The same records as one by one (types included: UTC datetimes, the speaker).
    assert got == [await env.backend.get(alice, r.id) for r in (third, first, second)]
    assert await env.backend.get_many(bob, [first.id, bobs.id]) == [
        await env.backend.get(bob, bobs.id)
    ]
    assert await env.backend.get_many(alice, []) == []


async def test_a_word_in_many_facts_neither_buries_a_rare_one_nor_finds_nothing(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    if env.shodh is not None or getattr(env.backend, "vectors", None) is not None:
        pytest.skip("the lexical search's own policy (dense and Shodh rank on their own)")
    # "Common" from 301 matching facts; a household this size keeps the test short.
    monkeypatch.setattr(memtext, "COMMON_HITS", 8)
    user = await env.new_user()
    await env.backend.add(user, "Ana likes pop music")
    for n in range(12):
        await env.backend.add(user, f"Playlist {n}: we like music from the kitchen radio")
    # The rare word decides; the common ones only count together.
    hits = contents(await env.backend.search(user, "What music does Ana like?", limit=3))
    assert hits[0] == "Ana likes pop music"
    # One common word alone still finds facts: the newest first.
    alone = contents(await env.backend.search(user, "music", limit=3))
    assert alone[0] == "Playlist 11: we like music from the kitchen radio"
    assert len(alone) == 3


async def test_supersede_hides_the_old_fact_and_keeps_its_history(env: Env) -> None:
    user = await env.new_user()
    old = (await env.backend.add(user, "I like the bedroom at 19 degrees", speaker_id="ana")).record
    new = await env.backend.supersede(user, old.id, "I like the bedroom at 20 degrees")
    assert new.id != old.id and new.speaker_id == "ana"
    hits = contents(await env.backend.search(user, "bedroom temperature", speaker_id="ana"))
    assert hits == ["I like the bedroom at 20 degrees"]
    assert contents(await env.backend.list(user)) == ["I like the bedroom at 20 degrees"]
    history = await env.backend.list(user, include_superseded=True)
    by_id = {r.id: r for r in history}
    assert by_id[old.id].superseded_by == new.id and by_id[old.id].superseded_at is not None
    assert await env.backend.count(user, include_superseded=True) == 2
    # A superseded fact cannot be superseded again.
    with pytest.raises(MemoryNotFoundError):
        await env.backend.supersede(user, old.id, "I like the bedroom at 21 degrees")


async def test_update_in_place_reindexes_the_text(env: Env) -> None:
    user = await env.new_user()
    fact = (await env.backend.add(user, "The dog is called Rex")).record
    updated = await env.backend.update(user, fact.id, content="The dog is called Max")
    assert updated.id == fact.id and updated.content == "The dog is called Max"
    assert contents(await env.backend.search(user, "Max")) == ["The dog is called Max"]
    assert await env.backend.search(user, "Rex") == []
    recat = await env.backend.update(user, fact.id, category="pet", set_category=True)
    assert recat.category == "pet" and recat.content == "The dog is called Max"


async def test_delete_removes_the_fact_and_the_versions_it_replaced(env: Env) -> None:
    user = await env.new_user()
    v1 = (await env.backend.add(user, "Wifi password is alpha")).record
    v2 = await env.backend.supersede(user, v1.id, "Wifi password is bravo")
    keep = (await env.backend.add(user, "The bins go out on Tuesday")).record
    await env.backend.delete(user, v2.id)
    left = await env.backend.list(user, include_superseded=True)
    assert [r.id for r in left] == [keep.id]
    assert await env.backend.search(user, "wifi password") == []


async def test_delete_all_removes_only_that_users_facts(env: Env) -> None:
    alice, bob = await env.new_user(), await env.new_user()
    for text in ("Ana likes tea", "Ben likes coffee", "Cats are fed at 7"):
        await env.backend.add(alice, text)
    await env.backend.add(bob, "Bob likes tea")
    assert await env.backend.delete_all(alice) == 3
    assert await env.backend.count(alice, include_superseded=True) == 0
    assert contents(await env.backend.search(bob, "tea")) == ["Bob likes tea"]


async def test_use_breaks_ties_only(env: Env) -> None:
    user = await env.new_user()
    a = (await env.backend.add(user, "Lamp alpha is in the hall")).record
    b = (await env.backend.add(user, "Lamp bravo is in the hall")).record
    await env.backend.mark_used(user, [a.id])
    await env.backend.mark_used(user, [a.id])
    hits = await env.backend.search(user, "hall lamp")
    assert [r.id for r in hits] == [a.id, b.id]
    assert (await env.backend.get(user, a.id)).use_count == 2
    # Several recalls counted in one write (the chat batches them).
    await env.backend.mark_used(user, [b.id, a.id], times=3)
    assert (await env.backend.get(user, a.id)).use_count == 5
    assert (await env.backend.get(user, b.id)).use_count == 3
    # Another owner's ids are not counted.
    other = await env.new_user()
    await env.backend.mark_used(other, [a.id])
    assert (await env.backend.get(user, a.id)).use_count == 5
    # A better text match still wins over a much-used one.
    c = (await env.backend.add(user, "The hall lamp bravo is dimmable hall lamp")).record
    assert (await env.backend.search(user, "hall lamp dimmable"))[0].id == c.id


async def test_concurrent_counts_of_overlapping_facts_all_land(env: Env) -> None:
    # Two instances' flushes count the same facts at once, each in its own order: on
    # PostgreSQL rows locked in different orders would deadlock (and lose a batch).
    user = await env.new_user()
    ids = [(await env.backend.add(user, f"Shelf {n} holds box {n}")).record.id for n in range(30)]
    orders = [random.Random(seed).sample(ids, len(ids)) for seed in range(12)]
    await asyncio.gather(*(env.backend.mark_used(user, order, times=2) for order in orders))
    for fact_id in ids:
        record = await env.backend.get(user, fact_id)
        assert record.use_count == 24 and record.last_used_at is not None


@pytest.mark.parametrize(
    "query",
    ['"', "AND OR NOT", "garage*", "(garage", "body:garage", "NEAR(a b)", "^garage", "'; DROP"],
)
async def test_queries_with_search_syntax_are_plain_words(env: Env, query: str) -> None:
    user = await env.new_user()
    await env.backend.add(user, "The garage door code is 4321")
    hits = await env.backend.search(user, query)
    assert contents(hits) in ([], ["The garage door code is 4321"])
    assert await env.backend.count(user) == 1


async def test_count_active_sees_the_speakers_scope_and_stops_at_the_cap(env: Env) -> None:
    user = await env.new_user()
    old = (await env.backend.add(user, "The bins go out on Monday")).record
    await env.backend.supersede(user, old.id, "The bins go out on Tuesday")
    await env.backend.add(user, "Ana loves pop", speaker_id="ana")
    await env.backend.add(user, "Dad loves jazz", speaker_id="dad")
    ana = await env.backend.count_active(user, speaker_id="ana", cap=10)
    assert (ana.facts, ana.chars) == (2, len("The bins go out on Tuesday") + len("Ana loves pop"))
    household = await env.backend.count_active(user, cap=10)
    assert (household.facts, household.chars) == (1, len("The bins go out on Tuesday"))
    assert (await env.backend.count_active(user, speaker_id="ana", cap=1)).facts == 1
    assert (await env.backend.count_active(await env.new_user(), cap=10)).facts == 0


async def test_list_pages_newest_first(env: Env) -> None:
    user = await env.new_user()
    for n in range(5):
        await env.backend.add(user, f"Fact number {n} about the house")
    page1 = contents(await env.backend.list(user, limit=2))
    page2 = contents(await env.backend.list(user, limit=2, offset=2))
    assert page1 == ["Fact number 4 about the house", "Fact number 3 about the house"]
    assert page2 == ["Fact number 2 about the house", "Fact number 1 about the house"]


async def test_health(env: Env) -> None:
    assert await env.backend.health() is True


# --------------------------------------------------------------------------- Shodh specifics


@pytest.fixture
async def shodh_env(tmp_path: Path) -> AsyncIterator[Env]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'memory.db'}")
    await upgrade_database(engine)
    sessionmaker = make_sessionmaker(engine)
    shodh = FakeShodh()
    await shodh.start()

    async def new_user() -> str:
        return await add_user_row(sessionmaker)

    backend = ShodhMemoryBackend(
        sql_backend_for(engine, sessionmaker), ShodhClient(shodh.base_url, shodh.api_key)
    )
    try:
        yield Env(backend, engine, new_user, shodh)
    finally:
        await backend.close()
        await shodh.close()
        await engine.dispose()


async def test_shodh_gets_each_fact_with_our_id_as_external_id(shodh_env: Env) -> None:
    assert shodh_env.shodh is not None
    user = await shodh_env.new_user()
    fact = (await shodh_env.backend.add(user, "Ana likes tea", category="preference")).record
    upserts = [c for c in shodh_env.shodh.calls if c.path == "/api/upsert"]
    assert len(upserts) == 1
    body = upserts[0].body
    assert upserts[0].headers["X-API-Key"] == shodh_env.shodh.api_key
    assert body["external_id"] == fact.id
    assert body["user_id"] == shodh_user_id(user)
    assert body["memory_type"] == "Context"
    assert "category:preference" in body["tags"]
    # Under Shodh's 10-character minimum: sent with a neutral prefix, stored as said.
    assert len(body["content"]) >= 10 and body["content"].endswith("Ana likes tea")
    assert (await shodh_env.backend.get(user, fact.id)).content == "Ana likes tea"
    recalls_before = len([c for c in shodh_env.shodh.calls if c.path == "/api/recall"])
    assert contents(await shodh_env.backend.search(user, "what does Ana like")) == ["Ana likes tea"]
    recalls = [c for c in shodh_env.shodh.calls if c.path == "/api/recall"]
    assert len(recalls) == recalls_before + 1 and recalls[-1].body["mode"] == "hybrid"


async def test_shodh_superseded_and_deleted_facts_leave_the_index(shodh_env: Env) -> None:
    assert shodh_env.shodh is not None
    user = await shodh_env.new_user()
    old = (await shodh_env.backend.add(user, "The bedroom should be 19 degrees")).record
    new = await shodh_env.backend.supersede(user, old.id, "The bedroom should be 20 degrees")
    indexed = [m.content for m in shodh_env.shodh.of_user(shodh_user_id(user))]
    assert indexed == ["The bedroom should be 20 degrees"]
    await shodh_env.backend.delete(user, new.id)
    assert shodh_env.shodh.of_user(shodh_user_id(user)) == []
    await shodh_env.backend.add(user, "The garage code is 1234")
    await shodh_env.backend.delete_all(user)
    assert shodh_env.shodh.of_user(shodh_user_id(user)) == []
    assert any(
        c.method == "DELETE" and c.path.startswith("/api/users/") for c in shodh_env.shodh.calls
    )


async def test_shodh_outage_loses_nothing_and_search_falls_back(shodh_env: Env) -> None:
    assert shodh_env.shodh is not None
    user = await shodh_env.new_user()
    shodh_env.shodh.fail_with = 503
    fact = (await shodh_env.backend.add(user, "My daughter is called Ana")).record
    assert fact.index_ref is None
    assert contents(await shodh_env.backend.search(user, "daughter's name")) == [
        "My daughter is called Ana"
    ]
    assert await shodh_env.backend.health() is False
    # Back up: adding again indexes the fact that was missed.
    shodh_env.shodh.fail_with = None
    again = await shodh_env.backend.add(user, "My daughter is called Ana")
    assert not again.created
    assert [m.external_id for m in shodh_env.shodh.of_user(shodh_user_id(user))] == [fact.id]


async def test_shodh_results_of_other_speakers_are_dropped(shodh_env: Env) -> None:
    user = await shodh_env.new_user()
    await shodh_env.backend.add(user, "Ana likes pop music", speaker_id="ana")
    await shodh_env.backend.add(user, "Dad likes rock music", speaker_id="dad")
    assert contents(await shodh_env.backend.search(user, "music", speaker_id="ana")) == [
        "Ana likes pop music"
    ]


async def test_fake_shodh_enforces_its_documented_validation(shodh_env: Env) -> None:
    """The fake refuses what the real server refuses, so the tests above mean something."""
    import aiohttp

    assert shodh_env.shodh is not None
    base, key = shodh_env.shodh.base_url, shodh_env.shodh.api_key
    good = {"user_id": "hm-abc", "content": "A long enough fact", "external_id": "x1"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/api/upsert", json=good) as r:
            assert r.status == 401
        headers = {"X-API-Key": key}
        for bad in (
            {**good, "memory_type": "Preference"},
            {**good, "content": "too short"},
            {**good, "content": "x" * 50_001},
            {**good, "user_id": "bad/user"},
            {**good, "user_id": "a..b"},
        ):
            async with http.post(f"{base}/api/upsert", json=bad, headers=headers) as r:
                assert r.status == 400, bad
        async with http.post(f"{base}/api/upsert", json=good, headers=headers) as r:
            assert r.status == 200


@pytest.mark.parametrize(
    ("user_id", "expected"),
    [
        ("0123abcd", "hm-0123abcd"),
        ("a/b c", "hm-a_b_c"),
        ("x..y.", "hm-x_.y"),
        ("é" * 200, "hm-" + "_" * 125),
    ],
)
def test_shodh_user_ids_are_sanitised(user_id: str, expected: str) -> None:
    assert shodh_user_id(user_id) == expected
