"""Fault: the database goes away mid-request and comes back (PostgreSQL and SQLite).

PostgreSQL: the shared server stays up; the server under test reaches it only through a
proxy this test cuts and restores (tests/fault_proxy.py). SQLite: another process holds the
database file's lock (exclusive locking mode, a write pending), as a backup tool or a
second server on the same file would.

Each case ends in a clear error: a 503 problem+json `database_unavailable` with
`Retry-After`, before anything was done (no call to Claude, no row); once the database is
back, the next request works without a restart. A database that goes away after the
answer was given loses nothing: the usage row is written once when it is back.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine.url import make_url

from cloud_server.billing.models import UsageRecord
from cloud_server.chat.hooks import CHAT_GATE
from cloud_server.db.engine import DB_SESSIONMAKER, PING_AFTER_IDLE
from cloud_server.memory.models import Memory
from cloud_server.settings import Settings
from homemind_client.models import PROBLEM_CONTENT_TYPE
from tests.fakes.claude import FakeClaude, RecordedRequest, Turn, text
from tests.fault_proxy import FaultProxy, database_behind_proxy
from tests.server.chat_helpers import on_fake_claude

CHAT = {"message": "Is the kitchen light on?"}


@pytest.fixture
async def claude() -> AsyncIterator[FakeClaude]:
    async with FakeClaude() as fake:
        yield fake


@pytest.fixture
async def pg_proxy() -> AsyncIterator[tuple[FaultProxy, str]]:
    """A database of this test's own on the shared PostgreSQL, reached through a proxy."""
    async with database_behind_proxy("homemind_fault") as database:
        yield database.proxy, database.url


class SqliteLock:
    """Another process holding the database's write lock (a transaction left open).

    In WAL mode readers carry on; every write waits out the busy timeout and fails."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None

    async def take(self) -> None:
        # In a thread: waiting for the server's own transactions must not block its loop.
        self._connection = await asyncio.to_thread(self._take)

    def _take(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path, isolation_level=None, timeout=30, check_same_thread=False
        )
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("CREATE TABLE IF NOT EXISTS fault_lock (x)")
        return connection

    async def release_soon(self) -> None:
        """Release after the server's next write attempt has met the lock at least once."""
        await asyncio.sleep(1)
        self.release()

    def release(self) -> None:
        if self._connection is not None:
            self._connection.rollback()
            self._connection.close()
            self._connection = None


@pytest.fixture
def sqlite_lock(server_settings: Settings) -> Iterator[SqliteLock]:
    path = make_url(server_settings.database_url).database
    assert path is not None
    lock = SqliteLock(Path(path))
    yield lock
    lock.release()


async def _usage(app: Any) -> list[UsageRecord]:
    async with app[DB_SESSIONMAKER]() as session:
        return list((await session.execute(select(UsageRecord))).scalars())


async def _assert_database_unavailable(response: Any) -> None:
    assert response.status == 503
    assert response.content_type == PROBLEM_CONTENT_TYPE
    assert response.headers["Retry-After"] == "2"
    body = await response.json()
    assert body["code"] == "database_unavailable"
    assert body["request_id"]
    assert "Traceback" not in body["detail"] and "sqlalchemy" not in body["detail"].lower()


async def _outage_then_recovery(
    client: Any,
    claude: FakeClaude,
    user_token: str,
    installation_token: str,
    break_db: Any,
    mend_db: Any,
) -> None:
    """The shared body of the two engines' "down mid-use, then back" test."""
    chat_headers = {"Authorization": f"Bearer {installation_token}"}
    user_headers = {"Authorization": f"Bearer {user_token}"}
    ok = await client.post("/api/chat", json=CHAT, headers=chat_headers)
    assert ok.status == 200, await ok.text()
    calls_before = len(claude.requests)

    await break_db()
    for path, headers, body in (
        ("/api/chat", chat_headers, CHAT),
        ("/api/chat/stream", chat_headers, CHAT),
        ("/api/memory", user_headers, {"content": "The cat is called Miso."}),
        ("/api/installations", user_headers, {"name": "Shed"}),
    ):
        await _assert_database_unavailable(await client.post(path, json=body, headers=headers))
    await _assert_database_unavailable(await client.get("/api/installations", headers=user_headers))
    # Refused before anything was done: Claude was never asked.
    assert len(claude.requests) == calls_before

    await mend_db()
    again = await client.post("/api/chat", json=CHAT, headers=chat_headers)
    assert again.status == 200, await again.text()
    listed = await client.get("/api/installations", headers=user_headers)
    assert listed.status == 200
    # Nothing the outage refused was stored: one installation, two answered chats.
    assert len(await listed.json()) == 1
    rows = await _usage(client.app)
    assert len(rows) == 2 and all(r.completed for r in rows)


async def test_postgres_cut_is_503_database_unavailable_then_recovers(
    make_app: Any,
    server_settings: Settings,
    pg_proxy: tuple[FaultProxy, str],
    claude: FakeClaude,
    create_user: Any,
    create_installation: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy, url = pg_proxy
    client = await make_app(
        on_fake_claude(server_settings, claude).model_copy(
            update={"database_url": url, "memory_extraction": False}
        )
    )
    user_id, user_token = await create_user(client=client)
    _, token = await create_installation(user_id=user_id, client=client)

    async def cut() -> None:
        proxy.cut()

    async def restore() -> None:
        proxy.restore()

    await _outage_then_recovery(client, claude, user_token, token, cut, restore)
    assert "Unhandled error" not in caplog.text


async def test_postgres_connections_dropped_while_idle_are_replaced_without_a_failure(
    make_app: Any,
    server_settings: Settings,
    pg_proxy: tuple[FaultProxy, str],
    claude: FakeClaude,
    create_user: Any,
    create_installation: Any,
) -> None:
    """A database restart between requests (every pooled connection reset): pooled
    connections idle for longer than `PING_AFTER_IDLE` are pinged before use, so the
    next request after a quiet moment gets a fresh connection, not a 503."""
    proxy, url = pg_proxy
    client = await make_app(
        on_fake_claude(server_settings, claude).model_copy(
            update={"database_url": url, "memory_extraction": False}
        )
    )
    user_id, user_token = await create_user(client=client)
    _, token = await create_installation(user_id=user_id, client=client)
    chat_headers = {"Authorization": f"Bearer {token}"}
    ok = await client.post("/api/chat", json=CHAT, headers=chat_headers)
    assert ok.status == 200, await ok.text()

    proxy.cut()  # resets every open connection, the pooled ones included
    proxy.restore()
    await asyncio.sleep(PING_AFTER_IDLE + 0.2)

    for _ in range(3):
        again = await client.post("/api/chat", json=CHAT, headers=chat_headers)
        assert again.status == 200, await again.text()
    listed = await client.get(
        "/api/installations", headers={"Authorization": f"Bearer {user_token}"}
    )
    assert listed.status == 200


async def test_sqlite_locked_writes_are_503_database_unavailable_then_recover(
    make_app: Any,
    server_settings: Settings,
    sqlite_lock: SqliteLock,
    claude: FakeClaude,
    create_user: Any,
    create_installation: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await make_app(
        on_fake_claude(server_settings, claude).model_copy(update={"memory_extraction": False})
    )
    user_id, user_token = await create_user(client=client)
    _, token = await create_installation(user_id=user_id, client=client)
    user_headers = {"Authorization": f"Bearer {user_token}"}
    chat_headers = {"Authorization": f"Bearer {token}"}

    await sqlite_lock.take()
    # A write waits out the busy timeout, then a clear 503; nothing was stored.
    await _assert_database_unavailable(
        await client.post("/api/installations", json={"name": "Shed"}, headers=user_headers)
    )
    memory = await client.post(
        "/api/memory", json={"content": "The cat is called Miso."}, headers=user_headers
    )
    assert memory.status == 503
    assert (await memory.json())["code"] == "memory_unavailable"
    # Reads carry on (WAL): the chat is answered; its usage row waits for the lock.
    listed = await client.get("/api/installations", headers=user_headers)
    assert listed.status == 200 and len(await listed.json()) == 1
    answered = await client.post("/api/chat", json=CHAT, headers=chat_headers)
    assert answered.status == 200, await answered.text()

    await sqlite_lock.release_soon()
    await client.app[CHAT_GATE].wait_stored()
    created = await client.post("/api/installations", json={"name": "Shed"}, headers=user_headers)
    assert created.status == 201
    remembered = await client.post(
        "/api/memory", json={"content": "The cat is called Miso."}, headers=user_headers
    )
    assert remembered.status in (200, 201)
    listed = await client.get("/api/installations", headers=user_headers)
    assert len(await listed.json()) == 2
    rows = await _usage(client.app)
    assert len(rows) == 1 and rows[0].completed
    async with client.app[DB_SESSIONMAKER]() as session:
        facts = await session.scalar(select(func.count()).select_from(Memory))
    assert facts == 1
    assert "Unhandled error" not in caplog.text


async def _gone_after_the_answer(
    client: Any, claude: FakeClaude, token: str, break_db: Any, mend_db: Any
) -> None:
    """The database goes while Claude answers: the answer arrives, the row once it is back."""

    async def answer(record: RecordedRequest) -> Turn:
        await break_db()
        return text("The kitchen light is on.")

    claude.responder = answer
    response = await client.post(
        "/api/chat/stream", json=CHAT, headers={"Authorization": f"Bearer {token}"}
    )
    body = await response.text()
    assert response.status == 200
    assert "event: done" in body and "The kitchen light is on." in body
    await mend_db()
    await client.app[CHAT_GATE].wait_stored()
    rows = await _usage(client.app)
    assert len(rows) == 1
    assert rows[0].completed is True and rows[0].counts_as_message is True
    assert rows[0].output_tokens > 0


async def test_postgres_gone_after_the_answer_counts_it_once_when_back(
    make_app: Any,
    server_settings: Settings,
    pg_proxy: tuple[FaultProxy, str],
    claude: FakeClaude,
    create_installation: Any,
) -> None:
    proxy, url = pg_proxy
    client = await make_app(
        on_fake_claude(server_settings, claude).model_copy(
            update={"database_url": url, "memory_extraction": False}
        )
    )
    _, token = await create_installation(client=client)

    async def cut() -> None:
        proxy.cut()

    async def restore() -> None:
        await asyncio.sleep(1)  # at least one failed attempt in between
        proxy.restore()

    await _gone_after_the_answer(client, claude, token, cut, restore)


async def test_sqlite_locked_after_the_answer_counts_it_once_when_free(
    make_app: Any,
    server_settings: Settings,
    sqlite_lock: SqliteLock,
    claude: FakeClaude,
    create_installation: Any,
) -> None:
    client = await make_app(
        on_fake_claude(server_settings, claude).model_copy(update={"memory_extraction": False})
    )
    _, token = await create_installation(client=client)

    async def lock() -> None:
        await sqlite_lock.take()

    await _gone_after_the_answer(client, claude, token, lock, sqlite_lock.release_soon)
