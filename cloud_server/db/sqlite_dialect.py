"""SQLAlchemy's aiosqlite dialect, without the trips to the driver's thread that do nothing.

aiosqlite runs every call on its connection's own thread, and each trip there costs a
thread switch and a wake-up of the event loop. SQLAlchemy ends every pool checkout with a
rollback (and every read-only `begin()` block with a commit), which the sqlite3 module
then skips when no transaction is open (`sqlite3_get_autocommit`): most of a chat turn's
trips (8 of 32) were such no-ops. This dialect asks the connection first (`in_transaction`,
a read of the same flag, safe while nothing runs on the connection, as is the case when
SQLAlchemy ends a transaction) and makes the trip only when there is something to end.

Registered as `sqlite+homemind_aiosqlite`; `db/engine.py` uses it for every SQLite URL.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite

DRIVER = "homemind_aiosqlite"


def _in_transaction(dbapi_connection: Any) -> bool:
    # A pool entry or SQLAlchemy's adapter: both lead to the aiosqlite connection.
    driver = getattr(dbapi_connection, "driver_connection", None)
    in_transaction = getattr(driver, "in_transaction", None)
    return True if in_transaction is None else bool(in_transaction)


class QuietAiosqliteDialect(SQLiteDialect_aiosqlite):
    """`SQLiteDialect_aiosqlite` whose rollback and commit skip a connection at rest."""

    supports_statement_cache = True

    def do_rollback(self, dbapi_connection: Any) -> None:
        if _in_transaction(dbapi_connection):
            super().do_rollback(dbapi_connection)  # type: ignore[no-untyped-call]

    def do_commit(self, dbapi_connection: Any) -> None:
        if _in_transaction(dbapi_connection):
            super().do_commit(dbapi_connection)  # type: ignore[no-untyped-call]


registry.register(f"sqlite.{DRIVER}", __name__, "QuietAiosqliteDialect")
