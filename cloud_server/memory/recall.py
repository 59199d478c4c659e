"""Recall into the prompt: every fact the turn may see while they fit the token budget,
best matches for the turn first; beyond the budget only the best ranked for the turn's
last user message. Recalls are counted (a ranking tie-break) off the turn, in batches.

A turn sees the household's facts, its speaker's own and those of the people it names
(speakers.py). Most households' facts all fit: one read lists them and the words of the
message order them, with no search and no query embedding (about 6 ms of CPU per turn with
the multilingual model, the largest part of a turn's cost). Only a household whose facts do
not fit is searched; for one known to be that large the embedding starts before the read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from ..chat.hooks import RecalledFact
from . import text as memtext
from .backend import MemoryBackend, MemoryBackendError, MemoryRecord
from .speakers import named_in

LOGGER = logging.getLogger(__name__)

RECALL_BUDGET_TOKENS = 800
# Beyond this many facts the "everything fits" check is not even tried.
RECALL_ALL_MAX = 200
# The least a fact costs in the prompt (`fact_tokens` of a one-character fact): more
# than budget / this many facts can never all fit.
MIN_FACT_TOKENS = 5
# Recalls are counted off the turn, a household's in one write per this many seconds at
# most: its turns meanwhile share that write (under load a write per turn cost more CPU
# than the recall's own read, bench/load.py). A crash loses at most this much counting.
USE_FLUSH_DELAY = 5.0

# Households remembered as too large to list (their query embedding starts at once).
LARGE_HOUSEHOLDS_KEPT = 10_000

Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]


def recalled(record: MemoryRecord, names: Mapping[str, str] | None = None) -> RecalledFact:
    return RecalledFact(
        id=record.id,
        content=record.content,
        category=record.category,
        speaker_id=record.speaker_id,
        speaker_name=(names or {}).get(record.speaker_id) if record.speaker_id else None,
    )


def fact_tokens(record: MemoryRecord) -> int:
    return memtext.estimate_tokens(record.content) + 4


def by_words(
    records: list[MemoryRecord], query: str
) -> tuple[list[MemoryRecord], list[MemoryRecord]]:
    """(all of `records`, those sharing words with `query` first, best first; those that
    share any). The sort is stable: among equals the given (newest first) order stays."""
    relevance = memtext.Relevance(query)
    scores = {r.id: relevance(r.content) for r in records}
    ordered = sorted(records, key=lambda r: -scores[r.id])
    return ordered, [r for r in ordered if scores[r.id] > 0]


class Recall:
    """Chooses the facts of one turn's prompt and counts their use."""

    def __init__(self, backend: MemoryBackend, budget_tokens: int, spawn: Spawn) -> None:
        self.backend = backend
        self.budget_tokens = budget_tokens
        self._spawn = spawn
        # Recalls not yet written: user -> fact id -> times; one flush task at a time.
        self._uses: dict[str, Counter[str]] = {}
        self._use_flush: asyncio.Task[None] | None = None
        self._flush_now = asyncio.Event()
        # Households whose facts did not fit at their last recall (oldest first).
        self._large: dict[str, None] = {}

    async def named(self, user: str, speaker: str | None, query: str) -> dict[str, str]:
        """The household's speakers the turn names (id -> name), the speaker excluded."""
        try:
            speakers = await self.backend.speakers(user)
        except MemoryBackendError:
            LOGGER.warning("Could not read the speakers; only the speaker's facts", exc_info=True)
            return {}
        return {s: speakers[s] for s in named_in(query, speakers) if s != speaker}

    async def _everything(
        self, user: str, speaker: str | None, also: list[str]
    ) -> list[MemoryRecord] | None:
        """Every fact the turn may see, newest first, when they fit the budget; else None."""
        cap = min(RECALL_ALL_MAX, self.budget_tokens // MIN_FACT_TOKENS)
        # Each fact costs at least a quarter of its characters plus 4 tokens: the backend's
        # bound skips the listing only where the exact sum below could not fit either.
        everything = await self.backend.all_that_fit(
            user, speaker_id=speaker, also_speakers=also, cap=cap, max_chars=4 * self.budget_tokens
        )
        if everything is None or sum(fact_tokens(r) for r in everything) > self.budget_tokens:
            return None
        return everything

    async def _ranked(
        self, user: str, speaker: str | None, query: str, also: list[str]
    ) -> list[MemoryRecord]:
        if not query.strip():
            return []
        return await self.backend.search(
            user, query, speaker_id=speaker, limit=50, also_speakers=also
        )

    async def facts(self, user: str, speaker: str | None, query: str) -> list[RecalledFact]:
        searched = user in self._large and bool(query.strip())
        if searched:
            self.backend.prepare_query(query)  # the embedding runs while we read below
        names = await self.named(user, speaker, query)
        also = list(names)
        everything = await self._everything(user, speaker, also)
        if everything is not None:
            self._large.pop(user, None)
            chosen, matching = by_words(everything, query)
            self._count_use(user, [r.id for r in matching])
            return [recalled(r, names) for r in chosen]
        self._note_large(user)  # the search embeds the query (if `searched` did not)
        chosen, used = [], 0
        for record in await self._ranked(user, speaker, query, also):
            cost = fact_tokens(record)
            if used + cost > self.budget_tokens:
                break
            chosen.append(record)
            used += cost
        self._count_use(user, [r.id for r in chosen])
        return [recalled(r, names) for r in chosen]

    def _note_large(self, user: str) -> None:
        """Remember (a bounded LRU) that this household's facts did not fit."""
        self._large.pop(user, None)
        self._large[user] = None
        if len(self._large) > LARGE_HOUSEHOLDS_KEPT:
            del self._large[next(iter(self._large))]

    def _count_use(self, user_id: str, ids: list[str]) -> None:
        if not ids:
            return
        self._uses.setdefault(user_id, Counter()).update(ids)
        if self._use_flush is None:
            self._use_flush = self._spawn(self._flush_uses())

    def flush_now(self) -> None:
        """Shutdown: write the pending counts at once, and every count from now on."""
        self._flush_now.set()

    async def _flush_uses(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._flush_now.wait(), USE_FLUSH_DELAY)
        # Uses counted from here on start the next flush.
        self._use_flush = None
        pending, self._uses = self._uses, {}
        for user_id, counts in pending.items():
            by_times: defaultdict[int, list[str]] = defaultdict(list)
            for memory_id, times in counts.items():
                by_times[times].append(memory_id)
            for times, ids in by_times.items():
                try:
                    await self.backend.mark_used(user_id, ids, times=times)
                except Exception:
                    LOGGER.warning("Could not count the use of recalled facts", exc_info=True)
