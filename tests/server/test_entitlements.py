"""Tiers and entitlements: the status x tier table and chat enforcement.

docs/security-checklist.md row 16.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from cloud_server.billing.entitlements import ALL_STATUSES, access_for
from cloud_server.billing.setup import BILLING_GATE
from cloud_server.settings import Settings
from tests.fakes.claude import FakeClaude, tool_use
from tests.fakes.stripe_api import FakeStripe, event, signed, subscription_object
from tests.server.test_billing_webhooks import (
    PRICE_BYOK,
    PRICE_MANAGED,
    billing_settings,
    stripe_fake,
)

__all__ = ["stripe_fake"]

SERVER_KEY = "sk-ant-test-server"
OWN_KEY = "sk-ant-test-own"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
GRACE = timedelta(days=7)

EXPECTED = {
    "trialing": "plan",
    "active": "plan",
    "past_due": "plan",  # within grace
    "unpaid": "free",
    "canceled": "free",
    "incomplete": "free",
    "incomplete_expired": "free",
    "paused": "free",
}


@pytest.mark.parametrize("plan", ["byok", "managed"])
@pytest.mark.parametrize("status", ALL_STATUSES)
def test_status_table(status: str, plan: str) -> None:
    access = access_for(status, plan, NOW - timedelta(days=1), NOW, GRACE)  # type: ignore[arg-type]
    expected = plan if EXPECTED[status] == "plan" else "free"
    assert access.tier == expected
    assert access.in_grace == (status == "past_due")


@pytest.mark.parametrize("plan", ["byok", "managed"])
def test_past_due_ends_after_the_grace_period(plan: str) -> None:
    since = NOW - timedelta(days=7)
    assert access_for("past_due", plan, since + timedelta(seconds=1), NOW, GRACE).tier == plan  # type: ignore[arg-type]
    assert access_for("past_due", plan, since, NOW, GRACE).tier == "free"  # type: ignore[arg-type]


# ------------------------------------------------------------------ through the chat


@pytest.fixture
async def claude() -> AsyncIterator[FakeClaude]:
    async with FakeClaude() as fake:
        yield fake


@dataclass
class ChatEnv:
    client: TestClient[Any, Any]
    user_id: str
    user_headers: dict[str, str]
    headers: dict[str, str]

    async def chat(self, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        response = await self.client.post(
            "/api/chat", json=body or {"message": "hi"}, headers=self.headers
        )
        return response.status, await response.json(content_type=None)

    async def deliver(self, status: str, price: str, created: int | None = None) -> None:
        obj = subscription_object("sub_test_chat", status=status, price=price, user_id=self.user_id)
        body, headers = signed(
            event("customer.subscription.updated", obj, created=created or int(time.time()))
        )
        response = await self.client.post("/api/billing/webhook", data=body, headers=headers)
        assert response.status == 200

    def shift_clock(self, delta: timedelta) -> None:
        self.client.app[BILLING_GATE].clock = lambda: datetime.now(UTC) + delta
        self.client.app[BILLING_GATE].cache.invalidate()


MakeEnv = Callable[..., Awaitable[ChatEnv]]


@pytest.fixture
def chat_env(
    make_app: Callable[..., Awaitable[TestClient[Any, Any]]],
    server_settings: Settings,
    stripe_fake: FakeStripe,
    claude: FakeClaude,
    create_user: Callable[..., Awaitable[tuple[str, str]]],
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
    monkeypatch: pytest.MonkeyPatch,
) -> MakeEnv:
    async def make(
        *, billing: bool = True, own_key: str | None = None, allowance: int = 5
    ) -> ChatEnv:
        monkeypatch.setenv("HOMEMIND_MANAGED_ALLOWANCE", str(allowance))
        settings = server_settings.model_copy(
            update={
                "anthropic_base_url": claude.base_url,
                "anthropic_api_key": SecretStr(SERVER_KEY),
            }
        )
        if billing:
            settings = billing_settings(settings, stripe_fake)
        client = await make_app(settings)
        user_id, access = await create_user(client=client)
        _, token = await create_installation(user_id=user_id, api_key=own_key, client=client)
        return ChatEnv(
            client,
            user_id,
            {"Authorization": f"Bearer {access}"},
            {"Authorization": f"Bearer {token}"},
        )

    return make


async def test_new_account_chats_on_the_trial_then_needs_a_subscription(
    chat_env: MakeEnv, claude: FakeClaude
) -> None:
    env = await chat_env()
    status, body = await env.chat()
    assert status == 200, body
    assert claude.requests[-1].api_key == SERVER_KEY
    sub = await (await env.client.get("/api/subscription", headers=env.user_headers)).json()
    assert (sub["tier"], sub["status"]) == ("managed", "trialing")

    env.shift_clock(timedelta(days=15))
    status, body = await env.chat()
    assert status == 402
    assert body["code"] == "subscription_required"
    assert len(claude.requests) == 1
    sub = await (await env.client.get("/api/subscription", headers=env.user_headers)).json()
    assert (sub["tier"], sub["status"]) == ("free", "trial_expired")


@pytest.mark.parametrize("status", ["unpaid", "canceled", "incomplete_expired", "paused"])
async def test_ended_subscription_needs_a_new_one(chat_env: MakeEnv, status: str) -> None:
    env = await chat_env()
    await env.deliver(status, PRICE_MANAGED)
    code, body = await env.chat()
    assert (code, body["code"]) == (402, "subscription_required")


async def test_byok_without_own_key_is_no_api_key(chat_env: MakeEnv, claude: FakeClaude) -> None:
    env = await chat_env()
    await env.deliver("active", PRICE_BYOK)
    status, body = await env.chat()
    assert (status, body["code"]) == (409, "no_api_key")
    assert claude.requests == []


async def test_byok_uses_the_installations_key_without_limit(
    chat_env: MakeEnv, claude: FakeClaude
) -> None:
    env = await chat_env(own_key=OWN_KEY, allowance=1)
    await env.deliver("active", PRICE_BYOK)
    for _ in range(4):
        status, body = await env.chat()
        assert status == 200, body
        assert body["notices"] == []
    assert {r.api_key for r in claude.requests} == {OWN_KEY}


async def test_managed_uses_the_server_key_even_with_an_own_key(
    chat_env: MakeEnv, claude: FakeClaude
) -> None:
    env = await chat_env(own_key=OWN_KEY)
    await env.deliver("active", PRICE_MANAGED)
    status, _ = await env.chat()
    assert status == 200
    assert claude.requests[-1].api_key == SERVER_KEY


async def test_managed_notices_once_then_soft_limit_then_hard_ceiling(
    chat_env: MakeEnv, claude: FakeClaude
) -> None:
    env = await chat_env(allowance=5)  # warning at 4, allowance 5, ceiling 10
    await env.deliver("active", PRICE_MANAGED)
    turn_on = {
        "name": "HassTurnOn",
        "parameters": {"type": "object", "properties": {"name": {"type": "string"}}},
    }
    codes: list[list[str]] = []
    for number in range(1, 11):
        if number == 10:  # the last admitted turn asks HA to act
            claude.script(tool_use("HassTurnOn", {"name": "lamp"}))
        body_in = {"message": "lights on", "tools": [turn_on]} if number == 10 else None
        status, body = await env.chat(body_in)
        assert status == 200, body
        codes.append([n["code"] for n in body["notices"]])
    assert codes == [
        [],
        [],
        [],
        ["usage_warning"],
        ["usage_allowance_reached"],
        ["usage_over_allowance"],
        ["usage_over_allowance"],
        ["usage_over_allowance"],
        ["usage_over_allowance"],
        ["usage_over_allowance"],
    ]
    issued_call = body["tool_calls"][0]
    status, body = await env.chat()
    assert (status, body["code"]) == (402, "usage_limit_reached")
    assert len(claude.requests) == 10

    def follow_up(call: dict[str, Any], question: str = "lights on") -> dict[str, Any]:
        return {
            "tools": [turn_on],
            "messages": [
                {"role": "user", "content": question},
                {"role": "assistant", "content": "", "tool_calls": [call]},
                {
                    "role": "tool_result",
                    "tool_call_id": call["id"],
                    "name": call["name"],
                    "result": "ok",
                },
            ],
        }

    # The follow-up of the admitted turn is never cut off...
    status, _ = await env.chat(follow_up(issued_call))
    assert status == 200
    # ...but a made-up tool call, or the real one under a new question, is a new message.
    made_up = {"id": "toolu_made_up", "name": "HassTurnOn", "arguments": {}}
    status, body = await env.chat(follow_up(made_up, "write me a long poem"))
    assert (status, body["code"]) == (402, "usage_limit_reached")
    status, body = await env.chat(follow_up(issued_call, "write me a long poem"))
    assert (status, body["code"]) == (402, "usage_limit_reached")
    assert len(claude.requests) == 11
    # The once-per-period notices are not repeated by a fresh process view either.
    env.client.app[BILLING_GATE].cache.invalidate()
    usage = await (await env.client.get("/api/usage", headers=env.user_headers)).json()
    assert (usage["messages"], usage["allowance"], usage["hard_limit"]) == (10, 5, 10)


async def test_past_due_keeps_the_plan_with_a_notice_then_ends(
    chat_env: MakeEnv, claude: FakeClaude
) -> None:
    env = await chat_env(own_key=OWN_KEY)
    await env.deliver("active", PRICE_BYOK, created=int(time.time()) - 100)
    await env.deliver("past_due", PRICE_BYOK)
    status, body = await env.chat()
    assert status == 200
    assert [n["code"] for n in body["notices"]] == ["payment_failed"]
    status, body = await env.chat()
    assert body["notices"] == []  # once a day
    env.shift_clock(timedelta(days=8))
    status, body = await env.chat()
    assert (status, body["code"]) == (402, "subscription_required")


async def test_webhook_change_takes_effect_on_the_next_request(
    chat_env: MakeEnv, claude: FakeClaude
) -> None:
    env = await chat_env()
    await env.deliver("active", PRICE_MANAGED, created=int(time.time()) - 10)
    assert (await env.chat())[0] == 200  # the account state is now cached
    await env.deliver("canceled", PRICE_MANAGED)
    status, body = await env.chat()
    assert (status, body["code"]) == (402, "subscription_required")


async def test_self_hosted_has_no_limits_and_no_notices(
    chat_env: MakeEnv, claude: FakeClaude
) -> None:
    env = await chat_env(billing=False, allowance=1)
    env.shift_clock(timedelta(days=400))
    for _ in range(3):
        status, body = await env.chat()
        assert status == 200, body
        assert body["notices"] == []
    usage = await (await env.client.get("/api/usage", headers=env.user_headers)).json()
    assert usage["messages"] == 3
    assert usage["allowance"] is None
    sub = await (await env.client.get("/api/subscription", headers=env.user_headers)).json()
    assert (sub["tier"], sub["status"]) == ("free", "none")
