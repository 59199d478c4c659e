"""Reads on the hot path in as few trips to the database (or its driver) as it allows.

`reader(engine)`: the engine for connections that only read, or that write one statement
(atomic on its own: a turn's usage row) and then call `commit()`, which sends nothing on
PostgreSQL. There it is the same pool in autocommit: SQLAlchemy's asyncpg adapter otherwise
opens a transaction for every connection that runs a statement and ends it, two more round
trips for one statement (13 % of the server's CPU under load, bench/load.py). Under
PostgreSQL's default READ COMMITTED each statement reads its own snapshot either way, so
the reads see the same data.
On SQLite the engine itself: a read opens no transaction there, and setting autocommit on
aiosqlite would cost a trip to its thread at each checkout and return.

Through SQLAlchemy a statement on aiosqlite takes four trips to the connection's thread
(cursor, execute, fetch, close), each a thread switch and a wake-up of the event loop;
aiosqlite's own `execute_fetchall` takes one. The rows come back as the driver gives them,
so these helpers are for statements whose values need no type processing (text, numbers),
or whose caller types them itself. Other drivers go through SQLAlchemy as usual.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import TextClause
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

FetchAll = Callable[[str, Mapping[str, Any]], Awaitable[Iterable[Any]]]


def reader(engine: AsyncEngine) -> AsyncEngine:
    """The engine for connections that read, or write one atomic statement and commit (on
    PostgreSQL autocommit on the same pool: the primary, never a replica).

    Build it once per engine (a new view each call): the app keeps it as `DB_READER`."""
    if engine.dialect.name != "postgresql":
        return engine
    return engine.execution_options(isolation_level="AUTOCOMMIT")


async def driver_fetch_all(connection: AsyncConnection) -> FetchAll | None:
    """aiosqlite's `execute_fetchall` of this connection (None with another driver)."""
    raw = await connection.get_raw_connection()
    fetch: FetchAll | None = getattr(raw.driver_connection, "execute_fetchall", None)
    return fetch


async def plain_rows(
    connection: AsyncConnection, statement: TextClause, params: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """The rows of a constant text statement, as tuples of the driver's values."""
    fetch = await driver_fetch_all(connection)
    if fetch is None:
        return [tuple(row) for row in (await connection.execute(statement, params)).all()]
    return [tuple(row) for row in await fetch(statement.text, params)]
