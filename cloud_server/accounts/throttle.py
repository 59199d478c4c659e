"""Login and anti-automation throttling, in process.

`Throttle` is the interface the handlers use; `InMemoryThrottle` keeps counters in
this process. A Redis-backed class with the same methods can replace it (one budget
for several instances) without touching the handlers.

Policy (ASVS 6.1.1/6.3.1, and ASVS 4's "≤ 100 failures per hour per account"):
- per account: after 5 failed logins within 15 minutes, each further failure doubles
  a waiting time, 1 s up to 15 min. A success resets the account. Only *login* is
  slowed: an attacker cannot lock the owner out of the password-reset path.
- per IP: 20 login attempts a minute and 100 an hour.
- per IP on register / password reset, and per email on password reset: a few per hour.
Every refusal carries a whole number of seconds for `Retry-After`.

With `REDIS_URL`, `RedisThrottle` keeps the same counters in Redis (atomic Lua scripts on
the shared limiter's connection), so the per-account and per-IP budgets are one budget
across all instances. When Redis is down it fails CLOSED: login, registration and reset
requests get 503 `temporarily_unavailable` with `Retry-After` (docs/security-checklist.md
row 19: an outage must not multiply an attacker's guesses by the number of instances).
Signed-in sessions, installation tokens and chat are unaffected (chat fails open, see
`ratelimit/redis_store.py`). The Lua scripts are in `ratelimit/lua.py`.
IP buckets key IPv6 clients by /64.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from homemind_client.models import ErrorCode

from ..client_ip import ip_rate_key
from ..errors import ApiError
from ..ratelimit.gcra import Clock, Limiter
from ..ratelimit.lua import LOGIN_FAILED_SCRIPT, LOGIN_LOCKED_SCRIPT, WINDOW_SCRIPT
from ..ratelimit.redis_store import REDIS_DOWN_ERRORS, RedisLimiter


@dataclass(frozen=True, slots=True)
class Limit:
    count: int
    window: float  # seconds


@dataclass(slots=True)
class ThrottlePolicy:
    account_free_failures: int = 5
    account_window: float = 15 * 60
    account_max_delay: float = 15 * 60
    ip_login: tuple[Limit, ...] = (Limit(20, 60), Limit(100, 3600))
    ip_register: tuple[Limit, ...] = (Limit(20, 3600),)
    ip_reset: tuple[Limit, ...] = (Limit(10, 3600),)
    email_reset: tuple[Limit, ...] = (Limit(3, 3600),)


class Throttle(Protocol):
    async def login_retry_after(self, account: str, ip: str) -> int | None:
        """Seconds to wait before this login attempt may run, or None; counts the attempt."""

    async def login_failed(self, account: str) -> None: ...

    async def login_succeeded(self, account: str) -> None: ...

    async def hit(self, bucket: str, key: str) -> int | None:
        """Count one action in a named bucket ("register", "reset_ip", "reset_email")."""


def _bucket_limits(policy: ThrottlePolicy, bucket: str) -> tuple[Limit, ...]:
    return {
        "login_ip": policy.ip_login,
        "register": policy.ip_register,
        "reset_ip": policy.ip_reset,
        "reset_email": policy.email_reset,
    }[bucket]


@dataclass(slots=True)
class _Account:
    failures: int = 0
    last_failure: float = 0.0
    locked_until: float = 0.0


@dataclass
class InMemoryThrottle:
    policy: ThrottlePolicy = field(default_factory=ThrottlePolicy)
    clock: Clock = time.monotonic
    _accounts: dict[str, _Account] = field(default_factory=dict)
    _events: dict[tuple[str, str], deque[float]] = field(default_factory=dict)

    def _limits(self, bucket: str) -> tuple[Limit, ...]:
        return _bucket_limits(self.policy, bucket)

    def _key(self, bucket: str, key: str) -> str:
        return key if bucket == "reset_email" else ip_rate_key(key)

    def _window_hit(self, bucket: str, key: str) -> int | None:
        now = self.clock()
        limits = self._limits(bucket)
        events = self._events.setdefault((bucket, self._key(bucket, key)), deque())
        longest = max(limit.window for limit in limits)
        while events and events[0] <= now - longest:
            events.popleft()
        wait = 0.0
        for limit in limits:
            recent = [t for t in events if t > now - limit.window]
            if len(recent) >= limit.count:
                wait = max(wait, recent[-limit.count] + limit.window - now)
        if wait > 0:
            return max(1, math.ceil(wait))
        events.append(now)
        self._prune()
        return None

    def _prune(self) -> None:
        # Bounded memory: forget idle keys once the table grows.
        if len(self._events) > 50_000:
            now = self.clock()
            for key in [k for k, v in self._events.items() if not v or v[-1] < now - 3600]:
                del self._events[key]

    async def login_retry_after(self, account: str, ip: str) -> int | None:
        state = self._accounts.get(account)
        if state is not None:
            wait = state.locked_until - self.clock()
            if wait > 0:
                return max(1, math.ceil(wait))
        return self._window_hit("login_ip", ip)

    async def login_failed(self, account: str) -> None:
        now = self.clock()
        state = self._accounts.setdefault(account, _Account())
        if now - state.last_failure > self.policy.account_window:
            state.failures = 0
        state.failures += 1
        state.last_failure = now
        excess = state.failures - self.policy.account_free_failures
        if excess >= 0:
            state.locked_until = now + min(2.0**excess, self.policy.account_max_delay)

    async def login_succeeded(self, account: str) -> None:
        self._accounts.pop(account, None)

    async def hit(self, bucket: str, key: str) -> int | None:
        return self._window_hit(bucket, key)


# --------------------------------------------------------------------------- Redis


def _unavailable() -> ApiError:
    return ApiError(
        ErrorCode.TEMPORARILY_UNAVAILABLE,
        "Signing in is briefly unavailable; try again in a moment.",
        retry_after=5,
    )


def _seconds(wait_ms: str | None) -> int | None:
    if not wait_ms:
        return None
    return max(1, math.ceil(float(wait_ms) / 1000))


class RedisThrottle:
    """`InMemoryThrottle`'s policy on the shared Redis of `RedisLimiter` (one budget)."""

    def __init__(
        self, store: RedisLimiter, policy: ThrottlePolicy | None = None, clock: Clock | None = None
    ) -> None:
        self.store = store
        self.policy = policy or ThrottlePolicy()
        # None: Redis's clock. Tests set one (seconds), as with `InMemoryThrottle.clock`.
        self.clock = clock

    def _account_key(self, account: str) -> str:
        # No email addresses in Redis keys.
        digest = hashlib.sha256(account.encode()).hexdigest()[:32]
        return self.store.key("th", "acct", digest)

    async def _run(self, script: str, key: str, *args: Any) -> Any:
        if not self.store.available:
            raise _unavailable()
        try:
            return await self.store.run_script(script, [key], *args, clock=self.clock)
        except REDIS_DOWN_ERRORS as err:
            self.store.report_failure(err)
            raise _unavailable() from err

    async def _window_hit(self, bucket: str, key: str) -> int | None:
        if bucket != "reset_email":
            key = ip_rate_key(key)
        else:
            key = hashlib.sha256(key.encode()).hexdigest()[:32]
        pairs: list[str] = []
        for limit in _bucket_limits(self.policy, bucket):
            pairs += [str(limit.count), f"{limit.window * 1000:.0f}"]
        member = secrets.token_hex(8)  # one event; the score holds its time
        result = await self._run(WINDOW_SCRIPT, self.store.key("th", bucket, key), member, *pairs)
        return _seconds(result)

    async def login_retry_after(self, account: str, ip: str) -> int | None:
        wait = _seconds(await self._run(LOGIN_LOCKED_SCRIPT, self._account_key(account)))
        if wait is not None:
            return wait
        return await self._window_hit("login_ip", ip)

    async def login_failed(self, account: str) -> None:
        await self._run(
            LOGIN_FAILED_SCRIPT,
            self._account_key(account),
            f"{self.policy.account_window * 1000:.0f}",
            self.policy.account_free_failures,
            f"{self.policy.account_max_delay * 1000:.0f}",
        )

    async def login_succeeded(self, account: str) -> None:
        try:
            async with self.store.connection_lost_is_redis_down():
                await self.store.redis.delete(self._account_key(account))
        except REDIS_DOWN_ERRORS as err:
            # Not worth failing a successful login: the counter expires on its own.
            self.store.report_failure(err)

    async def hit(self, bucket: str, key: str) -> int | None:
        return await self._window_hit(bucket, key)


def make_throttle(limiter: Limiter) -> Throttle:
    """The throttle matching the app's limiter: shared in Redis, or in this process."""
    if isinstance(limiter, RedisLimiter):
        return RedisThrottle(limiter)
    return InMemoryThrottle()
