"""Memory backends on our own database: SQLite (FTS5, BM25) and PostgreSQL (tsvector).

The memories table is the same on both engines; only the full-text part differs (see
the migration `0002_memory`). Ranking is by text relevance; use count and recency
only break exact ties.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import logging
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Select, Table, and_, bindparam, delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from ..db.base import UTCDateTime, new_id, utcnow
from ..db.reads import driver_fetch_all, plain_rows, reader
from . import text as memtext
from .backend import (
    ActiveCount,
    AddResult,
    MemoryBackendError,
    MemoryNotFoundError,
    MemoryRecord,
    Source,
)
from .models import Memory, MemorySpeaker
from .speakers import SpeakerNames
from .vectors import HouseholdMatrix, VectorIndex, unawaited

LOGGER = logging.getLogger(__name__)


def to_record(row: Memory) -> MemoryRecord:
    return MemoryRecord(
        id=row.id,
        user_id=row.user_id,
        content=row.content,
        category=row.category,
        speaker_id=row.speaker_id,
        source=row.source,
        created_at=row.created_at,
        updated_at=row.updated_at,
        superseded_by=row.superseded_by,
        superseded_at=row.superseded_at,
        use_count=row.use_count,
        last_used_at=row.last_used_at,
        index_ref=row.index_ref,
    )


_TABLE = cast(Table, Memory.__table__)
_SPEAKERS = cast(Table, MemorySpeaker.__table__)
_FIELDS = tuple(c.name for c in _TABLE.columns if c.name in MemoryRecord.__dataclass_fields__)
# Read on every chat turn: built once (its compiled form and cache key are kept).
_SPEAKERS_OF = text(f"SELECT speaker_id, name FROM {_SPEAKERS.name} WHERE user_id = :user_id")  # noqa: S608


def row_record(row: Any) -> MemoryRecord:
    """A record straight from a Core row (no ORM object: searches build many of them)."""
    mapping = row._mapping
    return MemoryRecord(**{name: mapping[name] for name in _FIELDS})


def _typed(sql: str) -> Any:
    """A constant text statement whose result columns get the table's types (UTC datetimes)."""
    return text(sql).columns(*(_TABLE.c[name] for name in _FIELDS))


def visible_speakers(speaker_id: str | None, also: Sequence[str] = ()) -> builtins.list[str]:
    """The speakers whose own facts a turn sees: the speaker, and the people it names."""
    ids = [speaker_id] if speaker_id is not None else []
    return list(dict.fromkeys([*ids, *also]))


def _scope(
    stmt: Select[Any], speaker_id: str | None, all_speakers: bool, also: Sequence[str] = ()
) -> Select[Any]:
    if all_speakers:
        return stmt
    ids = visible_speakers(speaker_id, also)
    if not ids:
        return stmt.where(Memory.speaker_id.is_(None))
    return stmt.where(or_(Memory.speaker_id.is_(None), Memory.speaker_id.in_(ids)))


# Ids per statement (far below SQLite's and asyncpg's limits on bound parameters).
_ID_BATCH = 500


def _by_ids(user_id: str, memory_ids: Sequence[str]) -> Any:
    """Rows by primary key, checked against the owner.

    `user_id || ''` keeps SQLite's planner (no statistics) off the owner index: with it,
    a lookup of a few ids walked every fact of the household (~30 ms at 100k facts).
    """
    return and_(_TABLE.c.id.in_(memory_ids), _TABLE.c.user_id.concat("") == user_id)


def household_key(user_id: str) -> str:
    """The prefix of the household's full-text terms (the migration `0006_memory_speed`)."""
    return "u" + user_id[:10].lower()


def fts5_household_term(key: str, term: str) -> str:
    """An FTS5 term in the household's key space; a prefix match from MIN_PREFIX letters."""
    quoted = '"' + key + term.replace('"', "") + '"'
    return quoted + "*" if len(term) >= memtext.MIN_PREFIX else quoted


def ts_household_term(key: str, term: str) -> str | None:
    """A tsquery term in the household's key space (only `\\w` characters reach it)."""
    safe = "".join(ch for ch in term if ch.isalnum())
    if not safe:
        return None
    return f"{key}{safe}:*" if len(safe) >= memtext.MIN_PREFIX else key + safe


def _same_scope(speaker_id: str | None) -> Any:
    return Memory.speaker_id.is_(None) if speaker_id is None else Memory.speaker_id == speaker_id


class SqlMemoryBackend:
    """Shared logic; subclasses implement the dialect's full-text search."""

    name = "sql"

    def __init__(
        self,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
        vectors: VectorIndex | None = None,
    ):
        self._engine = engine
        self._reader = reader(engine)  # for the reads of every chat turn
        self._sessionmaker = sessionmaker
        # Dense recall; None keeps recall lexical (HOMEMIND_EMBEDDER=none).
        self.vectors = vectors
        self._names = SpeakerNames()  # the names this process read and wrote

    async def _embed(self, user_id: str, facts: Sequence[tuple[str, str]]) -> None:
        """Store the facts' vectors; a failure only logs (the fact is still found lexically)."""
        if self.vectors is None:
            return
        try:
            await self.vectors.store(user_id, facts)
        except Exception:
            LOGGER.warning("Could not embed a fact; it is recalled lexically", exc_info=True)

    async def _changed(self, user_id: str, superseded: Sequence[str] = ()) -> None:
        if self.vectors is None:
            return
        try:
            await self.vectors.forget(user_id, superseded)
        except SQLAlchemyError:
            LOGGER.warning("Could not mark the memory as changed", exc_info=True)

    # --- writing ---------------------------------------------------------------

    async def add(
        self,
        user_id: str,
        content: str,
        *,
        category: str | None = None,
        speaker_id: str | None = None,
        source: Source = "api",
    ) -> AddResult:
        content = memtext.clean_content(content)
        digest = memtext.content_hash(content)
        try:
            async with self._sessionmaker() as session, session.begin():
                existing = await session.scalar(
                    select(Memory)
                    .where(
                        Memory.user_id == user_id,
                        Memory.content_hash == digest,
                        Memory.superseded_by.is_(None),
                        _same_scope(speaker_id),
                    )
                    .limit(1)
                )
                if existing is not None:
                    if category and existing.category != category:
                        existing.category = category
                        existing.updated_at = utcnow()
                    return AddResult(to_record(existing), created=False)
                now = utcnow()
                row = Memory(
                    id=new_id(),
                    user_id=user_id,
                    speaker_id=speaker_id,
                    content=content,
                    content_hash=digest,
                    category=category,
                    source=source,
                    use_count=0,
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
                await session.flush()
                added = to_record(row)
        except SQLAlchemyError as err:
            raise MemoryBackendError("could not store the fact") from err
        await self._embed(user_id, [(added.id, added.content)])
        return AddResult(added, created=True)

    async def update(
        self,
        user_id: str,
        memory_id: str,
        *,
        content: str | None = None,
        category: str | None = None,
        set_category: bool = False,
    ) -> MemoryRecord:
        async with self._sessionmaker() as session, session.begin():
            row = await self._get_row(session, user_id, memory_id)
            if content is not None:
                row.content = memtext.clean_content(content)
                row.content_hash = memtext.content_hash(row.content)
            if set_category:
                row.category = category
            row.updated_at = utcnow()
            await session.flush()
            record = to_record(row)
        if content is not None and record.active:
            await self._embed(user_id, [(record.id, record.content)])
        return record

    async def supersede(
        self, user_id: str, memory_id: str, content: str, *, source: Source = "tool"
    ) -> MemoryRecord:
        content = memtext.clean_content(content)
        digest = memtext.content_hash(content)
        async with self._sessionmaker() as session, session.begin():
            old = await self._get_row(session, user_id, memory_id)
            if old.superseded_by is not None:
                raise MemoryNotFoundError(memory_id)
            if old.content_hash == digest:
                return to_record(old)
            now = utcnow()
            twin = await session.scalar(
                select(Memory).where(
                    Memory.user_id == user_id,
                    Memory.content_hash == digest,
                    Memory.superseded_by.is_(None),
                    _same_scope(old.speaker_id),
                )
            )
            if twin is None:
                twin = Memory(
                    id=new_id(),
                    user_id=user_id,
                    speaker_id=old.speaker_id,
                    content=content,
                    content_hash=digest,
                    category=old.category,
                    source=source,
                    use_count=0,
                    created_at=now,
                    updated_at=now,
                )
                session.add(twin)
                await session.flush()
            old.superseded_by = twin.id
            old.superseded_at = now
            old.updated_at = now
            await session.flush()
            new, old_id = to_record(twin), old.id
        await self._embed(user_id, [(new.id, new.content)])
        await self._changed(user_id, [old_id])
        return new

    async def delete(self, user_id: str, memory_id: str) -> MemoryRecord:
        """Delete the fact and the older versions it replaced (forgetting means all of it)."""
        async with self._sessionmaker() as session, session.begin():
            row = await self._get_row(session, user_id, memory_id)
            record = to_record(row)
            doomed = [row.id]
            frontier = [row.id]
            while frontier:
                older = (
                    await session.scalars(
                        select(Memory.id).where(
                            Memory.user_id == user_id, Memory.superseded_by.in_(frontier)
                        )
                    )
                ).all()
                frontier = [i for i in older if i not in doomed]
                doomed.extend(frontier)
            await session.execute(
                delete(Memory).where(Memory.user_id == user_id, Memory.id.in_(doomed))
            )
        await self._changed(user_id)  # the vectors went with the rows (ON DELETE CASCADE)
        return record

    async def delete_all(self, user_id: str) -> int:
        async with self._sessionmaker() as session, session.begin():
            result = await session.execute(delete(Memory).where(Memory.user_id == user_id))
            await session.execute(delete(_SPEAKERS).where(_SPEAKERS.c.user_id == user_id))
        self._names.forget_user(user_id)
        await self._changed(user_id)
        return int(getattr(result, "rowcount", 0) or 0)

    async def mark_used(self, user_id: str, memory_ids: list[str], *, times: int = 1) -> None:
        if not memory_ids or times < 1:
            return
        ids = sorted(set(memory_ids))
        postgres = self._engine.dialect.name == "postgresql"
        now = utcnow()
        # Each batch is one statement, atomic on its own: a count is a ranking tie-break,
        # and a connection in autocommit spares PostgreSQL's BEGIN and COMMIT round trips.
        async with self._reader.connect() as connection:
            for start in range(0, len(ids), _ID_BATCH):
                batch = ids[start : start + _ID_BATCH]
                params: dict[str, Any] = {"user": user_id, "times": times, "now": now}
                params.update((f"id{n}", memory_id) for n, memory_id in enumerate(batch))
                await connection.execute(_count_use_sql(len(batch), postgres), params)
            await connection.commit()

    async def set_index_ref(self, user_id: str, memory_id: str, ref: str | None) -> None:
        async with self._sessionmaker() as session, session.begin():
            await session.execute(
                update(Memory)
                .where(Memory.user_id == user_id, Memory.id == memory_id)
                .values(index_ref=ref)
            )

    async def note_speaker(self, user_id: str, speaker_id: str, name: str) -> None:
        """Record the speaker's current name (a write only when this process has not yet)."""
        name = name.strip()[:200]
        # Before the write: the next turn knows the name even while the write waits.
        if not name or not self._names.hear(user_id, speaker_id, name):
            return
        values = {"user_id": user_id, "speaker_id": speaker_id, "name": name}
        async with self._engine.begin() as connection:
            insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
            stmt = insert(_SPEAKERS).values(**values, updated_at=utcnow())
            stmt = stmt.on_conflict_do_update(
                index_elements=["user_id", "speaker_id"],
                set_={"name": stmt.excluded.name, "updated_at": stmt.excluded.updated_at},
            )
            await connection.execute(stmt)
        self._names.noted(user_id, speaker_id, name)

    async def speakers(self, user_id: str) -> dict[str, str]:
        """The household's known speakers: id -> name (read at most every NAMES_TTL s)."""
        names = self._names.get(user_id)
        if names is not None:
            return names
        mark = self._names.mark()
        try:
            async with self._reader.connect() as connection:
                rows = await plain_rows(connection, _SPEAKERS_OF, {"user_id": user_id})
        except SQLAlchemyError as err:
            raise MemoryBackendError("could not read the speakers") from err
        return self._names.put(user_id, {speaker_id: name for speaker_id, name in rows}, mark)

    # --- reading ---------------------------------------------------------------

    async def get(self, user_id: str, memory_id: str) -> MemoryRecord:
        async with self._sessionmaker() as session:
            return to_record(await self._get_row(session, user_id, memory_id))

    async def get_many(self, user_id: str, memory_ids: Sequence[str]) -> list[MemoryRecord]:
        """The owner's facts of these ids, in the order asked (a hybrid search's dense hits:
        one constant statement per number of ids, compiled once)."""
        wanted = list(dict.fromkeys(memory_ids))
        found: dict[str, MemoryRecord] = {}
        async with self._reader.connect() as connection:
            for start in range(0, len(wanted), _ID_BATCH):
                batch = wanted[start : start + _ID_BATCH]
                params: dict[str, Any] = {"user": user_id}
                params.update((f"id{n}", memory_id) for n, memory_id in enumerate(batch))
                for row in await self._rows(connection, _by_ids_sql(len(batch)), params):
                    record = self._record(row)
                    found[record.id] = record
        return [found[i] for i in memory_ids if i in found]

    async def list(
        self,
        user_id: str,
        *,
        speaker_id: str | None = None,
        all_speakers: bool = True,
        include_superseded: bool = False,
        limit: int | None = 50,
        offset: int = 0,
        also_speakers: Sequence[str] = (),
    ) -> builtins.list[MemoryRecord]:
        stmt = select(_TABLE).where(Memory.user_id == user_id)
        if not include_superseded:
            stmt = stmt.where(Memory.superseded_by.is_(None))
        stmt = _scope(stmt, speaker_id, all_speakers, also_speakers)
        stmt = stmt.order_by(Memory.created_at.desc(), Memory.id.desc()).offset(offset)
        if limit is not None:
            stmt = stmt.limit(limit)
        # Core rows, not ORM objects: the chat lists up to 201 facts on every turn.
        async with self._reader.connect() as connection:
            return [row_record(row) for row in (await connection.execute(stmt)).all()]

    async def count(self, user_id: str, *, include_superseded: bool = False) -> int:
        stmt = select(func.count()).select_from(Memory).where(Memory.user_id == user_id)
        if not include_superseded:
            stmt = stmt.where(Memory.superseded_by.is_(None))
        async with self._sessionmaker() as session:
            return int(await session.scalar(stmt) or 0)

    async def count_active(
        self,
        user_id: str,
        *,
        speaker_id: str | None = None,
        cap: int,
        also_speakers: Sequence[str] = (),
    ) -> ActiveCount:
        # Twice per chat turn (recall, extraction): a constant statement per number of
        # speakers, compiled once, instead of a select built and cache-keyed on every call.
        ids = visible_speakers(speaker_id, also_speakers)
        params: dict[str, Any] = {"user": user_id, "cap": max(0, cap)}
        params.update((f"speaker{n}", speaker) for n, speaker in enumerate(ids))
        try:
            async with self._reader.connect() as connection:
                row = await self._one_row(connection, _count_sql(len(ids)), params)
        except SQLAlchemyError as err:
            raise MemoryBackendError("memory count failed") from err
        return ActiveCount(facts=int(row[0]), chars=int(row[1] or 0))

    async def all_that_fit(
        self,
        user_id: str,
        *,
        speaker_id: str | None = None,
        also_speakers: Sequence[str] = (),
        cap: int,
        max_chars: int,
    ) -> builtins.list[MemoryRecord] | None:
        ids = visible_speakers(speaker_id, also_speakers)
        # One more than `cap`: a household with more facts is told apart in the same read.
        params: dict[str, Any] = {"user": user_id, "cap": max(0, cap) + 1}
        params.update((f"speaker{n}", speaker) for n, speaker in enumerate(ids))
        try:
            async with self._reader.connect() as connection:
                rows = await self._rows(connection, _newest_sql(len(ids)), params)
        except SQLAlchemyError as err:
            raise MemoryBackendError("memory read failed") from err
        if len(rows) > cap:
            return None
        records = [self._record(row) for row in rows]
        if sum(len(r.content) for r in records) + 16 * len(records) > max_chars:
            return None
        return records

    async def _one_row(
        self, connection: AsyncConnection, stmt: Any, params: dict[str, Any]
    ) -> Sequence[Any]:
        """The one row of a constant text statement (its values need no type processing)."""
        return (await plain_rows(connection, stmt, params))[0]

    async def _rows(
        self, connection: AsyncConnection, stmt: Any, params: dict[str, Any]
    ) -> Sequence[Any]:
        """The rows of a constant `_typed` statement, for `_record`."""
        return (await connection.execute(stmt, params)).all()

    async def search(
        self,
        user_id: str,
        query: str,
        *,
        speaker_id: str | None = None,
        all_speakers: bool = False,
        limit: int = 10,
        also_speakers: Sequence[str] = (),
    ) -> builtins.list[MemoryRecord]:
        limit = max(1, min(limit, 200))
        if self.vectors is None:
            return await self.search_lexical(
                user_id,
                query,
                speaker_id=speaker_id,
                all_speakers=all_speakers,
                limit=limit,
                also_speakers=also_speakers,
            )
        # While the lexical search runs, the query's embedding runs on the embedder's
        # thread and the household's matrix is checked (or read) on another connection.
        self.prepare_query(query)
        household = asyncio.ensure_future(self.vectors.matrix(user_id))
        try:
            lexical = await self.search_lexical(
                user_id,
                query,
                speaker_id=speaker_id,
                all_speakers=all_speakers,
                limit=limit,
                also_speakers=also_speakers,
            )
        except BaseException:
            household.cancel()
            unawaited(household)
            raise
        try:
            dense = await self.search_dense(
                user_id,
                query,
                speaker_id=speaker_id,
                all_speakers=all_speakers,
                limit=limit,
                also_speakers=also_speakers,
                household=await household,
            )
        except Exception:
            # Dense recall is an addition: without it the lexical ranking still stands.
            LOGGER.warning("Dense recall failed; lexical only", exc_info=True)
            return lexical
        order = fuse([d for d, _ in dense], [r.id for r in lexical])[:limit]
        known = {r.id: r for r in lexical}
        extra = await self.get_many(user_id, [i for i in order if i not in known])
        known.update((r.id, r) for r in extra if r.active)
        return [known[i] for i in order if i in known]

    async def search_dense(
        self,
        user_id: str,
        query: str,
        *,
        speaker_id: str | None = None,
        all_speakers: bool = False,
        limit: int = 10,
        also_speakers: Sequence[str] = (),
        household: HouseholdMatrix | None = None,
    ) -> builtins.list[tuple[str, float]]:
        """(fact id, cosine) of the nearest facts in scope, best first (in `household`, the
        user's current matrix when the caller has read it already)."""
        if self.vectors is None or not query.strip():
            return []
        vector = await self.vectors.query_vector(query)
        scope = None if all_speakers else visible_speakers(speaker_id, also_speakers)
        return await self.vectors.search(
            user_id, vector, speaker_ids=scope, limit=limit, household=household
        )

    def prepare_query(self, query: str) -> None:
        """Start embedding `query` for an upcoming search (no-op when lexical only)."""
        if self.vectors is not None and query.strip():
            self.vectors.start_query(query)

    async def search_lexical(
        self,
        user_id: str,
        query: str,
        *,
        speaker_id: str | None = None,
        all_speakers: bool = False,
        limit: int = 10,
        also_speakers: Sequence[str] = (),
    ) -> builtins.list[MemoryRecord]:
        plan = memtext.SearchPlan(query, keep_accents=self.keep_accents)
        if not plan.own:
            return []
        # Enough candidates for the relevance rerank below to have a choice.
        params: dict[str, Any] = {"user": user_id, "k": limit * 3 + 10}
        scope = self._scope_key(speaker_id, all_speakers, also_speakers, params)
        try:
            async with self._reader.connect() as connection:
                rows = await self._ranked(connection, plan, scope, params)
        except SQLAlchemyError as err:
            raise MemoryBackendError("memory search failed") from err
        # Facts matching more of the user's own words (not just expansions) come first;
        # the sort is stable, so the engine's ranking decides among equals.
        order = plan.rerank([self._content(row) for row in rows])
        return [self._record(rows[i]) for i in order[:limit]]

    async def health(self) -> bool:
        try:
            async with self._sessionmaker() as session:
                await session.execute(select(func.count()).select_from(Memory).limit(1))
            return True
        except SQLAlchemyError:
            LOGGER.warning("memory store health check failed", exc_info=True)
            return False

    async def close(self) -> None:
        """The engine belongs to the application's database component."""

    # --- helpers ---------------------------------------------------------------

    async def _get_row(self, session: AsyncSession, user_id: str, memory_id: str) -> Memory:
        row = await session.scalar(
            select(Memory).where(Memory.user_id == user_id, Memory.id == memory_id)
        )
        if row is None:
            raise MemoryNotFoundError(memory_id)
        return row

    # Searches use constant SQL texts (one per speaker scope), compiled once and cached.
    keep_accents = False

    @staticmethod
    def _scope_key(
        speaker_id: str | None,
        all_speakers: bool,
        also: Sequence[str],
        params: dict[str, Any],
    ) -> str:
        if all_speakers:
            return "all"
        ids = visible_speakers(speaker_id, also)[:_MAX_SPEAKERS]
        for n, speaker in enumerate(ids):
            params[f"speaker{n}"] = speaker
        return f"speakers{len(ids)}"

    async def _ranked(
        self,
        connection: AsyncConnection,
        plan: memtext.SearchPlan,
        scope: str,
        params: dict[str, Any],
    ) -> Sequence[Any]:
        """Up to `k` active facts of the household in scope matching the plan, best first."""
        raise NotImplementedError

    @staticmethod
    def _content(row: Any) -> str:
        return cast(str, row.content)

    def _record(self, row: Any) -> MemoryRecord:
        return row_record(row)


# At most this many people's own facts in one search (the speaker and those named).
_MAX_SPEAKERS = 8


@functools.cache
def _scope_sql(scope: str) -> str:
    """The WHERE fragment of a scope key: constant text, the speaker ids are parameters."""
    if scope == "all":
        return ""
    n = int(scope.removeprefix("speakers"))
    if n == 0:
        return " AND m.speaker_id IS NULL"
    ids = ", ".join(f":speaker{i}" for i in range(n))
    return f" AND (m.speaker_id IS NULL OR m.speaker_id IN ({ids}))"


@functools.cache
def _count_sql(speakers: int) -> Any:
    """`count_active`'s statement for `speakers` visible speakers: any `:cap` active facts
    in scope (no order: the owner index is walked until `cap` match), their number and
    characters. Only constant fragments are interpolated; the ids are parameters."""
    return text(
        "SELECT count(*), coalesce(sum(length(content)), 0) FROM (SELECT m.content "  # noqa: S608
        "FROM memories AS m WHERE m.user_id = :user AND m.superseded_by IS NULL"
        f"{_scope_sql(f'speakers{speakers}')} LIMIT :cap) AS capped"
    )


_SELECT = "SELECT " + ", ".join(f"m.{name}" for name in _FIELDS)


@functools.cache
def _newest_sql(speakers: int) -> Any:
    """`all_that_fit`'s listing: the active facts in scope, newest first, at most `:cap`."""
    return _typed(
        f"{_SELECT} FROM memories AS m WHERE m.user_id = :user AND m.superseded_by IS NULL"
        f"{_scope_sql(f'speakers{speakers}')} ORDER BY m.created_at DESC, m.id DESC LIMIT :cap"
    )


@functools.cache
def _by_ids_sql(n: int) -> Any:
    """Facts by id, checked against the owner (`_by_ids`: `|| ''` keeps SQLite's planner
    off the owner index). Only placeholders are interpolated."""
    ids = ", ".join(f":id{i}" for i in range(n))
    return _typed(f"{_SELECT} FROM memories m WHERE m.id IN ({ids}) AND m.user_id || '' = :user")


@functools.cache
def _count_use_sql(n: int, postgres: bool) -> Any:
    """`mark_used`'s statement for `n` ids. On PostgreSQL concurrent turns count overlapping
    facts: the subquery locks the rows in id order first, or two UPDATEs locking them in
    different orders deadlock. Only placeholders are interpolated."""
    ids = ", ".join(f":id{i}" for i in range(n))
    if postgres:
        where = (
            f"id IN (SELECT id FROM memories WHERE id IN ({ids}) AND user_id = :user "  # noqa: S608
            "ORDER BY id FOR UPDATE)"
        )
    else:
        where = f"id IN ({ids}) AND user_id || '' = :user"  # see `_by_ids`
    return text(
        f"UPDATE memories SET use_count = use_count + :times, last_used_at = :now WHERE {where}"  # noqa: S608
    ).bindparams(bindparam("now", type_=UTCDateTime()))


class SqliteMemoryBackend(SqlMemoryBackend):
    """FTS5 with BM25 over the fact text; every term carries the household key (see the
    migration `0006_memory_speed`), so a MATCH reads only that household's postings."""

    name = "sqlite"

    @staticmethod
    @functools.cache
    def _sql(n: int, scope: str) -> Any:
        """One statement (one round trip) for a search with `n` terms.

        Matching is cheap, ranking is not (BM25 per matched fact): in a large household a
        common word would make thousands of facts candidates. So each term's matches are
        counted first (stopping at COMMON_HITS + 1), and the MATCH pattern is built from
        the counts: selective terms (own words and synonyms) are OR-ed, common synonyms are
        dropped, common own words count only all together in one fact (or alone, when
        nothing else is left). One common word alone is not ranked: BM25 of a single term
        tells little and costs a score per match (~3 ms for 2,500 matches); its newest
        matches are taken instead (FTS5 walks the index in rowid order and stops at `k`),
        and use and recency order them. Only constant fragments are interpolated here (`n` numbers
        placeholders); the terms are bound parameters.
        """
        values = ", ".join(f"({i}, :own{i}, :term{i})" for i in range(n))
        return _typed(
            f"WITH terms(i, own, term) AS (VALUES {values}), "  # noqa: S608
            "hits AS (SELECT i, own, term, (SELECT count(*) FROM (SELECT 1 FROM memories_fts "
            "WHERE memories_fts MATCH t.term LIMIT :cap)) AS n "
            "FROM terms AS t), "
            "sel AS (SELECT count(*) AS c, group_concat(term, ' OR ') AS s FROM "
            "(SELECT term FROM hits WHERE n > 0 AND n <= :common ORDER BY i)), "
            "freq AS (SELECT count(*) AS c, group_concat(term, ' AND ') AS s FROM "
            "(SELECT term FROM hits WHERE own = 1 AND n > :common ORDER BY i)), "
            "p AS (SELECT CASE "
            "WHEN freq.c > 1 AND sel.c > 0 THEN sel.s || ' OR (' || freq.s || ')' "
            "WHEN freq.c > 1 THEN '(' || freq.s || ')' "
            "WHEN sel.c > 0 THEN sel.s WHEN freq.c = 1 THEN freq.s END AS pattern, "
            "sel.c = 0 AND freq.c = 1 AS alone FROM sel, freq) "
            f"{_SELECT} FROM ("
            "SELECT * FROM (SELECT memory_id, rank AS score FROM p, memories_fts "
            "WHERE p.pattern IS NOT NULL AND NOT p.alone AND memories_fts MATCH p.pattern "
            "ORDER BY rank LIMIT :k) "
            "UNION ALL "
            "SELECT * FROM (SELECT memory_id, 0.0 AS score FROM p, memories_fts "
            "WHERE p.alone AND memories_fts MATCH p.pattern "
            "ORDER BY memories_fts.rowid DESC LIMIT :k)"
            ") AS f "
            "JOIN memories AS m ON m.id = f.memory_id "
            f"WHERE m.user_id = :user AND m.superseded_by IS NULL{_scope_sql(scope)} "
            "ORDER BY f.score, m.use_count DESC, m.updated_at DESC"
        )

    async def _ranked(
        self,
        connection: AsyncConnection,
        plan: memtext.SearchPlan,
        scope: str,
        params: dict[str, Any],
    ) -> Sequence[Any]:
        terms = plan.terms
        values: dict[str, Any] = {
            **params,
            "cap": memtext.COMMON_HITS + 1,
            "common": memtext.COMMON_HITS,
        }
        key = household_key(str(params["user"])) + "_"
        for n, term in enumerate(terms):
            values[f"own{n}"] = int(n < len(plan.own))
            values[f"term{n}"] = fts5_household_term(key, term)
        return await self._rows(connection, self._sql(len(terms), scope), values)

    async def _rows(
        self, connection: AsyncConnection, stmt: Any, params: dict[str, Any]
    ) -> Sequence[Any]:
        # One trip to aiosqlite's thread; the columns are typed afterwards (`_record`).
        fetch = await driver_fetch_all(connection)
        if fetch is None:
            return [tuple(row) for row in await super()._rows(connection, stmt, params)]
        return list(await fetch(stmt.element.text, params))

    _CONTENT = _FIELDS.index("content")

    @classmethod
    def _content(cls, row: Any) -> str:
        return cast(str, row[cls._CONTENT])

    def _record(self, row: Any) -> MemoryRecord:
        processors = self._processors
        if processors is None:
            dialect = self._engine.dialect
            # The public per-dialect processors (what a typed SQLAlchemy result applies).
            processors = self._processors = [
                _TABLE.c[name].type.dialect_impl(dialect).result_processor(dialect, None)
                for name in _FIELDS
            ]
        values = {
            name: value if proc is None or value is None else proc(value)
            for name, proc, value in zip(_FIELDS, processors, row, strict=True)
        }
        return MemoryRecord(**values)

    _processors: builtins.list[Any] | None = None


class PostgresMemoryBackend(SqlMemoryBackend):
    """A generated tsvector ('simple' configuration) with a GIN index; ts_rank_cd."""

    name = "postgresql"
    # 'simple' keeps accents; the terms are searched with and without them.
    keep_accents = True

    # Only constant fragments are interpolated (`n` numbers placeholders); the user's
    # words are bound parameters.
    @staticmethod
    @functools.cache
    def _sql(n: int, scope: str) -> Any:
        """One statement for a search with `n` terms, built like SQLite's (`_sql` there).

        Ranking is the cost: ts_rank_cd reads every matched fact's tsvector, and in a
        100k-fact household one common word matched 24k facts (~90 ms). So each term's
        matches are counted first, stopping at COMMON_HITS + 1 (the GIN index answers, the
        heap is read up to the cap); selective terms are OR-ed, common synonyms dropped,
        common own words count only all together in one fact, and one common word alone
        is not ranked: its newest matches are taken (the owner's index by creation time,
        newest first) and use and recency order them.
        """
        values = ", ".join(
            f"({i}, CAST(:own{i} AS integer), CAST(:term{i} AS text))" for i in range(n)
        )
        where = f"m.superseded_by IS NULL{_scope_sql(scope)}"
        return _typed(
            f"WITH terms(i, own, term) AS (VALUES {values}), "  # noqa: S608
            "hits AS (SELECT i, own, term, (SELECT count(*) FROM (SELECT 1 FROM memories AS c "
            "WHERE c.search_vector @@ to_tsquery('simple', t.term) LIMIT :cap) AS capped) AS n "
            "FROM terms AS t), "
            "sel AS (SELECT count(*) AS c, string_agg('(' || term || ')', ' | ' ORDER BY i) AS s "
            "FROM hits WHERE n > 0 AND n <= :common), "
            "freq AS (SELECT count(*) AS c, string_agg('(' || term || ')', ' & ' ORDER BY i) "
            "AS s FROM hits WHERE own = 1 AND n > :common), "
            "p AS (SELECT CASE "
            "WHEN freq.c > 1 AND sel.c > 0 THEN sel.s || ' | (' || freq.s || ')' "
            "WHEN freq.c > 1 THEN freq.s WHEN sel.c > 0 THEN sel.s "
            "WHEN freq.c = 1 THEN freq.s END AS pattern, "
            "sel.c = 0 AND freq.c = 1 AS alone FROM sel, freq), "
            "q AS MATERIALIZED (SELECT CASE WHEN p.pattern IS NOT NULL "
            "THEN to_tsquery('simple', p.pattern) END AS query, "
            "p.pattern IS NOT NULL AND NOT p.alone AS ranked, p.alone FROM p), "
            f"f AS (({_SELECT}, "
            "ts_rank_cd(m.search_vector, q.query, 1) AS score "
            "FROM q, memories AS m WHERE q.ranked AND m.search_vector @@ q.query "
            # The terms are the household's own: `user_id` is only rechecked (`|| ''` keeps
            # the planner from AND-ing in a bitmap of all the household's rows).
            f"AND m.user_id || '' = :user AND {where} "
            "ORDER BY score DESC, m.use_count DESC, m.updated_at DESC LIMIT :k) "
            f"UNION ALL ({_SELECT}, CAST(0 AS real) AS score "
            "FROM q, memories AS m "
            f"WHERE q.alone AND m.user_id = :user AND m.search_vector @@ q.query AND {where} "
            "ORDER BY m.created_at DESC LIMIT :k)) "
            # The rows themselves, not ids joined back (a primary-key lookup per row).
            f"{_SELECT} FROM f AS m ORDER BY m.score DESC, m.use_count DESC, m.updated_at DESC"
        )

    @staticmethod
    def _either(key: str, term: str) -> str | None:
        # 'simple' keeps accents: a term matches with or without them.
        parts = [ts_household_term(key, t) for t in dict.fromkeys([term, memtext.fold(term)])]
        return " | ".join(p for p in parts if p) or None

    async def _ranked(
        self,
        connection: AsyncConnection,
        plan: memtext.SearchPlan,
        scope: str,
        params: dict[str, Any],
    ) -> Sequence[Any]:
        key = household_key(str(params["user"]))
        values: dict[str, Any] = {
            **params,
            "cap": memtext.COMMON_HITS + 1,
            "common": memtext.COMMON_HITS,
        }
        n = 0
        for position, term in enumerate(plan.terms):
            expression = self._either(key, term)
            if expression is None:
                continue
            values[f"own{n}"] = int(position < len(plan.own))
            values[f"term{n}"] = expression
            n += 1
        if not n:
            return []
        result = await connection.execute(self._sql(n, scope), values)
        return result.all()


# Weighted reciprocal rank fusion: dense counts twice as much as lexical (lexical top
# ranks are often look-alikes sharing room words); K damps the weight of the first ranks.
DENSE_WEIGHT = 2.0
LEXICAL_WEIGHT = 1.0
RRF_K = 60


def fuse(dense: Sequence[str], lexical: Sequence[str]) -> builtins.list[str]:
    """Ids by weighted reciprocal rank; ties keep the dense order first."""
    scores: dict[str, float] = {}
    for weight, ranking in ((DENSE_WEIGHT, dense), (LEXICAL_WEIGHT, lexical)):
        for rank, memory_id in enumerate(ranking, start=1):
            scores[memory_id] = scores.get(memory_id, 0.0) + weight / (RRF_K + rank)
    return sorted(scores, key=lambda i: -scores[i])


def sql_backend_for(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    vectors: VectorIndex | None = None,
) -> SqlMemoryBackend:
    if engine.dialect.name == "postgresql":
        return PostgresMemoryBackend(engine, sessionmaker, vectors)
    return SqliteMemoryBackend(engine, sessionmaker, vectors)
