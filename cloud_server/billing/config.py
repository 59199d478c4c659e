"""Billing knobs that are not part of the fixed settings list (env names `HOMEMIND_*`).

Defaults are the issue's: 1000 messages per period for managed, a hard ceiling at 2x the
allowance, 7 days of grace after the first failed payment, a 14-day sign-up trial, and a
5-second per-process entitlement cache.
"""

from __future__ import annotations

from pydantic import Field

from ..settings import EnvSettings, env


class BillingConfig(EnvSettings):
    managed_allowance: int = Field(
        default=1000,
        ge=1,
        validation_alias=env("HOMEMIND_MANAGED_ALLOWANCE", "managed_allowance"),
    )
    # Multiple of the allowance after which managed chat is refused (`usage_limit_reached`).
    hard_ceiling_factor: float = Field(
        default=2.0,
        ge=1.0,
        validation_alias=env("HOMEMIND_USAGE_HARD_CEILING", "hard_ceiling_factor"),
    )
    past_due_grace_days: float = Field(
        default=7.0,
        ge=0,
        validation_alias=env("HOMEMIND_PAST_DUE_GRACE_DAYS", "past_due_grace_days"),
    )
    trial_days: int = Field(
        default=14, ge=0, validation_alias=env("HOMEMIND_TRIAL_DAYS", "trial_days")
    )
    cache_seconds: float = Field(
        default=5.0,
        ge=0,
        validation_alias=env("HOMEMIND_ENTITLEMENT_CACHE_SECONDS", "cache_seconds"),
    )
    stripe_timeout: float = Field(
        default=20.0, gt=0, validation_alias=env("STRIPE_TIMEOUT", "stripe_timeout")
    )
    stripe_max_network_retries: int = Field(
        default=2,
        ge=0,
        validation_alias=env("STRIPE_MAX_NETWORK_RETRIES", "stripe_max_network_retries"),
    )

    @property
    def hard_limit(self) -> int:
        return int(self.managed_allowance * self.hard_ceiling_factor)
