"""The memory backend interface and the records it returns.

Scopes: a fact with `speaker_id=None` belongs to the whole household; a fact with a
speaker id belongs to that person. Searches for a speaker see the household's facts
and that speaker's own, plus the own facts of the people in `also_speakers` (the chat
passes the people its turn names, see speakers.py), never another speaker's.
The owner is always the account (`user_id`): every installation of a user shares the
household memory.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

Source = Literal["api", "installation", "tool", "extraction"]

# `all_speakers=True` (the owner's own API) sees every scope; otherwise the household
# and `speaker_id` only.
ALL = "__all__"


@dataclass(frozen=True, slots=True)
class MemoryRecord:
    id: str
    user_id: str
    content: str
    category: str | None
    speaker_id: str | None
    source: str
    created_at: datetime
    updated_at: datetime
    superseded_by: str | None = None
    superseded_at: datetime | None = None
    use_count: int = 0
    last_used_at: datetime | None = None
    index_ref: str | None = None

    @property
    def active(self) -> bool:
        return self.superseded_by is None


@dataclass(frozen=True, slots=True)
class AddResult:
    record: MemoryRecord
    created: bool


@dataclass(frozen=True, slots=True)
class ActiveCount:
    facts: int  # at most the `cap` asked for
    chars: int  # the total length of those facts' content


class MemoryNotFoundError(LookupError):
    """The fact does not exist for this owner (or is no longer active where that matters)."""


class MemoryBackendError(RuntimeError):
    """The store failed (database or remote index); the caller decides how to degrade."""


class MemoryBackend(Protocol):
    name: str

    async def add(
        self,
        user_id: str,
        content: str,
        *,
        category: str | None = None,
        speaker_id: str | None = None,
        source: Source = "api",
    ) -> AddResult:
        """Store a fact; an identical active fact (normalised) in the same scope is returned."""
        ...

    async def search(
        self,
        user_id: str,
        query: str,
        *,
        speaker_id: str | None = None,
        all_speakers: bool = False,
        limit: int = 10,
        also_speakers: Sequence[str] = (),
    ) -> list[MemoryRecord]:
        """Active facts relevant to `query`, best first (recency and use only break ties)."""
        ...

    def prepare_query(self, query: str) -> None:
        """Start the work of an upcoming search of `query` (its embedding) in the background."""
        ...

    async def note_speaker(self, user_id: str, speaker_id: str, name: str) -> None:
        """Record a speaker of the household and their name (from a chat request)."""
        ...

    async def speakers(self, user_id: str) -> dict[str, str]:
        """The household's known speakers: id -> name."""
        ...

    async def list(
        self,
        user_id: str,
        *,
        speaker_id: str | None = None,
        all_speakers: bool = True,
        include_superseded: bool = False,
        limit: int | None = 50,
        offset: int = 0,
        also_speakers: Sequence[str] = (),
    ) -> builtins.list[MemoryRecord]:
        """Facts newest first."""
        ...

    async def get(self, user_id: str, memory_id: str) -> MemoryRecord:
        """One fact of this owner (active or not); `MemoryNotFoundError` otherwise."""
        ...

    async def update(
        self,
        user_id: str,
        memory_id: str,
        *,
        content: str | None = None,
        category: str | None = None,
        set_category: bool = False,
    ) -> MemoryRecord:
        """Correct a fact in place (the owner's own edit)."""
        ...

    async def supersede(
        self, user_id: str, memory_id: str, content: str, *, source: Source = "tool"
    ) -> MemoryRecord:
        """Replace an active fact by a new one in the same scope; the old one is kept hidden."""
        ...

    async def delete(self, user_id: str, memory_id: str) -> MemoryRecord:
        """Delete one fact (and, for an active fact, the history it superseded stays)."""
        ...

    async def delete_all(self, user_id: str) -> int:
        """Delete everything of this owner, history included; returns the number of rows."""
        ...

    async def mark_used(
        self, user_id: str, memory_ids: builtins.list[str], *, times: int = 1
    ) -> None:
        """Count `times` recalls of each of these facts (a tie-break for ranking)."""
        ...

    async def count(self, user_id: str, *, include_superseded: bool = False) -> int: ...

    async def count_active(
        self,
        user_id: str,
        *,
        speaker_id: str | None = None,
        cap: int,
        also_speakers: Sequence[str] = (),
    ) -> ActiveCount:
        """The active facts `speaker_id` sees (household, own, `also_speakers`'), at most `cap`.

        Cheap on a household of any size (it stops after `cap` facts): the chat decides
        with it, every turn, whether listing everything could fit its prompt budget.
        """
        ...

    async def all_that_fit(
        self,
        user_id: str,
        *,
        speaker_id: str | None = None,
        also_speakers: Sequence[str] = (),
        cap: int,
        max_chars: int,
    ) -> builtins.list[MemoryRecord] | None:
        """Every active fact `speaker_id` sees (household, own, `also_speakers`'), newest
        first, when there are at most `cap` of them and their content plus 16 characters
        each totals at most `max_chars`; None when they could not all fit.

        One read for the chat's recall on every turn: the newest `cap + 1` facts (an index
        walk that stops there, in a household of any size).
        """
        ...

    async def health(self) -> bool: ...

    async def close(self) -> None: ...
