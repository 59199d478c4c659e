"""The seams between the chat pipeline and the components around it.

The chat pipeline asks a `ChatGate` who may chat and with which Anthropic key, and
tells it what each answer cost (billing and usage implement it; the default below
serves self-hosted servers). It asks a `MemoryProvider` for the facts relevant to a
turn, for the server-owned tools (remember / forget) and to run them, and hands it
the finished turn for extraction (the memory component implements it).

Components install their implementation on the app in their `setup_*` function,
which `create_app` calls before `setup_chat`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from aiohttp import web

from homemind_client.models import ChatRequest, Notice, ToolSpec, Usage

from ..accounts.principal import InstallationPrincipal


@dataclass(slots=True)
class ChatAccess:
    """What the gate allows for one chat request."""

    api_key: str
    key_source: Literal["installation", "server"]
    notices: list[Notice] = field(default_factory=list)
    # Free-form data the gate wants back in `record` (e.g. the tier it decided on).
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ChatOutcome:
    """What one chat request did, reported once per request id (also on failure)."""

    request_id: str
    model: str
    usage: Usage
    model_calls: int
    # A message is one user turn, however many tool round-trips it takes: a request
    # whose last conversation item is the user's text counts; a tool-result follow-up does not.
    counts_as_message: bool
    completed: bool
    error_code: str | None = None


class ChatGate(Protocol):
    async def admit(self, request: web.Request, principal: InstallationPrincipal) -> ChatAccess:
        """Decide access; raise `ApiError` (`no_api_key`, `subscription_required`...) to refuse."""
        ...

    async def record(
        self,
        request: web.Request,
        principal: InstallationPrincipal,
        access: ChatAccess,
        outcome: ChatOutcome,
    ) -> None:
        """Record usage. Must be idempotent on `outcome.request_id`."""
        ...


@dataclass(frozen=True, slots=True)
class RecalledFact:
    id: str
    content: str
    category: str | None
    speaker_id: str | None
    # The name of the person the fact belongs to, when it is someone's own fact.
    speaker_name: str | None = None


class MemoryProvider(Protocol):
    async def recall(
        self, principal: InstallationPrincipal, chat: ChatRequest, query: str
    ) -> list[RecalledFact]:
        """Facts relevant to `query` (household, the speaker's own, and the own facts of the
        people the turn names), best first, within budget."""
        ...

    def server_tools(self) -> list[ToolSpec]:
        """Tools the server runs itself inside one request; they never reach Home Assistant."""
        ...

    async def run_tool(
        self,
        principal: InstallationPrincipal,
        chat: ChatRequest,
        name: str,
        arguments: dict[str, Any],
    ) -> dict[str, Any]:
        """Run one server tool; the returned JSON goes back to the model as its result."""
        ...

    def after_turn(
        self,
        principal: InstallationPrincipal,
        chat: ChatRequest,
        reply: str,
        access: ChatAccess,
        *,
        recalled: Sequence[RecalledFact] | None = None,
    ) -> None:
        """Schedule extraction after the answer was sent; must not delay or fail the answer.

        `recalled`: what `recall` gave this turn, when no server tool ran since (None:
        the recall failed, or the memory may have changed)."""
        ...


# Set on the request before `ChatGate.admit`: whether this request is a new user message
# (tool-result follow-ups of calls this server issued are not; see `tool_ids`).
COUNTS_AS_MESSAGE = "homemind.counts_as_message"

CHAT_GATE: web.AppKey[ChatGate] = web.AppKey("chat_gate", ChatGate)
MEMORY_PROVIDER: web.AppKey[MemoryProvider] = web.AppKey("memory_provider", MemoryProvider)
