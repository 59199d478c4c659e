"""Chat's rate limits: per installation and per user (GCRA), and requests in flight.

Checked before the usage gate and before any call to Claude, so a refused request costs
neither usage nor tokens. The limiter is the app's (`ratelimit/setup.py`); with Redis down
it fails open onto each instance's own counters (see `ratelimit/redis_store.py`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from homemind_client.models import ErrorCode

from ..accounts.principal import InstallationPrincipal
from ..app_keys import SETTINGS
from ..errors import ApiError
from ..ratelimit.gcra import CONCURRENCY, Rate, RateCheck, Slot, SlotClaim
from ..ratelimit.setup import LIMITER
from ..settings import Settings

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ChatPolicy:
    """Chat limits after applying the mode's defaults (0 = off)."""

    rate_per_minute: float
    burst: int
    user_rate_per_minute: float
    user_burst: int
    concurrency: int

    @classmethod
    def of(cls, settings: Settings) -> ChatPolicy:
        # Hosted: protect the service and our key. Self-hosted: the owner's server, off
        # unless the owner sets the variables.
        hosted = settings.hosted

        def pick[T: (int, float)](value: T | None, hosted_default: T, zero: T) -> T:
            if value is not None:
                return value
            return hosted_default if hosted else zero

        return cls(
            rate_per_minute=pick(settings.chat_rate_per_minute, 30.0, 0.0),
            burst=pick(settings.chat_burst, 10, 10),
            user_rate_per_minute=pick(settings.chat_user_rate_per_minute, 60.0, 0.0),
            user_burst=pick(settings.chat_user_burst, 20, 20),
            concurrency=pick(settings.chat_concurrency, 4, 0),
        )


def _rate_limited(retry_after: int, detail: str) -> ApiError:
    return ApiError(ErrorCode.RATE_LIMITED, detail, retry_after=retry_after)


@contextlib.asynccontextmanager
async def chat_limits(
    request: web.Request, principal: InstallationPrincipal, *, prefix: str = "chat"
) -> AsyncIterator[None]:
    """Admit one chat request (429 `rate_limited` otherwise) and hold its concurrency slot.

    Each request counts, tool round trips included. Another front end with chat's limits
    (the MCP server) passes its own `prefix`, so it has its own counters.
    """
    settings = request.app[SETTINGS]
    policy = ChatPolicy.of(settings)
    installation = principal.installation_id
    claim: SlotClaim | None = None
    if policy.concurrency > 0:
        # A request may make several model calls, each up to the response timeout.
        lease = settings.response_timeout * settings.max_model_calls + 60
        claim = SlotClaim(f"{prefix}:inst:{installation}", policy.concurrency, lease)
    rates = [
        RateCheck(key, Rate(per_minute, 60.0), burst)
        for key, per_minute, burst in (
            (f"{prefix}:inst:{installation}", policy.rate_per_minute, policy.burst),
            (f"{prefix}:user:{principal.user_id}", policy.user_rate_per_minute, policy.user_burst),
        )
        if per_minute > 0
    ]
    slot: Slot | None = None
    if claim is not None or rates:
        # One decision, all or nothing: a refused request holds no slot and spends no budget.
        admission = await request.app[LIMITER].admit(rates, claim)
        if admission.refused_by == CONCURRENCY:
            LOGGER.info("%s refused installation=%s reason=concurrency", prefix, installation)
            raise _rate_limited(
                1, "This home already has several requests in progress; try again in a moment."
            )
        if not admission.admitted:
            LOGGER.info(
                "%s refused installation=%s reason=rate key=%s retry_after=%d",
                prefix,
                installation,
                str(admission.refused_by).split(":")[1],
                admission.retry_after,
            )
            raise _rate_limited(
                admission.retry_after, "Too many requests; wait a moment and try again."
            )
        slot = admission.slot
    try:
        yield
    finally:
        if slot is not None:
            await slot.release()
