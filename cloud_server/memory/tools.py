"""The memory's server tools, run by the server inside one chat request:
`memory_remember`, `memory_update` (supersedes, so the old version is never recalled
again) and `memory_forget`. Everything stored passes `filters.check_fact`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from homemind_client.models import ToolSpec

from .. import prompts
from . import text as memtext
from .backend import MemoryBackend, MemoryBackendError, MemoryNotFoundError, MemoryRecord
from .filters import check_fact

LOGGER = logging.getLogger(__name__)

FORGET_THRESHOLD = 0.5
MAX_TOOL_FACT_CHARS = 500

REMEMBER_TOOL = "memory_remember"
UPDATE_TOOL = "memory_update"
FORGET_TOOL = "memory_forget"

SCOPE_SCHEMA = {
    "type": "string",
    "enum": ["household", "speaker"],
    "description": prompts.SCOPE_DESCRIPTION,
}

TOOLS = [
    ToolSpec(
        name=REMEMBER_TOOL,
        description=prompts.REMEMBER_DESCRIPTION,
        parameters={
            "type": "object",
            "properties": {
                "content": {"type": "string", "maxLength": MAX_TOOL_FACT_CHARS},
                "category": {
                    "type": "string",
                    "description": prompts.CATEGORY_DESCRIPTION,
                    "maxLength": 50,
                },
                "scope": SCOPE_SCHEMA,
            },
            "required": ["content"],
        },
    ),
    ToolSpec(
        name=UPDATE_TOOL,
        description=prompts.UPDATE_DESCRIPTION,
        parameters={
            "type": "object",
            "properties": {
                "id": {"type": "string", "description": prompts.UPDATE_ID_DESCRIPTION},
                "old": {"type": "string", "description": prompts.UPDATE_OLD_DESCRIPTION},
                "content": {"type": "string", "maxLength": MAX_TOOL_FACT_CHARS},
            },
            "required": ["content"],
        },
    ),
    ToolSpec(
        name=FORGET_TOOL,
        description=prompts.FORGET_DESCRIPTION,
        parameters={
            "type": "object",
            "properties": {
                "id": {"type": "string", "description": prompts.FORGET_ID_DESCRIPTION},
                "query": {"type": "string"},
            },
        },
    ),
]


def category(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = re.sub(r"\s+", " ", value).strip()[:50]
    return value or None


def fact_text(value: Any) -> str:
    return str(value or "").strip()[:MAX_TOOL_FACT_CHARS]


class MemoryTools:
    def __init__(self, backend: MemoryBackend) -> None:
        self.backend = backend

    async def run(
        self, user: str, speaker: str | None, name: str, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            if name == REMEMBER_TOOL:
                return await self._remember(user, speaker, arguments)
            if name == UPDATE_TOOL:
                return await self._update(user, speaker, arguments)
            if name == FORGET_TOOL:
                return await self._forget(user, speaker, arguments)
        except MemoryBackendError:
            LOGGER.warning("Memory tool %s failed in the store", name, exc_info=True)
            return {"error": "memory_unavailable", "error_text": prompts.MEMORY_UNAVAILABLE_TEXT}
        return {"error": "unknown_tool", "error_text": prompts.UNKNOWN_TOOL_TEXT.format(name=name)}

    async def _remember(
        self, user: str, speaker: str | None, args: dict[str, Any]
    ) -> dict[str, Any]:
        content = fact_text(args.get("content"))
        verdict = check_fact(content)
        if not verdict.keep:
            return {"stored": False, "reason": verdict.reason, "note": prompts.NOT_A_FACT_NOTE}
        scope_speaker = speaker if args.get("scope") == "speaker" else None
        result = await self.backend.add(
            user,
            content,
            category=category(args.get("category")),
            speaker_id=scope_speaker,
            source="tool",
        )
        return {
            "stored": True,
            "already_known": not result.created,
            "id": result.record.id,
            "content": result.record.content,
            "scope": "speaker" if scope_speaker else "household",
        }

    async def _update(self, user: str, speaker: str | None, args: dict[str, Any]) -> dict[str, Any]:
        content = fact_text(args.get("content"))
        verdict = check_fact(content)
        if not verdict.keep:
            return {"updated": False, "reason": verdict.reason}
        target = await self._resolve(user, speaker, args.get("id"), args.get("old") or content)
        if target is None:
            return {
                "updated": False,
                "reason": "not_found",
                "note": prompts.NO_MATCH_TO_UPDATE_NOTE,
            }
        new = await self.backend.supersede(user, target.id, content, source="tool")
        return {"updated": True, "id": new.id, "content": new.content, "replaced": target.content}

    async def _forget(self, user: str, speaker: str | None, args: dict[str, Any]) -> dict[str, Any]:
        memory_id, query = args.get("id"), str(args.get("query") or "").strip()
        if isinstance(memory_id, str) and memory_id:
            record = await self._visible(user, speaker, memory_id)
            if record is not None:
                await self.backend.delete(user, record.id)
                return {"forgotten": [record.content]}
        if not query:
            return {"forgotten": [], "note": prompts.NOTHING_FORGOTTEN_NOTE}
        gone = await forget_matching(self.backend, user, query, speaker_id=speaker)
        if not gone:
            return {"forgotten": [], "note": prompts.NOTHING_FORGOTTEN_NOTE}
        return {"forgotten": [r.content for r in gone]}

    async def _visible(self, user: str, speaker: str | None, memory_id: str) -> MemoryRecord | None:
        try:
            record = await self.backend.get(user, memory_id)
        except MemoryNotFoundError:
            return None
        if not record.active or record.speaker_id not in (None, speaker):
            return None
        return record

    async def _resolve(
        self, user: str, speaker: str | None, memory_id: Any, words: str
    ) -> MemoryRecord | None:
        if isinstance(memory_id, str) and memory_id:
            record = await self._visible(user, speaker, memory_id)
            if record is not None:
                return record
        hits = await self.backend.search(user, words, speaker_id=speaker, limit=5)
        scored = [(memtext.relevance(words, h.content), h) for h in hits]
        scored = [(score, h) for score, h in scored if score >= FORGET_THRESHOLD]
        if not scored:
            return None
        best = max(score for score, _ in scored)
        return next(h for score, h in scored if score == best)


async def forget_matching(
    backend: MemoryBackend,
    user_id: str,
    query: str,
    *,
    speaker_id: str | None = None,
    all_speakers: bool = False,
) -> list[MemoryRecord]:
    """Delete the best matching fact(s) for `query`: those with the top relevance, if it is
    at least `FORGET_THRESHOLD` (share of the query's own words found in the fact)."""
    hits = await backend.search(
        user_id, query, speaker_id=speaker_id, all_speakers=all_speakers, limit=10
    )
    scored = [(memtext.relevance(query, h.content), h) for h in hits]
    if not scored:
        return []
    best = max(score for score, _ in scored)
    if best < FORGET_THRESHOLD:
        return []
    gone: list[MemoryRecord] = []
    for score, hit in scored:
        if score == best:
            try:
                gone.append(await backend.delete(user_id, hit.id))
            except MemoryNotFoundError:
                continue
    return gone
