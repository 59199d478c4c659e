"""Checkout and portal against the fake Stripe API (docs/security-checklist.md row 23)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import delete

from cloud_server.billing.setup import BILLING_GATE
from cloud_server.db.engine import DB_SESSIONMAKER
from cloud_server.db.models import User
from cloud_server.settings import Settings
from tests.fakes.stripe_api import FakeStripe, event, subscription_object
from tests.server.test_billing_webhooks import (
    PRICE_BYOK,
    PRICE_MANAGED,
    BillingEnv,
    billing_env,
    billing_settings,
    stripe_fake,
)

__all__ = ["billing_env", "stripe_fake"]  # fixtures used here


def auth(env: BillingEnv) -> dict[str, str]:
    return {"Authorization": f"Bearer {env.token}"}


async def checkout(env: BillingEnv, plan: str, status: int = 200) -> dict[str, Any]:
    response = await env.client.post(
        "/api/billing/checkout", json={"plan": plan}, headers=auth(env)
    )
    body: dict[str, Any] = await response.json(content_type=None)
    assert response.status == status, body
    return body


async def test_checkout_creates_one_customer_and_a_subscription_session(
    billing_env: BillingEnv,
) -> None:
    body = await checkout(billing_env, "managed")
    assert body["url"].startswith("https://checkout.stripe.test/")

    (customer,) = billing_env.fake.calls_to("/v1/customers")
    assert customer.idempotency_key
    assert customer.params["metadata"]["user_id"] == billing_env.user_id
    assert customer.authorization == f"Bearer {billing_env.fake.secret_key}"
    (session,) = billing_env.fake.calls_to("/v1/checkout/sessions")
    assert session.idempotency_key
    params = session.params
    assert params["mode"] == "subscription"
    assert params["client_reference_id"] == billing_env.user_id
    assert params["customer"] == billing_env.fake.customers.popitem()[0]
    assert params["line_items"] == [{"price": PRICE_MANAGED, "quantity": "1"}]
    # The one 14-day trial, as an end date (so a retry asks for identical terms).
    trial_end = int(params["subscription_data"]["trial_end"])
    assert abs(trial_end - (datetime.now(UTC) + timedelta(days=14)).timestamp()) < 60
    assert "trial_period_days" not in params["subscription_data"]
    assert params["subscription_data"]["metadata"] == {
        "user_id": billing_env.user_id,
        "plan": "managed",
    }
    assert params["success_url"].startswith("http://homemind.test/")


async def test_second_checkout_reuses_the_customer_and_has_no_new_trial(
    billing_env: BillingEnv,
) -> None:
    await checkout(billing_env, "managed")
    # The trial window of the first checkout is over.
    billing_env.client.app[BILLING_GATE].clock = lambda: datetime.now(UTC) + timedelta(days=15)
    await checkout(billing_env, "byok")

    assert len(billing_env.fake.calls_to("/v1/customers")) == 1
    first, second = billing_env.fake.calls_to("/v1/checkout/sessions")
    assert first.params["customer"] == second.params["customer"]
    assert second.params["line_items"][0]["price"] == PRICE_BYOK
    assert "trial_period_days" not in second.params["subscription_data"]
    assert "trial_end" not in second.params["subscription_data"]
    assert first.idempotency_key != second.idempotency_key


async def test_checkout_during_the_trial_keeps_its_end_and_never_restarts_it(
    billing_env: BillingEnv,
) -> None:
    await checkout(billing_env, "managed")
    billing_env.client.app[BILLING_GATE].clock = lambda: datetime.now(UTC) + timedelta(days=3)
    await checkout(billing_env, "byok")
    first, second = billing_env.fake.calls_to("/v1/checkout/sessions")
    assert "trial_period_days" not in second.params["subscription_data"]
    trial_end = int(second.params["subscription_data"]["trial_end"])
    assert trial_end == int(first.params["subscription_data"]["trial_end"])
    # Ends when the one trial ends: 14 days after the first checkout, not after this one.
    expected = datetime.now(UTC) + timedelta(days=14)
    assert abs(trial_end - expected.timestamp()) < 60


async def test_trial_is_once_per_person_even_with_a_new_account(
    make_app: Callable[..., Awaitable[TestClient[Any, Any]]],
    server_settings: Settings,
    stripe_fake: FakeStripe,
    create_user: Callable[..., Awaitable[tuple[str, str]]],
) -> None:
    client = await make_app(billing_settings(server_settings, stripe_fake))
    user_id, token = await create_user(email="Pat.Doe@Example.test", client=client)
    first = BillingEnv(client, stripe_fake, user_id, token)
    await checkout(first, "managed")
    # The account is deleted (no API for it yet: as an operator would) and the same person
    # registers again with another spelling of the address.
    async with client.app[DB_SESSIONMAKER].begin() as session:
        await session.execute(delete(User).where(User.id == user_id))
    user_id, token = await create_user(email="pat.doe+again@example.TEST", client=client)
    second = BillingEnv(client, stripe_fake, user_id, token)
    client.app[BILLING_GATE].clock = lambda: datetime.now(UTC) + timedelta(days=20)
    await checkout(second, "managed")
    sessions = stripe_fake.calls_to("/v1/checkout/sessions")
    assert "trial_end" in sessions[0].params["subscription_data"]
    assert "trial_period_days" not in sessions[1].params["subscription_data"]
    assert "trial_end" not in sessions[1].params["subscription_data"]
    # No sign-up trial for the second account either.
    response = await client.get("/api/subscription", headers=auth(second))
    assert (await response.json())["tier"] == "free"


async def test_double_click_gets_the_same_session(billing_env: BillingEnv) -> None:
    one = await checkout(billing_env, "managed")
    two = await checkout(billing_env, "managed")
    assert one["url"] == two["url"]
    assert len(billing_env.fake.calls_to("/v1/checkout/sessions")) == 1


async def test_checkout_refused_while_a_subscription_is_live(billing_env: BillingEnv) -> None:
    obj = subscription_object(
        "sub_test_1", status="active", price=PRICE_BYOK, user_id=billing_env.user_id
    )
    await billing_env.deliver(event("customer.subscription.created", obj, created=100))
    body = await checkout(billing_env, "managed", status=409)
    assert body["code"] == "subscription_exists"
    assert billing_env.fake.calls_to("/v1/checkout/sessions") == []


async def test_checkout_validates_the_plan(billing_env: BillingEnv) -> None:
    body = await checkout(billing_env, "platinum", status=422)
    assert body["code"] == "validation_error"


async def test_checkout_needs_a_user(billing_env: BillingEnv) -> None:
    response = await billing_env.client.post("/api/billing/checkout", json={"plan": "byok"})
    assert response.status == 401


async def test_portal_is_for_the_users_own_customer(
    billing_env: BillingEnv, create_user: Callable[..., Awaitable[tuple[str, str]]]
) -> None:
    response = await billing_env.client.post("/api/billing/portal", headers=auth(billing_env))
    assert response.status == 409
    assert (await response.json())["code"] == "no_billing_account"

    await checkout(billing_env, "byok")
    (customer,) = billing_env.fake.customers
    response = await billing_env.client.post("/api/billing/portal", headers=auth(billing_env))
    assert response.status == 200
    assert (await response.json())["url"].startswith("https://billing.stripe.test/")
    (portal,) = billing_env.fake.calls_to("/v1/billing_portal/sessions")
    assert portal.params == {"customer": customer, "return_url": "http://homemind.test/billing"}
    assert portal.idempotency_key

    # Another user gets no portal for the first user's customer.
    _, other_token = await create_user(client=billing_env.client)
    response = await billing_env.client.post(
        "/api/billing/portal", headers={"Authorization": f"Bearer {other_token}"}
    )
    assert response.status == 409
    assert len(billing_env.fake.calls_to("/v1/billing_portal/sessions")) == 1


async def test_stripe_outage_is_a_503_not_a_crash(billing_env: BillingEnv) -> None:
    billing_env.fake.secret_key = "sk_test_rotated"  # our key is now refused
    body = await checkout(billing_env, "managed", status=503)
    assert body["code"] == "billing_unavailable"
