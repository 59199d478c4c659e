"""The chat pipeline's memory: recall into the prompt, server tools, after-turn extraction.

- Recall: every fact of the household and the speaker while they fit the token budget,
  best matches for the turn first; beyond the budget only the best ranked for the
  turn's last user message.
- Tools (run by the server inside one request): `memory_remember`, `memory_update`
  (supersedes, so the old version is never recalled again), `memory_forget`.
- Extraction: after the answer was sent, a cheap model compares the turn with the ten
  nearest facts and decides add / update / delete / nothing. It runs as a background
  task (held in a set, drained on shutdown), never delays the answer, and a failure
  only logs: nothing already stored is touched unless a decision was applied in full.
Everything the model stores passes `filters.check_fact` (no states, commands, dumps).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import Counter, defaultdict
from typing import Any

import anthropic
from aiohttp import web

from homemind_client.models import (
    AssistantMessage,
    ChatRequest,
    ToolResultMessage,
    ToolSpec,
    UserMessage,
)

from ..accounts.principal import InstallationPrincipal
from ..chat.hooks import ChatAccess, RecalledFact
from ..settings import Settings
from . import text as memtext
from .backend import MemoryBackend, MemoryBackendError, MemoryNotFoundError, MemoryRecord, Source
from .filters import check_fact

LOGGER = logging.getLogger(__name__)

RECALL_BUDGET_TOKENS = 800
# Beyond this many facts the "everything fits" check is not even tried.
RECALL_ALL_MAX = 200
# The least a fact costs in the prompt (`_fact_tokens` of a one-character fact): more
# than budget / this many facts can never all fit.
MIN_FACT_TOKENS = 5
FORGET_THRESHOLD = 0.5
EXTRACTION_CANDIDATES = 10
EXTRACTION_TIMEOUT = 30.0
EXTRACTION_MAX_DECISIONS = 6
SHUTDOWN_GRACE = 10.0
# Recalls are counted (a ranking tie-break) in one write per this many seconds at most,
# off the turn: a write per turn competed with the next turns' searches.
USE_FLUSH_DELAY = 1.0
MAX_TOOL_FACT_CHARS = 500

REMEMBER_TOOL = "memory_remember"
UPDATE_TOOL = "memory_update"
FORGET_TOOL = "memory_forget"

_SCOPE = {
    "type": "string",
    "enum": ["household", "speaker"],
    "description": (
        "household: true for everyone at home (default). speaker: only about the person "
        "speaking right now (their own preferences, tastes, routines)."
    ),
}

TOOLS = [
    ToolSpec(
        name=REMEMBER_TOOL,
        description=(
            "Save a lasting fact so it can be recalled in future conversations: names and "
            "relationships, birthdays, preferences (temperatures, lighting, music, food), "
            "routines and standing rules of the home. Use it when the user tells you something "
            "that will still be true next week, or asks you to remember something. Do not use it "
            "for device states or readings ('the light is on', 'it is 21 degrees now'), one-off "
            "commands, or things you just did. Write one short self-contained sentence in the "
            "user's language, naming the person where it is about someone (e.g. 'Ana prefers "
            "the bedroom at 19 degrees'). If a remembered fact changed, use memory_update."
        ),
        parameters={
            "type": "object",
            "properties": {
                "content": {"type": "string", "maxLength": MAX_TOOL_FACT_CHARS},
                "category": {
                    "type": "string",
                    "description": "One word: person, preference, routine, home, device, other.",
                    "maxLength": 50,
                },
                "scope": _SCOPE,
            },
            "required": ["content"],
        },
    ),
    ToolSpec(
        name=UPDATE_TOOL,
        description=(
            "Replace a remembered fact that has changed or was wrong, e.g. 'actually, make it "
            "20 degrees' after a remembered preference for 19. Identify the old fact by its `id`: "
            "the [id] shown before each remembered fact in the system prompt (or returned by "
            "memory_remember). Only when no id is shown, give `old` (words of the old fact). "
            "Give the complete new sentence as `content`. The old version is never recalled again."
        ),
        parameters={
            "type": "object",
            "properties": {
                "id": {
                    "type": "string",
                    "description": "The [id] of the remembered fact to replace.",
                },
                "old": {"type": "string", "description": "Words identifying the old fact."},
                "content": {"type": "string", "maxLength": MAX_TOOL_FACT_CHARS},
            },
            "required": ["content"],
        },
    ),
    ToolSpec(
        name=FORGET_TOOL,
        description=(
            "Forget remembered facts, only when the user asks you to forget or delete something "
            "('forget what I told you about the garage'). Give the fact's `id` (the [id] shown "
            "before each remembered fact in the system prompt); call once per fact to forget "
            "several. Only when no id is shown, give a `query` with the words describing what to "
            "forget; the best matching facts are deleted."
        ),
        parameters={
            "type": "object",
            "properties": {
                "id": {
                    "type": "string",
                    "description": "The [id] of the remembered fact to forget.",
                },
                "query": {"type": "string"},
            },
        },
    ),
]

EXTRACTION_SYSTEM = """You maintain the long-term memory of a smart-home assistant.
You get the latest turn of a conversation and the facts already remembered that are closest
to it. Decide what, if anything, the memory should change. Remember only lasting facts:
people and relationships, names, birthdays, preferences, routines, standing rules. Never store
device states, sensor readings, one-off commands, what the assistant just did, or device
specifications. Update a fact when the user corrected or changed it; delete a fact only when
the user asked to forget it. Usually nothing needs to change.
Answer with JSON only, no prose:
{"decisions": [
  {"action": "add", "content": "<one short sentence>", "category": "<word>",
   "scope": "household" | "speaker"},
  {"action": "update", "id": "<id of an existing fact>", "content": "<the new sentence>"},
  {"action": "delete", "id": "<id of an existing fact>"}
]}
Use {"decisions": []} when nothing should change. Keep the user's language."""


def _speaker(chat: ChatRequest) -> str | None:
    return chat.speaker.id if chat.speaker is not None else None


def recalled(record: MemoryRecord) -> RecalledFact:
    return RecalledFact(
        id=record.id,
        content=record.content,
        category=record.category,
        speaker_id=record.speaker_id,
    )


def _fact_tokens(record: MemoryRecord) -> int:
    return memtext.estimate_tokens(record.content) + 4


def _turn_text(chat: ChatRequest, reply: str, keep: int = 4) -> tuple[str, str]:
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


def _json_object(text: str) -> dict[str, Any]:
    """The first JSON object in a model answer (tolerates code fences and chatter)."""
    start = text.find("{")
    while start != -1:
        depth = 0
        for index in range(start, len(text)):
            if text[index] == "{":
                depth += 1
            elif text[index] == "}":
                depth -= 1
                if depth == 0:
                    try:
                        value = json.loads(text[start : index + 1])
                    except ValueError:
                        break
                    if isinstance(value, dict):
                        return value
                    break
        start = text.find("{", start + 1)
    raise ValueError("no JSON object in the extraction answer")


class MemoryService:
    """Implements `MemoryProvider` over a `MemoryBackend`."""

    def __init__(
        self,
        backend: MemoryBackend,
        settings: Settings,
        *,
        app: web.Application | None = None,
        budget_tokens: int = RECALL_BUDGET_TOKENS,
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.budget_tokens = budget_tokens
        self._app = app
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._own_clients: Any = None
        # Recalls not yet written: user -> fact id -> times; one flush task at a time.
        self._uses: dict[str, Counter[str]] = {}
        self._use_flush: asyncio.Task[None] | None = None
        self._flush_now = asyncio.Event()

    # --- recall ------------------------------------------------------------------

    async def recall(
        self, principal: InstallationPrincipal, chat: ChatRequest, query: str
    ) -> list[RecalledFact]:
        user, speaker = principal.user_id, _speaker(chat)
        # A capped count decides first: listing up to 201 facts on every turn only to find
        # they do not fit cost as much as the search itself.
        cap = min(RECALL_ALL_MAX, self.budget_tokens // MIN_FACT_TOKENS)
        size = await self.backend.count_active(user, speaker_id=speaker, cap=cap + 1)
        if size.facts == 0:
            return []
        everything: list[MemoryRecord] = []
        # Each fact costs at least a quarter of its characters plus 4 tokens: a lower
        # bound, so listing is skipped only where the exact sum could not fit either.
        if size.facts <= cap and size.chars + 4 * 4 * size.facts <= 4 * self.budget_tokens:
            everything = await self.backend.list(
                user, speaker_id=speaker, all_speakers=False, limit=cap
            )
        fits = bool(everything) and sum(_fact_tokens(r) for r in everything) <= self.budget_tokens
        ranked = (
            await self.backend.search(user, query, speaker_id=speaker, limit=50)
            if query.strip()
            else []
        )
        if fits:
            seen = {r.id for r in ranked}
            chosen = ranked + [r for r in everything if r.id not in seen]
        else:
            chosen, used = [], 0
            for record in ranked:
                cost = _fact_tokens(record)
                if used + cost > self.budget_tokens:
                    break
                chosen.append(record)
                used += cost
        if ranked:
            self._count_use(user, [r.id for r in ranked if r in chosen])
        return [recalled(r) for r in chosen]

    def _count_use(self, user_id: str, ids: list[str]) -> None:
        if not ids:
            return
        self._uses.setdefault(user_id, Counter()).update(ids)
        if self._use_flush is None:
            self._use_flush = self._spawn(self._flush_uses())

    async def _flush_uses(self) -> None:
        # Shutdown (drain) sets the event: then the counts are written at once.
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

    # --- tools -------------------------------------------------------------------

    def server_tools(self) -> list[ToolSpec]:
        return list(TOOLS)

    async def run_tool(
        self,
        principal: InstallationPrincipal,
        chat: ChatRequest,
        name: str,
        arguments: dict[str, Any],
    ) -> dict[str, Any]:
        user, speaker = principal.user_id, _speaker(chat)
        try:
            if name == REMEMBER_TOOL:
                return await self._tool_remember(user, speaker, arguments)
            if name == UPDATE_TOOL:
                return await self._tool_update(user, speaker, arguments)
            if name == FORGET_TOOL:
                return await self._tool_forget(user, speaker, arguments)
        except MemoryBackendError:
            LOGGER.warning("Memory tool %s failed in the store", name, exc_info=True)
            return {"error": "memory_unavailable", "error_text": "Memory is not available now."}
        return {"error": "unknown_tool", "error_text": f"No server tool named {name}."}

    async def _tool_remember(
        self, user: str, speaker: str | None, args: dict[str, Any]
    ) -> dict[str, Any]:
        content = str(args.get("content") or "").strip()[:MAX_TOOL_FACT_CHARS]
        verdict = check_fact(content)
        if not verdict.keep:
            return {
                "stored": False,
                "reason": verdict.reason,
                "note": "Not a lasting fact; nothing was stored.",
            }
        category = _category(args.get("category"))
        scope_speaker = speaker if args.get("scope") == "speaker" else None
        result = await self.backend.add(
            user, content, category=category, speaker_id=scope_speaker, source="tool"
        )
        return {
            "stored": True,
            "already_known": not result.created,
            "id": result.record.id,
            "content": result.record.content,
            "scope": "speaker" if scope_speaker else "household",
        }

    async def _tool_update(
        self, user: str, speaker: str | None, args: dict[str, Any]
    ) -> dict[str, Any]:
        content = str(args.get("content") or "").strip()[:MAX_TOOL_FACT_CHARS]
        verdict = check_fact(content)
        if not verdict.keep:
            return {"updated": False, "reason": verdict.reason}
        target = await self._resolve(user, speaker, args.get("id"), args.get("old") or content)
        if target is None:
            return {
                "updated": False,
                "reason": "not_found",
                "note": "No remembered fact matches; use memory_remember for a new fact.",
            }
        new = await self.backend.supersede(user, target.id, content, source="tool")
        return {"updated": True, "id": new.id, "content": new.content, "replaced": target.content}

    async def _tool_forget(
        self, user: str, speaker: str | None, args: dict[str, Any]
    ) -> dict[str, Any]:
        memory_id, query = args.get("id"), str(args.get("query") or "").strip()
        if isinstance(memory_id, str) and memory_id:
            record = await self._visible(user, speaker, memory_id)
            if record is not None:
                await self.backend.delete(user, record.id)
                return {"forgotten": [record.content]}
        if not query:
            return {"forgotten": [], "note": "Nothing matched; nothing was forgotten."}
        gone = await forget_matching(self.backend, user, query, speaker_id=speaker)
        if not gone:
            return {"forgotten": [], "note": "Nothing matched; nothing was forgotten."}
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

    # --- extraction --------------------------------------------------------------

    def after_turn(
        self,
        principal: InstallationPrincipal,
        chat: ChatRequest,
        reply: str,
        access: ChatAccess,
    ) -> None:
        # HOMEMIND_MEMORY_EXTRACTION=false: only the tools write to the memory.
        if self._closing or not self.settings.memory_extraction:
            return
        self._spawn(self.extract(principal, chat, reply, access.api_key))

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def extract(
        self, principal: InstallationPrincipal, chat: ChatRequest, reply: str, api_key: str
    ) -> list[str]:
        """Run one extraction; returns what was applied (for tests and logs). Never raises."""
        try:
            async with asyncio.timeout(EXTRACTION_TIMEOUT):
                return await self._extract(principal, chat, reply, api_key)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            # The SDK's messages never carry the key; log the type and status only.
            LOGGER.warning("Memory extraction failed (%s); nothing was changed", type(err).__name__)
            return []

    async def _extract(
        self, principal: InstallationPrincipal, chat: ChatRequest, reply: str, api_key: str
    ) -> list[str]:
        user, speaker = principal.user_id, _speaker(chat)
        last_user, transcript = _turn_text(chat, reply)
        if len(memtext.content_terms(last_user)) < 2:
            return []
        candidates = await self.backend.search(
            user, last_user, speaker_id=speaker, limit=EXTRACTION_CANDIDATES
        )
        known = {r.id: r for r in candidates}
        facts = [
            {"id": r.id, "content": r.content, "scope": "speaker" if r.speaker_id else "household"}
            for r in candidates
        ]
        prompt = (
            f"Closest remembered facts:\n{json.dumps(facts, ensure_ascii=False)}\n\n"
            f"Latest turn:\n{transcript}"
        )
        client = await self._claude(api_key)
        message = await client.messages.create(
            model=self.settings.extraction_model,
            max_tokens=600,
            system=EXTRACTION_SYSTEM,
            messages=[{"role": "user", "content": prompt}],
        )
        answer = "".join(
            getattr(block, "text", "") for block in message.content if block.type == "text"
        )
        decisions = _json_object(answer).get("decisions")
        if not isinstance(decisions, list):
            raise ValueError("the extraction answer has no decisions list")
        applied: list[str] = []
        for decision in decisions[:EXTRACTION_MAX_DECISIONS]:
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
        known: dict[str, MemoryRecord],
        decision: dict[str, Any],
    ) -> str | None:
        action = decision.get("action")
        content = str(decision.get("content") or "").strip()[:MAX_TOOL_FACT_CHARS]
        source: Source = "extraction"
        if action == "add":
            if not check_fact(content).keep:
                return None
            scope_speaker = speaker if decision.get("scope") == "speaker" else None
            result = await self.backend.add(
                user,
                content,
                category=_category(decision.get("category")),
                speaker_id=scope_speaker,
                source=source,
            )
            return f"add:{result.record.id}" if result.created else None
        target = known.get(str(decision.get("id") or ""))
        if target is None:
            return None  # only the candidates shown to the model may change
        if action == "update":
            if not check_fact(content).keep:
                return None
            new = await self.backend.supersede(user, target.id, content, source=source)
            return f"update:{target.id}->{new.id}"
        if action == "delete":
            await self.backend.delete(user, target.id)
            return f"delete:{target.id}"
        return None

    async def _claude(self, api_key: str) -> anthropic.AsyncAnthropic:
        """The chat component's shared SDK clients when present, else our own (built off-loop)."""
        from ..chat.upstream import CLAUDE_CLIENTS, ClaudeClients

        if self._app is not None and CLAUDE_CLIENTS in self._app:
            return self._app[CLAUDE_CLIENTS].get(api_key)
        if self._own_clients is None:
            loop = asyncio.get_running_loop()
            self._own_clients = await loop.run_in_executor(None, ClaudeClients.build, self.settings)
        client: anthropic.AsyncAnthropic = self._own_clients.get(api_key)
        return client

    # --- lifecycle ---------------------------------------------------------------

    async def drain(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Write the pending use counts and let running extractions finish (up to `grace`
        seconds), then cancel the rest. Use counts are written at once from now on."""
        self._closing = True
        self._flush_now.set()
        pending = set(self._tasks)
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)

    async def aclose(self) -> None:
        await self.drain()
        if self._own_clients is not None:
            await self._own_clients.aclose()
            self._own_clients = None
        await self.backend.close()


def _category(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = re.sub(r"\s+", " ", value).strip()[:50]
    return value or None


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
