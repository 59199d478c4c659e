"""The chat pipeline's memory (`MemoryProvider`): one service over the three jobs.

- Recall into the prompt: `recall.py`.
- The server tools `memory_remember` / `memory_update` / `memory_forget`: `tools.py`.
- After-turn extraction: `extraction.py`. It runs as a background task (held in a set,
  drained on shutdown) and never delays the answer.
All the wording the model sees is in `cloud_server/prompts.py`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from typing import Any

import anthropic
from aiohttp import web

from homemind_client.models import ChatRequest, ToolSpec

from ..accounts.principal import InstallationPrincipal
from ..chat.hooks import ChatAccess, RecalledFact
from ..settings import Settings
from .backend import MemoryBackend
from .extraction import Extractor
from .recall import RECALL_BUDGET_TOKENS, Recall
from .tools import TOOLS, MemoryTools, forget_matching

__all__ = ["MemoryService", "forget_matching"]

LOGGER = logging.getLogger(__name__)

SHUTDOWN_GRACE = 10.0


def _speaker(chat: ChatRequest) -> str | None:
    return chat.speaker.id if chat.speaker is not None else None


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
        self._app = app
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._own_clients: Any = None
        self._recall = Recall(backend, budget_tokens, self._spawn)
        self._tools = MemoryTools(backend)
        self._extractor = Extractor(backend, settings, self._claude)

    @property
    def budget_tokens(self) -> int:
        return self._recall.budget_tokens

    async def recall(
        self, principal: InstallationPrincipal, chat: ChatRequest, query: str
    ) -> list[RecalledFact]:
        speaker = chat.speaker
        if speaker is not None and speaker.name and not self._closing:
            # Known names let later turns that name this person see their facts.
            self._spawn(self._note_speaker(principal.user_id, speaker.id, speaker.name))
        return await self._recall.facts(principal.user_id, _speaker(chat), query)

    async def _note_speaker(self, user_id: str, speaker_id: str, name: str) -> None:
        try:
            await self.backend.note_speaker(user_id, speaker_id, name)
        except Exception:
            LOGGER.warning("Could not record the speaker's name", exc_info=True)

    def server_tools(self) -> list[ToolSpec]:
        return list(TOOLS)

    async def run_tool(
        self,
        principal: InstallationPrincipal,
        chat: ChatRequest,
        name: str,
        arguments: dict[str, Any],
    ) -> dict[str, Any]:
        return await self._tools.run(principal.user_id, _speaker(chat), name, arguments)

    def after_turn(
        self,
        principal: InstallationPrincipal,
        chat: ChatRequest,
        reply: str,
        access: ChatAccess,
        *,
        recalled: Sequence[RecalledFact] | None = None,
    ) -> None:
        # HOMEMIND_MEMORY_EXTRACTION=false: only the tools write to the memory.
        if self._closing or not self.settings.memory_extraction:
            return
        self._spawn(self.extract(principal, chat, reply, access.api_key, recalled=recalled))

    async def extract(
        self,
        principal: InstallationPrincipal,
        chat: ChatRequest,
        reply: str,
        api_key: str,
        *,
        recalled: Sequence[RecalledFact] | None = None,
    ) -> list[str]:
        """Run one extraction; returns what was applied. Never raises."""
        return await self._extractor.extract(
            principal.user_id, _speaker(chat), chat, reply, api_key, seen=recalled
        )

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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

    async def drain(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Write the pending use counts and let running extractions finish (up to `grace`
        seconds), then cancel the rest. Use counts are written at once from now on."""
        self._closing = True
        self._recall.flush_now()
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
