"""Usage recording: exactly once per request, also on disconnect and under concurrency (row 24)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from cloud_server.accounts.principal import InstallationPrincipal
from cloud_server.billing.models import UsageRecord
from cloud_server.billing.pricing import estimate_cost_micro_usd
from cloud_server.billing.setup import BILLING_GATE
from cloud_server.chat.hooks import ChatAccess, ChatOutcome
from cloud_server.db.engine import DB_SESSIONMAKER
from cloud_server.settings import Settings
from homemind_client.models import Usage
from tests.fakes.claude import FakeClaude, text
from tests.server.chat_helpers import on_fake_claude

SERVER_KEY = "sk-ant-test-server"


@pytest.fixture
async def claude() -> AsyncIterator[FakeClaude]:
    async with FakeClaude() as fake:
        yield fake


async def usage_rows(client: TestClient[Any, Any]) -> list[UsageRecord]:
    async with client.app[DB_SESSIONMAKER]() as session:
        return list((await session.execute(select(UsageRecord))).scalars())


def outcome(request_id: str, **usage: int) -> ChatOutcome:
    return ChatOutcome(
        request_id=request_id,
        model="claude-sonnet-4-5",
        usage=Usage(**usage),
        model_calls=1,
        counts_as_message=True,
        completed=True,
    )


async def test_concurrent_records_of_one_request_count_once(
    # First: the PostgreSQL database is made before the event loop fixtures start.
    engine_settings: Settings,
    make_app: Callable[..., Awaitable[TestClient[Any, Any]]],
    create_user: Callable[..., Awaitable[tuple[str, str]]],
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
) -> None:
    client = await make_app(engine_settings)
    user_id, _ = await create_user(client=client)
    installation_id, _ = await create_installation(user_id=user_id, client=client)
    principal = InstallationPrincipal(installation_id, user_id, "Home", False)
    gate = client.app[BILLING_GATE]
    access = ChatAccess(api_key=SERVER_KEY, key_source="server", context={"usage_id": "u" * 32})
    done = outcome("req-concurrent-1", input_tokens=100, output_tokens=20)

    results = await asyncio.gather(*(gate.record_usage(principal, access, done) for _ in range(8)))
    assert sorted(results) == [False] * 7 + [True]
    async with client.app[DB_SESSIONMAKER]() as session:
        count = await session.scalar(
            select(func.count()).select_from(UsageRecord).where(UsageRecord.user_id == user_id)
        )
    assert count == 1


async def test_a_repeated_client_request_id_still_counts_each_request(
    make_app: Callable[..., Awaitable[TestClient[Any, Any]]],
    server_settings: Settings,
    claude: FakeClaude,
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
) -> None:
    settings = on_fake_claude(server_settings, claude)
    client = await make_app(settings)
    _, token = await create_installation(client=client)
    headers = {"Authorization": f"Bearer {token}", "X-Request-ID": "same-id-every-time"}
    for _ in range(3):
        response = await client.post("/api/chat", json={"message": "hi"}, headers=headers)
        assert response.status == 200
    rows = await usage_rows(client)
    assert len(rows) == 3
    assert {r.request_id for r in rows} == {"same-id-every-time"}


async def test_disconnect_mid_stream_is_recorded_once(
    make_app: Callable[..., Awaitable[TestClient[Any, Any]]],
    server_settings: Settings,
    claude: FakeClaude,
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
) -> None:
    settings = on_fake_claude(server_settings, claude)
    client = await make_app(settings)
    installation_id, token = await create_installation(client=client)
    claude.token_delay = 0.05
    claude.script(text(" ".join(["word"] * 200), input_tokens=40))

    response = await client.post(
        "/api/chat/stream",
        json={"message": "talk a lot"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status == 200
    line = await response.content.readline()
    assert line.startswith(b"event:")
    response.close()  # the client goes away mid-answer

    async with asyncio.timeout(10):
        # The database row is what a user sees: poll for it.
        while not (rows := await usage_rows(client)):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    rows = await usage_rows(client)
    assert len(rows) == 1
    (row,) = rows
    assert row.installation_id == installation_id
    assert row.completed is False
    assert row.error_code == "client_disconnected"
    assert row.counts_as_message is True  # tokens were spent on it
    assert row.input_tokens == 40


async def test_usage_report_per_day_and_installation_and_installation_info(
    make_app: Callable[..., Awaitable[TestClient[Any, Any]]],
    server_settings: Settings,
    claude: FakeClaude,
    create_user: Callable[..., Awaitable[tuple[str, str]]],
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
) -> None:
    settings = on_fake_claude(server_settings, claude)
    client = await make_app(settings)
    user_id, access = await create_user(client=client)
    kitchen, kitchen_token = await create_installation(user_id, "Kitchen", client=client)
    cabin, cabin_token = await create_installation(user_id, "Cabin", client=client)
    claude.script(
        text("One.", input_tokens=100, output_tokens=10),
        text("Two.", input_tokens=100, output_tokens=10),
        text("Three.", input_tokens=1000, output_tokens=50, cache_read_input_tokens=500),
    )
    for token in (kitchen_token, kitchen_token, cabin_token):
        response = await client.post(
            "/api/chat", json={"message": "hi"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status == 200

    response = await client.get("/api/usage", headers={"Authorization": f"Bearer {access}"})
    assert response.status == 200
    usage = await response.json()
    assert usage["messages"] == 3
    assert usage["allowance"] is None  # self-hosted: unlimited
    assert usage["tokens"]["input_tokens"] == 1200
    assert usage["tokens"]["cache_read_input_tokens"] == 500
    (model,) = {row.model for row in await usage_rows(client)}
    expected_cost = sum(
        estimate_cost_micro_usd(model, u)
        for u in (
            Usage(input_tokens=100, output_tokens=10),
            Usage(input_tokens=100, output_tokens=10),
            Usage(input_tokens=1000, output_tokens=50, cache_read_input_tokens=500),
        )
    )
    assert usage["estimated_cost_usd"] == pytest.approx(expected_cost / 1_000_000)
    assert usage["estimated_cost_usd"] > 0
    assert len(usage["per_day"]) == 1
    assert usage["per_day"][0]["messages"] == 3
    per_installation = {i["name"]: i for i in usage["per_installation"]}
    assert per_installation["Kitchen"]["messages"] == 2
    assert per_installation["Kitchen"]["installation_id"] == kitchen
    assert per_installation["Cabin"]["installation_id"] == cabin
    assert per_installation["Cabin"]["tokens"]["input_tokens"] == 1000

    # The installation reads the account's figures (the allowance is per account).
    response = await client.get(
        "/api/installation", headers={"Authorization": f"Bearer {cabin_token}"}
    )
    info = await response.json()
    assert info["usage"]["messages"] == 3
    assert info["subscription"]["status"] == "none"
    assert info["tier"] == "free"


async def test_another_users_usage_is_not_visible(
    make_app: Callable[..., Awaitable[TestClient[Any, Any]]],
    server_settings: Settings,
    claude: FakeClaude,
    create_user: Callable[..., Awaitable[tuple[str, str]]],
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
) -> None:
    settings = on_fake_claude(server_settings, claude)
    client = await make_app(settings)
    _, token = await create_installation(client=client)
    await client.post(
        "/api/chat", json={"message": "hi"}, headers={"Authorization": f"Bearer {token}"}
    )
    _, other = await create_user(client=client)
    usage = await (
        await client.get("/api/usage", headers={"Authorization": f"Bearer {other}"})
    ).json()
    assert (usage["messages"], usage["per_installation"]) == (0, [])
    assert (await client.get("/api/usage")).status == 401


def test_price_table_covers_dated_model_ids() -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert estimate_cost_micro_usd("claude-sonnet-4-5-20250929", usage) == 18_000_000
    assert estimate_cost_micro_usd("claude-haiku-4-5", usage) == 6_000_000
    assert estimate_cost_micro_usd("some-future-model", usage) == 18_000_000
