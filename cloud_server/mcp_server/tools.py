"""The MCP tools: memory search, remember, forget, and chat, for one installation.

Built on the `mcp` SDK's low-level `Server` (the tool list and the call handler; the SDK
validates each call's arguments against the tool's input schema). Each call runs for the
installation whose token the HTTP request carried (`routes.py` puts it in the ASGI scope)
and needs that token's scope for the tool: a token limited to `memory:read` can search but
not remember.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from mcp import types
from mcp.server.lowlevel import Server
from pydantic import ValidationError

from homemind_client.models import ChatRequest, UserMessage
from homemind_client.models.memory import MemoryCreate, MemoryForgetRequest

from .. import __version__
from ..accounts.principal import InstallationPrincipal
from ..accounts.scopes import InstallationScope, require_scope
from ..chat.routes import answer
from ..errors import ApiError
from ..input_text import UNSTORABLE_DETAIL, is_unstorable
from ..memory.backend import MemoryBackendError, MemoryRecord
from ..memory.provider import forget_matching
from ..memory.setup import MEMORY_BACKEND

SCOPE_KEY: Final = "homemind"  # the ASGI scope's key for the caller
SEARCH_LIMIT: Final = 10

INSTRUCTIONS: Final = (
    "Home Mind's long-term memory of one household (shared with its Home Assistant "
    "assistant) and its assistant. Search before answering questions about the household; "
    "remember lasting facts and preferences the user states; forget what they take back."
)


@dataclass(frozen=True, slots=True)
class Caller:
    """The aiohttp request of this MCP call and the installation it authenticated."""

    request: web.Request
    principal: InstallationPrincipal


def _tool(
    name: str, description: str, properties: dict[str, Any], required: list[str]
) -> types.Tool:
    return types.Tool(
        name=name,
        description=description,
        inputSchema={
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        },
    )


_TEXT: Final = {"type": "string", "minLength": 1}
TOOLS: Final[dict[str, tuple[InstallationScope, types.Tool]]] = {
    "memory_search": (
        "memory:read",
        _tool(
            "memory_search",
            "Search what Home Mind remembers about the household (facts, preferences, "
            "people, routines). Returns the best matches, best first.",
            {"query": {**_TEXT, "maxLength": 500}},
            ["query"],
        ),
    ),
    "memory_remember": (
        "memory:write",
        _tool(
            "memory_remember",
            "Remember one lasting fact or preference of the household, in a short sentence "
            "(e.g. 'Anna's evening starts at 19:30').",
            {"content": {**_TEXT, "maxLength": 1000}, "category": {"type": "string"}},
            ["content"],
        ),
    ),
    "memory_forget": (
        "memory:write",
        _tool(
            "memory_forget",
            "Forget the remembered facts that best match the query (what the user takes back).",
            {"query": {**_TEXT, "maxLength": 500}},
            ["query"],
        ),
    ),
    "chat": (
        "chat",
        _tool(
            "chat",
            "Ask the household's Home Mind assistant one question (it answers with the "
            "household's memory and may remember what it is told; it cannot control devices "
            "from here). The server keeps no conversation: put what the question needs into "
            "the message.",
            {
                "message": {**_TEXT, "maxLength": 8000},
                "language": {"type": "string", "maxLength": 35},
            },
            ["message"],
        ),
    ),
}


def _item(record: MemoryRecord) -> dict[str, Any]:
    return {"id": record.id, "content": record.content, "category": record.category}


def _checked_text(*values: Any) -> None:
    if any(isinstance(value, str) and is_unstorable(value) for value in values):
        raise ValueError(UNSTORABLE_DETAIL)


async def _memory_search(caller: Caller, args: dict[str, Any]) -> dict[str, Any]:
    _checked_text(args["query"])
    backend = caller.request.app[MEMORY_BACKEND]
    hits = await backend.search(
        caller.principal.user_id,
        args["query"],
        speaker_id=None,
        all_speakers=True,
        limit=SEARCH_LIMIT,
    )
    return {"memories": [_item(record) for record in hits]}


async def _memory_remember(caller: Caller, args: dict[str, Any]) -> dict[str, Any]:
    body = MemoryCreate.model_validate(args)
    _checked_text(body.content, body.category)
    if not body.content.strip():
        raise ValueError("'content' must not be blank.")
    result = await caller.request.app[MEMORY_BACKEND].add(
        caller.principal.user_id, body.content, category=body.category, source="installation"
    )
    return {"memory": _item(result.record), "created": result.created}


async def _memory_forget(caller: Caller, args: dict[str, Any]) -> dict[str, Any]:
    body = MemoryForgetRequest.model_validate(args)
    _checked_text(body.query)
    gone = await forget_matching(
        caller.request.app[MEMORY_BACKEND],
        caller.principal.user_id,
        body.query,
        speaker_id=None,
        all_speakers=True,
    )
    if not gone:
        raise ValueError("Nothing remembered matches that.")
    return {"forgotten": [_item(record) for record in gone]}


async def _chat(caller: Caller, args: dict[str, Any]) -> dict[str, Any]:
    chat = ChatRequest(
        messages=[UserMessage(content=args["message"])], language=args.get("language")
    )
    response = await answer(caller.request, caller.principal, chat)
    return {"reply": response.reply}


_HANDLERS: Final = {
    "memory_search": _memory_search,
    "memory_remember": _memory_remember,
    "memory_forget": _memory_forget,
    "chat": _chat,
}


def build_server() -> Server[Any, Any]:
    """The low-level MCP server with Home Mind's tools."""
    server: Server[Any, Any] = Server("homemind", version=__version__, instructions=INSTRUCTIONS)

    def caller() -> Caller:
        request = server.request_context.request
        found = request.scope.get(SCOPE_KEY) if request is not None else None
        if not isinstance(found, Caller):
            raise RuntimeError("an MCP call without an authenticated installation")
        return found

    @server.list_tools()  # type: ignore[no-untyped-call, untyped-decorator]
    async def list_tools() -> list[types.Tool]:
        """The tools this token's scopes allow."""
        scopes = caller().principal.scopes
        return [tool for scope, tool in TOOLS.values() if scope in scopes]

    @server.call_tool()  # type: ignore[untyped-decorator]
    async def call_tool(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Run one tool; the SDK turns an exception into an error result with its text."""
        who = caller()
        if name not in TOOLS:
            raise ValueError(f"Unknown tool: {name}")
        try:
            require_scope(who.principal.scopes, TOOLS[name][0])
            return await _HANDLERS[name](who, arguments)
        except ApiError as err:
            raise ValueError(f"{err.code}: {err.detail}") from err
        except ValidationError as err:
            raise ValueError(f"validation_error: {err.errors()[0]['msg']}") from err
        except MemoryBackendError as err:
            raise ValueError("memory_unavailable: Memory is not available right now.") from err

    return server
