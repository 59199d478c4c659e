"""HA's tool names as Claude accepts them, and back.

Claude (and so the Home Mind server) only takes tool names matching `TOOL_NAME_PATTERN`
(`homemind_client/models/chat.py`: 1-128 of letters, digits, `_` and `-`).
HA 2025.5-2025.7 names the tools of several LLM APIs `api.tool`, so those names must be
rewritten on the way out and restored when the model calls a tool, or HA would not find it.
The mapping is rebuilt every turn from the current tool list (the integration keeps no state
between turns) and depends only on the names, not on their order, so the same tools give the
same wire names in every turn. Names that are already valid never change.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from homemind_client.models.chat import MAX_TOOL_NAME_LENGTH, TOOL_NAME_CHARS, TOOL_NAME_PATTERN

MAX_NAME_LENGTH: Final = MAX_TOOL_NAME_LENGTH
_VALID: Final = re.compile(TOOL_NAME_PATTERN)
_INVALID_CHAR: Final = re.compile(f"[^{TOOL_NAME_CHARS}]")
_SUFFIX_LENGTH: Final = 6


def is_valid(name: str) -> bool:
    """Whether Claude accepts `name` as it is."""
    return _VALID.fullmatch(name) is not None


def sanitize(name: str) -> str:
    """Every character Claude refuses becomes `_`; cut to the length limit."""
    return _INVALID_CHAR.sub("_", name)[:MAX_NAME_LENGTH] or "_"


def _with_suffix(name: str, base: str, salt: int) -> str:
    """`base` plus a short hash of HA's name: stable whatever the order of the tools."""
    seed = name if salt == 0 else f"{name}\x00{salt}"
    digest = hashlib.sha256(seed.encode()).hexdigest()[:_SUFFIX_LENGTH]
    return f"{base[: MAX_NAME_LENGTH - _SUFFIX_LENGTH - 1]}_{digest}"


@dataclass(frozen=True, slots=True)
class ToolNames:
    """One turn's mapping between HA's tool names and the names on the wire."""

    _to_wire: Mapping[str, str] = field(default_factory=dict)
    _to_ha: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def for_tools(cls, names: Iterable[str]) -> ToolNames:
        """The mapping for the tools HA offers this turn."""
        unique = set(names)
        # Valid names keep themselves: nothing changes on HA 2025.4 and from 2025.8 on.
        to_wire = {name: name for name in unique if is_valid(name)}
        taken = set(to_wire)
        candidates = {name: sanitize(name) for name in unique if name not in to_wire}
        shared = Counter(candidates.values())
        # Sorted, so a hash collision (next to impossible) is also resolved the same way.
        for name in sorted(candidates):
            wire = candidates[name]
            salt = 0
            # Two names that clean up the same (`a.b`, `a:b`) both get a suffix: neither
            # takes the plain name, so which one is which never depends on the tool order.
            while wire in taken or (salt == 0 and shared[wire] > 1):
                wire = _with_suffix(name, candidates[name], salt)
                salt += 1
            taken.add(wire)
            to_wire[name] = wire
        return cls(to_wire, {wire: name for name, wire in to_wire.items()})

    def to_wire(self, name: str) -> str:
        """The name sent to the server for HA's tool `name`.

        A tool of an earlier turn that HA no longer offers still appears in the history;
        it is cleaned up the same way, without a suffix.
        """
        return self._to_wire.get(name) or sanitize(name)

    def to_ha(self, name: str) -> str:
        """HA's name of the tool the model called (unknown names pass as they are)."""
        return self._to_ha.get(name, name)
