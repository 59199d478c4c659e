"""Helpers of the chat tests: a recording gate, a tiny real memory provider, SSE parsing.

The gate and the memory provider are real implementations of our own seams (no network
edge is involved), kept as small as possible so the tests exercise the chat pipeline itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientResponse, web
from pydantic import SecretStr

from cloud_server.accounts.principal import InstallationPrincipal
from cloud_server.chat.hooks import ChatAccess, ChatOutcome, RecalledFact
from cloud_server.settings import Settings
from homemind_client.models import ChatRequest, ToolSpec
from tests.fakes.claude import FakeClaude

FAKE_SERVER_KEY = "sk-ant-test-server"
FAKE_OWN_KEY = "sk-ant-test-own"


def on_fake_claude(settings: Settings, claude: FakeClaude) -> Settings:
    """`settings` answering from the fake Claude with the server's own key."""
    return settings.model_copy(
        update={
            "anthropic_base_url": claude.base_url,
            "anthropic_api_key": SecretStr(FAKE_SERVER_KEY),
        }
    )


@dataclass
class RecordingGate:
    """Admits every installation with a fixed key and keeps every `record` call."""

    api_key: str = FAKE_SERVER_KEY
    key_source: str = "server"
    outcomes: list[ChatOutcome] = field(default_factory=list)
    recorded: asyncio.Event = field(default_factory=asyncio.Event)

    async def admit(self, request: web.Request, principal: InstallationPrincipal) -> ChatAccess:
        return ChatAccess(api_key=self.api_key, key_source=self.key_source)  # type: ignore[arg-type]

    async def record(
        self,
        request: web.Request,
        principal: InstallationPrincipal,
        access: ChatAccess,
        outcome: ChatOutcome,
    ) -> None:
        self.outcomes.append(outcome)
        self.recorded.set()

    async def wait_recorded(self, seconds: float = 5) -> ChatOutcome:
        async with asyncio.timeout(seconds):
            await self.recorded.wait()
        return self.outcomes[-1]


REMEMBER = ToolSpec(
    name="remember",
    description="Store a fact about the household for later.",
    parameters={
        "type": "object",
        "properties": {"content": {"type": "string"}},
        "required": ["content"],
    },
)


_STOPWORDS = {"a", "the", "is", "my", "how", "do", "i", "what", "way"}


@dataclass
class DictMemory:
    """A memory provider that keeps facts in a dict and recalls them by shared words."""

    facts: dict[str, RecalledFact] = field(default_factory=dict)
    queries: list[str] = field(default_factory=list)
    finished_turns: list[str] = field(default_factory=list)

    def add(self, content: str, speaker_id: str | None = None) -> None:
        fact_id = f"f{len(self.facts) + 1}"
        self.facts[fact_id] = RecalledFact(
            id=fact_id, content=content, category=None, speaker_id=speaker_id
        )

    async def recall(
        self, principal: InstallationPrincipal, chat: ChatRequest, query: str
    ) -> list[RecalledFact]:
        self.queries.append(query)
        words = {w.strip("?.!,:").lower() for w in query.split()} - _STOPWORDS
        return [f for f in self.facts.values() if words & set(f.content.lower().split())]

    def server_tools(self) -> list[ToolSpec]:
        return [REMEMBER]

    async def run_tool(
        self,
        principal: InstallationPrincipal,
        chat: ChatRequest,
        name: str,
        arguments: dict[str, Any],
    ) -> dict[str, Any]:
        assert name == "remember"
        self.add(str(arguments["content"]), chat.speaker.id if chat.speaker else None)
        return {"stored": True}

    def after_turn(
        self,
        principal: InstallationPrincipal,
        chat: ChatRequest,
        reply: str,
        access: ChatAccess,
        *,
        recalled: Sequence[RecalledFact] | None = None,
    ) -> None:
        self.finished_turns.append(reply)


class NoMemory:
    """A household with nothing remembered and no memory tools."""

    async def recall(
        self, principal: InstallationPrincipal, chat: ChatRequest, query: str
    ) -> list[RecalledFact]:
        return []

    def server_tools(self) -> list[ToolSpec]:
        return []

    async def run_tool(
        self,
        principal: InstallationPrincipal,
        chat: ChatRequest,
        name: str,
        arguments: dict[str, Any],
    ) -> dict[str, Any]:
        raise AssertionError("no server tools were offered")

    def after_turn(
        self,
        principal: InstallationPrincipal,
        chat: ChatRequest,
        reply: str,
        access: ChatAccess,
        *,
        recalled: Sequence[RecalledFact] | None = None,
    ) -> None:
        return None


@dataclass
class SseEvent:
    name: str
    data: dict[str, Any]


def parse_sse(body: str) -> list[SseEvent]:
    events = []
    for chunk in body.split("\n\n"):
        if not chunk.strip():
            continue
        name, data = "message", []
        for line in chunk.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        events.append(SseEvent(name, json.loads("\n".join(data))))
    return events


async def read_sse(response: ClientResponse) -> list[SseEvent]:
    return parse_sse(await response.text())


async def next_sse(response: ClientResponse) -> SseEvent:
    """Read exactly one event from a streaming response."""
    lines: list[str] = []
    while True:
        raw = await response.content.readline()
        if not raw:
            raise AssertionError("stream ended")
        line = raw.decode().rstrip("\n")
        if not line:
            if lines:
                return parse_sse("\n".join(lines))[0]
            continue
        lines.append(line)
