"""The in-process store: GCRA and concurrency counters in this process's memory.

Used alone on one instance (self-hosted), and as the Redis store's fallback while Redis
is down.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from .gcra import CONCURRENCY, Admission, Clock, RateCheck, Slot, SlotClaim, gcra


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

    async def admit(self, rates: Sequence[RateCheck], claim: SlotClaim | None = None) -> Admission:
        # Nothing here awaits: the checks and the writes are one step of the event loop.
        if claim is not None and self._in_flight.get(claim.key, 0) >= claim.limit:
            return Admission(refused_by=CONCURRENCY)
        now = self.clock()
        arrivals: list[tuple[str, float]] = []
        for check in rates:
            decision, tat = gcra(self._tat.get(check.key), now, check.rate, check.burst)
            if not decision.allowed:
                return Admission(
                    refused_by=check.key, retry_after_seconds=decision.retry_after_seconds
                )
            arrivals.append((check.key, tat))
        self._tat.update(arrivals)
        if len(self._tat) > self.max_keys:
            self._prune(now)
        return Admission(slot=None if claim is None else self._take(claim.key))

    def _prune(self, now: float) -> None:
        # A key whose arrival time has passed is back to a full burst: forgetting it is exact.
        for key in [k for k, tat in self._tat.items() if tat <= now]:
            del self._tat[key]

    def _take(self, key: str) -> Slot:
        # No lease here: a slot is released when its request ends in this process.
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
