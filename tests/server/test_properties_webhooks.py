"""Property test of the Stripe webhook state machine (billing/webhooks.py, checklist rows
14 and 15): random subscription histories, delivered in random order with random
duplicates, over HTTP to the real server with real signatures.

The oracle is Stripe's own meaning, not our code: the entitlement after any delivery order
is the one Stripe's last event gives on its own, delivered alone to a fresh account; each
event is applied once (a duplicate answers `duplicate` and changes nothing), and the stored
event ids are exactly the distinct events. Within one second Stripe's lifecycle only moves
forward, so its last event is also the latest by (`created`, stage); two events of the same
second and the same stage (a price change during a trial, say) carry nothing that orders
them, and the server asks the fake Stripe for the subscription as it is now: the last event's.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from cloud_server.accounts import service
from cloud_server.accounts.app_keys import SERVER_SECRETS
from cloud_server.billing.models import StripeEvent, Subscription
from cloud_server.db.engine import DB_SESSIONMAKER
from cloud_server.settings import Settings
from tests.fakes.stripe_api import event, signed, subscription_object
from tests.live_server import STRIPE_WEBHOOK_SECRET, LiveStack

PRICES = ("price_byok_live", "price_managed_live")
# Stripe's lifecycle, earliest stage first (for two events of the same second).
STAGE = {
    "incomplete": 0,
    "trialing": 1,
    "active": 2,
    "past_due": 3,
    "unpaid": 4,
    "paused": 4,
    "canceled": 5,
    "incomplete_expired": 5,
}
LIVING = ("incomplete", "trialing", "active", "past_due", "unpaid", "paused")
# Long ago: a past-due grace period has run out whatever the order.
EPOCH = 1_700_000_000


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[str, int, str]]:
    """(status, created, price) of one subscription's events, in Stripe's order."""
    statuses = draw(st.lists(st.sampled_from(LIVING), min_size=1, max_size=5))
    if draw(st.booleans()):
        statuses.append(draw(st.sampled_from(("canceled", "incomplete_expired"))))
    created, out = EPOCH, []
    for status in statuses:
        created += draw(st.integers(0, 3))  # the same second happens
        out.append((status, created, draw(st.sampled_from(PRICES))))
    # Stripe's order: within one second the lifecycle moves forward (stable for equal stages).
    return sorted(out, key=lambda e: (e[1], STAGE[e[0]]))


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[tuple[str, int, str]], list[int]]:
    """A history and the order its events arrive in, duplicates included."""
    history = draw(histories())
    order = list(draw(st.permutations(range(len(history)))))
    for _ in range(draw(st.integers(0, len(history) * 2))):
        order.insert(draw(st.integers(0, len(order))), draw(st.integers(0, len(history) - 1)))
    return history, order


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    tmp: Path = tmp_path_factory.mktemp("webhook-properties")
    with LiveStack(
        Settings(
            data_dir=tmp,
            database_url=f"sqlite:///{tmp / 'homemind.db'}",
            mode="self-hosted",
            redis_url=None,
            smtp_host=None,
            public_url="http://homemind.test",
        )
    ) as live:
        yield live


def _user(stack: LiveStack) -> tuple[str, str]:
    async def create() -> tuple[str, str]:
        assert stack.app is not None
        async with stack.app[DB_SESSIONMAKER].begin() as session:
            user = await service.create_user(
                session, f"hook-{secrets.token_hex(5)}@example.test", None, "Hook"
            )
            tokens = await service.start_session(session, stack.app[SERVER_SECRETS].jwt, user)
        return user.id, tokens.access_token

    return stack.run(create())


def _events(history: list[tuple[str, int, str]], user_id: str) -> list[dict[str, Any]]:
    sub_id = f"sub_prop_{secrets.token_hex(6)}"
    customer = f"cus_prop_{secrets.token_hex(6)}"
    built = []
    for index, (status, created, price) in enumerate(history):
        kind = "created" if index == 0 else "deleted" if status == "canceled" else "updated"
        obj = subscription_object(
            sub_id, status=status, price=price, user_id=user_id, customer=customer
        )
        built.append(event(f"customer.subscription.{kind}", obj, created=created))
    return built


def _deliver(stack: LiveStack, payload: dict[str, Any]) -> str:
    body, headers = signed(payload, secret=STRIPE_WEBHOOK_SECRET)
    response = requests.post(
        f"{stack.base_url}/api/billing/webhook", data=body, headers=headers, timeout=30
    )
    assert response.status_code == 200, response.text
    return str(response.json()["result"])


def _tier(stack: LiveStack, access_token: str) -> tuple[str, str | None]:
    response = requests.get(
        f"{stack.base_url}/api/subscription",
        headers={"Authorization": f"Bearer {access_token}"},
        timeout=30,
    )
    assert response.status_code == 200
    body = response.json()
    return body["tier"], body.get("status")


def _stored(stack: LiveStack, sub_id: str, event_ids: set[str]) -> tuple[str, int]:
    async def read() -> tuple[str, int]:
        assert stack.app is not None
        async with stack.app[DB_SESSIONMAKER]() as session:
            row = await session.get(Subscription, sub_id)
            count = await session.scalar(
                select(func.count()).select_from(StripeEvent).where(StripeEvent.id.in_(event_ids))
            )
        assert row is not None
        return row.status, int(count or 0)

    return stack.run(read())


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(deliveries())
def test_any_order_with_duplicates_ends_in_the_latest_events_entitlement(
    stack: LiveStack, case: tuple[list[tuple[str, int, str]], list[int]]
) -> None:
    history, order = case
    # What Stripe's last event alone gives (a fresh account, that one event).
    alone_user, alone_token = _user(stack)
    assert _deliver(stack, _events(history, alone_user)[-1]) != "duplicate"
    expected = _tier(stack, alone_token)

    user_id, token = _user(stack)
    built = _events(history, user_id)
    # Stripe's current state, which the server asks for when a tie cannot be ordered.
    sub_id = built[0]["data"]["object"]["id"]
    stack.stripe.subscriptions[sub_id] = built[-1]["data"]["object"]
    delivered: set[int] = set()
    for index in order:
        result = _deliver(stack, built[index])
        # Applied once: the first delivery of an event is applied, every repeat is not.
        assert (result == "duplicate") is (index in delivered), (index, result)
        delivered.add(index)

    assert _tier(stack, token) == expected
    status, stored_events = _stored(stack, sub_id, {e["id"] for e in built})
    assert status == history[-1][0]
    assert stored_events == len(built)
