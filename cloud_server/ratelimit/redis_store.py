"""The Redis store: the same limits held in one Redis for every instance.

Every key carries a TTL, so idle keys vanish. When Redis is down, `RedisLimiter` fails
OPEN onto its in-process fallback: a paying household must not lose its assistant
because our cache is down. Each instance then enforces the full budget on its own (a
client spread over N instances gets up to N times the budget) until Redis answers again.
The outage is logged as an error at most once a minute (and its end once), `up` and
`local_decisions` feed `homemind_redis_up` and `homemind_rate_limit_local_decisions_total`
(`observability/metrics.py`), and Redis is left alone for a few seconds after each failure
so a dead Redis does not slow every request. Readiness stays up meanwhile
(docs/runbooks/redis-down.md). (Login throttling runs its scripts through `run_script` too
but decides differently: see `accounts/throttle.py`.)
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from .gcra import CONCURRENCY, Admission, Clock, RateCheck, SlotClaim
from .local import LocalLimiter
from .lua import ADMIT_SCRIPT

LOGGER = logging.getLogger(__name__)

# A dead Redis is not asked again for this long (seconds) after a failure.
REDIS_RETRY_PAUSE = 5.0
# Errors about Redis being down are logged at most this often (seconds).
REDIS_LOG_INTERVAL = 60.0
# Failures that mean "Redis is not answering" (OSError: refused, unreachable).
REDIS_DOWN_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


@dataclass(slots=True)
class _RedisSlot:
    owner: RedisLimiter
    key: str
    holder: str
    released: bool = False

    async def release(self) -> None:
        if self.released:
            return
        self.released = True
        try:
            async with self.owner.connection_lost_is_redis_down():
                await self.owner.redis.zrem(self.key, self.holder)
        except REDIS_DOWN_ERRORS as err:
            # The slot's lease runs out on its own.
            self.owner.report_failure(err)


class RedisLimiter:
    """The same limits, held in Redis for all instances; falls back to `LocalLimiter`."""

    def __init__(self, url: str, prefix: str = "homemind:", clock: Clock | None = None) -> None:
        self.url = url
        self.prefix = prefix
        # None: Redis's clock (production). Tests set a clock for exact GCRA arithmetic.
        self.clock = clock
        self.fallback = LocalLimiter()
        self._redis: aioredis.Redis | None = None
        self._skip_until = 0.0
        self._logged_at: float | None = None
        self._scripts: dict[str, Any] = {}
        # False from a failure until Redis answers again.
        self.up = True
        # Admissions decided by the fallback because Redis was down.
        self.local_decisions = 0

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("RedisLimiter.start() was not called")
        return self._redis

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def run_script(
        self, script: str, keys: Sequence[str], *args: Any, clock: Clock | None
    ) -> Any:
        """Run one of `lua.py`'s scripts on `keys` (registered once per connection).

        `clock` None: the script reads Redis's clock; else its time (seconds) is passed.

        Raises one of `REDIS_DOWN_ERRORS` when Redis does not answer; the caller decides
        whether that fails open or closed (and calls `report_failure`).
        """
        registered = self._scripts.get(script)
        if registered is None or registered.registered_client is not self.redis:
            registered = self._scripts[script] = self.redis.register_script(script)
        now = "" if clock is None else f"{clock() * 1000:.3f}"
        async with self.connection_lost_is_redis_down():
            return await registered(keys=list(keys), args=[now, *args])

    @contextlib.asynccontextmanager
    async def connection_lost_is_redis_down(self) -> AsyncIterator[None]:
        """A pooled connection whose peer reset it can fail inside redis-py with a bare
        AttributeError (asyncio's closed transport has no loop left to write with): that
        is Redis gone, not our bug. The pool is emptied so the next call connects anew."""
        try:
            yield
        except (AttributeError, RuntimeError) as err:
            with contextlib.suppress(Exception):
                await self.redis.connection_pool.disconnect()
            raise RedisConnectionError(f"connection lost ({type(err).__name__})") from err

    async def start(self) -> None:
        # Short timeouts and no retries: a slow Redis must not hold a chat request up.
        self._redis = aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    @property
    def available(self) -> bool:
        """False for a few seconds after Redis failed (callers go straight to the fallback)."""
        return time.monotonic() >= self._skip_until

    def report_success(self) -> None:
        if not self.up:
            self.up = True
            self._skip_until = 0.0
            self._logged_at = None
            LOGGER.warning("Redis answers again; rate limits are shared across instances again")

    def report_failure(self, err: BaseException) -> None:
        now = time.monotonic()
        self.up = False
        self._skip_until = now + REDIS_RETRY_PAUSE
        if self._logged_at is None or now - self._logged_at >= REDIS_LOG_INTERVAL:
            self._logged_at = now
            # redis-py's messages name host and port, never the URL's password.
            LOGGER.error(
                "Redis is unavailable (%s: %s); rate limits are enforced per instance until "
                "it answers again",
                type(err).__name__,
                err,
            )

    async def admit(self, rates: Sequence[RateCheck], claim: SlotClaim | None = None) -> Admission:
        """One script, one round trip: the claim and every rate checked and taken at once."""
        if self.available:
            slot_key = self.key("cc", claim.key if claim is not None else "")
            holder = secrets.token_hex(8)
            args: list[Any] = [
                0 if claim is None else claim.limit,
                0 if claim is None else f"{claim.lease * 1000:.0f}",
                holder,
            ]
            for check in rates:
                args += [f"{check.rate.emission * 1000:.3f}", check.burst]
            keys = [slot_key, *(self.key("rl", check.key) for check in rates)]
            try:
                result = await self.run_script(ADMIT_SCRIPT, keys, *args, clock=self.clock)
            except REDIS_DOWN_ERRORS as err:
                self.report_failure(err)
            else:
                if not self.up:
                    self.report_success()
                status = int(result[0])
                if status == 0:
                    return Admission(refused_by=CONCURRENCY)
                if status == 2:
                    return Admission(
                        refused_by=rates[int(result[1]) - 1].key,
                        retry_after_seconds=float(result[2]) / 1000,
                    )
                slot = None if claim is None else _RedisSlot(self, slot_key, holder)
                return Admission(slot=slot)
        self.local_decisions += 1
        return await self.fallback.admit(rates, claim)
