"""Billing routes: checkout, portal, webhook, subscription and usage.

`/api/billing/*` exist only when Stripe is configured (`STRIPE_SECRET_KEY`); otherwise they
answer 404 like any unknown path. `GET /api/subscription` and `GET /api/usage` always
exist: a self-hosted server reports `free`/`none` and its usage without an allowance.

Checkout decisions: one Stripe customer per user, created at the first checkout and
stored; a user with a live Stripe subscription is sent to the portal instead (409
`subscription_exists`) so nobody pays twice. The trial is one 14-day window per person
(`trial_grants`, started by the first checkout or the first use of the sign-up trial):
checkout passes that window's end as `subscription_data.trial_end` while at least 48 hours
of it remain (Stripe's minimum), so subscribing during the trial neither extends it nor
charges before it ends, and a retry or double click asks for identical terms (same
idempotency key, same session); after the window, checkout has no trial and charges now.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

import stripe
from aiohttp import web
from sqlalchemy import select

from homemind_client.models import ErrorCode, InstallationInfo, SubscriptionSummary, UsageSummary
from homemind_client.models.billing import (
    CheckoutRequest,
    SubscriptionResponse,
    TokenTotals,
    UrlResponse,
    UsageDay,
    UsageInstallation,
    UsageResponse,
)

from ..accounts.installation_info import CONTRIBUTORS, add_installation_info_contributor
from ..accounts.principal import InstallationPrincipal, require_user
from ..app_keys import SETTINGS
from ..bodies import json_model, read_model
from ..db.engine import DB_SESSIONMAKER
from ..db.models import User
from ..errors import ApiError, request_id_of
from ..observability.metrics import count_webhook_event
from .account_data import register_billing_account_data
from .entitlements import LIVE_STATUSES, PlanTier
from .gate import BILLING_CONFIG, BillingGate
from .models import BillingCustomer, Subscription
from .setup import BILLING_GATE
from .store import AccountState, claim_trial, email_key, insert_for, usage_rows
from .store import installation_names as load_installation_names
from .stripe_api import (
    STRIPE_CLIENT,
    create_checkout_session,
    create_customer,
    create_portal_session,
    retrieve_subscription,
)
from .webhooks import WebhookContext, apply_event

LOGGER = logging.getLogger(__name__)

WEBHOOK_TOLERANCE = 300
# Stripe refuses a `trial_end` less than 48 hours ahead.
_MIN_TRIAL_LEFT = timedelta(hours=48)


def _gate(request: web.Request) -> BillingGate:
    return request.app[BILLING_GATE]


def _now(request: web.Request) -> datetime:
    return _gate(request).now()


def _stripe(request: web.Request) -> stripe.StripeClient:
    return request.app[STRIPE_CLIENT]


def _upstream_error(err: stripe.StripeError) -> ApiError:
    LOGGER.error("Stripe call failed: %s (%s)", type(err).__name__, err.code)
    return ApiError(ErrorCode.BILLING_UNAVAILABLE, "Billing is not reachable right now; try again.")


async def checkout(request: web.Request) -> web.Response:
    user = await require_user(request)
    body = await read_model(request, CheckoutRequest)
    url = await start_checkout(request.app, user.user_id, body.plan)
    return json_model(UrlResponse(url=url))


async def start_checkout(app: web.Application, user_id: str, plan: str) -> str:
    """The Stripe Checkout URL for `plan` (shared by the API and the billing page)."""
    settings = app[SETTINGS]
    config = app[BILLING_CONFIG]
    client = app[STRIPE_CLIENT]
    price_id = settings.stripe_price_byok if plan == "byok" else settings.stripe_price_managed
    if not price_id:
        LOGGER.error("No Stripe price configured for plan %s", plan)
        raise ApiError(ErrorCode.BILLING_UNAVAILABLE, "This plan cannot be bought right now.")
    sessionmaker = app[DB_SESSIONMAKER]
    now = app[BILLING_GATE].now()
    async with sessionmaker() as session:
        subs = (
            await session.execute(
                select(Subscription.status).where(Subscription.user_id == user_id)
            )
        ).scalars()
        if any(status in LIVE_STATUSES for status in subs):
            raise ApiError(
                ErrorCode.SUBSCRIPTION_EXISTS,
                "This account already has a subscription; change it in the billing portal.",
            )
        customer_id = (
            await session.execute(
                select(BillingCustomer.stripe_customer_id).where(BillingCustomer.user_id == user_id)
            )
        ).scalar_one_or_none()
        email, verified_at = (
            await session.execute(
                select(User.email, User.email_verified_at).where(User.id == user_id)
            )
        ).one()
    try:
        if customer_id is None:
            created = await create_customer(client, user_id, email)
            async with sessionmaker.begin() as session:
                await session.execute(
                    insert_for(session, BillingCustomer)
                    .values(user_id=user_id, stripe_customer_id=created, created_at=now)
                    .on_conflict_do_nothing()
                )
                customer_id = (
                    await session.execute(
                        select(BillingCustomer.stripe_customer_id).where(
                            BillingCustomer.user_id == user_id
                        )
                    )
                ).scalar_one()
        trial_end: datetime | None = None
        # No trial before the address is confirmed (hosted sign-ups).
        if config.trial_days > 0 and verified_at is not None:
            async with sessionmaker.begin() as session:
                grant, _ = await claim_trial(
                    session,
                    user_id,
                    email=email,
                    started_at=now,
                    days=config.trial_days,
                    source="checkout",
                )
            # Always the grant's own end date: a retry or a double click asks for the same
            # terms (same idempotency key, same session), and no checkout extends the trial.
            if grant.user_id == user_id and grant.ends_at - now >= _MIN_TRIAL_LEFT:
                trial_end = grant.ends_at
        url = await create_checkout_session(
            client,
            user_id=user_id,
            customer_id=customer_id,
            plan=plan,
            price_id=price_id,
            public_url=settings.effective_public_url,
            trial_end=trial_end,
            now=now,
        )
    except stripe.StripeError as err:
        raise _upstream_error(err) from err
    return url


async def portal(request: web.Request) -> web.Response:
    user = await require_user(request)
    url = await portal_url(request.app, user.user_id, request_id_of(request) or "")
    return json_model(UrlResponse(url=url))


async def portal_url(app: web.Application, user_id: str, request_id: str) -> str:
    """The Stripe customer portal URL of the account (shared by the API and the page)."""
    async with app[DB_SESSIONMAKER]() as session:
        customer_id = (
            await session.execute(
                select(BillingCustomer.stripe_customer_id).where(BillingCustomer.user_id == user_id)
            )
        ).scalar_one_or_none()
    if customer_id is None:
        raise ApiError(
            ErrorCode.NO_BILLING_ACCOUNT, "This account has no billing history yet; choose a plan."
        )
    try:
        return await create_portal_session(
            app[STRIPE_CLIENT], customer_id, app[SETTINGS].effective_public_url, request_id
        )
    except stripe.StripeError as err:
        raise _upstream_error(err) from err


async def webhook(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    secret = settings.stripe_webhook_secret
    if secret is None:
        LOGGER.error("Stripe webhook received but STRIPE_WEBHOOK_SECRET is not set")
        raise ApiError(ErrorCode.BILLING_UNAVAILABLE, "Webhooks are not configured.")
    raw = await request.read()
    header = request.headers.get("Stripe-Signature")
    if not header:
        raise ApiError(ErrorCode.INVALID_SIGNATURE, "The Stripe-Signature header is missing.")
    try:
        payload = raw.decode("utf-8")
        stripe.WebhookSignature.verify_header(
            payload, header, secret.get_secret_value(), WEBHOOK_TOLERANCE
        )
        event: Any = json.loads(payload)
    except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as err:
        LOGGER.warning("Stripe webhook refused: %s", type(err).__name__)
        raise ApiError(ErrorCode.INVALID_SIGNATURE, "The webhook signature is not valid.") from err
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        raise ApiError(ErrorCode.INVALID_EVENT, "The webhook body is not a Stripe event.")
    live_key = settings.stripe_secret_key is not None and (
        settings.stripe_secret_key.get_secret_value().startswith(("sk_live_", "rk_live_"))
    )
    if bool(event.get("livemode")) != live_key:
        LOGGER.warning("Ignoring Stripe event %s: livemode does not match the key", event["id"])
        return web.json_response({"received": True, "result": "ignored"})
    config = request.app[BILLING_CONFIG]
    plans: dict[str, PlanTier] = {}
    if settings.stripe_price_byok:
        plans[settings.stripe_price_byok] = "byok"
    if settings.stripe_price_managed:
        plans[settings.stripe_price_managed] = "managed"
    client = request.app[STRIPE_CLIENT]

    async def retrieve(subscription_id: str) -> dict[str, Any]:
        return dict(await retrieve_subscription(client, subscription_id))

    ctx = WebhookContext(
        price_plans=plans,
        grace=timedelta(days=config.past_due_grace_days),
        retrieve_subscription=retrieve,
        now=_gate(request).now,
    )
    try:
        async with request.app[DB_SESSIONMAKER].begin() as session:
            result = await apply_event(session, event, ctx)
    except stripe.StripeError as err:
        # Nothing was stored: Stripe retries the event later.
        count_webhook_event(request.app, "failed")
        raise _upstream_error(err) from err
    except Exception:
        count_webhook_event(request.app, "failed")
        raise
    count_webhook_event(request.app, result)
    for user_id in ctx.changed_users:
        _gate(request).cache.invalidate(user_id)
    LOGGER.info("Stripe event %s (%s): %s", event["id"], event.get("type"), result)
    return web.json_response({"received": True, "result": result})


def subscription_response(state: AccountState) -> SubscriptionResponse:
    return SubscriptionResponse(
        tier=state.tier,
        status=state.status,
        current_period_end=state.current_period_end,
        cancel_at_period_end=state.cancel_at_period_end,
        trial_end=state.trial_end,
        grace_until=state.grace_until,
        plan=state.plan if state.plan in ("byok", "managed") else None,
        payment_failed=state.payment_failed,
    )


async def get_subscription(request: web.Request) -> web.Response:
    user = await require_user(request)
    state = await _gate(request).account_state(user.user_id, fresh=True)
    return json_model(subscription_response(state))


def _totals(row: Any) -> TokenTotals:
    return TokenTotals(
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        cache_read_input_tokens=row.cache_read_input_tokens,
        cache_creation_input_tokens=row.cache_creation_input_tokens,
    )


async def get_usage(request: web.Request) -> web.Response:
    user = await require_user(request)
    return json_model(await usage_report(request.app, user.user_id))


async def usage_report(app: web.Application, user_id: str) -> UsageResponse:
    """This period's usage of the account (shared by the API and the usage page)."""
    state = await app[BILLING_GATE].account_state(user_id, fresh=True)
    start, end = state.period_start, state.period_end
    async with app[DB_SESSIONMAKER]() as session:
        (total,) = await usage_rows(session, user_id, start, end, group="all")
        days = await usage_rows(session, user_id, start, end, group="day")
        per_installation = await usage_rows(session, user_id, start, end, group="installation")
        names = await load_installation_names(session, user_id)
    return UsageResponse(
        period_start=start,
        period_end=end,
        messages=total.messages,
        allowance=state.limits.allowance if state.limits else None,
        hard_limit=state.limits.hard_limit if state.limits else None,
        tokens=_totals(total),
        estimated_cost_usd=total.cost_micro_usd / 1_000_000,
        per_day=[
            UsageDay(
                date=row.key,
                messages=row.messages,
                tokens=_totals(row),
                estimated_cost_usd=row.cost_micro_usd / 1_000_000,
            )
            for row in days
        ],
        per_installation=[
            UsageInstallation(
                installation_id=row.key,
                name=names.get(row.key),
                messages=row.messages,
                tokens=_totals(row),
                estimated_cost_usd=row.cost_micro_usd / 1_000_000,
            )
            for row in sorted(per_installation, key=lambda r: -r.messages)
        ],
    )


async def installation_billing(
    request: web.Request, principal: InstallationPrincipal, info: InstallationInfo
) -> InstallationInfo:
    """Fill `subscription` and `usage` of `GET /api/installation` (account-wide figures)."""
    state = await _gate(request).account_state(principal.user_id)
    sub = subscription_response(state)
    return info.model_copy(
        update={
            "tier": state.tier,
            "subscription": SubscriptionSummary.model_validate(sub.model_dump()),
            "usage": UsageSummary(
                messages=state.messages,
                allowance=state.limits.allowance if state.limits else None,
                hard_limit=state.limits.hard_limit if state.limits else None,
                period_start=state.period_start,
                period_end=state.period_end,
            ),
        }
    )


def add_routes(app: web.Application) -> None:
    """The billing API, and billing's part of `GET /api/installation` (resources: `setup.py`)."""
    if CONTRIBUTORS not in app:
        app[CONTRIBUTORS] = []
    add_installation_info_contributor(app, installation_billing)
    register_billing_account_data(app)
    app.router.add_get("/api/subscription", get_subscription)
    app.router.add_get("/api/usage", get_usage)
    if not app[SETTINGS].billing_enabled:
        return
    app.router.add_post("/api/billing/checkout", checkout)
    app.router.add_post("/api/billing/portal", portal)
    app.router.add_post("/api/billing/webhook", webhook)


__all__ = ["add_routes", "email_key"]
