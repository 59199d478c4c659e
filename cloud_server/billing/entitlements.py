"""What an account may do: the status x tier table, the sign-up trial and the usage limits.

Decisions (where the issue is silent, as a paid cloud service would do it):

- Stripe status -> access: `trialing`/`active` -> the subscribed plan; `past_due` -> the plan,
  with a `payment_failed` notice, for a grace period counted from the first failure (the moment
  the subscription turned `past_due`; default 7 days), then `free`; `unpaid`, `canceled`,
  `incomplete`, `incomplete_expired`, `paused` (and no subscription) -> `free`. `incomplete`
  is the first payment not having gone through yet: nothing has been paid, so `free`.
- Hosted `free` may chat only during the sign-up trial: 14 days of `managed` from account
  creation, once per person (keyed by the normalised email, kept after the account is deleted),
  and only while the account never had a Stripe subscription.
  A checkout before the first chat starts the trial in Stripe instead; whichever comes first
  uses it up. Otherwise chat answers `subscription_required` (402).
- `byok` chats with the installation's own key only (`no_api_key`, 409); no message limit.
- `managed` (and the trial) chat with the server's key. The allowance counts messages (user
  turns) in the billing period (the subscription's period; the trial window during the trial).
  Notices: `usage_warning` once per period when the turn reaches 80 %, `usage_allowance_reached`
  once when it reaches 100 %, and `usage_over_allowance` on every answer past the allowance
  (the integration speaks it at most once per conversation). Past the hard ceiling (default
  2x the allowance) new turns are refused with `usage_limit_reached` (402); follow-up requests
  that only carry tool results of an admitted turn are never refused, so a turn is not cut
  in half.
- Self-hosted (Stripe off): everything is allowed with the installation's or the server's key,
  no limits and no notices; usage is still recorded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from homemind_client.models.accounts import STRIPE_SUBSCRIPTION_STATUSES

PlanTier = Literal["free", "byok", "managed"]

ALL_STATUSES = STRIPE_SUBSCRIPTION_STATUSES
LIVE_STATUSES = frozenset({"trialing", "active", "past_due"})
TERMINAL_STATUSES = frozenset({"canceled", "incomplete_expired"})


@dataclass(frozen=True, slots=True)
class Access:
    """The effective tier for one subscription state, and whether it is in grace."""

    tier: PlanTier
    grace_until: datetime | None = None

    @property
    def in_grace(self) -> bool:
        return self.grace_until is not None


def access_for(
    status: str | None,
    plan: PlanTier | None,
    past_due_since: datetime | None,
    now: datetime,
    grace: timedelta,
) -> Access:
    """The status x tier table (pure: tested for every combination)."""
    if status is None or plan is None or plan == "free":
        return Access("free")
    if status in ("trialing", "active"):
        return Access(plan)
    if status == "past_due":
        since = past_due_since or now
        until = since + grace
        if now < until:
            return Access(plan, grace_until=until)
        return Access("free")
    return Access("free")


@dataclass(frozen=True, slots=True)
class UsageLimits:
    allowance: int
    hard_limit: int

    @property
    def warning_at(self) -> int:
        return max(1, math.ceil(self.allowance * 0.8))


def usage_notice_codes(ordinal: int, limits: UsageLimits) -> list[str]:
    """Which notices the `ordinal`-th message of the period may carry (once-only ones included).

    The caller drops the once-per-period codes (`usage_warning`, `usage_allowance_reached`)
    already given in this period.
    """
    codes: list[str] = []
    if ordinal >= limits.warning_at:
        codes.append("usage_warning")
    if ordinal >= limits.allowance:
        codes.append("usage_allowance_reached")
    if ordinal > limits.allowance:
        codes.append("usage_over_allowance")
    return codes


ONCE_PER_PERIOD = frozenset({"usage_warning", "usage_allowance_reached"})
