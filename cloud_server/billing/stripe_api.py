"""The Stripe client (official SDK, async over aiohttp) and the calls billing makes with it.

The client lives for the application's lifetime (a `cleanup_ctx`), on its own aiohttp
session whose TLS context is built off the event loop. `STRIPE_API_BASE` points it at
another API base (a local fake in tests). Every POST carries an idempotency key, so a
retried request (ours or the SDK's) never creates a second customer or session.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, cast

import aiohttp
import stripe
from aiohttp import web

from ..app_keys import SETTINGS
from .config import BillingConfig

LOGGER = logging.getLogger(__name__)

STRIPE_CLIENT: web.AppKey[stripe.StripeClient] = web.AppKey("stripe_client", stripe.StripeClient)


class NoRedirectAIOHTTPClient(stripe.AIOHTTPClient):
    """The SDK's aiohttp client, refusing redirects (checklist row 34).

    aiohttp follows redirects by default, and the SDK resends its `Authorization` header:
    an answer pointing elsewhere would take our secret key there and hand its body back as
    Stripe's. Stripe's API never redirects, so a 3xx is an error here. Found by
    tests/server/test_outbound.py.
    """

    def _get_request_args_kwargs(
        self, method: str, url: str, headers: Any, post_data: Any
    ) -> tuple[Any, dict[str, Any]]:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        kwargs["allow_redirects"] = False
        return args, kwargs


def stripe_client_ctx(config: BillingConfig) -> Any:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        assert settings.stripe_secret_key is not None
        loop = asyncio.get_running_loop()
        ssl_context = await loop.run_in_executor(None, ssl.create_default_context)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl_context),
            timeout=aiohttp.ClientTimeout(total=config.stripe_timeout),
        )
        kwargs: dict[str, Any] = {}
        if settings.stripe_api_base:
            kwargs["base_addresses"] = {"api": settings.stripe_api_base.rstrip("/")}
        app[STRIPE_CLIENT] = stripe.StripeClient(
            settings.stripe_secret_key.get_secret_value(),
            http_client=NoRedirectAIOHTTPClient(session=session, timeout=None),
            max_network_retries=config.stripe_max_network_retries,
            **kwargs,
        )
        try:
            yield
        finally:
            await session.close()

    return ctx


def idempotency_key(kind: str, *parts: object) -> str:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:40]
    return f"homemind-{kind}-{digest}"


async def create_customer(client: stripe.StripeClient, user_id: str, email: str) -> str:
    customer = await client.v1.customers.create_async(
        params={"email": email, "metadata": {"user_id": user_id}},
        options={"idempotency_key": idempotency_key("customer", user_id)},
    )
    return str(customer.id)


async def create_checkout_session(
    client: stripe.StripeClient,
    *,
    user_id: str,
    customer_id: str,
    plan: str,
    price_id: str,
    public_url: str,
    trial_end: datetime | None,
    now: datetime,
) -> str:
    subscription_data: dict[str, Any] = {"metadata": {"user_id": user_id, "plan": plan}}
    if trial_end is not None:
        subscription_data["trial_end"] = int(trial_end.timestamp())
    params: dict[str, Any] = {
        "mode": "subscription",
        "customer": customer_id,
        "client_reference_id": user_id,
        "line_items": [{"price": price_id, "quantity": 1}],
        "success_url": f"{public_url}/billing?checkout=success&session_id={{CHECKOUT_SESSION_ID}}",
        "cancel_url": f"{public_url}/billing?checkout=cancel",
        "metadata": {"user_id": user_id, "plan": plan},
        "subscription_data": subscription_data,
    }
    # Same user, plan and terms within ten minutes (a double click, a retry): same session.
    key = idempotency_key(
        "checkout",
        user_id,
        customer_id,
        plan,
        price_id,
        trial_end.timestamp() if trial_end else None,
        int(now.timestamp()) // 600,
    )
    session = await client.v1.checkout.sessions.create_async(
        params=cast(Any, params), options={"idempotency_key": key}
    )
    return str(session.url)


async def create_portal_session(
    client: stripe.StripeClient, customer_id: str, public_url: str, request_id: str
) -> str:
    session = await client.v1.billing_portal.sessions.create_async(
        params={"customer": customer_id, "return_url": f"{public_url}/billing"},
        options={"idempotency_key": idempotency_key("portal", customer_id, request_id)},
    )
    return str(session.url)


async def retrieve_subscription(client: stripe.StripeClient, subscription_id: str) -> Any:
    subscription = await client.v1.subscriptions.retrieve_async(subscription_id)
    return subscription.to_dict()
