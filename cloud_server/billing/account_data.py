"""Billing's part of an account's export and deletion (see `accounts.lifecycle`).

Deletion cancels every live Stripe subscription first (at once, not at period end: the
account is going), then removes the customer link, subscriptions, usage and notices. The
trial grant stays as the SHA-256 of the address with its owner replaced by "deleted", so
a person still gets the sign-up trial only once (billing/models.py) while nothing links it
to the erased account.
"""

from __future__ import annotations

import logging
from typing import Any

import stripe
from aiohttp import web
from sqlalchemy import delete, select, update

from homemind_client.models import ErrorCode

from ..accounts.lifecycle import AccountDataHook, add_account_data_hook
from ..app_keys import SETTINGS
from ..db.engine import DB_SESSIONMAKER
from ..errors import ApiError
from .entitlements import TERMINAL_STATUSES
from .models import BillingCustomer, Subscription, TrialGrant, UsageNotice, UsageRecord
from .stripe_api import STRIPE_CLIENT

LOGGER = logging.getLogger(__name__)

DELETED_OWNER = "deleted"
BILLING_DOWN = "Billing is not reachable right now; try again."


def _iso(value: Any) -> Any:
    return value.isoformat() if value is not None else None


async def export_billing(app: web.Application, user_id: str) -> dict[str, Any]:
    async with app[DB_SESSIONMAKER]() as session:
        subs = (
            await session.execute(select(Subscription).where(Subscription.user_id == user_id))
        ).scalars()
        usage = (
            await session.execute(
                select(UsageRecord)
                .where(UsageRecord.user_id == user_id)
                .order_by(UsageRecord.created_at)
            )
        ).scalars()
        return {
            "subscriptions": [
                {
                    "id": s.id,
                    "status": s.status,
                    "plan": s.plan,
                    "current_period_end": _iso(s.current_period_end),
                    "trial_end": _iso(s.trial_end),
                }
                for s in subs
            ],
            "usage": [
                {
                    "created_at": _iso(u.created_at),
                    "installation_id": u.installation_id,
                    "model": u.model,
                    "input_tokens": u.input_tokens,
                    "output_tokens": u.output_tokens,
                    "counts_as_message": u.counts_as_message,
                    "estimated_cost_usd": u.cost_micro_usd / 1_000_000,
                }
                for u in usage
            ],
        }


async def erase_billing(app: web.Application, user_id: str) -> None:
    async with app[DB_SESSIONMAKER]() as session:
        live = list(
            (
                await session.execute(
                    select(Subscription.id).where(
                        Subscription.user_id == user_id,
                        Subscription.status.not_in(TERMINAL_STATUSES),
                    )
                )
            ).scalars()
        )
    if live and app[SETTINGS].billing_enabled:
        client = app[STRIPE_CLIENT]
        for subscription_id in live:
            try:
                await client.v1.subscriptions.cancel_async(subscription_id)
            except stripe.InvalidRequestError as err:
                if err.code != "resource_missing":  # already gone at Stripe: fine
                    raise ApiError(
                        ErrorCode.BILLING_UNAVAILABLE,
                        "Billing is not reachable right now; try again.",
                    ) from err
            except stripe.StripeError as err:
                LOGGER.error("Could not cancel a subscription: %s", type(err).__name__)
                raise ApiError(ErrorCode.BILLING_UNAVAILABLE, BILLING_DOWN) from err
    async with app[DB_SESSIONMAKER].begin() as session:
        await session.execute(delete(UsageRecord).where(UsageRecord.user_id == user_id))
        await session.execute(delete(UsageNotice).where(UsageNotice.user_id == user_id))
        await session.execute(delete(Subscription).where(Subscription.user_id == user_id))
        await session.execute(delete(BillingCustomer).where(BillingCustomer.user_id == user_id))
        await session.execute(
            update(TrialGrant).where(TrialGrant.user_id == user_id).values(user_id=DELETED_OWNER)
        )
    # The cached entitlement of the gone account must not linger.
    from .setup import BILLING_GATE

    if BILLING_GATE in app:
        app[BILLING_GATE].cache.invalidate(user_id)


def register_billing_account_data(app: web.Application) -> None:
    add_account_data_hook(app, AccountDataHook("billing", export_billing, erase_billing))
