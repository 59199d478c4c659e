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
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

Clock = Callable[[], float]


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
        return {
            "login_ip": self.policy.ip_login,
            "register": self.policy.ip_register,
            "reset_ip": self.policy.ip_reset,
            "reset_email": self.policy.email_reset,
        }[bucket]

    def _window_hit(self, bucket: str, key: str) -> int | None:
        now = self.clock()
        limits = self._limits(bucket)
        events = self._events.setdefault((bucket, key), deque())
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
