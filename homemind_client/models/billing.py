"""Billing wire models: checkout, portal, subscription and usage (user JWT)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import Field

from .accounts import Tier
from .base import RequestModel, ResponseModel

Plan = Literal["byok", "managed"]


class CheckoutRequest(RequestModel):
    """`POST /api/billing/checkout`: the plan to subscribe to."""

    plan: Plan


class UrlResponse(ResponseModel):
    """A Stripe-hosted page to send the browser to (checkout or customer portal)."""

    url: str


class SubscriptionResponse(ResponseModel):
    """`GET /api/subscription`: what the account may use now and why.

    `tier` is the effective tier (after the status table and the grace period);
    `status` is Stripe's subscription status, `trialing` for the sign-up trial, or `none`.
    """

    tier: Tier = "free"
    status: str = "none"
    current_period_end: datetime | None = None
    cancel_at_period_end: bool = False
    trial_end: datetime | None = None
    grace_until: datetime | None = None
    plan: Plan | None = None
    payment_failed: bool = False


class TokenTotals(ResponseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


class UsageDay(ResponseModel):
    date: date
    messages: int = 0
    tokens: TokenTotals = Field(default_factory=TokenTotals)
    estimated_cost_usd: float = 0.0


class UsageInstallation(ResponseModel):
    installation_id: str
    name: str | None = None
    messages: int = 0
    tokens: TokenTotals = Field(default_factory=TokenTotals)
    estimated_cost_usd: float = 0.0


class UsageResponse(ResponseModel):
    """`GET /api/usage`: the current billing period of the account.

    `allowance` is the number of messages included (managed tier), `null` when unlimited;
    `hard_limit` the number after which chat answers `usage_limit_reached`.
    """

    period_start: datetime
    period_end: datetime
    messages: int = 0
    allowance: int | None = None
    hard_limit: int | None = None
    tokens: TokenTotals = Field(default_factory=TokenTotals)
    estimated_cost_usd: float = 0.0
    per_day: list[UsageDay] = Field(default_factory=list)
    per_installation: list[UsageInstallation] = Field(default_factory=list)
