"""`homemind-server backup FILE` / `restore FILE`: a consistent copy of the database.

- SQLite: the SQLite online backup API (`sqlite3.Connection.backup`), which copies a
  consistent snapshot while the server keeps serving (WAL readers and writers go on).
  The backup is itself a SQLite database file.
- PostgreSQL: `pg_dump --format=custom` (one consistent snapshot, MVCC) and
  `pg_restore --clean --if-exists` into the configured database. The client tools must be
  at least the server's major version.

A backup holds users' Anthropic keys encrypted with ENCRYPTION_KEY: restore with the same
key ring (or one that still lists the old key), and keep backups as private as the key.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy.engine.url import make_url

from .server_secrets import ConfigError
from .settings import Settings

_SQLITE_MAGIC = b"SQLite format 3\x00"
_PG_MAGIC = b"PGDMP"


def _sqlite_path(settings: Settings) -> Path | None:
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() != "sqlite":
        return None
    if not url.database or url.database == ":memory:":
        raise ConfigError("an in-memory SQLite database cannot be backed up")
    return Path(url.database)


def _libpq(settings: Settings) -> tuple[str, dict[str, str]]:
    """The libpq URL without its password, and an environment carrying the password
    (so it never shows in the process list)."""
    url = make_url(settings.effective_database_url).set(drivername="postgresql")
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    return url.set(password=None).render_as_string(hide_password=False), env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ConfigError(f"{name} is not installed (Debian: apt-get install postgresql-client)")
    return found


def _private(path: Path) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)


def backup_database(settings: Settings, target: Path) -> None:
    """Write a consistent copy of the configured database to `target` (mode 0600)."""
    source = _sqlite_path(settings)
    _private(target)
    if source is not None:
        if not source.exists():
            raise ConfigError(f"there is no database at {source}")
        with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
            src.backup(dst)
        dst.close()
        src.close()
        return
    dbname, env = _libpq(settings)
    subprocess.run(  # noqa: S603 - fixed program, arguments we build
        [_tool("pg_dump"), "--format=custom", "--no-owner", "--dbname", dbname, "-f", str(target)],
        check=True,
        env=env,
    )


def restore_database(settings: Settings, source: Path) -> None:
    """Replace the configured database's contents with the backup in `source`.

    Stop the servers first (or take them out of the load balancer): restoring under
    traffic mixes old and new rows.
    """
    with source.open("rb") as handle:
        head = handle.read(16)
    target = _sqlite_path(settings)
    if target is not None:
        if not head.startswith(_SQLITE_MAGIC):
            raise ConfigError(f"{source} is not a SQLite backup (the database is SQLite)")
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
            src.backup(dst)
        dst.close()
        src.close()
        target.chmod(0o600)
        return
    if not head.startswith(_PG_MAGIC):
        raise ConfigError(f"{source} is not a pg_dump custom-format backup")
    dbname, env = _libpq(settings)
    subprocess.run(  # noqa: S603 - fixed program, arguments we build
        [
            _tool("pg_restore"),
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--exit-on-error",
            "--dbname",
            dbname,
            str(source),
        ],
        check=True,
        env=env,
    )
