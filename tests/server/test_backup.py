"""`backup` then `restore` into a fresh database finds everything again (SQLite and PostgreSQL)."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from cloud_server.accounts.app_keys import SERVER_SECRETS
from cloud_server.accounts.installations import installation_key
from cloud_server.backup import backup_database, restore_database
from cloud_server.billing.models import UsageRecord
from cloud_server.db.engine import DB_SESSIONMAKER
from cloud_server.db.models import Installation, User
from cloud_server.memory.models import Memory
from cloud_server.server_secrets import ConfigError
from cloud_server.settings import Settings
from tests.pg_database import UNREACHABLE, new_database_name, own_database

OWN_KEY = "sk-ant-fake-backup-own"
MakeApp = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture(params=["sqlite", "postgresql"])
async def two_databases(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, str]]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'source.db'}", f"sqlite:///{tmp_path / 'fresh' / 'x.db'}"
        return
    async with contextlib.AsyncExitStack() as stack:
        try:
            urls = [
                await stack.enter_async_context(own_database(new_database_name())) for _ in range(2)
            ]
        except UNREACHABLE as err:
            pytest.skip(f"PostgreSQL is not reachable: {err}")
        yield urls[0], urls[1]


async def snapshot(client: TestClient[Any, Any]) -> dict[str, Any]:
    async with client.app[DB_SESSIONMAKER]() as session:
        users = [(row.id, row.email) for row in (await session.execute(select(User))).scalars()]
        installations = [
            (row.id, row.token_hash if hasattr(row, "token_hash") else None)
            for row in (await session.execute(select(Installation))).scalars()
        ]
        keys = [
            await installation_key(session, client.app[SERVER_SECRETS].encryption, inst_id)
            for inst_id, _ in installations
        ]
        facts = [(m.id, m.content) for m in (await session.execute(select(Memory))).scalars()]
        usage = [
            (u.id, u.output_tokens) for u in (await session.execute(select(UsageRecord))).scalars()
        ]
    return {
        "users": sorted(users),
        "installations": sorted(installations),
        "keys": keys,
        "facts": sorted(facts),
        "usage": sorted(usage),
    }


async def test_backup_and_restore_round_trip(
    make_app: MakeApp,
    server_settings: Settings,
    two_databases: tuple[str, str],
    create_user: Callable[..., Awaitable[tuple[str, str]]],
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
    tmp_path: Path,
) -> None:
    source_url, fresh_url = two_databases
    source_settings = server_settings.model_copy(update={"database_url": source_url})
    source = await make_app(source_settings)
    user_id, access = await create_user(client=source)
    installation_id, _ = await create_installation(user_id=user_id, api_key=OWN_KEY, client=source)
    response = await source.post(
        "/api/memory",
        json={"content": "Ana likes the bedroom at 19 degrees"},
        headers={"Authorization": f"Bearer {access}"},
    )
    assert response.status == 201, await response.text()
    async with source.app[DB_SESSIONMAKER].begin() as session:
        session.add(
            UsageRecord(
                id="req-backup-1",
                request_id="req-backup-1",
                user_id=user_id,
                installation_id=installation_id,
                model="claude-haiku-5-5",
                output_tokens=42,
                counts_as_message=True,
                completed=True,
                key_source="installation",
            )
        )
    before = await snapshot(source)
    assert before["keys"] == [OWN_KEY]

    # Taken while the source app is running (its engine and pool are open).
    backup_file = tmp_path / "homemind.backup"
    backup_database(source_settings, backup_file)
    assert stat.S_IMODE(os.stat(backup_file).st_mode) == 0o600

    fresh_settings = server_settings.model_copy(update={"database_url": fresh_url})
    restore_database(fresh_settings, backup_file)
    restored = await make_app(fresh_settings)
    after = await snapshot(restored)
    assert after == before
    assert after["keys"] == [OWN_KEY]  # still decryptable with the same key ring
    # The restored account works through the API.
    response = await restored.get("/api/memory", headers={"Authorization": f"Bearer {access}"})
    assert [m["content"] for m in await response.json()] == ["Ana likes the bedroom at 19 degrees"]


async def test_restore_refuses_a_backup_of_the_other_engine(
    server_settings: Settings, tmp_path: Path
) -> None:
    not_sqlite = tmp_path / "dump"
    not_sqlite.write_bytes(b"PGDMP\x01\x0e\x00")
    with pytest.raises(ConfigError, match="not a SQLite backup"):
        restore_database(server_settings, not_sqlite)
