"""Reading and writing billing state: account state, trial grants, usage rows, notices.

Every write that must happen once (usage per request id, a notice per period, an event per
id, a trial per person) is an `INSERT ... ON CONFLICT DO NOTHING` whose row count says who
won; that is race-safe on PostgreSQL and on SQLite (single writer), without `SELECT ... FOR
UPDATE` (which SQLite ignores).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Integer, Table, bindparam, func, select, text
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from ..db.models import Installation, User
from .config import BillingConfig
from .entitlements import LIVE_STATUSES, Access, PlanTier, UsageLimits, access_for
from .models import Subscription, TrialGrant, UsageNotice, UsageRecord


def insert_for(session: AsyncSession, table: Any) -> postgresql.Insert:
    """The dialect's INSERT; SQLite's has the same `on_conflict_do_nothing` signature."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return cast(postgresql.Insert, sqlite.insert(table))


def normalise_email(email: str) -> str:
    """One spelling per mailbox: trimmed, lower-case, without a `+tag` in the local part."""
    local, _, domain = email.strip().lower().rpartition("@")
    if not local:
        return email.strip().lower()
    local = local.split("+", 1)[0] or local
    return f"{local}@{domain}"


def email_key(email: str) -> str:
    return hashlib.sha256(normalise_email(email).encode()).hexdigest()


def month_window(now: datetime) -> tuple[datetime, datetime]:
    start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


@dataclass(slots=True)
class AccountState:
    """Everything the gate needs about one account, loaded in a few queries and cached."""

    user_id: str
    tier: PlanTier
    status: str
    plan: PlanTier | None
    period_start: datetime
    period_end: datetime
    messages: int
    limits: UsageLimits | None
    current_period_end: datetime | None = None
    cancel_at_period_end: bool = False
    trial_end: datetime | None = None
    grace_until: datetime | None = None
    payment_failed: bool = False
    subscription_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def pick_subscription(rows: list[Subscription]) -> Subscription | None:
    """The subscription that decides access: a live one first, else the most recent."""
    if not rows:
        return None
    return max(rows, key=lambda s: (s.status in LIVE_STATUSES, s.state_at, s.updated_at))


async def claim_trial(
    session: AsyncSession,
    user_id: str,
    *,
    email: str,
    started_at: datetime,
    days: int,
    source: str,
) -> tuple[TrialGrant, bool]:
    """The person's trial grant and whether this call created it (first caller wins)."""
    key = email_key(email)
    stmt = (
        insert_for(session, TrialGrant)
        .values(
            email_key=key,
            user_id=user_id,
            source=source,
            started_at=started_at,
            ends_at=started_at + timedelta(days=days),
        )
        .on_conflict_do_nothing(index_elements=["email_key"])
    )
    created = cast(Any, await session.execute(stmt)).rowcount == 1
    grant = (
        await session.execute(select(TrialGrant).where(TrialGrant.email_key == key))
    ).scalar_one()
    return grant, bool(created)


async def count_messages(session: AsyncSession, user_id: str, since: datetime) -> int:
    result = await session.execute(
        select(func.count())
        .select_from(UsageRecord)
        .where(
            UsageRecord.user_id == user_id,
            UsageRecord.counts_as_message.is_(True),
            UsageRecord.created_at >= since,
        )
    )
    return int(result.scalar_one())


async def load_account_state(
    session: AsyncSession,
    user_id: str,
    *,
    now: datetime,
    config: BillingConfig,
    billing_enabled: bool,
) -> AccountState:
    """The account's effective tier, period and message count (commits a trial claim)."""
    if not billing_enabled:
        start, end = month_window(now)
        return AccountState(
            user_id=user_id,
            tier="free",
            status="none",
            plan=None,
            period_start=start,
            period_end=end,
            messages=await count_messages(session, user_id, start),
            limits=None,
        )
    rows = list(
        (
            await session.execute(select(Subscription).where(Subscription.user_id == user_id))
        ).scalars()
    )
    sub = pick_subscription(rows)
    grace = timedelta(days=config.past_due_grace_days)
    access = (
        access_for(sub.status, cast(PlanTier | None, sub.plan), sub.past_due_since, now, grace)
        if sub
        else Access("free")
    )
    limits = UsageLimits(config.managed_allowance, config.hard_limit)
    state = AccountState(
        user_id=user_id,
        tier=access.tier,
        status=sub.status if sub else "none",
        plan=cast(PlanTier | None, sub.plan) if sub else None,
        period_start=now,
        period_end=now,
        messages=0,
        limits=limits if access.tier == "managed" else None,
        grace_until=access.grace_until,
        subscription_id=sub.id if sub else None,
    )
    if sub is not None:
        state.current_period_end = sub.current_period_end
        state.cancel_at_period_end = sub.cancel_at_period_end
        state.trial_end = sub.trial_end if sub.status == "trialing" else None
        state.payment_failed = sub.status == "past_due" or (
            sub.payment_failed_at is not None and sub.status not in ("active", "trialing")
        )
    if access.tier != "free" and sub is not None:
        start = sub.current_period_start or month_window(now)[0]
        end = sub.current_period_end or month_window(now)[1]
    else:
        start, end = month_window(now)
        user = (
            await session.execute(
                select(User.email, User.created_at, User.email_verified_at).where(
                    User.id == user_id
                )
            )
        ).one_or_none()
        # The sign-up trial is for accounts that never subscribed; after a subscription
        # ends the account is simply free. A hosted sign-up's trial starts once its
        # address is confirmed (`email_verified_at`), not before.
        if (
            user is not None
            and user.email_verified_at is not None
            and sub is None
            and config.trial_days > 0
        ):
            grant, _ = await claim_trial(
                session,
                user_id,
                email=user.email,
                started_at=max(user.created_at, user.email_verified_at),
                days=config.trial_days,
                source="signup",
            )
            if grant.user_id == user_id and grant.started_at <= now < grant.ends_at:
                state.tier = "managed"
                state.status = "trialing"
                state.plan = "managed"
                state.limits = limits
                state.trial_end = grant.ends_at
                state.current_period_end = grant.ends_at
                start, end = grant.started_at, grant.ends_at
            elif grant.user_id == user_id and now >= grant.ends_at:
                # Tells clients (HA's repair issue) that the account needs a plan now,
                # which "none" cannot: a self-hosted server says "none" too.
                state.status = "trial_expired"
    state.period_start, state.period_end = start, end
    state.messages = await count_messages(session, user_id, start)
    return state


def _build_usage_insert() -> Any:
    """The usage INSERT as one constant text statement with typed parameters.

    SQLAlchemy (2.0) cannot cache the compiled form of a dialect `on_conflict_do_nothing`
    insert ("no key"): built that way it was compiled again on every chat turn. The text
    is the same on SQLite and PostgreSQL; the column types still process the values.
    """
    table = UsageRecord.__table__
    assert isinstance(table, Table)
    names = [column.name for column in table.columns]
    sql = (
        f"INSERT INTO {table.name} ({', '.join(names)}) "  # noqa: S608 (constant names)
        f"VALUES ({', '.join(':' + name for name in names)}) ON CONFLICT (id) DO NOTHING"
    )
    return text(sql).bindparams(
        *(bindparam(column.name, type_=column.type) for column in table.columns)
    )


_USAGE_INSERT = _build_usage_insert()


async def insert_usage(connection: AsyncConnection, values: dict[str, Any]) -> bool:
    """Insert one usage row (Core, no ORM unit of work); False when its id was recorded already."""
    result = await connection.execute(_USAGE_INSERT, values)
    return bool(cast(Any, result).rowcount == 1)


async def claim_notice(session: AsyncSession, user_id: str, code: str, period_key: str) -> bool:
    """True for the one caller that gives this notice in this period."""
    stmt = (
        insert_for(session, UsageNotice)
        .values(user_id=user_id, code=code, period_key=period_key, created_at=datetime.now(UTC))
        .on_conflict_do_nothing(index_elements=["user_id", "code", "period_key"])
    )
    result = await session.execute(stmt)
    return bool(cast(Any, result).rowcount == 1)


@dataclass(slots=True)
class UsageRow:
    key: Any
    messages: int
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int
    cost_micro_usd: int


async def usage_rows(
    session: AsyncSession,
    user_id: str,
    start: datetime,
    end: datetime,
    *,
    group: str,
    installation_id: str | None = None,
) -> list[UsageRow]:
    """Totals of a period grouped by `"day"`, `"installation"` or `"all"`."""
    messages = func.sum(sql_cast(UsageRecord.counts_as_message, Integer))
    columns: list[Any] = [
        func.coalesce(messages, 0),
        func.coalesce(func.sum(UsageRecord.input_tokens), 0),
        func.coalesce(func.sum(UsageRecord.output_tokens), 0),
        func.coalesce(func.sum(UsageRecord.cache_read_input_tokens), 0),
        func.coalesce(func.sum(UsageRecord.cache_creation_input_tokens), 0),
        func.coalesce(func.sum(UsageRecord.cost_micro_usd), 0),
    ]
    where = [
        UsageRecord.user_id == user_id,
        UsageRecord.created_at >= start,
        UsageRecord.created_at < end,
    ]
    if installation_id is not None:
        where.append(UsageRecord.installation_id == installation_id)
    if group == "installation":
        stmt = (
            select(UsageRecord.installation_id, *columns)
            .where(*where)
            .group_by(UsageRecord.installation_id)
        )
        return [UsageRow(r[0], *map(int, r[1:])) for r in (await session.execute(stmt)).all()]
    if group == "day":
        # Dates are bucketed in Python: portable between SQLite and PostgreSQL.
        stmt_rows = await session.execute(
            select(
                UsageRecord.created_at,
                sql_cast(UsageRecord.counts_as_message, Integer),
                UsageRecord.input_tokens,
                UsageRecord.output_tokens,
                UsageRecord.cache_read_input_tokens,
                UsageRecord.cache_creation_input_tokens,
                UsageRecord.cost_micro_usd,
            ).where(*where)
        )
        days: dict[date, UsageRow] = {}
        for created, *numbers in stmt_rows.all():
            day = created.astimezone(UTC).date()
            row = days.setdefault(day, UsageRow(day, 0, 0, 0, 0, 0, 0))
            row.messages += int(numbers[0])
            row.input_tokens += int(numbers[1])
            row.output_tokens += int(numbers[2])
            row.cache_read_input_tokens += int(numbers[3])
            row.cache_creation_input_tokens += int(numbers[4])
            row.cost_micro_usd += int(numbers[5])
        return [days[d] for d in sorted(days)]
    total = (await session.execute(select(*columns).where(*where))).one()
    return [UsageRow(None, *map(int, total))]


async def installation_names(session: AsyncSession, user_id: str) -> dict[str, str]:
    rows = await session.execute(
        select(Installation.id, Installation.name).where(Installation.user_id == user_id)
    )
    return {r[0]: r[1] for r in rows.all()}
