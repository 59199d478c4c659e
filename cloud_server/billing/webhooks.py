"""Applying Stripe webhook events: once each, in any order, with the latest state winning.

- Once: the event id is inserted into `stripe_events` (`ON CONFLICT DO NOTHING`) in the same
  transaction as its effect; a duplicate inserts nothing and changes nothing, and a failure
  rolls both back so Stripe's retry gets a clean second chance.
- Order: a subscription row keeps `state_at`, the `created` time of the event whose snapshot
  it holds. An older snapshot never overwrites a newer one; for two events of the same
  second the later stage of the lifecycle wins (incomplete < trialing < active < past_due <
  unpaid/paused < canceled/incomplete_expired). Two of the same second and the same stage
  that would store different values (a price change during a trial) carry nothing that
  orders them: then the subscription as Stripe has it now decides, if it is still at that
  stage (its own event follows otherwise); Stripe unreachable keeps the stored one.
  `canceled` and `incomplete_expired` are terminal in Stripe, so nothing resurrects such a
  subscription.
- The row is created with `INSERT ... ON CONFLICT DO NOTHING` and then read `FOR UPDATE`,
  which serialises concurrent events of one subscription on PostgreSQL (SQLite has one
  writer anyway).
- `past_due_since` (start of the grace period) is the first moment the subscription was seen
  `past_due`, i.e. the first failed renewal; it clears when the subscription leaves
  `past_due`.
- Who: `metadata.user_id` (set at checkout), else the customer's owner, else the
  `checkout.session.completed` event links it later.
- `users.tier` is updated in the same transaction to the effective tier at that moment; the
  gate itself always derives the tier from the subscription rows.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import stripe
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import User
from .entitlements import TERMINAL_STATUSES, PlanTier, access_for
from .models import BillingCustomer, StripeEvent, Subscription
from .store import insert_for, pick_subscription

LOGGER = logging.getLogger(__name__)

STATUS_RANK = {
    "incomplete": 0,
    "trialing": 1,
    "active": 2,
    "past_due": 3,
    "unpaid": 4,
    "paused": 4,
    "canceled": 5,
    "incomplete_expired": 5,
}
HANDLED = frozenset(
    {
        "checkout.session.completed",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.trial_will_end",
        "invoice.paid",
        "invoice.payment_failed",
    }
)

Retrieve = Callable[[str], Awaitable[dict[str, Any]]]


@dataclass(slots=True)
class WebhookContext:
    price_plans: dict[str, PlanTier]
    grace: timedelta
    retrieve_subscription: Retrieve | None = None
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    changed_users: set[str] = field(default_factory=set)


def _ts(value: Any) -> datetime | None:
    if isinstance(value, int | float) and value > 0:
        return datetime.fromtimestamp(value, UTC)
    return None


def _id(value: Any) -> str | None:
    """An expandable field: an id string or an object with an `id`."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return cast(str, value["id"])
    return None


def _first_item(obj: dict[str, Any]) -> dict[str, Any]:
    items = obj.get("items")
    data = items.get("data") if isinstance(items, dict) else None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return cast(dict[str, Any], data[0])
    return {}


async def _user_exists(session: AsyncSession, user_id: str | None) -> str | None:
    if not user_id:
        return None
    found = await session.execute(select(User.id).where(User.id == user_id))
    return user_id if found.first() is not None else None


async def _owner_of_customer(session: AsyncSession, customer_id: str | None) -> str | None:
    if not customer_id:
        return None
    found = await session.execute(
        select(BillingCustomer.user_id).where(BillingCustomer.stripe_customer_id == customer_id)
    )
    return found.scalar_one_or_none()


async def apply_event(session: AsyncSession, event: dict[str, Any], ctx: WebhookContext) -> str:
    """Apply one verified event inside the caller's transaction: applied/duplicate/ignored."""
    event_type = str(event.get("type", ""))
    if event_type not in HANDLED:
        return "ignored"
    event_id = str(event["id"])
    created = int(event.get("created") or 0)
    inserted = await session.execute(
        insert_for(session, StripeEvent)
        .values(id=event_id, type=event_type, created=created, received_at=ctx.now())
        .on_conflict_do_nothing(index_elements=["id"])
    )
    if cast(Any, inserted).rowcount != 1:
        return "duplicate"
    obj = cast(dict[str, Any], event.get("data", {}).get("object", {}))
    if event_type == "checkout.session.completed":
        await _checkout_completed(session, obj, created, ctx)
    elif event_type.startswith("customer.subscription."):
        await apply_subscription(session, obj, created, ctx)
    elif event_type == "invoice.payment_failed":
        await _invoice(session, obj, created, ctx, failed=True)
    elif event_type == "invoice.paid":
        await _invoice(session, obj, created, ctx, failed=False)
    return "applied"


def _plan_of(obj: dict[str, Any], ctx: WebhookContext) -> tuple[PlanTier | None, str | None]:
    price = _first_item(obj).get("price")
    price_id = _id(price)
    if price_id and price_id in ctx.price_plans:
        return ctx.price_plans[price_id], price_id
    metadata = obj.get("metadata") or {}
    plan = metadata.get("plan") if isinstance(metadata, dict) else None
    if plan in ("byok", "managed"):
        return cast(PlanTier, plan), price_id
    if price_id:
        LOGGER.warning("Subscription %s has an unknown price %s", obj.get("id"), price_id)
    return None, price_id


async def _locked_row(session: AsyncSession, subscription_id: str) -> Subscription:
    await session.execute(
        insert_for(session, Subscription)
        .values(id=subscription_id, status="incomplete", state_at=-1, updated_at=datetime.now(UTC))
        .on_conflict_do_nothing(index_elements=["id"])
    )
    row = (
        await session.execute(
            select(Subscription)
            .where(Subscription.id == subscription_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    return row


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """What a subscription row keeps of one Subscription object."""

    status: str
    plan: PlanTier | None
    price_id: str | None
    current_period_start: datetime | None
    current_period_end: datetime | None
    cancel_at_period_end: bool
    trial_end: datetime | None

    @classmethod
    def of(cls, obj: dict[str, Any], ctx: WebhookContext) -> _Snapshot:
        plan, price_id = _plan_of(obj, ctx)
        item = _first_item(obj)
        return cls(
            status=str(obj.get("status")),
            plan=plan,
            price_id=price_id,
            current_period_start=_ts(
                item.get("current_period_start", obj.get("current_period_start"))
            ),
            current_period_end=_ts(item.get("current_period_end", obj.get("current_period_end"))),
            cancel_at_period_end=bool(obj.get("cancel_at_period_end")),
            trial_end=_ts(obj.get("trial_end")),
        )

    def stored_in(self, row: Subscription) -> bool:
        """The row already holds exactly this (storing it again would change nothing)."""
        return (
            self.status == row.status
            and (self.plan or row.plan) == row.plan
            and (self.price_id or row.price_id) == row.price_id
            and self.current_period_start == row.current_period_start
            and self.current_period_end == row.current_period_end
            and self.cancel_at_period_end == row.cancel_at_period_end
            and self.trial_end == row.trial_end
        )


async def apply_subscription(
    session: AsyncSession, obj: dict[str, Any], created: int, ctx: WebhookContext
) -> None:
    """Store a subscription snapshot unless the row already holds a newer state."""
    subscription_id = _id(obj)
    status = obj.get("status")
    if not subscription_id or not isinstance(status, str):
        return
    row = await _locked_row(session, subscription_id)
    customer_id = _id(obj.get("customer"))
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    user_id = (
        row.user_id
        or await _user_exists(session, cast(dict[str, Any], metadata).get("user_id"))
        or await _owner_of_customer(session, customer_id)
    )
    if row.user_id is None and user_id is not None:
        row.user_id = user_id
    if customer_id and row.customer_id is None:
        row.customer_id = customer_id
    snapshot = await _winner(row, obj, status, created, ctx)
    if snapshot is not None:
        _store(row, snapshot, created, ctx)
    await session.flush()
    if row.user_id:
        await refresh_user_tier(session, row.user_id, ctx)


async def _winner(
    row: Subscription, obj: dict[str, Any], status: str, created: int, ctx: WebhookContext
) -> _Snapshot | None:
    """The snapshot to store (the event's, or Stripe's current one on a tie), or None."""
    if row.state_at >= 0 and row.status in TERMINAL_STATUSES:
        return None
    if created != row.state_at:
        return _Snapshot.of(obj, ctx) if created > row.state_at else None
    rank, stored_rank = STATUS_RANK.get(status, 0), STATUS_RANK.get(row.status, 0)
    if rank != stored_rank:
        return _Snapshot.of(obj, ctx) if rank > stored_rank else None
    if _Snapshot.of(obj, ctx).stored_in(row):
        return None
    return await _current_at_stage(row, rank, ctx)


async def _current_at_stage(row: Subscription, rank: int, ctx: WebhookContext) -> _Snapshot | None:
    """A same-second, same-stage tie: the subscription as Stripe has it now, if still at
    that stage. None keeps the stored snapshot (Stripe unreachable, or moved on: the event of
    that move follows and is later)."""
    if ctx.retrieve_subscription is None:
        return None
    try:
        current = _Snapshot.of(await ctx.retrieve_subscription(row.id), ctx)
    except stripe.StripeError as err:
        LOGGER.warning(
            "Subscription %s: two events of second %s at one stage, and Stripe could not "
            "say which is current (%s); keeping the first applied",
            row.id,
            row.state_at,
            type(err).__name__,
        )
        return None
    if STATUS_RANK.get(current.status, -1) != rank:
        LOGGER.info(
            "Subscription %s: tie at second %s; Stripe has it %s now, its own event follows",
            row.id,
            row.state_at,
            current.status,
        )
        return None
    return current


def _store(row: Subscription, snapshot: _Snapshot, created: int, ctx: WebhookContext) -> None:
    if snapshot.status == "past_due":
        seen = _ts(created) or ctx.now()
        if row.status == "past_due" and row.past_due_since is not None:
            row.past_due_since = min(row.past_due_since, seen)
        else:
            row.past_due_since = seen
    else:
        row.past_due_since = None
    row.status = snapshot.status
    row.plan = snapshot.plan or row.plan
    row.price_id = snapshot.price_id or row.price_id
    row.current_period_start = snapshot.current_period_start
    row.current_period_end = snapshot.current_period_end
    row.cancel_at_period_end = snapshot.cancel_at_period_end
    row.trial_end = snapshot.trial_end
    row.state_at = created
    row.updated_at = ctx.now()


async def refresh_user_tier(session: AsyncSession, user_id: str, ctx: WebhookContext) -> None:
    rows = list(
        (
            await session.execute(select(Subscription).where(Subscription.user_id == user_id))
        ).scalars()
    )
    sub = pick_subscription(rows)
    tier = "free"
    if sub is not None:
        tier = access_for(
            sub.status, cast(PlanTier | None, sub.plan), sub.past_due_since, ctx.now(), ctx.grace
        ).tier
    await session.execute(update(User).where(User.id == user_id).values(tier=tier))
    ctx.changed_users.add(user_id)


async def _checkout_completed(
    session: AsyncSession, obj: dict[str, Any], created: int, ctx: WebhookContext
) -> None:
    user_id = await _user_exists(session, obj.get("client_reference_id"))
    customer_id = _id(obj.get("customer"))
    subscription_id = _id(obj.get("subscription"))
    if user_id is None:
        LOGGER.warning("Checkout session %s names no known user", obj.get("id"))
        return
    if customer_id:
        await session.execute(
            insert_for(session, BillingCustomer)
            .values(user_id=user_id, stripe_customer_id=customer_id, created_at=ctx.now())
            .on_conflict_do_nothing()
        )
        # Subscription events that arrived before this one could not tell whose they were.
        await session.execute(
            update(Subscription)
            .where(Subscription.customer_id == customer_id, Subscription.user_id.is_(None))
            .values(user_id=user_id)
        )
    if subscription_id:
        existing = await session.get(Subscription, subscription_id)
        if (existing is None or existing.state_at < 0) and ctx.retrieve_subscription:
            snapshot = await ctx.retrieve_subscription(subscription_id)
            snapshot.setdefault("metadata", {}).setdefault("user_id", user_id)
            await apply_subscription(session, snapshot, created, ctx)
        elif existing is not None and existing.user_id is None:
            existing.user_id = user_id
    await refresh_user_tier(session, user_id, ctx)


def _invoice_subscription(obj: dict[str, Any]) -> str | None:
    # API versions from 2025 move it under `parent.subscription_details`.
    parent = obj.get("parent")
    if isinstance(parent, dict):
        details = parent.get("subscription_details")
        if isinstance(details, dict) and _id(details.get("subscription")):
            return _id(details.get("subscription"))
    return _id(obj.get("subscription"))


async def _invoice(
    session: AsyncSession, obj: dict[str, Any], created: int, ctx: WebhookContext, *, failed: bool
) -> None:
    subscription_id = _invoice_subscription(obj)
    if not subscription_id:
        return
    row = await session.get(Subscription, subscription_id, with_for_update=True)
    if row is None:
        return
    at = _ts(created) or ctx.now()
    if failed:
        if row.payment_failed_at is None or at > row.payment_failed_at:
            row.payment_failed_at = at
    elif row.payment_failed_at is not None and at >= row.payment_failed_at:
        row.payment_failed_at = None
    await session.flush()
    if row.user_id:
        ctx.changed_users.add(row.user_id)
