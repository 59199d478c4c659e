"""Billing wire models: checkout, portal, subscription and usage (user JWT)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import Field

from .accounts import SubscriptionSummary, UsageSummary
from .base import RequestModel, ResponseModel
from .chat import Usage

Plan = Literal["byok", "managed"]


class CheckoutRequest(RequestModel):
    """`POST /api/billing/checkout`: the plan to subscribe to."""

    plan: Plan


class UrlResponse(ResponseModel):
    """A Stripe-hosted page to send the browser to (checkout or customer portal)."""

    url: str


class SubscriptionResponse(SubscriptionSummary):
    """`GET /api/subscription`: what the account may use now and why.

    `tier` is the effective tier (after the status table and the grace period);
    `status` is Stripe's subscription status, `trialing` for the sign-up trial,
    `trial_expired` when that trial ran out without a plan, or `none`.
    """

    plan: Plan | None = None


# The same four token counts as a chat answer's `usage`.
TokenTotals = Usage


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


class UsageResponse(UsageSummary):
    """`GET /api/usage`: the current billing period of the account.

    `allowance` is the number of messages included (managed tier), `null` when unlimited;
    `hard_limit` the number after which chat answers `usage_limit_reached`.
    """

    period_start: datetime
    period_end: datetime
    tokens: TokenTotals = Field(default_factory=TokenTotals)
    estimated_cost_usd: float = 0.0
    per_day: list[UsageDay] = Field(default_factory=list)
    per_installation: list[UsageInstallation] = Field(default_factory=list)
