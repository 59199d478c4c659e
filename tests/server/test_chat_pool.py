"""More chat streams at once than the database pool has connections, on one instance.

A chat turn takes a connection only for each short query (authentication, recall, the
usage row), never while Claude answers: streams that outnumber the pool all complete,
each recorded once. Were a connection held for a stream's length, the third stream
here would wait longer than the pool timeout for one and fail with 503.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select

from cloud_server.billing.models import UsageRecord
from cloud_server.db.engine import DB_SESSIONMAKER
from cloud_server.settings import Settings
from tests.fakes.claude import FakeClaude, text
from tests.server.chat_helpers import on_fake_claude, read_sse
from tests.server.conftest import MakeApp

STREAMS = 8
ANSWER = " ".join(f"word{i}" for i in range(20))


@pytest.fixture
async def slow_claude() -> AsyncIterator[FakeClaude]:
    # Each answer streams for about 2.5 s: longer than the pool timeout below.
    async with FakeClaude(time_to_first_token=0.6, token_delay=0.1) as claude:
        claude.responder = lambda _record: text(ANSWER)
        yield claude


async def test_streams_beyond_the_pool_size_all_complete_and_are_recorded_once(
    engine_settings: Settings,
    make_app: MakeApp,
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
    auth_headers: Callable[[str], dict[str, str]],
    slow_claude: FakeClaude,
) -> None:
    await _run(make_app, engine_settings, slow_claude, create_installation, auth_headers)


async def _run(
    make_app: MakeApp,
    engine_settings: Settings,
    slow_claude: FakeClaude,
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
    auth_headers: Callable[[str], dict[str, str]],
) -> None:
    settings = on_fake_claude(engine_settings, slow_claude).model_copy(
        update={
            "db_pool_size": 2,
            "db_max_overflow": 0,
            "db_pool_timeout": 2.0,
            "memory_embedder": "none",
            "memory_extraction": False,
        }
    )
    client = await make_app(settings)
    made = [await create_installation(client=client) for _ in range(STREAMS)]
    tokens = [token for _, token in made]

    async def stream(token: str) -> tuple[int, list[Any]]:
        response = await client.post(
            "/api/chat/stream", json={"message": "hi"}, headers=auth_headers(token)
        )
        return response.status, await read_sse(response)

    results = await asyncio.gather(*(stream(token) for token in tokens))

    for status, events in results:
        assert status == 200
        assert events[-1].name == "done", events[-1]
        assert "".join(e.data["text"] for e in events if e.name == "text_delta") == ANSWER
    # One usage row per stream (the PostgreSQL database is the session's: only ours count).
    installations = {installation_id for installation_id, _ in made}
    async with client.app[DB_SESSIONMAKER]() as session:
        rows = (
            await session.scalars(
                select(UsageRecord).where(UsageRecord.installation_id.in_(installations))
            )
        ).all()
    assert len(rows) == STREAMS
    assert all(row.completed for row in rows)
    assert len({row.request_id for row in rows}) == STREAMS
