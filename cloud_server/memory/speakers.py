"""Who may see a personal fact: the speaker, and any turn that names that person.

A fact stored for one speaker (an HA user) is recalled for that speaker's own turns,
and for any turn whose text names that person: "Will Petra be home for dinner on
Friday?" asked at a kitchen satellite (no speaker known) may see Petra's "I work late
shifts on Fridays". Another speaker's facts are never recalled otherwise, so "my
favourite station" asked by one person never brings up another person's station.

The names come from the chat requests themselves (`speaker.name`, the HA person or
user name): each request's speaker is noted in `memory_speakers`, once per name per
server process; the names are read once per NAMES_TTL seconds per household
(`SpeakerNames`). A name this process heard is known to its next turns at once, while
its write still waits for the database (or failed and will be tried again).

A person is named when the turn contains their full name, or their first name, as whole
words (case and accents ignored, "Petra's" counts; a first name that is also a stop word,
like "Will", only as the full name).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from . import text as memtext

# Names shorter than this are not matched on their own ("Al" would match too much).
MIN_NAME_CHARS = 2
# (user, speaker) -> name already written by this process; bounded.
_WRITTEN_MAX = 4096
# A name another server instance noted is known here at most this many seconds later (this
# process's own at once). Names change rarely, and reading them was a database trip every
# recall waited for before its search could start.
NAMES_TTL = 5.0
# Households whose names are held; bounded.
_NAMES_MAX = 4096


def name_words(name: str) -> list[str]:
    return [w for w in memtext.words(name) if w]


def named_in(text: str, speakers: Mapping[str, str]) -> list[str]:
    """The speaker ids (in `speakers`: id -> name) whose name the text contains."""
    words = memtext.words(text)
    if not words or not speakers:
        return []
    present = set(words)
    joined = f" {' '.join(words)} "
    found = []
    for speaker_id, name in speakers.items():
        parts = name_words(name)
        if not parts:
            continue
        whole = f" {' '.join(parts)} " in joined
        # A first name that is also a stop word ("Will") counts only as the full name.
        first = (
            len(parts[0]) >= MIN_NAME_CHARS
            and parts[0] not in memtext.STOP_WORDS
            and parts[0] in present
        )
        if whole or first:
            found.append(speaker_id)
    return found


class SpeakerNames:
    """This process's view of the speaker names: each household's as last read (for
    NAMES_TTL seconds), the names it heard whose write has not committed yet, and which
    (user, speaker, name) it has written itself, so that a name is written once per change."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._names: OrderedDict[str, tuple[float, dict[str, str]]] = OrderedDict()
        self._written: OrderedDict[tuple[str, str], str] = OrderedDict()
        # Heard in a request, not yet in a read that was kept: laid over every read, so that a
        # turn right after the speaker's own does not depend on when (or whether) the write
        # lands. speaker -> (name, written): a written one goes with the next kept read.
        self._pending: OrderedDict[str, dict[str, tuple[str, bool]]] = OrderedDict()
        # Counts this process's own writes: a read that began before one is not kept.
        self._writes = 0

    def hear(self, user_id: str, speaker_id: str, name: str) -> bool:
        """A request carried this speaker's name: known here from now on. Returns whether
        this process has still to write it (it has not yet written this name)."""
        key = (user_id, speaker_id)
        if self._written.get(key) == name:
            self._written.move_to_end(key)
            return False
        pending = self._pending.setdefault(user_id, {})
        pending[speaker_id] = (name, False)
        self._pending.move_to_end(user_id)
        while len(self._pending) > _NAMES_MAX:
            self._pending.popitem(last=False)
        entry = self._names.get(user_id)
        if entry is not None:
            entry[1][speaker_id] = name
        return True

    def get(self, user_id: str) -> dict[str, str] | None:
        """The household's names, or None when not read within NAMES_TTL."""
        entry = self._names.get(user_id)
        if entry is None or self._clock() - entry[0] >= NAMES_TTL:
            return None
        self._names.move_to_end(user_id)
        return self._with_pending(user_id, entry[1])

    def mark(self) -> int:
        """Taken before a read of the names, for `put`."""
        return self._writes

    def put(self, user_id: str, names: Mapping[str, str], mark: int) -> dict[str, str]:
        """Keep what a read found, unless this process wrote a name while it ran; returns
        the names as this process knows them (the read and what it heard since)."""
        if mark == self._writes:
            self._names[user_id] = (self._clock(), dict(names))
            self._names.move_to_end(user_id)
            while len(self._names) > _NAMES_MAX:
                self._names.popitem(last=False)
            # This read began after every write of this process had committed: it has them.
            pending = self._pending.get(user_id)
            if pending is not None:
                for speaker_id in [s for s, (_, written) in pending.items() if written]:
                    del pending[speaker_id]
                if not pending:
                    del self._pending[user_id]
        return self._with_pending(user_id, names)

    def noted(self, user_id: str, speaker_id: str, name: str) -> None:
        """This process wrote a name: the database has it, and its own next recall sees it."""
        self._writes += 1
        self._written[(user_id, speaker_id)] = name
        self._written.move_to_end((user_id, speaker_id))
        while len(self._written) > _WRITTEN_MAX:
            self._written.popitem(last=False)
        pending = self._pending.get(user_id)
        if pending is not None and pending.get(speaker_id) == (name, False):
            pending[speaker_id] = (name, True)
        entry = self._names.get(user_id)
        if entry is not None:
            entry[1][speaker_id] = name

    def forget_user(self, user_id: str) -> None:
        """The household's memory was deleted: its names are read and written anew."""
        self._writes += 1
        self._names.pop(user_id, None)
        self._pending.pop(user_id, None)
        for key in [k for k in self._written if k[0] == user_id]:
            del self._written[key]

    def _with_pending(self, user_id: str, names: Mapping[str, str]) -> dict[str, str]:
        known = dict(names)
        for speaker_id, (name, _) in self._pending.get(user_id, {}).items():
            known[speaker_id] = name
        return known
