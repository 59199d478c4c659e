"""After-turn extraction: a cheap model compares the turn with the facts it touches and
decides add / update / delete / nothing. Those facts are the ones the answer was given
(the turn's recall, read for the same message), so an extraction reads nothing; only
after a turn whose memory tools changed the memory does it search again.

The model answers through a forced tool call (`tool_choice` names our one tool), so the
decisions arrive as JSON the API has shaped by our schema, never as prose to be scanned.
Only the candidate facts shown to the model may be changed; everything added passes
`filters.check_fact`. A failure only logs: nothing stored is touched unless a decision
was applied in full.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anthropic
from anthropic.types import ToolParam

from homemind_client.models import AssistantMessage, ChatRequest, ToolResultMessage, UserMessage

from .. import prompts
from ..chat.hooks import RecalledFact
from ..settings import Settings
from . import text as memtext
from .backend import MemoryBackend, MemoryBackendError, MemoryNotFoundError, Source
from .filters import check_fact
from .tools import MAX_TOOL_FACT_CHARS, category, fact_text

LOGGER = logging.getLogger(__name__)

EXTRACTION_CANDIDATES = 10
EXTRACTION_TIMEOUT = 30.0
EXTRACTION_MAX_DECISIONS = 6
EXTRACTION_MAX_TOKENS = 600

DECISIONS_TOOL = "record_memory_decisions"
DECISIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "decisions": {
            "type": "array",
            "description": prompts.EXTRACTION_DECISIONS_DESCRIPTION,
            "maxItems": EXTRACTION_MAX_DECISIONS,
            "items": {
                "type": "object",
                "properties": {
                    "action": {"type": "string", "enum": ["add", "update", "delete"]},
                    "id": {"type": "string"},
                    "content": {"type": "string", "maxLength": MAX_TOOL_FACT_CHARS},
                    "category": {"type": "string", "maxLength": 50},
                    "scope": {
                        "type": "string",
                        "enum": ["household", "speaker"],
                        "description": prompts.EXTRACTION_SCOPE_DESCRIPTION,
                    },
                },
                "required": ["action"],
            },
        }
    },
    "required": ["decisions"],
}
DECISIONS_TOOL_SPEC: ToolParam = {
    "name": DECISIONS_TOOL,
    "description": prompts.EXTRACTION_TOOL_DESCRIPTION,
    "input_schema": DECISIONS_SCHEMA,
}

ClaudeFor = Callable[[str], Awaitable[anthropic.AsyncAnthropic]]


def turn_text(chat: ChatRequest, reply: str, keep: int = 4) -> tuple[str, str]:
    """(the last user message, a short transcript of the end of the conversation)."""
    items = chat.conversation()
    lines: list[str] = []
    last_user = ""
    for item in items[-keep:]:
        if isinstance(item, UserMessage):
            lines.append(f"User: {item.content}")
        elif isinstance(item, AssistantMessage) and item.content:
            lines.append(f"Assistant: {item.content}")
        elif isinstance(item, ToolResultMessage):
            continue
    for item in reversed(items):
        if isinstance(item, UserMessage):
            last_user = item.content
            break
    if reply:
        lines.append(f"Assistant: {reply}")
    return last_user, "\n".join(lines)[-6000:]


def decisions_of(message: Any) -> list[Any]:
    """The decisions list of the forced tool call (in the Message JSON); ValueError when the
    answer has none."""
    content = message.get("content") if isinstance(message, dict) else None
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "tool_use" and block.get("name") == DECISIONS_TOOL:
            arguments = block.get("input")
            decisions = arguments.get("decisions") if isinstance(arguments, dict) else None
            if isinstance(decisions, list):
                return decisions
            raise ValueError("the extraction tool call has no decisions list")
    raise ValueError("the extraction answer has no tool call")


class Extractor:
    def __init__(self, backend: MemoryBackend, settings: Settings, claude_for: ClaudeFor) -> None:
        self.backend = backend
        self.settings = settings
        self._claude_for = claude_for

    async def extract(
        self,
        user: str,
        speaker: str | None,
        chat: ChatRequest,
        reply: str,
        api_key: str,
        *,
        seen: Sequence[RecalledFact] | None = None,
    ) -> list[str]:
        """Run one extraction; returns what was applied (for tests and logs). Never raises.

        `seen`: the facts the answer was given (its recall), when nothing changed the memory
        since; the model is shown those in the turn's own scope. Without them it is shown
        the nearest facts by a search."""
        try:
            async with asyncio.timeout(EXTRACTION_TIMEOUT):
                return await self._extract(user, speaker, chat, reply, api_key, seen=seen)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            # The SDK's messages never carry the key; log the type and status only.
            LOGGER.warning("Memory extraction failed (%s); nothing was changed", type(err).__name__)
            return []

    async def _candidates(
        self, user: str, speaker: str | None, last_user: str, seen: Sequence[RecalledFact] | None
    ) -> list[tuple[str, str, str | None]]:
        """(id, content, speaker id) of the facts the model may change: household and own."""
        if seen is not None:
            # The recall read them for this very message; another speaker's named facts
            # are not this speaker's to change.
            return [
                (f.id, f.content, f.speaker_id)
                for f in seen
                if f.speaker_id is None or f.speaker_id == speaker
            ]
        # No fact in scope: nothing to compare with, so no search (and no query embedding).
        in_scope = await self.backend.count_active(user, speaker_id=speaker, cap=1)
        if not in_scope.facts:
            return []
        found = await self.backend.search(
            user, last_user, speaker_id=speaker, limit=EXTRACTION_CANDIDATES
        )
        return [(r.id, r.content, r.speaker_id) for r in found]

    async def _extract(
        self,
        user: str,
        speaker: str | None,
        chat: ChatRequest,
        reply: str,
        api_key: str,
        *,
        seen: Sequence[RecalledFact] | None,
    ) -> list[str]:
        last_user, transcript = turn_text(chat, reply)
        if len(memtext.content_terms(last_user)) < 2:
            return []
        candidates = await self._candidates(user, speaker, last_user, seen)
        known = {fact_id for fact_id, _, _ in candidates}
        facts = [
            {"id": fact_id, "content": content, "scope": "speaker" if owner else "household"}
            for fact_id, content, owner in candidates
        ]
        prompt = prompts.EXTRACTION_PROMPT.format(
            facts=json.dumps(facts, ensure_ascii=False), transcript=transcript
        )
        client = await self._claude_for(api_key)
        # The raw response's JSON: the SDK's typed Message would only be read for one block.
        response = await client.messages.with_raw_response.create(
            model=self.settings.extraction_model,
            max_tokens=EXTRACTION_MAX_TOKENS,
            system=prompts.EXTRACTION_SYSTEM,
            messages=[{"role": "user", "content": prompt}],
            tools=[DECISIONS_TOOL_SPEC],
            tool_choice={"type": "tool", "name": DECISIONS_TOOL},
        )
        message = json.loads(response.http_response.content)
        applied: list[str] = []
        for decision in decisions_of(message)[:EXTRACTION_MAX_DECISIONS]:
            if not isinstance(decision, dict):
                continue
            try:
                outcome = await self._apply(user, speaker, known, decision)
            except (MemoryBackendError, MemoryNotFoundError):
                LOGGER.warning("An extraction decision could not be applied", exc_info=True)
                continue
            if outcome:
                applied.append(outcome)
        return applied

    async def _apply(
        self,
        user: str,
        speaker: str | None,
        known: set[str],
        decision: dict[str, Any],
    ) -> str | None:
        action = decision.get("action")
        content = fact_text(decision.get("content"))
        source: Source = "extraction"
        if action == "add":
            if not check_fact(content).keep:
                return None
            scope_speaker = speaker if decision.get("scope") == "speaker" else None
            result = await self.backend.add(
                user,
                content,
                category=category(decision.get("category")),
                speaker_id=scope_speaker,
                source=source,
            )
            return f"add:{result.record.id}" if result.created else None
        target = str(decision.get("id") or "")
        if target not in known:
            return None  # only the candidates shown to the model may change
        if action == "update":
            if not check_fact(content).keep:
                return None
            new = await self.backend.supersede(user, target, content, source=source)
            return f"update:{target}->{new.id}"
        if action == "delete":
            await self.backend.delete(user, target)
            return f"delete:{target}"
        return None
