"""Billing: Stripe customers, subscriptions, applied events, trial grants, usage and notices.

Revision ID: 0003_billing
Revises: 0002_memory
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_billing"
down_revision: str | None = "0002_memory"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _user_fk(table: str, ondelete: str = "CASCADE") -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name=f"fk_{table}_user_id_users", ondelete=ondelete
    )


def upgrade() -> None:
    op.create_table(
        "billing_customers",
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("stripe_customer_id", sa.String(255), nullable=False),
        _ts("created_at"),
        _user_fk("billing_customers"),
        sa.PrimaryKeyConstraint("user_id", name="pk_billing_customers"),
        sa.UniqueConstraint("stripe_customer_id", name="uq_billing_customers_stripe_customer_id"),
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=True),
        sa.Column("customer_id", sa.String(255), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("plan", sa.String(16), nullable=True),
        sa.Column("price_id", sa.String(255), nullable=True),
        _ts("current_period_start", nullable=True),
        _ts("current_period_end", nullable=True),
        sa.Column("cancel_at_period_end", sa.Boolean(), server_default=sa.false(), nullable=False),
        _ts("trial_end", nullable=True),
        _ts("past_due_since", nullable=True),
        _ts("payment_failed_at", nullable=True),
        sa.Column("state_at", sa.BigInteger(), server_default="0", nullable=False),
        _ts("updated_at"),
        _user_fk("subscriptions"),
        sa.PrimaryKeyConstraint("id", name="pk_subscriptions"),
    )
    op.create_index("ix_subscriptions_user_id", "subscriptions", ["user_id"])
    op.create_index("ix_subscriptions_customer_id", "subscriptions", ["customer_id"])
    op.create_table(
        "stripe_events",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        _ts("received_at"),
        sa.PrimaryKeyConstraint("id", name="pk_stripe_events"),
    )
    op.create_table(
        "trial_grants",
        sa.Column("email_key", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        _ts("started_at"),
        _ts("ends_at"),
        sa.PrimaryKeyConstraint("email_key", name="pk_trial_grants"),
    )
    op.create_table(
        "usage_records",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("installation_id", sa.String(32), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cache_read_input_tokens", sa.Integer(), nullable=False),
        sa.Column("cache_creation_input_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_micro_usd", sa.BigInteger(), nullable=False),
        sa.Column("counts_as_message", sa.Boolean(), nullable=False),
        sa.Column("completed", sa.Boolean(), nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("key_source", sa.String(16), nullable=False),
        _ts("created_at"),
        _user_fk("usage_records"),
        sa.PrimaryKeyConstraint("id", name="pk_usage_records"),
    )
    op.create_index("ix_usage_records_user_created", "usage_records", ["user_id", "created_at"])
    op.create_index(
        "ix_usage_records_installation_created",
        "usage_records",
        ["installation_id", "created_at"],
    )
    op.create_table(
        "usage_notices",
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("period_key", sa.String(40), nullable=False),
        _ts("created_at"),
        _user_fk("usage_notices"),
        sa.PrimaryKeyConstraint("user_id", "code", "period_key", name="pk_usage_notices"),
    )


def downgrade() -> None:
    op.drop_table("usage_notices")
    op.drop_index("ix_usage_records_installation_created", table_name="usage_records")
    op.drop_index("ix_usage_records_user_created", table_name="usage_records")
    op.drop_table("usage_records")
    op.drop_table("trial_grants")
    op.drop_table("stripe_events")
    op.drop_index("ix_subscriptions_customer_id", table_name="subscriptions")
    op.drop_index("ix_subscriptions_user_id", table_name="subscriptions")
    op.drop_table("subscriptions")
    op.drop_table("billing_customers")
