"""Rate limiting: one `Limiter` interface, an in-process and a Redis-backed implementation.

Rates use GCRA (one "theoretical arrival time" per key: a steady rate plus a burst, no
window-boundary doubling). A concurrency cap counts requests in flight per key.

`REDIS_URL` chooses the implementation: without it one instance limits in its own memory
(self-hosted); with it every instance runs the same atomic Lua scripts against one Redis,
so several instances enforce one budget. Redis's own clock is used (instances' clocks
may differ); tests inject a clock instead. Every key carries a TTL, so idle keys vanish.

When Redis is down, chat fails OPEN onto this instance's in-process limiter: a paying
household must not lose its assistant because our cache is down. Each instance then
enforces the full budget on its own (a client spread over N instances gets up to N times
the budget) until Redis answers again. The outage is logged as an error at most once a
minute, and Redis is left alone for a few seconds after each failure so a dead Redis
does not slow every request. (Login throttling decides differently: see
`accounts/throttle.py`.)
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import redis.asyncio as aioredis
from aiohttp import web
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from homemind_client.models import ErrorCode

from .errors import ApiError
from .keys import SETTINGS
from .settings import Settings

if TYPE_CHECKING:
    from .accounts.principal import InstallationPrincipal

LOGGER = logging.getLogger(__name__)

Clock = Callable[[], float]

# A dead Redis is not asked again for this long (seconds) after a failure.
REDIS_RETRY_PAUSE = 5.0
# Errors about Redis being down are logged at most this often (seconds).
REDIS_LOG_INTERVAL = 60.0
# Failures that mean "Redis is not answering" (OSError: refused, unreachable).
REDIS_DOWN_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Rate:
    """`count` requests per `period` seconds, sustained."""

    count: float
    period: float = 60.0

    @property
    def emission(self) -> float:
        """Seconds between two requests at the sustained rate."""
        return self.period / self.count


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after_seconds: float  # 0 when allowed
    remaining: int  # requests still allowed at once

    @property
    def retry_after(self) -> int:
        """Whole seconds for `Retry-After` (rounded up, at least 1)."""
        return max(1, math.ceil(self.retry_after_seconds))


class Slot(Protocol):
    async def release(self) -> None: ...


class Limiter(Protocol):
    async def hit(self, key: str, rate: Rate, burst: int) -> Decision:
        """Count one request against `key`; `burst` requests may come at once."""
        ...

    async def acquire(self, key: str, limit: int, lease: float) -> Slot | None:
        """Take one of `limit` concurrent slots (None when all are taken).

        `lease` bounds how long a slot is held if its holder dies without releasing it.
        """
        ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


def gcra(tat: float | None, now: float, rate: Rate, burst: int) -> tuple[Decision, float]:
    """One GCRA step: the decision and the new arrival time to store (if allowed)."""
    emission = rate.emission
    base = now if tat is None or tat < now else tat
    new_tat = base + emission
    allow_at = new_tat - emission * burst
    if allow_at > now:
        return Decision(False, allow_at - now, 0), base
    return Decision(True, 0.0, int((now - allow_at) // emission)), new_tat


# --------------------------------------------------------------------------- in process


@dataclass(slots=True)
class _LocalSlot:
    owner: LocalLimiter
    key: str
    released: bool = False

    async def release(self) -> None:
        if not self.released:
            self.released = True
            self.owner.release_local(self.key)


@dataclass
class LocalLimiter:
    """GCRA and concurrency counters in this process (one instance, or Redis is down)."""

    clock: Clock = time.monotonic
    max_keys: int = 100_000
    _tat: dict[str, float] = field(default_factory=dict)
    _in_flight: dict[str, int] = field(default_factory=dict)

    async def hit(self, key: str, rate: Rate, burst: int) -> Decision:
        now = self.clock()
        decision, tat = gcra(self._tat.get(key), now, rate, burst)
        if decision.allowed:
            self._tat[key] = tat
            if len(self._tat) > self.max_keys:
                self._prune(now)
        return decision

    def _prune(self, now: float) -> None:
        # A key whose arrival time has passed is back to a full burst: forgetting it is exact.
        for key in [k for k, tat in self._tat.items() if tat <= now]:
            del self._tat[key]

    async def acquire(self, key: str, limit: int, lease: float) -> Slot | None:
        # `lease` is not needed here: a slot is released when its request ends in this process.
        if self._in_flight.get(key, 0) >= limit:
            return None
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        return _LocalSlot(self, key)

    def release_local(self, key: str) -> None:
        left = self._in_flight.get(key, 0) - 1
        if left > 0:
            self._in_flight[key] = left
        else:
            self._in_flight.pop(key, None)

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


# --------------------------------------------------------------------------- Redis

# Times are milliseconds. ARGV "now" is empty in production (Redis's clock); tests pass one.
# Numbers are stored with string.format: Lua's tostring would switch to exponent notation.
_NOW = """
local now
if ARGV[1] ~= '' then now = tonumber(ARGV[1]) else
  local t = redis.call('TIME'); now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
"""

# KEYS[1] arrival time; ARGV: now, emission_ms, burst -> {allowed, retry_after_ms, remaining}
GCRA_SCRIPT = (
    _NOW
    + """
local emission = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + emission
local allow_at = new_tat - emission * burst
if allow_at > now then
  return {0, string.format('%.3f', allow_at - now), 0}
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1000)
return {1, '0', math.floor((now - allow_at) / emission)}
"""
)

# KEYS[1] sorted set of holders; ARGV: now, limit, lease_ms, holder -> 1 taken / 0 full
ACQUIRE_SCRIPT = (
    _NOW
    + """
local limit = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.3f', now - lease))
if redis.call('ZCARD', KEYS[1]) >= limit then return 0 end
redis.call('ZADD', KEYS[1], string.format('%.3f', now), ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil(lease))
return 1
"""
)


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
        self._gcra: Any = None
        self._acquire: Any = None

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("RedisLimiter.start() was not called")
        return self._redis

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def now_arg(self) -> str:
        return "" if self.clock is None else f"{self.clock() * 1000:.3f}"

    async def start(self) -> None:
        # Short timeouts and no retries: a slow Redis must not hold a chat request up.
        self._redis = aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self._gcra = self._redis.register_script(GCRA_SCRIPT)
        self._acquire = self._redis.register_script(ACQUIRE_SCRIPT)

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    @property
    def available(self) -> bool:
        """False for a few seconds after Redis failed (callers go straight to the fallback)."""
        return time.monotonic() >= self._skip_until

    def report_failure(self, err: BaseException) -> None:
        now = time.monotonic()
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

    async def hit(self, key: str, rate: Rate, burst: int) -> Decision:
        if self.available:
            try:
                allowed, retry_ms, remaining = await self._gcra(
                    keys=[self.key("rl", key)],
                    args=[self.now_arg(), f"{rate.emission * 1000:.3f}", burst],
                )
                return Decision(bool(int(allowed)), float(retry_ms) / 1000, int(remaining))
            except REDIS_DOWN_ERRORS as err:
                self.report_failure(err)
        return await self.fallback.hit(key, rate, burst)

    async def acquire(self, key: str, limit: int, lease: float) -> Slot | None:
        if self.available:
            full_key = self.key("cc", key)
            holder = secrets.token_hex(8)
            try:
                taken = await self._acquire(
                    keys=[full_key], args=[self.now_arg(), limit, f"{lease * 1000:.0f}", holder]
                )
            except REDIS_DOWN_ERRORS as err:
                self.report_failure(err)
            else:
                return _RedisSlot(self, full_key, holder) if int(taken) else None
        return await self.fallback.acquire(key, limit, lease)


def build_limiter(settings: Settings) -> Limiter:
    if settings.redis_url:
        return RedisLimiter(settings.redis_url, settings.redis_key_prefix)
    return LocalLimiter()


# --------------------------------------------------------------------------- application

LIMITER: web.AppKey[Limiter] = web.AppKey("rate_limiter", LocalLimiter)


async def _limiter_ctx(app: web.Application) -> AsyncIterator[None]:
    limiter = app[LIMITER]
    await limiter.start()
    try:
        yield
    finally:
        await limiter.aclose()


def setup_ratelimit(app: web.Application) -> Limiter:
    """Put the limiter on the app (once) and open/close it with the app."""
    if LIMITER not in app:
        app[LIMITER] = build_limiter(app[SETTINGS])
        app.cleanup_ctx.append(_limiter_ctx)
    return app[LIMITER]


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
    request: web.Request, principal: InstallationPrincipal
) -> AsyncIterator[None]:
    """Admit one chat request (429 `rate_limited` otherwise) and hold its concurrency slot.

    Runs before the usage gate and before any call to Claude, so a refused request costs
    neither usage nor tokens. Each request counts, tool round trips included.
    """
    settings = request.app[SETTINGS]
    policy = ChatPolicy.of(settings)
    limiter = request.app[LIMITER]
    installation = principal.installation_id
    slot: Slot | None = None
    if policy.concurrency > 0:
        # A request may make several model calls, each up to the response timeout.
        lease = settings.response_timeout * settings.max_model_calls + 60
        slot = await limiter.acquire(f"chat:inst:{installation}", policy.concurrency, lease)
        if slot is None:
            LOGGER.info("chat refused installation=%s reason=concurrency", installation)
            raise _rate_limited(
                1, "This home already has several requests in progress; try again in a moment."
            )
    try:
        checks = (
            (f"chat:inst:{installation}", policy.rate_per_minute, policy.burst),
            (f"chat:user:{principal.user_id}", policy.user_rate_per_minute, policy.user_burst),
        )
        for key, per_minute, burst in checks:
            if per_minute <= 0:
                continue
            decision = await limiter.hit(key, Rate(per_minute, 60.0), burst)
            if not decision.allowed:
                LOGGER.info(
                    "chat refused installation=%s reason=rate key=%s retry_after=%d",
                    installation,
                    key.split(":")[1],
                    decision.retry_after,
                )
                raise _rate_limited(
                    decision.retry_after, "Too many requests; wait a moment and try again."
                )
        yield
    finally:
        if slot is not None:
            await slot.release()
