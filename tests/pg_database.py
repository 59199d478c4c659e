"""A test's own database on the shared PostgreSQL server, created and dropped around it.

The shared server (127.0.0.1:5432, user `postgres`, trust; `HOMEMIND_TEST_POSTGRES`
overrides) is never changed otherwise: every test, fault test or cluster gets a uniquely
named database and drops it afterwards (WITH FORCE: a server process killed mid-test may
still hold connections). No pytest here: bench/load.py uses it through tests/server/cluster.py.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator

import asyncpg
from sqlalchemy.engine.url import make_url

PG_ADMIN_URL = os.environ.get(
    "HOMEMIND_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
# What connecting to a PostgreSQL that is not there raises (callers skip on these).
UNREACHABLE = (OSError, asyncpg.PostgresError, TimeoutError)


async def pg_admin(sql: str) -> None:
    """One statement on the admin database (CREATE/DROP DATABASE cannot run in a transaction)."""
    connection = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def pg_url(database: str, *, port: int | None = None) -> str:
    """The URL of `database` on the shared server, or through a proxy on 127.0.0.1:`port`."""
    url = make_url(PG_ADMIN_URL).set(database=database)
    if port is not None:
        url = url.set(host="127.0.0.1", port=port)
    return url.render_as_string(hide_password=False)


def new_database_name(prefix: str = "homemind_test") -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


async def create_database(name: str) -> None:
    await pg_admin(f'CREATE DATABASE "{name}"')


async def drop_database(name: str) -> None:
    await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def own_database(name: str) -> AsyncIterator[str]:
    """Create the empty database `name`, yield its URL, drop it afterwards.

    Entering raises one of UNREACHABLE when no PostgreSQL answers."""
    await create_database(name)
    try:
        yield pg_url(name)
    finally:
        await drop_database(name)
