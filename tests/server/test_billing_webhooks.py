"""Stripe webhooks: signature checks, once-only application, order safety.

docs/security-checklist.md rows 13-15.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select

from cloud_server.billing.models import StripeEvent, Subscription
from cloud_server.db.engine import DB_SESSIONMAKER
from cloud_server.db.models import User
from cloud_server.settings import Settings
from tests.fakes.stripe_api import (
    WEBHOOK_SECRET,
    FakeStripe,
    event,
    signed,
    subscription_object,
)
from tests.server.metrics_helpers import sample, scrape

PRICE_BYOK = "price_test_byok"
PRICE_MANAGED = "price_test_managed"
WEBHOOK = "/api/billing/webhook"


@pytest.fixture
async def stripe_fake() -> AsyncIterator[FakeStripe]:
    async with FakeStripe() as fake:
        yield fake


def billing_settings(base: Settings, fake: FakeStripe, **more: Any) -> Settings:
    return base.model_copy(
        update={
            "stripe_secret_key": SecretStr(fake.secret_key),
            "stripe_webhook_secret": SecretStr(WEBHOOK_SECRET),
            "stripe_price_byok": PRICE_BYOK,
            "stripe_price_managed": PRICE_MANAGED,
            "stripe_api_base": fake.base_url,
            **more,
        }
    )


@dataclass
class BillingEnv:
    client: TestClient[Any, Any]
    fake: FakeStripe
    user_id: str
    token: str

    async def deliver(self, payload: dict[str, Any], **sign: Any) -> tuple[int, dict[str, Any]]:
        body, headers = signed(payload, **sign)
        response = await self.client.post(WEBHOOK, data=body, headers=headers)
        return response.status, await response.json(content_type=None)

    async def subscription_rows(self) -> list[Subscription]:
        async with self.client.app[DB_SESSIONMAKER]() as session:
            return list((await session.execute(select(Subscription))).scalars())

    async def user_tier(self) -> str:
        async with self.client.app[DB_SESSIONMAKER]() as session:
            tier = await session.scalar(select(User.tier).where(User.id == self.user_id))
        assert isinstance(tier, str)
        return tier

    async def subscription(self) -> dict[str, Any]:
        response = await self.client.get(
            "/api/subscription", headers={"Authorization": f"Bearer {self.token}"}
        )
        assert response.status == 200
        data: dict[str, Any] = await response.json()
        return data


@pytest.fixture
async def billing_env(
    make_app: Callable[..., Awaitable[TestClient[Any, Any]]],
    server_settings: Settings,
    stripe_fake: FakeStripe,
    create_user: Callable[..., Awaitable[tuple[str, str]]],
) -> BillingEnv:
    client = await make_app(billing_settings(server_settings, stripe_fake))
    user_id, token = await create_user(client=client)
    return BillingEnv(client, stripe_fake, user_id, token)


def sub_event(
    env: BillingEnv, kind: str, status: str, created: int, *, price: str = PRICE_MANAGED
) -> dict[str, Any]:
    obj = subscription_object(
        "sub_test_1", status=status, price=price, user_id=env.user_id, customer="cus_test_1"
    )
    return event(f"customer.subscription.{kind}", obj, created=created)


# ------------------------------------------------------------------ signature (row 13)


async def test_valid_signature_is_applied(billing_env: BillingEnv) -> None:
    status, body = await billing_env.deliver(sub_event(billing_env, "created", "active", 100))
    assert (status, body["result"]) == (200, "applied")
    assert await billing_env.user_tier() == "managed"


async def test_signature_older_than_300_seconds_is_refused(billing_env: BillingEnv) -> None:
    payload = sub_event(billing_env, "created", "active", 100)
    status, body = await billing_env.deliver(payload, timestamp=int(time.time()) - 301)
    assert status == 400
    assert body["code"] == "invalid_signature"
    assert await billing_env.subscription_rows() == []


async def test_signature_within_tolerance_is_accepted(billing_env: BillingEnv) -> None:
    payload = sub_event(billing_env, "created", "active", 100)
    status, _ = await billing_env.deliver(payload, timestamp=int(time.time()) - 240)
    assert status == 200


async def test_modified_body_is_refused(billing_env: BillingEnv) -> None:
    body, headers = signed(sub_event(billing_env, "created", "trialing", 100))
    tampered = body.replace('"trialing"', '"active"')
    response = await billing_env.client.post(WEBHOOK, data=tampered, headers=headers)
    assert response.status == 400
    assert await billing_env.subscription_rows() == []


async def test_missing_signature_header_is_refused(billing_env: BillingEnv) -> None:
    body = json.dumps(sub_event(billing_env, "created", "active", 100))
    response = await billing_env.client.post(
        WEBHOOK, data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    assert (await response.json(content_type=None))["code"] == "invalid_signature"


async def test_signature_with_another_secret_is_refused(billing_env: BillingEnv) -> None:
    status, _ = await billing_env.deliver(
        sub_event(billing_env, "created", "active", 100), secret="whsec_test_other"
    )
    assert status == 400
    assert await billing_env.user_tier() == "free"


async def test_live_event_on_a_test_key_is_ignored(billing_env: BillingEnv) -> None:
    payload = sub_event(billing_env, "created", "active", 100)
    payload["livemode"] = True
    status, body = await billing_env.deliver(payload)
    assert (status, body["result"]) == (200, "ignored")
    assert await billing_env.subscription_rows() == []


async def test_unknown_event_type_is_acknowledged_and_ignored(billing_env: BillingEnv) -> None:
    status, body = await billing_env.deliver(
        event("customer.created", {"id": "cus_test_9", "object": "customer"}, created=5)
    )
    assert (status, body["result"]) == (200, "ignored")


async def test_billing_routes_are_404_when_stripe_is_off(
    make_app: Callable[..., Awaitable[TestClient[Any, Any]]],
    create_user: Callable[..., Awaitable[tuple[str, str]]],
) -> None:
    client = await make_app()
    _, token = await create_user(client=client)
    body, headers = signed(event("invoice.paid", {"id": "in_1"}, created=1))
    assert (await client.post(WEBHOOK, data=body, headers=headers)).status == 404
    auth = {"Authorization": f"Bearer {token}"}
    checkout = await client.post("/api/billing/checkout", json={"plan": "byok"}, headers=auth)
    assert checkout.status == 404
    assert (await client.post("/api/billing/portal", headers=auth)).status == 404


# ------------------------------------------------------------------ once only (row 14)


async def test_duplicate_delivery_changes_nothing(billing_env: BillingEnv) -> None:
    created = sub_event(billing_env, "created", "active", 100)
    assert (await billing_env.deliver(created))[1]["result"] == "applied"
    canceled = sub_event(billing_env, "deleted", "canceled", 200)
    assert (await billing_env.deliver(canceled))[1]["result"] == "applied"
    # A re-delivery of the first event (new signature, same id) is a no-op.
    status, body = await billing_env.deliver(created)
    assert (status, body["result"]) == (200, "duplicate")
    (row,) = await billing_env.subscription_rows()
    assert row.status == "canceled"
    async with billing_env.client.app[DB_SESSIONMAKER]() as session:
        count = await session.scalar(select(func.count()).select_from(StripeEvent))
    assert count == 2
    samples = await scrape(billing_env.client)
    assert sample(samples, "homemind_webhook_events_total", result="applied") == 2
    assert sample(samples, "homemind_webhook_events_total", result="duplicate") == 1


async def test_failed_event_stores_nothing_and_succeeds_on_retry(
    billing_env: BillingEnv,
) -> None:
    # checkout.session.completed needs the subscription from Stripe; the fake does not know
    # it yet, so the first delivery fails and must leave no trace (Stripe retries).
    completed = event(
        "checkout.session.completed",
        {
            "id": "cs_test_1",
            "object": "checkout.session",
            "client_reference_id": billing_env.user_id,
            "customer": "cus_test_1",
            "subscription": "sub_test_1",
            "mode": "subscription",
        },
        created=100,
    )
    status, _ = await billing_env.deliver(completed)
    assert status >= 500
    async with billing_env.client.app[DB_SESSIONMAKER]() as session:
        assert await session.scalar(select(func.count()).select_from(StripeEvent)) == 0
    assert await billing_env.subscription_rows() == []

    billing_env.fake.subscriptions["sub_test_1"] = subscription_object(
        "sub_test_1", status="trialing", price=PRICE_BYOK, customer="cus_test_1"
    )
    status, body = await billing_env.deliver(completed)
    assert (status, body["result"]) == (200, "applied")
    assert await billing_env.user_tier() == "byok"
    assert (await billing_env.subscription())["status"] == "trialing"


# ------------------------------------------------------------------ order (row 15)


async def test_late_update_never_resurrects_a_deleted_subscription(
    billing_env: BillingEnv,
) -> None:
    await billing_env.deliver(sub_event(billing_env, "created", "active", 100))
    await billing_env.deliver(sub_event(billing_env, "deleted", "canceled", 300))
    status, _ = await billing_env.deliver(sub_event(billing_env, "updated", "active", 200))
    assert status == 200
    # Even an update stamped later cannot bring a canceled subscription back.
    await billing_env.deliver(sub_event(billing_env, "updated", "active", 400))
    (row,) = await billing_env.subscription_rows()
    assert row.status == "canceled"
    assert await billing_env.user_tier() == "free"
    assert (await billing_env.subscription())["tier"] == "free"


def trial(env: BillingEnv, price: str) -> dict[str, Any]:
    """The subscription during its trial, on `price` (a plan change keeps the stage)."""
    return subscription_object(
        "sub_test_1",
        status="trialing",
        price=price,
        user_id=env.user_id,
        customer="cus_test_1",
        period_start=1_000,
    )


async def test_a_same_second_same_stage_tie_is_settled_by_stripe(
    billing_env: BillingEnv,
) -> None:
    # The user switched from Managed to BYOK during the trial: Stripe sent both updates
    # stamped with the same second, and they arrive in the wrong order.
    managed, byok = trial(billing_env, PRICE_MANAGED), trial(billing_env, PRICE_BYOK)
    billing_env.fake.subscriptions["sub_test_1"] = byok
    await billing_env.deliver(event("customer.subscription.created", managed, created=100))
    await billing_env.deliver(event("customer.subscription.updated", byok, created=200))
    await billing_env.deliver(event("customer.subscription.updated", managed, created=200))
    assert len(billing_env.fake.calls_to("/v1/subscriptions/sub_test_1")) == 1
    assert await billing_env.user_tier() == "byok"
    assert (await billing_env.subscription())["tier"] == "byok"
    # A second event of that second saying what is stored already asks Stripe nothing.
    await billing_env.deliver(event("customer.subscription.trial_will_end", byok, created=200))
    assert len(billing_env.fake.calls_to("/v1/subscriptions/sub_test_1")) == 1
    (row,) = await billing_env.subscription_rows()
    assert (row.status, row.price_id, row.state_at) == ("trialing", PRICE_BYOK, 200)


async def test_a_tie_stripe_cannot_settle_keeps_the_first_applied(
    billing_env: BillingEnv, caplog: pytest.LogCaptureFixture
) -> None:
    managed, byok = trial(billing_env, PRICE_MANAGED), trial(billing_env, PRICE_BYOK)
    await billing_env.deliver(event("customer.subscription.updated", managed, created=200))
    # Stripe does not know it (a 404), then Stripe is unreachable: both answer 200 and keep
    # the first applied (no retry storm from Stripe for an event that is not wrong).
    status, body = await billing_env.deliver(
        event("customer.subscription.updated", byok, created=200)
    )
    assert (status, body["result"]) == (200, "applied")
    await billing_env.fake.__aexit__(None, None, None)
    with caplog.at_level("WARNING", logger="cloud_server.billing.webhooks"):
        status, body = await billing_env.deliver(
            event("customer.subscription.updated", byok, created=200)
        )
    assert (status, body["result"]) == (200, "applied")
    assert "could not say which is current (APIConnectionError)" in caplog.text
    assert await billing_env.user_tier() == "managed"


async def test_a_tie_stripe_has_moved_on_from_keeps_the_first_applied(
    billing_env: BillingEnv,
) -> None:
    managed, byok = trial(billing_env, PRICE_MANAGED), trial(billing_env, PRICE_BYOK)
    billing_env.fake.subscriptions["sub_test_1"] = {**byok, "status": "active"}
    await billing_env.deliver(event("customer.subscription.updated", managed, created=200))
    await billing_env.deliver(event("customer.subscription.updated", byok, created=200))
    assert len(billing_env.fake.calls_to("/v1/subscriptions/sub_test_1")) == 1
    (row,) = await billing_env.subscription_rows()
    assert (row.status, row.price_id) == ("trialing", PRICE_MANAGED)
    # The event of that move comes later and is applied as usual.
    await billing_env.deliver(
        event("customer.subscription.updated", {**byok, "status": "active"}, created=300)
    )
    assert (await billing_env.subscription())["tier"] == "byok"


LIFECYCLE = [
    ("created", "trialing", 100, PRICE_MANAGED),
    ("updated", "active", 200, PRICE_MANAGED),
    ("updated", "past_due", 300, PRICE_BYOK),
    ("deleted", "canceled", 400, PRICE_BYOK),
]
UPGRADE = [
    ("created", "trialing", 100, PRICE_BYOK),
    ("trial_will_end", "trialing", 150, PRICE_BYOK),
    ("updated", "active", 200, PRICE_BYOK),
    ("updated", "active", 300, PRICE_MANAGED),
]


@pytest.mark.parametrize(
    ("events", "final_status", "final_tier"),
    [(LIFECYCLE, "canceled", "free"), (UPGRADE, "active", "managed")],
    ids=["lifecycle", "upgrade"],
)
async def test_every_order_ends_in_the_state_of_the_latest_event(
    make_app: Callable[..., Awaitable[TestClient[Any, Any]]],
    server_settings: Settings,
    stripe_fake: FakeStripe,
    create_user: Callable[..., Awaitable[tuple[str, str]]],
    events: list[tuple[str, str, int, str]],
    final_status: str,
    final_tier: str,
) -> None:
    client = await make_app(billing_settings(server_settings, stripe_fake))
    orders = list(itertools.permutations(range(len(events))))
    assert len(orders) == 24
    for order in orders:
        # A new user (and subscription) per order, all in one app: states never mix.
        user_id, token = await create_user(client=client)
        env = BillingEnv(client, stripe_fake, user_id, token)
        sub_id = f"sub_test_{'_'.join(map(str, order))}"
        built = [
            event(
                f"customer.subscription.{kind}",
                subscription_object(sub_id, status=status, price=price, user_id=user_id),
                created=created,
            )
            for kind, status, created, price in events
        ]
        for index in order:
            assert (await env.deliver(built[index]))[0] == 200
        # Duplicates of everything, in reverse, change nothing.
        for index in reversed(order):
            assert (await env.deliver(built[index]))[1]["result"] == "duplicate"
        async with client.app[DB_SESSIONMAKER]() as session:
            row = await session.get(Subscription, sub_id)
        assert row is not None
        assert (row.status, row.state_at) == (final_status, events[-1][2]), order
        assert await env.user_tier() == final_tier, order
        assert (await env.subscription())["tier"] == final_tier, order


async def test_events_before_checkout_are_linked_to_the_user_later(
    billing_env: BillingEnv,
) -> None:
    # A subscription event without metadata, for a customer we do not know yet...
    obj = subscription_object(
        "sub_test_7", status="active", price=PRICE_BYOK, customer="cus_test_7"
    )
    await billing_env.deliver(event("customer.subscription.created", obj, created=100))
    assert await billing_env.user_tier() == "free"
    # ...belongs to the user once checkout.session.completed names them.
    completed = event(
        "checkout.session.completed",
        {
            "id": "cs_test_7",
            "object": "checkout.session",
            "client_reference_id": billing_env.user_id,
            "customer": "cus_test_7",
            "subscription": "sub_test_7",
            "mode": "subscription",
        },
        created=101,
    )
    assert (await billing_env.deliver(completed))[0] == 200
    assert await billing_env.user_tier() == "byok"
    assert billing_env.fake.calls_to("/v1/subscriptions/sub_test_7") == []


async def test_payment_failure_and_recovery(billing_env: BillingEnv) -> None:
    now = int(time.time())
    await billing_env.deliver(sub_event(billing_env, "created", "active", now - 100))
    invoice = {
        "id": "in_test_1",
        "object": "invoice",
        "customer": "cus_test_1",
        "attempt_count": 1,
        "parent": {"subscription_details": {"subscription": "sub_test_1"}},
    }
    await billing_env.deliver(event("invoice.payment_failed", invoice, created=now - 50))
    await billing_env.deliver(sub_event(billing_env, "updated", "past_due", now - 50))
    sub = await billing_env.subscription()
    assert sub["tier"] == "managed"
    assert sub["status"] == "past_due"
    assert sub["payment_failed"] is True
    assert sub["grace_until"] is not None
    await billing_env.deliver(event("invoice.paid", invoice, created=now - 10))
    await billing_env.deliver(sub_event(billing_env, "updated", "active", now - 10))
    sub = await billing_env.subscription()
    assert (sub["tier"], sub["status"], sub["payment_failed"], sub["grace_until"]) == (
        "managed",
        "active",
        False,
        None,
    )
