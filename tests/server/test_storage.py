"""One schema on SQLite and PostgreSQL: migrations, models == DDL, UTC datetimes, FKs."""

from __future__ import annotations

import asyncio
import io
import os
import sqlite3
import stat
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from cloud_server.cli import main
from cloud_server.db import models
from cloud_server.db.base import Base
from cloud_server.db.engine import (
    SchemaOutdatedError,
    alembic_config,
    create_engine,
    current_revisions,
    ensure_schema,
    head_revisions,
    make_sessionmaker,
    upgrade_database,
)
from cloud_server.settings import Settings

ACCOUNT_TABLES = {
    "users",
    "installations",
    "auth_sessions",
    "refresh_tokens",
    "password_reset_tokens",
    "audit_events",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db_url(request, tmp_path: Path) -> str:
    """An empty database of this test's own, on each engine (async driver URL)."""
    if request.param == "sqlite":
        raw = f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        raw = request.getfixturevalue("fresh_pg_url")
    return Settings(database_url=raw).effective_database_url


def test_single_head_starting_with_0001():
    assert len(head_revisions()) == 1
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_base() == "0001_initial"


async def test_upgrade_downgrade_upgrade_is_clean(empty_db_url):
    engine = create_engine(empty_db_url)
    try:
        await upgrade_database(engine)
        assert await current_revisions(engine) == head_revisions()

        def down(connection):
            config = alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
            return set(inspect(connection).get_table_names()) - {"alembic_version"}

        async with engine.begin() as connection:
            assert await connection.run_sync(down) == set()
        await upgrade_database(engine)
        await upgrade_database(engine)  # a no-op the second time
        assert await current_revisions(engine) == head_revisions()
    finally:
        await engine.dispose()


async def test_models_match_the_migrated_schema(empty_db_url):
    engine = create_engine(empty_db_url)
    try:
        await upgrade_database(engine)

        def diff(connection):
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, Base.metadata)

        async with engine.connect() as connection:
            differences = await connection.run_sync(diff)
    finally:
        await engine.dispose()

    def table_of(entry) -> str | None:
        change = entry[0] if isinstance(entry, list) else entry
        for part in change[1:]:
            name = getattr(part, "name", None) if not isinstance(part, str) else None
            table = getattr(part, "table", None)
            if table is not None and getattr(table, "name", None):
                return str(table.name)
            if name:
                return str(name)
            if isinstance(part, str):
                return part
        return None

    mine = [d for d in differences if table_of(d) in ACCOUNT_TABLES]
    assert mine == []


async def test_datetimes_come_back_utc_aware_and_fks_are_enforced(db_url):
    engine = create_engine(Settings(database_url=db_url).effective_database_url)
    sessionmaker = make_sessionmaker(engine)
    try:
        await upgrade_database(engine)
        moment = datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=2)))
        async with sessionmaker.begin() as session:
            user = models.User(
                email="tz@example.test",
                email_normalized=f"tz-{id(moment)}-{db_url[:5]}@example.test",
                password_hash="!",
                created_at=moment,
            )
            session.add(user)
        async with sessionmaker() as session:
            loaded = await session.get(models.User, user.id)
            assert loaded is not None
            assert loaded.created_at.tzinfo is not None
            assert loaded.created_at == moment
            assert loaded.created_at.utcoffset() == timedelta(0)
            assert loaded.tier == "free" and loaded.is_active is True

        with pytest.raises(IntegrityError):
            async with sessionmaker.begin() as session:
                session.add(
                    models.Installation(
                        user_id="no-such-user", name="x", token_hash="h" * 64, token_hint="hm_…x"
                    )
                )
        with pytest.raises(StatementError, match="naive"):
            async with sessionmaker.begin() as session:
                await session.execute(
                    select(models.User).where(models.User.created_at < datetime(2030, 1, 1))
                )
    finally:
        await engine.dispose()


async def test_sqlite_connections_use_wal_and_foreign_keys(tmp_path):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(text("PRAGMA foreign_keys"))).scalar() == 1
            assert (await connection.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await connection.execute(text("PRAGMA busy_timeout"))).scalar() >= 1000
    finally:
        await engine.dispose()


async def test_sqlite_rollbacks_undo_writes_and_reads_leave_no_transaction_open(tmp_path):
    """The SQLite dialect skips the driver's rollback and commit when no transaction is open
    (cloud_server/db/sqlite_dialect.py): a write must still be undone or kept, and a read
    must leave no snapshot behind on its pooled connection."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE t (n INTEGER)"))
        with pytest.raises(RuntimeError):
            async with engine.begin() as connection:
                await connection.execute(text("INSERT INTO t VALUES (1)"))
                raise RuntimeError("the request failed")
        async with engine.begin() as connection:
            await connection.execute(text("INSERT INTO t VALUES (2)"))
        # A read, ended without commit, on a connection that goes back to the pool.
        async with engine.connect() as reader:
            assert (await reader.execute(text("SELECT n FROM t"))).scalars().all() == [2]
        async with engine.begin() as connection:
            await connection.execute(text("INSERT INTO t VALUES (3)"))
        # Whichever pooled connection reads next sees the latest commit.
        for _ in range(3):
            async with engine.connect() as reader:
                rows = (await reader.execute(text("SELECT n FROM t ORDER BY n"))).scalars()
                assert rows.all() == [2, 3]
    finally:
        await engine.dispose()


async def test_outdated_schema_is_refused_without_auto_migrate(tmp_path, make_app, server_settings):
    engine = create_engine(server_settings.effective_database_url)
    try:
        with pytest.raises(SchemaOutdatedError, match="homemind-server migrate"):
            await ensure_schema(engine, auto_migrate=False)
    finally:
        await engine.dispose()
    with pytest.raises(SchemaOutdatedError):
        await make_app(server_settings.model_copy(update={"auto_migrate": False}))


async def test_serve_refuses_outdated_schema_and_migrate_fixes_it(tmp_path, monkeypatch, capsys):
    for name in ("DATABASE_URL", "ENCRYPTION_KEY", "JWT_SECRET", "HOMEMIND_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOMEMIND_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HOMEMIND_AUTO_MIGRATE", "false")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    # `serve` in its own process, as an operator runs it.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cloud_server",
        "serve",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert "homemind-server migrate" in err.decode()

    assert await asyncio.to_thread(main, ["migrate"]) == 0
    engine = create_engine(Settings(data_dir=tmp_path).effective_database_url)
    try:
        assert await current_revisions(engine) == head_revisions()
    finally:
        await engine.dispose()


def test_utc_is_the_only_zone_stored():
    column = models.User.__table__.c.created_at
    assert column.type.impl.timezone is True  # type: ignore[attr-defined]
    assert datetime.now(UTC).tzinfo is UTC


# --- the SQLite files hold household facts and the audit log: owner only --------------


@pytest.fixture
def permissive_umask():
    """The common default umask (022), so only our own code can make the files private."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_new_data_folder_and_database_are_private(
    tmp_path, make_app, server_settings, permissive_umask
):
    data = tmp_path / "fresh" / "data"
    settings = server_settings.model_copy(update={"data_dir": data, "database_url": None})
    client = await make_app(settings)
    register = await client.post(
        "/api/auth/register",
        json={"email": "perm@example.test", "password": "a long and quiet river"},
    )
    assert register.status == 201
    db = data / "homemind.db"
    assert _mode(data) == 0o700
    files = [db, db.with_name("homemind.db-wal"), db.with_name("homemind.db-shm")]
    assert all(f.exists() for f in files)  # WAL mode, connections still open
    assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}


async def test_existing_readable_database_is_tightened(tmp_path, permissive_umask):
    path = tmp_path / "old.db"
    sqlite3.connect(path).close()
    path.chmod(0o644)
    existing_folder_mode = _mode(tmp_path)
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.connect() as connection:
            await connection.execute(text("CREATE TABLE t (x INTEGER)"))
            await connection.commit()
            assert _mode(path) == 0o600
            assert _mode(path.with_name("old.db-wal")) == 0o600
    finally:
        await engine.dispose()
    assert _mode(tmp_path) == existing_folder_mode  # a folder we did not create is left alone


async def test_database_folder_created_by_the_engine_is_private(tmp_path, permissive_umask):
    path = tmp_path / "elsewhere" / "homemind.db"  # DATABASE_URL outside the data folder
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
    assert _mode(path.parent) == 0o700 and _mode(path) == 0o600
