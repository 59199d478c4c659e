"""Memory backends on our own database: SQLite (FTS5, BM25) and PostgreSQL (tsvector).

The memories table is the same on both engines; only the full-text part differs (see
the migration `0002_memory`). Ranking is by text relevance; use count and recency
only break exact ties.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, delete, func, or_, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ..db.base import new_id, utcnow
from . import text as memtext
from .backend import AddResult, MemoryBackendError, MemoryNotFoundError, MemoryRecord, Source
from .models import Memory

LOGGER = logging.getLogger(__name__)

_COLUMNS = ", ".join(f"m.{c.name}" for c in Memory.__table__.columns)


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


def _scope(stmt: Select[Any], speaker_id: str | None, all_speakers: bool) -> Select[Any]:
    if all_speakers:
        return stmt
    if speaker_id is None:
        return stmt.where(Memory.speaker_id.is_(None))
    return stmt.where(or_(Memory.speaker_id.is_(None), Memory.speaker_id == speaker_id))


def _same_scope(speaker_id: str | None) -> Any:
    return Memory.speaker_id.is_(None) if speaker_id is None else Memory.speaker_id == speaker_id


class SqlMemoryBackend:
    """Shared logic; subclasses implement the dialect's full-text search."""

    name = "sql"

    def __init__(self, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]):
        self._engine = engine
        self._sessionmaker = sessionmaker

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
                return AddResult(to_record(row), created=True)
        except SQLAlchemyError as err:
            raise MemoryBackendError("could not store the fact") from err

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
            return to_record(row)

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
            return to_record(twin)

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
            return record

    async def delete_all(self, user_id: str) -> int:
        async with self._sessionmaker() as session, session.begin():
            result = await session.execute(delete(Memory).where(Memory.user_id == user_id))
            return int(getattr(result, "rowcount", 0) or 0)

    async def mark_used(self, user_id: str, memory_ids: list[str]) -> None:
        if not memory_ids:
            return
        async with self._sessionmaker() as session, session.begin():
            await session.execute(
                update(Memory)
                .where(Memory.user_id == user_id, Memory.id.in_(memory_ids))
                .values(use_count=Memory.use_count + 1, last_used_at=utcnow())
            )

    async def set_index_ref(self, user_id: str, memory_id: str, ref: str | None) -> None:
        async with self._sessionmaker() as session, session.begin():
            await session.execute(
                update(Memory)
                .where(Memory.user_id == user_id, Memory.id == memory_id)
                .values(index_ref=ref)
            )

    # --- reading ---------------------------------------------------------------

    async def get(self, user_id: str, memory_id: str) -> MemoryRecord:
        async with self._sessionmaker() as session:
            return to_record(await self._get_row(session, user_id, memory_id))

    async def get_many(self, user_id: str, memory_ids: Sequence[str]) -> list[MemoryRecord]:
        if not memory_ids:
            return []
        async with self._sessionmaker() as session:
            rows = (
                await session.scalars(
                    select(Memory).where(Memory.user_id == user_id, Memory.id.in_(memory_ids))
                )
            ).all()
        by_id = {row.id: to_record(row) for row in rows}
        return [by_id[i] for i in memory_ids if i in by_id]

    async def list(
        self,
        user_id: str,
        *,
        speaker_id: str | None = None,
        all_speakers: bool = True,
        include_superseded: bool = False,
        limit: int | None = 50,
        offset: int = 0,
    ) -> builtins.list[MemoryRecord]:
        stmt = select(Memory).where(Memory.user_id == user_id)
        if not include_superseded:
            stmt = stmt.where(Memory.superseded_by.is_(None))
        stmt = _scope(stmt, speaker_id, all_speakers)
        stmt = stmt.order_by(Memory.created_at.desc(), Memory.id.desc()).offset(offset)
        if limit is not None:
            stmt = stmt.limit(limit)
        async with self._sessionmaker() as session:
            return [to_record(row) for row in (await session.scalars(stmt)).all()]

    async def count(self, user_id: str, *, include_superseded: bool = False) -> int:
        stmt = select(func.count()).select_from(Memory).where(Memory.user_id == user_id)
        if not include_superseded:
            stmt = stmt.where(Memory.superseded_by.is_(None))
        async with self._sessionmaker() as session:
            return int(await session.scalar(stmt) or 0)

    async def search(
        self,
        user_id: str,
        query: str,
        *,
        speaker_id: str | None = None,
        all_speakers: bool = False,
        limit: int = 10,
    ) -> builtins.list[MemoryRecord]:
        limit = max(1, min(limit, 200))
        try:
            async with self._sessionmaker() as session:
                rows = await self._search_rows(
                    session,
                    user_id,
                    query,
                    speaker_id=speaker_id,
                    all_speakers=all_speakers,
                    limit=limit,
                )
        except SQLAlchemyError as err:
            raise MemoryBackendError("memory search failed") from err
        # Facts matching more of the user's own words (not just expansions) come first;
        # the sort is stable, so the engine's ranking decides among equals.
        records = [to_record(row) for row in rows]
        records.sort(key=lambda r: -memtext.relevance(query, r.content))
        return records[:limit]

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

    @staticmethod
    def _scope_sql(speaker_id: str | None, all_speakers: bool, params: dict[str, Any]) -> str:
        if all_speakers:
            return ""
        if speaker_id is None:
            return " AND m.speaker_id IS NULL"
        params["speaker"] = speaker_id
        return " AND (m.speaker_id IS NULL OR m.speaker_id = :speaker)"

    async def _search_rows(
        self,
        session: AsyncSession,
        user_id: str,
        query: str,
        *,
        speaker_id: str | None,
        all_speakers: bool,
        limit: int,
    ) -> Sequence[Memory]:
        raise NotImplementedError


class SqliteMemoryBackend(SqlMemoryBackend):
    """FTS5 with BM25 over the fact text; `owner` restricts the MATCH to one household."""

    name = "sqlite"

    async def _search_rows(
        self,
        session: AsyncSession,
        user_id: str,
        query: str,
        *,
        speaker_id: str | None,
        all_speakers: bool,
        limit: int,
    ) -> Sequence[Memory]:
        terms = memtext.fts5_query(memtext.query_terms(query))
        if terms is None:
            return []
        owner = '"u' + user_id.replace('"', "") + '"'
        # Step 1: the index alone (active facts of this household), BM25 order.
        ids_sql = text(
            "SELECT memory_id FROM memories_fts WHERE memories_fts MATCH :match "
            "ORDER BY rank LIMIT :k"
        )
        match = f"owner : {owner} AND body : ({terms})"
        ids = list((await session.scalars(ids_sql, {"match": match, "k": limit * 3 + 10})).all())
        if not ids:
            return []
        # Step 2: the rows, in index order; scope and state are checked on the row.
        rows = (
            await session.scalars(
                select(Memory).where(
                    Memory.user_id == user_id,
                    Memory.id.in_(ids),
                    Memory.superseded_by.is_(None),
                )
            )
        ).all()
        position = {memory_id: n for n, memory_id in enumerate(ids)}
        kept = [
            row
            for row in rows
            if all_speakers or row.speaker_id is None or row.speaker_id == speaker_id
        ]
        # Ties of BM25 are rare; the index order is kept, use and recency come after.
        kept.sort(key=lambda row: (position[row.id], -row.use_count, -row.updated_at.timestamp()))
        return kept


class PostgresMemoryBackend(SqlMemoryBackend):
    """A generated tsvector ('simple' configuration) with a GIN index; ts_rank_cd."""

    name = "postgresql"

    async def _search_rows(
        self,
        session: AsyncSession,
        user_id: str,
        query: str,
        *,
        speaker_id: str | None,
        all_speakers: bool,
        limit: int,
    ) -> Sequence[Memory]:
        plain = memtext.query_terms(query)
        accented = memtext.query_terms(query, keep_accents=True)
        merged = list(dict.fromkeys(plain + accented))
        expression = memtext.tsquery(merged)
        if expression is None:
            return []
        params: dict[str, Any] = {"q": expression, "user": user_id, "limit": limit * 3 + 10}
        scope = self._scope_sql(speaker_id, all_speakers, params)
        # Only constant fragments are interpolated; the user's words are a bound parameter.
        sql = text(
            f"SELECT {_COLUMNS} FROM memories m, to_tsquery('simple', :q) AS query "  # noqa: S608
            "WHERE m.search_vector @@ query AND m.user_id = :user "
            f"AND m.superseded_by IS NULL{scope} "
            "ORDER BY ts_rank_cd(m.search_vector, query, 1) DESC, m.use_count DESC, "
            "m.updated_at DESC LIMIT :limit"
        )
        result = await session.scalars(select(Memory).from_statement(sql), params)
        return result.all()


def sql_backend_for(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> SqlMemoryBackend:
    if engine.dialect.name == "postgresql":
        return PostgresMemoryBackend(engine, sessionmaker)
    return SqliteMemoryBackend(engine, sessionmaker)
