"""The GCRA step and the `Limiter` interface every store implements."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# Seconds; tests inject one so the arithmetic is exact and nobody waits.
Clock = Callable[[], float]


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
