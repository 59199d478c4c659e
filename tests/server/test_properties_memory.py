"""Property tests of memory's add / supersede / delete on SQLite (memory/sql_backend.py).

Random sequences of operations (duplicates, superseding old or already replaced facts,
deleting facts anywhere in a chain) are run against the real backend and a small model of
what a person expects. After every sequence:

- each chain of versions (a fact, the one that replaced it, ...) ends in exactly one
  active fact, and no pointer dangles;
- no two active facts say the same thing;
- a deleted or replaced fact is never listed, fetched as active or recalled by search;
- the counts (active, with history, `count_active`) agree with each other and the model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from cloud_server.db.engine import create_engine, make_sessionmaker, upgrade_database
from cloud_server.memory.backend import MemoryNotFoundError
from cloud_server.memory.models import Memory
from cloud_server.memory.sql_backend import SqlMemoryBackend, sql_backend_for
from tests.server.conftest import add_user_row

WORDS = ("apricot", "bramble", "chestnut", "damson", "elderflower", "fennel")


def sentence(word: int) -> str:
    return f"The {WORDS[word]} jar stands on the pantry shelf"


# An operation: ("add", word) | ("supersede", which, word) | ("delete", which), where
# `which` picks one of the ids seen so far (modulo), active or not.
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, len(WORDS) - 1)),
        st.tuples(st.just("supersede"), st.integers(0, 50), st.integers(0, len(WORDS) - 1)),
        st.tuples(st.just("delete"), st.integers(0, 50)),
    ),
    min_size=1,
    max_size=25,
)


@dataclass
class Model:
    content: dict[str, int] = field(default_factory=dict)  # id -> word, rows that exist
    replaced_by: dict[str, str] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)  # every id ever returned

    def active(self) -> dict[str, int]:
        return {i: w for i, w in self.content.items() if i not in self.replaced_by}

    def active_with(self, word: int) -> str | None:
        return next((i for i, w in self.active().items() if w == word), None)

    def delete(self, memory_id: str) -> None:
        doomed = {memory_id}
        while older := {i for i, new in self.replaced_by.items() if new in doomed} - doomed:
            doomed |= older
        for gone in doomed:
            self.content.pop(gone, None)
            self.replaced_by.pop(gone, None)


class Store:
    """One migrated SQLite database and its own event loop for the whole module."""

    def __init__(self, path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.engine = create_engine(f"sqlite+aiosqlite:///{path}")
        self.sessionmaker = make_sessionmaker(self.engine)
        self.loop.run_until_complete(upgrade_database(self.engine))
        self.backend: SqlMemoryBackend = sql_backend_for(self.engine, self.sessionmaker)

    def new_user(self) -> str:
        return self.loop.run_until_complete(add_user_row(self.sessionmaker))

    def close(self) -> None:
        self.loop.run_until_complete(self.engine.dispose())
        self.loop.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    made = Store(tmp_path_factory.mktemp("memory-properties") / "memory.db")
    yield made
    made.close()


async def _run(
    backend: SqlMemoryBackend, user: str, operations: list[tuple[int | str, ...]]
) -> Model:
    model = Model()
    for op in operations:
        if op[0] == "add":
            word = int(op[1])
            expected = model.active_with(word)
            result = await backend.add(user, sentence(word))
            assert result.created is (expected is None)
            if expected is not None:
                assert result.record.id == expected
            model.content[result.record.id] = word
            model.seen.append(result.record.id)
        elif not model.seen:
            continue
        elif op[0] == "supersede":
            target = model.seen[int(op[1]) % len(model.seen)]
            word = int(op[2])
            if target not in model.content or target in model.replaced_by:
                with pytest.raises(MemoryNotFoundError):
                    await backend.supersede(user, target, sentence(word))
                continue
            new = await backend.supersede(user, target, sentence(word))
            if model.content[target] == word:
                assert new.id == target  # the same words: nothing to replace
                continue
            twin = model.active_with(word)
            assert new.id == (twin if twin is not None else new.id)
            assert new.id != target
            model.content[new.id] = word
            model.replaced_by[target] = new.id
            model.seen.append(new.id)
        else:
            target = model.seen[int(op[1]) % len(model.seen)]
            if target not in model.content:
                with pytest.raises(MemoryNotFoundError):
                    await backend.delete(user, target)
                continue
            await backend.delete(user, target)
            model.delete(target)
    return model


async def _check(backend: SqlMemoryBackend, store: Store, user: str, model: Model) -> None:
    async with store.sessionmaker() as session:
        rows = list((await session.scalars(select(Memory).where(Memory.user_id == user))).all())
    by_id = {row.id: row for row in rows}
    # The database holds exactly the model's rows, with the model's replacements.
    assert set(by_id) == set(model.content)
    assert {i: r.superseded_by for i, r in by_id.items() if r.superseded_by} == model.replaced_by
    # Every chain ends in exactly one active fact; no pointer dangles, no cycle.
    for row in rows:
        hops, current = 0, row
        while current.superseded_by is not None:
            assert current.superseded_by in by_id, "a replaced fact points at a missing one"
            current = by_id[current.superseded_by]
            hops += 1
            assert hops <= len(rows), "a cycle of replacements"
    active = [row for row in rows if row.superseded_by is None]
    # No two active facts say the same thing.
    assert len({row.content_hash for row in active}) == len(active)

    listed = await backend.list(user, limit=500)
    assert {r.id for r in listed} == set(model.active())
    assert await backend.count(user) == len(model.active())
    assert await backend.count(user, include_superseded=True) == len(model.content)
    assert (await backend.count_active(user, cap=500)).facts == len(model.active())
    # Recall finds each active fact by its word, and never a replaced or deleted one.
    gone = set(model.seen) - set(model.active())
    for word, name in enumerate(WORDS):
        found = {r.id for r in await backend.search(user, name, all_speakers=True, limit=50)}
        assert not found & gone
        holder = model.active_with(word)
        assert found == ({holder} if holder is not None else set())
    for memory_id in gone - set(model.content):
        with pytest.raises(MemoryNotFoundError):
            await backend.get(user, memory_id)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(OPERATIONS)
def test_add_supersede_delete_keep_the_invariants(
    store: Store, operations: list[tuple[int | str, ...]]
) -> None:
    user = store.new_user()

    async def scenario() -> None:
        model = await _run(store.backend, user, operations)
        await _check(store.backend, store, user, model)

    store.loop.run_until_complete(scenario())
