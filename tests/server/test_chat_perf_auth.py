"""The chat path reads the token and the installation's key on every request (nothing is
cached across requests): a revoked token or a changed key is seen by the very next chat."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from cloud_server.billing.models import UsageRecord
from cloud_server.db.engine import DB_SESSIONMAKER
from cloud_server.settings import Settings
from tests.fakes.claude import FakeClaude
from tests.server.chat_helpers import on_fake_claude

SERVER_KEY = "sk-ant-test-server"
OWN_KEY = "sk-ant-test-own"
OTHER_KEY = "sk-ant-test-other"


@pytest.fixture
async def claude() -> AsyncIterator[FakeClaude]:
    async with FakeClaude(default_text="Hello there.") as fake:
        yield fake


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def streamed_keys(claude: FakeClaude) -> list[str | None]:
    """The API key of each chat call Claude saw (memory extractions do not stream)."""
    return [r.api_key for r in claude.requests if r.stream]


async def chat(client: TestClient[Any, Any], token: str) -> tuple[int, str]:
    response = await client.post(
        "/api/chat/stream", json={"message": "hello"}, headers=bearer(token)
    )
    return response.status, await response.text()


async def test_a_deleted_installation_is_refused_on_the_very_next_chat(
    engine_settings: Settings,
    make_app: Callable[..., Awaitable[TestClient[Any, Any]]],
    create_user: Callable[..., Awaitable[tuple[str, str]]],
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
    claude: FakeClaude,
) -> None:
    settings = on_fake_claude(engine_settings, claude)
    client = await make_app(settings)
    user_id, access = await create_user(client=client)
    installation_id, token = await create_installation(user_id=user_id, client=client)

    status, body = await chat(client, token)
    assert status == 200 and "Hello there." in body
    deleted = await client.delete(f"/api/installations/{installation_id}", headers=bearer(access))
    assert deleted.status == 204

    calls_before = len(streamed_keys(claude))
    for path in ("/api/chat/stream", "/api/chat"):
        refused = await client.post(path, json={"message": "hello"}, headers=bearer(token))
        assert refused.status == 401
        assert (await refused.json())["code"] == "installation_revoked"
    assert len(streamed_keys(claude)) == calls_before  # Claude was not asked


async def test_a_changed_key_is_used_by_the_very_next_chat_and_recorded(
    engine_settings: Settings,
    make_app: Callable[..., Awaitable[TestClient[Any, Any]]],
    create_user: Callable[..., Awaitable[tuple[str, str]]],
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
    claude: FakeClaude,
) -> None:
    settings = on_fake_claude(engine_settings, claude)
    client = await make_app(settings)
    user_id, access = await create_user(client=client)
    installation_id, token = await create_installation(
        user_id=user_id, api_key=OWN_KEY, client=client
    )
    key_url = f"/api/installations/{installation_id}/key"

    assert (await chat(client, token))[0] == 200
    put = await client.put(key_url, json={"api_key": OTHER_KEY}, headers=bearer(access))
    assert put.status == 200
    assert (await chat(client, token))[0] == 200
    assert (await client.delete(key_url, headers=bearer(access))).status == 204
    assert (await chat(client, token))[0] == 200

    assert streamed_keys(claude) == [OWN_KEY, OTHER_KEY, SERVER_KEY]
    async with client.app[DB_SESSIONMAKER]() as session:
        rows = list(
            (
                await session.execute(
                    select(UsageRecord.key_source, UsageRecord.counts_as_message)
                    .where(UsageRecord.user_id == user_id)
                    .order_by(UsageRecord.created_at)
                )
            ).all()
        )
    assert [tuple(r) for r in rows] == [
        ("installation", True),
        ("installation", True),
        ("server", True),
    ]


async def test_a_key_that_cannot_be_decrypted_is_treated_as_absent(
    make_app: Callable[..., Awaitable[TestClient[Any, Any]]],
    server_settings: Settings,
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
    claude: FakeClaude,
) -> None:
    from cloud_server.db.models import Installation

    settings = on_fake_claude(server_settings, claude)
    client = await make_app(settings)
    installation_id, token = await create_installation(api_key=OWN_KEY, client=client)
    async with client.app[DB_SESSIONMAKER].begin() as session:
        row = await session.get(Installation, installation_id)
        assert row is not None and row.encrypted_api_key is not None
        # Bound to another installation: authentication of the envelope fails.
        row.encrypted_api_key = row.encrypted_api_key[:-4] + (
            "AAAA" if not row.encrypted_api_key.endswith("AAAA") else "BBBB"
        )

    status, body = await chat(client, token)
    assert status == 200 and "Hello there." in body
    assert streamed_keys(claude) == [SERVER_KEY]
