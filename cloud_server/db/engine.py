"""Database engine lifecycle: one AsyncEngine per application, migrations on start.

SQLite (aiosqlite) by default, PostgreSQL (asyncpg) when `DATABASE_URL` says so. On
SQLite every connection gets WAL, a busy timeout and enforced foreign keys.

The pool's size comes from the settings (`HOMEMIND_DB_POOL_SIZE`, `HOMEMIND_DB_MAX_OVERFLOW`,
`HOMEMIND_DB_POOL_TIMEOUT`). `PoolStats` counts its use for `/metrics`: checkouts, the time
requests waited for a connection and the time they held one.
"""

from __future__ import annotations

import logging
import os
import stat
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, Pool, PoolProxiedConnection

from ..app_keys import SETTINGS
from ..server_secrets import ConfigError
from . import sqlite_dialect
from .reads import reader

LOGGER = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Any constant: serialises concurrent `migrate` runs of several instances on PostgreSQL.
_PG_MIGRATION_LOCK = 0x686D6967

DB_ENGINE: web.AppKey[AsyncEngine] = web.AppKey("db_engine", AsyncEngine)
# The same pool for connections that only read (`db/reads.py` `reader`).
DB_READER: web.AppKey[AsyncEngine] = web.AppKey("db_reader", AsyncEngine)
DB_SESSIONMAKER: web.AppKey[async_sessionmaker[AsyncSession]] = web.AppKey(
    "db_sessionmaker", async_sessionmaker
)


class SchemaOutdatedError(ConfigError):
    """The database schema is behind the code and auto-migration is switched off."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _private_sqlite_file(path: Path) -> None:
    """The database (household facts, audit log) readable by this user only.

    A folder we create is 0700; a new database file is created empty with 0600 before
    SQLite opens it, and SQLite gives its -wal/-shm/-journal files the database file's
    mode. An existing database that others can read is tightened to 0600 (logged).
    """
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return
    except FileExistsError:
        pass
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = stat.S_IMODE(candidate.stat().st_mode)
            if mode & 0o077:
                candidate.chmod(0o600)
                LOGGER.warning("Made %s readable by its owner only (was %o)", candidate, mode)
        except FileNotFoundError:
            continue
        except PermissionError:
            LOGGER.warning("%s can be read by other users; run chmod 600 on it", candidate)


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """How many connections an engine keeps, may add, and how long a checkout may wait."""

    size: int = 20
    max_overflow: int = 10
    timeout: float = 30.0

    @classmethod
    def of(cls, settings: Any) -> PoolSettings:
        return cls(settings.db_pool_size, settings.db_max_overflow, settings.db_pool_timeout)


@dataclass(slots=True)
class PoolStats:
    """Totals since start (read by the /metrics collector)."""

    checkouts: int = 0
    wait_seconds: float = 0.0  # waiting for a free connection (or for a new one to open)
    held_seconds: float = 0.0  # from checkout to return


_STATS: weakref.WeakKeyDictionary[Pool, PoolStats] = weakref.WeakKeyDictionary()


def pool_stats(engine: AsyncEngine) -> PoolStats | None:
    return _STATS.get(engine.sync_engine.pool)


class _TimedPool(AsyncAdaptedQueuePool):
    """The async queue pool, timing how long each checkout waits for its connection."""

    def _do_get(self) -> ConnectionPoolEntry:
        started = time.monotonic()
        try:
            return super()._do_get()
        finally:
            stats = _STATS.get(self)
            if stats is not None:
                stats.wait_seconds += time.monotonic() - started


def _count_use(engine: AsyncEngine) -> None:
    pool = engine.sync_engine.pool
    stats = _STATS.setdefault(pool, PoolStats())

    def checkout(_dbapi: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection) -> None:
        stats.checkouts += 1
        record.info["checked_out_at"] = time.monotonic()

    def checkin(_dbapi: Any, record: ConnectionPoolEntry) -> None:
        started = record.info.pop("checked_out_at", None)
        if started is not None:
            stats.held_seconds += time.monotonic() - started

    event.listen(pool, "checkout", checkout)
    event.listen(pool, "checkin", checkin)


# A pooled connection used this recently is trusted; one that sat idle longer is pinged
# before use. SQLAlchemy's `pool_pre_ping` pings at every checkout: a round trip to
# PostgreSQL for each of a chat turn's eight checkouts, a sixth of the server's CPU under
# load (bench/load.py). A server that went away is also caught by the first statement that
# fails: SQLAlchemy then invalidates the whole pool (tests/server/test_faults_database.py).
PING_AFTER_IDLE = 1.0  # seconds


def _ping_after_idle(engine: AsyncEngine) -> None:
    dialect = engine.sync_engine.dialect

    def checkin(_dbapi: Any, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    def checkout(dbapi: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE:
            return
        try:
            alive = dialect.do_ping(dbapi)
        except Exception as err:
            # The pool drops this connection and checks out a fresh one.
            raise DisconnectionError("the pooled connection did not answer a ping") from err
        if not alive:
            raise DisconnectionError("the pooled connection did not answer a ping")

    event.listen(engine.sync_engine.pool, "checkin", checkin)
    event.listen(engine.sync_engine.pool, "checkout", checkout)


def create_engine(url: str, pool: PoolSettings | None = None) -> AsyncEngine:
    """An AsyncEngine for `url` (already with its async driver), configured per dialect."""
    pool = pool or PoolSettings()
    sizes: dict[str, Any] = {
        "poolclass": _TimedPool,
        "pool_size": pool.size,
        "max_overflow": pool.max_overflow,
        "pool_timeout": pool.timeout,
    }
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _private_sqlite_file(Path(parsed.database))
        else:
            sizes = {}  # in memory: SQLAlchemy's own pool, one connection
        engine = create_async_engine(
            parsed.set(drivername=f"sqlite+{sqlite_dialect.DRIVER}"),
            connect_args={"timeout": 30},
            **sizes,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        engine = create_async_engine(url, **sizes)
        _ping_after_idle(engine)
    if sizes:
        _count_use(engine)
    return engine


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revisions() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def _current_revisions(connection: Connection) -> set[str]:
    return set(MigrationContext.configure(connection).get_current_heads())


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def current_revisions(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return await connection.run_sync(_current_revisions)


async def upgrade_database(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (a no-op when it is there already)."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
            )
        await connection.run_sync(_upgrade)


async def ensure_schema(engine: AsyncEngine, auto_migrate: bool) -> None:
    """Migrate, or refuse to run on an outdated schema when auto-migration is off."""
    if auto_migrate:
        await upgrade_database(engine)
        return
    current, heads = await current_revisions(engine), head_revisions()
    if current != heads:
        raise SchemaOutdatedError(
            f"the database schema is at {sorted(current) or 'nothing'} but this version needs "
            f"{sorted(heads)}; run `homemind-server migrate` (or set HOMEMIND_AUTO_MIGRATE=true)"
        )


def setup_database(app: web.Application) -> None:
    """Open the engine on start-up (migrating the schema) and dispose of it on shutdown."""

    async def database_ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        engine = create_engine(settings.effective_database_url, PoolSettings.of(settings))
        try:
            await ensure_schema(engine, settings.auto_migrate)
        except BaseException:
            await engine.dispose()
            raise
        app[DB_ENGINE] = engine
        app[DB_READER] = reader(engine)
        app[DB_SESSIONMAKER] = make_sessionmaker(engine)
        yield
        await engine.dispose()

    app.cleanup_ctx.append(database_ctx)
