"""Constant reads on the hot path in as few trips to the driver as it allows.

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
from sqlalchemy.ext.asyncio import AsyncConnection

FetchAll = Callable[[str, Mapping[str, Any]], Awaitable[Iterable[Any]]]


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
