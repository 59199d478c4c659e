"""Accounts and installations wire models (user JWT and installation token)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from .base import RequestModel, ResponseModel

Tier = Literal["free", "byok", "managed"]
# What an installation token may do. Home Assistant's tokens have them all; a token for
# another client (an MCP client such as Claude Desktop) can be limited to some.
InstallationScope = Literal["chat", "memory:read", "memory:write", "mcp"]
ALL_INSTALLATION_SCOPES: tuple[InstallationScope, ...] = (
    "chat",
    "memory:read",
    "memory:write",
    "mcp",
)
TIERS: tuple[Tier, ...] = ("free", "byok", "managed")

# Stripe's subscription statuses, as the server reports them.
STRIPE_SUBSCRIPTION_STATUSES = (
    "trialing",
    "active",
    "past_due",
    "unpaid",
    "canceled",
    "incomplete",
    "incomplete_expired",
    "paused",
)
# Every `subscription.status` the server may report: no subscription ("none", also every
# self-hosted server), Stripe's, and the hosted sign-up trial having run out.
SUBSCRIPTION_STATUSES = ("none", *STRIPE_SUBSCRIPTION_STATUSES, "trial_expired")


class RegisterRequest(RequestModel):
    email: str = Field(min_length=3, max_length=254)
    password: str = Field(max_length=1024)
    name: str | None = Field(default=None, max_length=200)


class LoginRequest(RequestModel):
    email: str = Field(min_length=1, max_length=254)
    password: str = Field(max_length=1024)
    # The authenticator app's code, for accounts with two-step sign-in.
    totp_code: str | None = Field(default=None, max_length=16)


class RefreshRequest(RequestModel):
    refresh_token: str = Field(min_length=1, max_length=512)


class PasswordResetRequest(RequestModel):
    email: str = Field(min_length=1, max_length=254)


class PasswordResetConfirm(RequestModel):
    token: str = Field(min_length=1, max_length=512)
    password: str = Field(max_length=1024)


class UserOut(ResponseModel):
    id: str
    email: str
    name: str | None = None
    tier: Tier = "free"


class MeResponse(UserOut):
    created_at: datetime


class TokenResponse(ResponseModel):
    user: UserOut
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a token type, not a secret
    expires_in: int


class InstallationCreate(RequestModel):
    name: str = Field(min_length=1, max_length=100)
    # Omitted: every scope (what Home Assistant needs).
    scopes: list[InstallationScope] | None = Field(default=None, min_length=1)


class InstallationCreated(ResponseModel):
    """The only response that ever contains the installation token."""

    id: str
    name: str
    token: str
    token_hint: str
    created_at: datetime
    scopes: list[InstallationScope] = Field(default_factory=lambda: list(ALL_INSTALLATION_SCOPES))


class InstallationListItem(ResponseModel):
    id: str
    name: str
    token_hint: str
    has_api_key: bool
    key_hint: str | None = None
    last_seen_at: datetime | None = None
    created_at: datetime
    scopes: list[InstallationScope] = Field(default_factory=lambda: list(ALL_INSTALLATION_SCOPES))


class ApiKeyUpdate(RequestModel):
    api_key: str = Field(min_length=1, max_length=512)


class ApiKeyStatus(ResponseModel):
    has_api_key: bool
    key_hint: str | None = None


class SubscriptionSummary(ResponseModel):
    status: str = "none"
    tier: Tier = "free"
    current_period_end: datetime | None = None
    cancel_at_period_end: bool = False
    trial_end: datetime | None = None
    grace_until: datetime | None = None
    payment_failed: bool = False


class UsageSummary(ResponseModel):
    """The account's usage this billing period (`allowance`/`hard_limit` None: unlimited)."""

    messages: int = 0
    allowance: int | None = None
    hard_limit: int | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None


class InstallationInfo(ResponseModel):
    """`GET /api/installation`: what an installation token may read about itself."""

    id: str
    name: str
    tier: Tier = "free"
    has_api_key: bool = False
    subscription: SubscriptionSummary = Field(default_factory=SubscriptionSummary)
    usage: UsageSummary = Field(default_factory=UsageSummary)
    extra: dict[str, Any] | None = None


class InstallationRename(RequestModel):
    name: str = Field(min_length=1, max_length=100)


class PasswordChange(RequestModel):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


class SessionOut(ResponseModel):
    """One signed-in session (a refresh-token family); `current` is the caller's own."""

    id: str
    created_at: datetime
    expires_at: datetime
    current: bool = False


class AccountDelete(RequestModel):
    password: str = Field(max_length=1024)


class MagicLinkRequest(RequestModel):
    email: str = Field(min_length=1, max_length=254)


class LinkTokenConfirm(RequestModel):
    """The token of a mailed link (magic sign-in link or address verification)."""

    token: str = Field(min_length=1, max_length=512)


class TotpSetup(ResponseModel):
    """A new two-step secret: shown to the user, enabled by `POST /api/auth/totp/enable`."""

    secret: str
    otpauth_uri: str
    setup_token: str


class TotpEnable(RequestModel):
    setup_token: str = Field(min_length=1, max_length=512)
    code: str = Field(min_length=1, max_length=16)
