"""Telling a database outage from a bug (cloud_server/errors.py answers one with a 503).

A connection refused or cut (PostgreSQL restarting, a proxy in between gone), a SQLite
file locked by another process past the busy timeout, or a full disk is not our bug: the
request is refused with 503 `database_unavailable` and a `Retry-After`. The transaction
was rolled back, so nothing of the request was stored. The pool recovers by itself (stale
PostgreSQL connections are pre-pinged), so the next request after recovery just works.
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc


def is_database_outage(error: BaseException) -> bool:
    """True when `error` (or what it wraps) says the database cannot be reached or written."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa_exc.DBAPIError) and (
            current.connection_invalidated
            or isinstance(current, (sa_exc.OperationalError, sa_exc.InterfaceError))
        ):
            return True
        if isinstance(current, (sa_exc.TimeoutError, sa_exc.DisconnectionError)):
            return True  # the pool waited in vain for a connection
        if isinstance(current, (ConnectionError, TimeoutError)):
            return True  # asyncpg's connect: refused, reset, timed out
        if _asyncpg_connection_error(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _asyncpg_connection_error(error: BaseException) -> bool:
    try:
        import asyncpg
    except ImportError:  # pragma: no cover - asyncpg is a dependency
        return False
    return isinstance(
        error,
        (
            asyncpg.exceptions.ConnectionDoesNotExistError,
            asyncpg.exceptions.InterfaceError,
            asyncpg.exceptions.PostgresConnectionError,
            asyncpg.exceptions.CannotConnectNowError,
            asyncpg.exceptions.AdminShutdownError,
        ),
    )
