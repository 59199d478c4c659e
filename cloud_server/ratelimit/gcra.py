"""The GCRA step and the `Limiter` interface every store implements."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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


class Slot(Protocol):
    async def release(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RateCheck:
    """Count one request against `key`: `rate` sustained, `burst` at once."""

    key: str
    rate: Rate
    burst: int


@dataclass(frozen=True, slots=True)
class SlotClaim:
    """One of `limit` concurrent slots of `key`; `lease` (seconds) bounds how long a slot
    is held if its holder dies without releasing it."""

    key: str
    limit: int
    lease: float

    def __post_init__(self) -> None:
        if self.limit < 1:
            # Both stores would refuse every request; a cap of 0 means no claim at all.
            raise ValueError("a slot claim needs a limit of at least 1")


# `Admission.refused_by` when every slot of the claim was taken.
CONCURRENCY = "concurrency"


@dataclass(frozen=True, slots=True)
class Admission:
    """A request admitted (holding `slot` when it claimed one) or refused by one limit."""

    slot: Slot | None = None
    refused_by: str | None = None  # CONCURRENCY, or the key of the rate that refused
    retry_after_seconds: float = 0.0

    @property
    def admitted(self) -> bool:
        return self.refused_by is None

    @property
    def retry_after(self) -> int:
        """Whole seconds for `Retry-After` (rounded up, at least 1)."""
        return max(1, math.ceil(self.retry_after_seconds))


class Limiter(Protocol):
    async def admit(self, rates: Sequence[RateCheck], claim: SlotClaim | None = None) -> Admission:
        """Take the claimed slot and count one request against every rate, all or nothing:
        a refused request holds no slot and spends no rate's budget. The claim is checked
        first, then the rates in order; the first that refuses is named."""
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
        return Decision(False, allow_at - now), base
    return Decision(True, 0.0), new_tat
