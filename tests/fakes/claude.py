"""A faithful fake of the Claude Messages API, served by aiohttp on 127.0.0.1.

Point the real SDK at it: ``anthropic.AsyncAnthropic(base_url=fake.base_url, api_key=...)``.
Tests script what "Claude" answers (text, tool use, errors, cut streams, hangs) and assert on
the recorded requests. The wire format follows the Messages API: SSE events for streaming,
a Message object otherwise, and Anthropic's error envelope with a ``request-id`` header.

Under the Home Assistant test harness sockets are blocked: request the ``socket_enabled``
fixture (127.0.0.1 stays the only host allowed).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import json
import re
import secrets
import string
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

_ALPHABET = string.ascii_letters + string.digits
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
# Anthropic's error type, and a message in its style, for each HTTP status it uses.
_ERRORS = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "Not Found"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out."),
    529: ("overloaded_error", "Overloaded"),
}
_LONG_TEXT = "A long answer, streamed one word at a time, that a cut leaves unfinished. " * 6
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
_EMPTY = "all messages must have non-empty content except for the optional final assistant message"


def _new_id(prefix: str) -> str:
    return prefix + "01" + "".join(secrets.choice(_ALPHABET) for _ in range(22))


# --------------------------------------------------------------------------- turns


@dataclass(frozen=True)
class TextContent:
    text: str


@dataclass(frozen=True)
class ToolUseContent:
    name: str
    input: dict[str, Any]
    id: str | None = None  # None: a fresh toolu_ id each time the turn is sent


@dataclass(frozen=True)
class MessageTurn:
    content: tuple[TextContent | ToolUseContent, ...]
    stop_reason: str = "end_turn"
    input_tokens: int = 25
    output_tokens: int | None = None  # None: estimated from the content
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


@dataclass(frozen=True)
class ErrorTurn:
    status: int
    type: str
    message: str
    retry_after: float | None = None


@dataclass(frozen=True)
class CutTurn:
    after_events: int
    then: MessageTurn
    error: ErrorTurn | None = None  # sent as an SSE error event instead of dropping the line


@dataclass(frozen=True)
class HangTurn:
    pass


Turn = MessageTurn | ErrorTurn | CutTurn | HangTurn
Responder = Callable[["RecordedRequest"], Turn | Awaitable[Turn]]


def text(
    text: str,
    *,
    stop_reason: str = "end_turn",
    input_tokens: int = 25,
    output_tokens: int | None = None,
    cache_read_input_tokens: int = 0,
    cache_creation_input_tokens: int = 0,
) -> MessageTurn:
    """A plain text answer."""
    return MessageTurn(
        (TextContent(text),),
        stop_reason,
        input_tokens,
        output_tokens,
        cache_read_input_tokens,
        cache_creation_input_tokens,
    )


def tool_uses(
    calls: Iterable[tuple[str, dict[str, Any]]], *, text: str | None = None
) -> MessageTurn:
    """Optional leading text, then one tool_use block per call; stop_reason "tool_use"."""
    content: list[TextContent | ToolUseContent] = [TextContent(text)] if text else []
    content.extend(ToolUseContent(name, dict(args)) for name, args in calls)
    return MessageTurn(tuple(content), "tool_use")


def tool_use(
    name: str, input: dict[str, Any], *, id: str | None = None, text: str | None = None
) -> MessageTurn:
    """Optional leading text, then a single tool_use block; stop_reason "tool_use"."""
    content: list[TextContent | ToolUseContent] = [TextContent(text)] if text else []
    content.append(ToolUseContent(name, dict(input), id))
    return MessageTurn(tuple(content), "tool_use")


def structured(data: dict[str, Any], *, tool: str | None = None) -> Responder:
    """Answer with `data` as the input of the tool the request forces (structured output).

    Claude under `tool_choice: {type: "tool", name}` answers with that tool's call only;
    under `any` name the tool with `tool=`. The input is sent as given, so a test can
    script an answer that does not fit the schema (Claude does not guarantee it either).
    """

    def respond(record: RecordedRequest) -> Turn:
        choice = record.tool_choice or {}
        name = tool or (choice.get("name") if choice.get("type") == "tool" else None)
        if not isinstance(name, str):
            return error(500, message="FakeClaude script: structured() needs a forced tool")
        return tool_use(name, data)

    return respond


def error(
    status: int,
    *,
    type: str | None = None,
    message: str | None = None,
    retry_after: float | None = None,
) -> ErrorTurn:
    """An HTTP error in Anthropic's envelope. A 429 carries ``retry-after: 1`` unless given."""
    default_type, default_message = _ERRORS.get(status, ("api_error", "Internal server error"))
    if retry_after is None and status == 429:
        retry_after = 1
    return ErrorTurn(status, type or default_type, message or default_message, retry_after)


def _message_turn(then: Turn | None) -> MessageTurn:
    if then is None:
        return text(_LONG_TEXT)
    if not isinstance(then, MessageTurn):
        raise TypeError("then= must be a text or tool-use turn")
    return then


def cut(after_events: int, *, then: Turn | None = None) -> CutTurn:
    """Drop the connection after ``after_events`` SSE events of ``then`` (no message_stop).

    A non-streaming request is dropped before any response is sent.
    """
    return CutTurn(after_events, _message_turn(then))


def stream_error(
    after_events: int,
    status: int = 529,
    *,
    message: str | None = None,
    then: Turn | None = None,
) -> CutTurn:
    """Send an SSE ``error`` event after ``after_events`` events, as Claude does when it
    overloads mid-answer. A non-streaming request gets the HTTP error instead."""
    return CutTurn(after_events, _message_turn(then), error(status, message=message))


def hang() -> HangTurn:
    """Accept the request and never answer, until the fake is closed."""
    return HangTurn()


# --------------------------------------------------------------------------- records


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: dict[str, Any]  # {} when the body was not a JSON object
    raw_body: bytes = field(default=b"", repr=False)

    def _field[T, D](self, key: str, kind: type[T], default: D) -> T | D:
        value = self.body.get(key)
        return value if isinstance(value, kind) else default

    @property
    def system_text(self) -> str:
        system = self.body.get("system")
        if isinstance(system, list):
            return "\n".join(str(b.get("text", "")) for b in system if isinstance(b, dict))
        return system if isinstance(system, str) else ""

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self._field("messages", list, [])

    @property
    def images(self) -> list[tuple[str, bytes]]:
        """(media type, bytes) of every base64 image block in the request's user messages."""
        found: list[tuple[str, bytes]] = []
        for message in self.messages:
            content = message.get("content")
            for block in content if isinstance(content, list) else ():
                source = block.get("source") if isinstance(block, dict) else None
                if (
                    block.get("type") == "image"
                    and isinstance(source, dict)
                    and source.get("type") == "base64"
                ):
                    found.append((source["media_type"], base64.b64decode(source["data"])))
        return found

    @property
    def tool_choice(self) -> dict[str, Any] | None:
        return self._field("tool_choice", dict, None)

    @property
    def tools(self) -> list[dict[str, Any]]:
        return self._field("tools", list, [])

    @property
    def model(self) -> str | None:
        return self._field("model", str, None)

    @property
    def max_tokens(self) -> int | None:
        return self._field("max_tokens", int, None)

    @property
    def stream(self) -> bool:
        return self.body.get("stream") is True

    @property
    def api_key(self) -> str | None:
        """The x-api-key header, or the bearer token (what anthropic 2.x sends)."""
        if "x-api-key" in self.headers:
            return self.headers["x-api-key"]
        auth = self.headers.get("authorization", "")
        return auth[7:] if auth.lower().startswith("bearer ") else None


# --------------------------------------------------------------------------- validation


class _Invalid(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.turn = error(status, message=message)


def _validate(record: RecordedRequest, body: Any, valid_keys: set[str] | None) -> None:
    """Raise _Invalid with the status and message Anthropic gives for a bad request."""
    key = record.api_key
    if not key:
        raise _Invalid("x-api-key header is required", 401)
    if valid_keys is not None and key not in valid_keys:
        raise _Invalid("invalid x-api-key", 401)
    if not record.headers.get("anthropic-version"):
        raise _Invalid("anthropic-version: header is required")
    if not isinstance(body, dict):
        raise _Invalid("The request body is not valid JSON.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _Invalid("model: Field required")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise _Invalid("max_tokens: Field required")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _Invalid("max_tokens: Input should be a valid integer greater than 0")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise _Invalid("stream: Input should be a valid boolean")
    temperature = body.get("temperature")
    if temperature is not None and not (
        isinstance(temperature, int | float) and 0 <= temperature <= 1
    ):
        raise _Invalid("temperature: Input should be a number between 0 and 1")
    if "tool_choice" in body and not body.get("tools"):
        raise _Invalid("tool_choice may only be specified while providing tools.")
    _validate_system(body.get("system"))
    _validate_tools(body.get("tools"))
    _validate_tool_choice(body.get("tool_choice"), body.get("tools") or [])
    _validate_messages(body.get("messages"))


def _validate_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise _Invalid("system: Input should be a valid list or string")
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _Invalid(f"system.{i}.type: Input should be 'text'")
        if not isinstance(block.get("text"), str):
            raise _Invalid(f"system.{i}.text: Field required")
        if not block["text"]:
            raise _Invalid("system: text content blocks must be non-empty")


def _validate_tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _Invalid("tools: Input should be a valid list")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        name = tool.get("name") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or not isinstance(name, str):
            raise _Invalid(f"tools.{i}.name: Field required")
        if tool.get("type", "custom") == "custom":  # server tools (web search...) have no schema
            if not _TOOL_NAME.match(name):
                raise _Invalid(
                    f"tools.{i}.custom.name: String should match pattern '{_TOOL_NAME.pattern}'"
                )
            schema = tool.get("input_schema")
            if not isinstance(schema, dict):
                raise _Invalid(f"tools.{i}.custom.input_schema: Field required")
            if schema.get("type") != "object":
                raise _Invalid(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
        if name in names:
            raise _Invalid("tools: Tool names must be unique.")
        names.add(name)


_TOOL_CHOICES = {"auto", "any", "tool", "none"}


def _validate_tool_choice(choice: Any, tools: list[dict[str, Any]]) -> None:
    if choice is None:
        return
    if not isinstance(choice, dict) or choice.get("type") not in _TOOL_CHOICES:
        raise _Invalid(
            "tool_choice: Input tag does not match any of the expected tags: "
            "'auto', 'any', 'tool', 'none'"
        )
    kind = choice["type"]
    parallel = choice.get("disable_parallel_tool_use")
    if parallel is not None and not isinstance(parallel, bool):
        raise _Invalid(f"tool_choice.{kind}.disable_parallel_tool_use: Input should be a boolean")
    if kind != "tool":
        return
    name = choice.get("name")
    if not isinstance(name, str):
        raise _Invalid("tool_choice.tool.name: Field required")
    if name not in {t.get("name") for t in tools}:
        raise _Invalid(f"tool_choice.tool.name: Tool '{name}' not found in tools")


def _honour_tool_choice(turn: MessageTurn, choice: Any) -> MessageTurn | ErrorTurn:
    """The answer as Claude shapes it under `tool_choice` (validated before).

    Forced (`tool` / `any`): only the tool call(s), no text before them, stop_reason
    "tool_use"; `none`: never a tool call. A scripted answer that Claude could not give
    under the request's tool_choice is a mistake in the test: it gets a 500 that says so.
    """
    if not isinstance(choice, dict):
        return turn
    kind = choice["type"]
    calls = [c for c in turn.content if isinstance(c, ToolUseContent)]
    if kind == "none":
        if calls:
            return error(500, message="FakeClaude script: a tool_use answer under tool_choice none")
        return turn
    if kind in ("tool", "any"):
        if kind == "tool":
            calls = [c for c in calls if c.name == choice["name"]]
        if not calls:
            return error(
                500,
                message=f"FakeClaude script: tool_choice {kind} needs a tool_use answer",
            )
        if kind == "tool" or choice.get("disable_parallel_tool_use"):
            calls = calls[:1]
        return replace(turn, content=tuple(calls), stop_reason="tool_use")
    if choice.get("disable_parallel_tool_use") and len(calls) > 1:
        first = turn.content.index(calls[0])
        return replace(turn, content=turn.content[: first + 1])
    return turn


def _content_blocks(i: int, role: str, content: Any, last: bool) -> list[dict[str, Any]]:
    """Check one message's content; its blocks (none for a string)."""
    if not isinstance(content, str | list):
        raise _Invalid(f"messages.{i}.content: Input should be a valid list or string")
    if not content and not (last and role == "assistant"):
        raise _Invalid(f"messages.{i}: {_EMPTY}")
    blocks = content if isinstance(content, list) else []
    for j, block in enumerate(blocks):
        at = f"messages.{i}.content.{j}"
        kind = block.get("type") if isinstance(block, dict) else None
        if not isinstance(kind, str):
            raise _Invalid(f"{at}.type: Field required")
        if kind == "text" and not isinstance(block.get("text"), str):
            raise _Invalid(f"{at}.text: Field required")
        if kind == "text" and not block["text"]:
            raise _Invalid("messages: text content blocks must be non-empty")
        if kind in ("tool_use", "tool_result") and role != (
            "assistant" if kind == "tool_use" else "user"
        ):
            raise _Invalid(f"{at}: {kind} blocks are not allowed in {role} messages")
        if kind == "image":
            if role != "user":
                raise _Invalid(f"{at}: image blocks are not allowed in {role} messages")
            _validate_image(at, block.get("source"))
        required = {"tool_use": ("id", "name", "input"), "tool_result": ("tool_use_id",)}
        for key in required.get(kind, ()):
            if key not in block:
                raise _Invalid(f"{at}.{kind}.{key}: Field required")
    return blocks


# What Claude accepts for a base64 image: the four formats, by their first bytes, and 5 MB.
_IMAGE_MAGIC = {
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}
MAX_IMAGE_BASE64_BYTES = 5 * 1024 * 1024


def _validate_image(at: str, source: Any) -> None:
    if not isinstance(source, dict) or source.get("type") not in ("base64", "url"):
        raise _Invalid(f"{at}.image.source: Input tag does not match 'base64', 'url'")
    if source["type"] == "url":
        if not isinstance(source.get("url"), str):
            raise _Invalid(f"{at}.image.source.url.url: Field required")
        return
    media_type = source.get("media_type")
    if media_type not in _IMAGE_MAGIC:
        raise _Invalid(
            f"{at}.image.source.base64.media_type: Input should be 'image/jpeg', "
            "'image/png', 'image/gif' or 'image/webp'"
        )
    data = source.get("data")
    if not isinstance(data, str):
        raise _Invalid(f"{at}.image.source.base64.data: Field required")
    if len(data) > MAX_IMAGE_BASE64_BYTES:
        raise _Invalid(
            f"{at}.image.source.base64: image exceeds 5 MB maximum: "
            f"{len(data)} bytes > {MAX_IMAGE_BASE64_BYTES} bytes"
        )
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _Invalid(f"{at}.image.source.base64.data: Invalid base64 data") from None
    if not raw.startswith(_IMAGE_MAGIC[media_type]) or (
        media_type == "image/webp" and raw[8:12] != b"WEBP"
    ):
        raise _Invalid(
            f"{at}.image.source.base64.data: Image does not match the provided media type "
            f"{media_type}"
        )


def _validate_messages(messages: Any) -> None:
    if not isinstance(messages, list):
        raise _Invalid("messages: Field required")
    if not messages:
        raise _Invalid("messages: at least one message is required")
    pending: list[str] = []  # tool_use ids of the previous assistant message
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            raise _Invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if role != ("user" if i % 2 == 0 else "assistant"):
            if i == 0:
                raise _Invalid('messages: first message must use the "user" role')
            raise _Invalid(
                'messages: roles must alternate between "user" and "assistant", '
                f'but found multiple "{role}" roles in a row'
            )
        blocks = _content_blocks(i, role, message.get("content"), i == len(messages) - 1)
        if role == "assistant":
            pending = [str(b["id"]) for b in blocks if b["type"] == "tool_use"]
            continue
        results = [str(b["tool_use_id"]) for b in blocks if b["type"] == "tool_result"]
        if unknown := [r for r in results if r not in pending]:
            raise _Invalid(
                f"messages.{i}.content.0: unexpected `tool_use_id` found in `tool_result` "
                f"blocks: {', '.join(unknown)}. Each `tool_result` block must have a "
                "corresponding `tool_use` block in the previous message."
            )
        if missing := [t for t in pending if t not in results]:
            raise _Invalid(
                f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                "corresponding `tool_result` block in the next message."
            )
        if any(b["type"] != "tool_result" for b in blocks[: len(results)]):
            raise _Invalid(f"messages.{i}: tool_result blocks must come before any other content")
        pending = []


# --------------------------------------------------------------------------- wire format


def _chunks(text: str) -> list[str]:
    """Token-sized pieces (a word with its trailing whitespace) that join back to the text."""
    return [piece for piece in re.findall(r"\S*\s*", text) if piece]


def _sse(event: dict[str, Any]) -> bytes:
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


def _error_body(turn: ErrorTurn, request_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "error", "error": {"type": turn.type, "message": turn.message}}
    if request_id:
        body["request_id"] = request_id
    return body


def _resolve(turn: MessageTurn) -> list[dict[str, Any]]:
    """The content blocks this answer sends, with fresh tool-use ids where none was given."""
    return [
        {"type": "text", "text": item.text}
        if isinstance(item, TextContent)
        else {
            "type": "tool_use",
            "id": item.id or _new_id("toolu_"),
            "name": item.name,
            "input": item.input,
        }
        for item in turn.content
    ]


def _message(turn: MessageTurn, model: str, blocks: list[dict[str, Any]], done: bool) -> Any:
    """The Message object: complete, or as message_start carries it (no content yet)."""
    output_tokens = turn.output_tokens
    if output_tokens is None:  # roughly a token per word, or per four characters of JSON
        sizes = [
            len(_chunks(b["text"])) if b["type"] == "text" else len(str(b["input"])) // 4
            for b in blocks
        ]
        output_tokens = max(1, sum(sizes))
    return {
        "id": _new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks if done else [],
        "stop_reason": turn.stop_reason if done else None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": turn.input_tokens,
            "cache_creation_input_tokens": turn.cache_creation_input_tokens,
            "cache_read_input_tokens": turn.cache_read_input_tokens,
            "output_tokens": output_tokens if done else 1,
            "service_tier": "standard",
        },
    }


def _stream_events(turn: MessageTurn, model: str) -> list[tuple[bool, dict[str, Any]]]:
    """Every SSE event of the answer, each flagged True when it carries generated content."""
    blocks = _resolve(turn)
    final = _message(turn, model, blocks, done=True)
    start = _message(turn, model, blocks, done=False) | {"id": final["id"]}
    events: list[tuple[bool, dict[str, Any]]] = [
        (False, {"type": "message_start", "message": start}),
        (False, {"type": "ping"}),
    ]
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            first: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": c} for c in _chunks(block["text"])]
        else:
            first = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            payload = json.dumps(block["input"], ensure_ascii=False) if block["input"] else ""
            # Claude opens every tool input with an empty partial_json, then sends fragments.
            pieces = ["", *(payload[k : k + 12] for k in range(0, len(payload), 12))]
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
        events.append(
            (False, {"type": "content_block_start", "index": index, "content_block": first})
        )
        events += [
            (True, {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas
        ]
        events.append((False, {"type": "content_block_stop", "index": index}))
    delta = {"stop_reason": turn.stop_reason, "stop_sequence": None}
    usage = {"output_tokens": final["usage"]["output_tokens"]}
    events.append((False, {"type": "message_delta", "delta": delta, "usage": usage}))
    events.append((False, {"type": "message_stop"}))
    return events


# --------------------------------------------------------------------------- server


class FakeClaude:
    """The Messages API on 127.0.0.1, answering from a script of turns."""

    def __init__(
        self,
        *,
        time_to_first_token: float = 0.0,
        token_delay: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        default_text: str = "OK.",
        valid_api_keys: Iterable[str] | None = None,
    ) -> None:
        self.time_to_first_token = time_to_first_token
        self.token_delay = token_delay
        # A streamed answer's n-th content event (0 = the first) waits this much longer.
        self.pauses: dict[int, float] = {}
        self.default_text = default_text
        # Answers requests once the script is empty (when None: text(default_text)).
        self.responder: Responder | None = None
        self.valid_api_keys = set(valid_api_keys) if valid_api_keys is not None else None
        self.requests: list[RecordedRequest] = []
        self.base_url = ""
        self._host = host
        self._port = port
        self._script: list[Turn | Responder] = []
        self._runner: web.AppRunner | None = None
        self._arrived = asyncio.Event()
        self._closing = asyncio.Event()

    async def start(self) -> None:
        # Events belong to the loop that runs the server.
        self._arrived, self._closing = asyncio.Event(), asyncio.Event()
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/v1/messages", self._handle_messages)
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        self.base_url = f"http://{self._host}:{self._runner.addresses[0][1]}"

    async def close(self) -> None:
        self._closing.set()  # releases hung and paced handlers
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeClaude:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def script(self, *turns: Turn | Responder) -> None:
        """Append answers; each request to /v1/messages that passes validation takes one."""
        self._script.extend(turns)

    def reset(self) -> None:
        self._script.clear()
        self.requests.clear()

    @property
    def pending_turns(self) -> int:
        return len(self._script)

    @property
    def last_request(self) -> RecordedRequest:
        if not self.requests:
            raise AssertionError("FakeClaude has received no request")
        return self.requests[-1]

    def wait_for_requests(self, n: int, timeout: float = 5) -> Awaitable[None]:
        """Wait until at least ``n`` requests have arrived (TimeoutError otherwise)."""
        return self._wait_for_requests(n, timeout)

    async def _wait_for_requests(self, n: int, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                while len(self.requests) < n:
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            got = len(self.requests)
            raise TimeoutError(f"FakeClaude received {got} requests, expected {n}") from None

    # -- handlers

    async def _record(self, request: web.Request) -> tuple[RecordedRequest, Any]:
        raw = await request.read()
        try:
            parsed: Any = json.loads(raw)
        except ValueError:
            parsed = None
        headers = {k.lower(): v for k, v in request.headers.items()}
        body = parsed if isinstance(parsed, dict) else {}
        record = RecordedRequest(request.method, request.path, headers, body, raw)
        self.requests.append(record)
        self._arrived.set()
        return record, parsed

    async def _handle_unknown(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        return _error_response(error(404))

    async def _handle_messages(self, request: web.Request) -> web.StreamResponse:
        record, parsed = await self._record(request)
        try:
            _validate(record, parsed, self.valid_api_keys)
        except _Invalid as invalid:
            return _error_response(invalid.turn)
        turn = await self._next_turn(record)
        if isinstance(turn, HangTurn):
            await self._closing.wait()
            return _drop(request)
        if isinstance(turn, CutTurn) and not record.stream:
            return _error_response(turn.error) if turn.error else _drop(request)
        if isinstance(turn, ErrorTurn):
            return _error_response(turn)
        if isinstance(turn, MessageTurn):
            turn = _honour_tool_choice(turn, record.body.get("tool_choice"))
        elif isinstance(turn, CutTurn):
            shaped = _honour_tool_choice(turn.then, record.body.get("tool_choice"))
            turn = replace(turn, then=shaped) if isinstance(shaped, MessageTurn) else shaped
        if isinstance(turn, ErrorTurn):
            return _error_response(turn)
        model = record.model or "claude-fake"
        if record.stream:
            return await self._stream(request, turn, model)
        assert isinstance(turn, MessageTurn)
        return await self._complete(request, turn, model)

    async def _next_turn(self, record: RecordedRequest) -> Turn:
        item = self._script.pop(0) if self._script else self.responder
        if item is None:
            return text(self.default_text)
        if callable(item):
            result = item(record)
            return await result if inspect.isawaitable(result) else result
        return item

    async def _complete(
        self, request: web.Request, turn: MessageTurn, model: str
    ) -> web.StreamResponse:
        blocks = _resolve(turn)
        pieces = sum(len(_chunks(b["text"])) for b in blocks if b["type"] == "text")
        # A non-streaming answer arrives once the whole answer has been generated.
        if await self._pause(self.time_to_first_token + self.token_delay * max(pieces - 1, 0)):
            return _drop(request)
        body = _message(turn, model, blocks, done=True)
        return web.json_response(body, headers={"request-id": _new_id("req_")})

    async def _stream(
        self, request: web.Request, turn: MessageTurn | CutTurn, model: str
    ) -> web.StreamResponse:
        cut_at = turn.after_events if isinstance(turn, CutTurn) else None
        message = turn.then if isinstance(turn, CutTurn) else turn
        response = web.StreamResponse(headers=_SSE_HEADERS | {"request-id": _new_id("req_")})
        await response.prepare(request)
        first_content = True
        content_index = 0
        try:
            for sent, (is_content, event) in enumerate(_stream_events(message, model)):
                if sent == cut_at:
                    assert isinstance(turn, CutTurn)
                    if turn.error is None:
                        _drop(request)
                        return response
                    await response.write(_sse(_error_body(turn.error, None)))
                    break
                if is_content:
                    delay = self.time_to_first_token if first_content else self.token_delay
                    delay += self.pauses.get(content_index, 0.0)
                    first_content = False
                    content_index += 1
                    if await self._pause(delay):
                        _drop(request)
                        return response
                await response.write(_sse(event))
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away; nothing left to send
        return response

    async def _pause(self, seconds: float) -> bool:
        """Sleep; True (early) when the fake is closing."""
        if seconds > 0:
            try:
                async with asyncio.timeout(seconds):
                    await self._closing.wait()
            except TimeoutError:
                return False
        return self._closing.is_set()


def _drop(request: web.Request) -> web.StreamResponse:
    """Truly drop the TCP connection: the client sees a truncated response. aiohttp then
    fails to finish the returned response and treats that as a client disconnect."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response()


def _error_response(turn: ErrorTurn) -> web.Response:
    request_id = _new_id("req_")
    headers = {"request-id": request_id}
    if turn.retry_after is not None:
        value = turn.retry_after
        headers["retry-after"] = str(int(value)) if float(value).is_integer() else str(value)
    return web.json_response(_error_body(turn, request_id), status=turn.status, headers=headers)
