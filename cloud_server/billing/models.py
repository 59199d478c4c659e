"""Tables of the billing component (created by the migration `0003_billing`).

- `billing_customers`: the one Stripe customer of a user (created once, at first checkout).
- `subscriptions`: the latest known state of each Stripe subscription; `state_at` is the
  `created` time of the event that produced it (older events never overwrite newer state).
- `stripe_events`: every applied event id, written in the same transaction as its effect.
- `trial_grants`: one row per person (SHA-256 of the normalised email), kept when the user is
  deleted, so a person never gets the sign-up trial twice.
- `usage_records`: one row per chat request (a server-made id), with tokens and estimated cost.
- `usage_notices`: which once-per-period notices were already given.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column

from ..db.base import Base, UTCDateTime, utcnow

ID = String(32)


class BillingCustomer(Base):
    __tablename__ = "billing_customers"

    user_id: Mapped[str] = mapped_column(
        ID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    stripe_customer_id: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Subscription(Base):
    __tablename__ = "subscriptions"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    # Nullable: an event may arrive before we can tell whose subscription it is.
    user_id: Mapped[str | None] = mapped_column(
        ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True
    )
    customer_id: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(32))
    plan: Mapped[str | None] = mapped_column(String(16), nullable=True)
    price_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    current_period_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    cancel_at_period_end: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    trial_end: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    past_due_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    payment_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # `created` (epoch seconds) of the event whose snapshot this row holds.
    state_at: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class StripeEvent(Base):
    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    created: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TrialGrant(Base):
    __tablename__ = "trial_grants"

    # sha256 hex of the normalised email: survives account deletion without keeping the address.
    email_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ID)
    source: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())


class UsageRecord(Base):
    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_records_user_created", "user_id", "created_at"),
        Index("ix_usage_records_installation_created", "installation_id", "created_at"),
    )

    # Server-made id of the chat request (unique: recording twice is a no-op).
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The request id of the logs (a client may choose it, so it is not the key).
    request_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))
    # No foreign key: usage stays with the account when an installation is deleted.
    installation_id: Mapped[str] = mapped_column(ID)
    model: Mapped[str] = mapped_column(String(100))
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_read_input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_creation_input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    # Estimated cost in millionths of a US dollar (integers add up exactly).
    cost_micro_usd: Mapped[int] = mapped_column(BigInteger, default=0)
    counts_as_message: Mapped[bool] = mapped_column(Boolean)
    completed: Mapped[bool] = mapped_column(Boolean)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    key_source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class UsageNotice(Base):
    __tablename__ = "usage_notices"

    user_id: Mapped[str] = mapped_column(
        ID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The period (or day) the notice belongs to, e.g. "2026-11-01T00:00:00+00:00".
    period_key: Mapped[str] = mapped_column(String(40), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
