"""A faithful fake of the Claude Messages API, served by aiohttp on 127.0.0.1.

Point the real SDK at it: ``anthropic.AsyncAnthropic(base_url=fake.base_url, api_key=...)``.
Tests script what "Claude" answers (text, tool use, errors, cut streams, hangs) and assert on
the recorded requests. The wire format follows the Messages API: SSE events for streaming,
a Message object otherwise, and Anthropic's error envelope with a ``request-id`` header.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import secrets
import string
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = [
    "CutTurn",
    "ErrorTurn",
    "FakeClaude",
    "HangTurn",
    "MessageTurn",
    "RecordedRequest",
    "Responder",
    "TextContent",
    "ToolUseContent",
    "Turn",
    "cut",
    "error",
    "hang",
    "text",
    "tool_use",
    "tool_uses",
]

_ALPHABET = string.ascii_letters + string.digits
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
# Anthropic's error type for each HTTP status it uses.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_DEFAULT_MESSAGES = {
    "invalid_request_error": "Invalid request.",
    "authentication_error": "invalid x-api-key",
    "billing_error": "Your credit balance is too low to access the Anthropic API.",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "not_found_error": "Not Found",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
    "rate_limit_error": "Number of requests has exceeded your per-minute rate limit.",
    "api_error": "Internal server error",
    "timeout_error": "Request timed out.",
    "overloaded_error": "Overloaded",
}
_LONG_TEXT = (
    "This answer is long on purpose, so that a stream cut part of the way through loses "
    "the rest of it: one word after another, each sent as its own text delta, until the "
    "connection drops and the client is left with a message that never finished."
)


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
        content=(TextContent(text),),
        stop_reason=stop_reason,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_input_tokens=cache_read_input_tokens,
        cache_creation_input_tokens=cache_creation_input_tokens,
    )


def tool_uses(
    calls: Iterable[tuple[str, dict[str, Any]]], *, text: str | None = None, input_tokens: int = 25
) -> MessageTurn:
    """Optional leading text, then one tool_use block per call; stop_reason "tool_use"."""
    content: list[TextContent | ToolUseContent] = [TextContent(text)] if text else []
    content.extend(ToolUseContent(name, dict(args)) for name, args in calls)
    return MessageTurn(content=tuple(content), stop_reason="tool_use", input_tokens=input_tokens)


def tool_use(
    name: str, input: dict[str, Any], *, id: str | None = None, text: str | None = None
) -> MessageTurn:
    """Optional leading text, then a single tool_use block; stop_reason "tool_use"."""
    content: list[TextContent | ToolUseContent] = [TextContent(text)] if text else []
    content.append(ToolUseContent(name, dict(input), id))
    return MessageTurn(content=tuple(content), stop_reason="tool_use")


def error(
    status: int,
    *,
    type: str | None = None,
    message: str | None = None,
    retry_after: float | None = None,
) -> ErrorTurn:
    """An HTTP error in Anthropic's envelope. A 429 carries ``retry-after: 1`` unless given."""
    error_type = type or _ERROR_TYPES.get(status, "api_error")
    if retry_after is None and status == 429:
        retry_after = 1
    return ErrorTurn(
        status=status,
        type=error_type,
        message=message or _DEFAULT_MESSAGES.get(error_type, "Error"),
        retry_after=retry_after,
    )


def cut(after_events: int, *, then: Turn | None = None) -> CutTurn:
    """Drop the connection after ``after_events`` SSE events of ``then`` (no message_stop).

    A non-streaming request is dropped before any response is sent.
    """
    if then is None:
        then = text(_LONG_TEXT)
    if not isinstance(then, MessageTurn):
        raise TypeError("cut(then=...) must be a text or tool-use turn")
    return CutTurn(after_events=after_events, then=then)


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

    @property
    def system_text(self) -> str:
        system = self.body.get("system")
        if isinstance(system, str):
            return system
        if isinstance(system, list):
            return "\n".join(
                str(b.get("text", "")) for b in system if isinstance(b, dict) and "text" in b
            )
        return ""

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages = self.body.get("messages")
        return messages if isinstance(messages, list) else []

    @property
    def tools(self) -> list[dict[str, Any]]:
        tools = self.body.get("tools")
        return tools if isinstance(tools, list) else []

    @property
    def model(self) -> str | None:
        model = self.body.get("model")
        return model if isinstance(model, str) else None

    @property
    def max_tokens(self) -> int | None:
        value = self.body.get("max_tokens")
        return value if isinstance(value, int) else None

    @property
    def stream(self) -> bool:
        return self.body.get("stream") is True

    @property
    def api_key(self) -> str | None:
        if "x-api-key" in self.headers:
            return self.headers["x-api-key"]
        auth = self.headers.get("authorization", "")
        return auth[7:] if auth.lower().startswith("bearer ") else None


# --------------------------------------------------------------------------- validation


class _Invalid(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.turn = error(status, message=message)


def _check_content(index: int, role: str, content: Any, is_last: bool) -> list[dict[str, Any]]:
    where = f"messages.{index}"
    if isinstance(content, str):
        if not content and not (is_last and role == "assistant"):
            raise _Invalid(
                400,
                f"{where}: all messages must have non-empty content except "
                "for the optional final assistant message",
            )
        return []
    if not isinstance(content, list):
        raise _Invalid(400, f"{where}.content: Input should be a valid list or string")
    if not content and not (is_last and role == "assistant"):
        raise _Invalid(
            400,
            f"{where}: all messages must have non-empty content except "
            "for the optional final assistant message",
        )
    for j, block in enumerate(content):
        at = f"{where}.content.{j}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise _Invalid(400, f"{at}.type: Field required")
        kind = block["type"]
        if kind == "text":
            if not isinstance(block.get("text"), str):
                raise _Invalid(400, f"{at}.text: Field required")
            if not block["text"]:
                raise _Invalid(400, "messages: text content blocks must be non-empty")
        elif kind == "tool_use":
            if role != "assistant":
                raise _Invalid(400, f"{at}: tool_use blocks are only allowed in assistant turns")
            for key, typ in (("id", str), ("name", str), ("input", dict)):
                if not isinstance(block.get(key), typ):
                    raise _Invalid(400, f"{at}.tool_use.{key}: Field required")
        elif kind == "tool_result":
            if role != "user":
                raise _Invalid(400, f"{at}: tool_result blocks are only allowed in user turns")
            if not isinstance(block.get("tool_use_id"), str):
                raise _Invalid(400, f"{at}.tool_result.tool_use_id: Field required")
    return [b for b in content if isinstance(b, dict)]


def _validate(headers: dict[str, str], body: Any, valid_keys: set[str] | None) -> None:
    """Raise _Invalid with the status and message Anthropic gives for a bad request."""
    key = headers.get("x-api-key")
    if key is None and headers.get("authorization", "").lower().startswith("bearer "):
        key = headers["authorization"][7:]
    if not key:
        raise _Invalid(401, "x-api-key header is required")
    if valid_keys is not None and key not in valid_keys:
        raise _Invalid(401, "invalid x-api-key")
    if not headers.get("anthropic-version"):
        raise _Invalid(400, "anthropic-version: header is required")
    if not isinstance(body, dict):
        raise _Invalid(400, "The request body is not valid JSON.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _Invalid(400, "model: Field required")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise _Invalid(400, "max_tokens: Field required")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _Invalid(400, "max_tokens: Input should be a valid integer greater than 0")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise _Invalid(400, "stream: Input should be a valid boolean")
    _validate_system(body.get("system"))
    _validate_tools(body.get("tools"))
    _validate_messages(body.get("messages"))


def _validate_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise _Invalid(400, "system: Input should be a valid list or string")
    for i, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _Invalid(400, f"system.{i}.type: Input should be 'text'")
        if not isinstance(block.get("text"), str):
            raise _Invalid(400, f"system.{i}.text: Field required")
        if not block["text"]:
            raise _Invalid(400, "system: text content blocks must be non-empty")


def _validate_tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _Invalid(400, "tools: Input should be a valid list")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise _Invalid(400, f"tools.{i}: Input should be a valid dictionary")
        name = tool.get("name")
        if not isinstance(name, str):
            raise _Invalid(400, f"tools.{i}.name: Field required")
        if tool.get("type", "custom") == "custom":
            if not _TOOL_NAME.match(name):
                raise _Invalid(
                    400,
                    f"tools.{i}.custom.name: String should match pattern '{_TOOL_NAME.pattern}'",
                )
            schema = tool.get("input_schema")
            if not isinstance(schema, dict):
                raise _Invalid(400, f"tools.{i}.custom.input_schema: Field required")
            if schema.get("type") != "object":
                raise _Invalid(400, f"tools.{i}.custom.input_schema.type: Input should be 'object'")
        if name in names:
            raise _Invalid(400, "tools: Tool names must be unique.")
        names.add(name)


def _validate_messages(messages: Any) -> None:
    if not isinstance(messages, list):
        raise _Invalid(400, "messages: Field required")
    if not messages:
        raise _Invalid(400, "messages: at least one message is required")
    pending_tool_ids: list[str] = []  # tool_use ids of the previous assistant message
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _Invalid(400, f"messages.{i}: Input should be a valid dictionary")
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise _Invalid(400, f"messages.{i}.role: Input should be 'user' or 'assistant'")
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            if i == 0:
                raise _Invalid(400, 'messages: first message must use the "user" role')
            raise _Invalid(
                400,
                'messages: roles must alternate between "user" and '
                f'"assistant", but found multiple "{role}" roles in a row',
            )
        blocks = _check_content(i, role, message.get("content"), i == len(messages) - 1)
        if role == "user":
            results = [b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"]
            unknown = [r for r in results if r not in pending_tool_ids]
            if unknown:
                raise _Invalid(
                    400,
                    f"messages.{i}.content.0: unexpected `tool_use_id` found in `tool_result` "
                    f"blocks: {', '.join(map(str, unknown))}. Each `tool_result` block must have "
                    "a corresponding `tool_use` block in the previous message.",
                )
            missing = [t for t in pending_tool_ids if t not in results]
            if missing:
                raise _Invalid(
                    400,
                    f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                    "corresponding `tool_result` block in the next message.",
                )
            kinds = [b.get("type") for b in blocks]
            if results and kinds[: len(results)] != ["tool_result"] * len(results):
                raise _Invalid(
                    400, f"messages.{i}: tool_result blocks must come before any other content"
                )
            pending_tool_ids = []
        else:
            pending_tool_ids = [str(b["id"]) for b in blocks if b.get("type") == "tool_use"]


# --------------------------------------------------------------------------- wire format


def _chunks(text: str) -> list[str]:
    """Token-sized pieces (a word with its trailing whitespace) that join back to the text."""
    return [piece for piece in re.findall(r"\S*\s*", text) if piece]


def _json_chunks(payload: str, size: int = 12) -> list[str]:
    return [payload[i : i + size] for i in range(0, len(payload), size)]


def _sse(event: dict[str, Any]) -> bytes:
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


def _resolve(turn: MessageTurn) -> list[dict[str, Any]]:
    """The content blocks this answer sends, with fresh tool-use ids where none was given."""
    blocks: list[dict[str, Any]] = []
    for item in turn.content:
        if isinstance(item, TextContent):
            blocks.append({"type": "text", "text": item.text})
        else:
            blocks.append(
                {
                    "type": "tool_use",
                    "id": item.id or _new_id("toolu_"),
                    "name": item.name,
                    "input": item.input,
                }
            )
    return blocks


def _output_tokens(turn: MessageTurn, blocks: list[dict[str, Any]]) -> int:
    if turn.output_tokens is not None:
        return turn.output_tokens
    count = 0
    for block in blocks:
        if block["type"] == "text":
            count += len(_chunks(block["text"]))
        else:
            count += 10 + len(json.dumps(block["input"])) // 4
    return max(count, 1)


def _usage(turn: MessageTurn, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": turn.input_tokens,
        "cache_creation_input_tokens": turn.cache_creation_input_tokens,
        "cache_read_input_tokens": turn.cache_read_input_tokens,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _stream_events(turn: MessageTurn, model: str) -> list[tuple[bool, dict[str, Any]]]:
    """Every SSE event of the answer, each flagged True when it carries generated content."""
    blocks = _resolve(turn)
    message: dict[str, Any] = {
        "id": _new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _usage(turn, 1),
    }
    events: list[tuple[bool, dict[str, Any]]] = [
        (False, {"type": "message_start", "message": message}),
        (False, {"type": "ping"}),
    ]
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            start: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": c} for c in _chunks(block["text"])]
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            payload = json.dumps(block["input"], ensure_ascii=False) if block["input"] else ""
            # Claude opens every tool input with an empty partial_json.
            deltas = [
                {"type": "input_json_delta", "partial_json": c}
                for c in ["", *_json_chunks(payload)]
            ]
        events.append(
            (False, {"type": "content_block_start", "index": index, "content_block": start})
        )
        events.extend(
            (True, {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas
        )
        events.append((False, {"type": "content_block_stop", "index": index}))
    events.append(
        (
            False,
            {
                "type": "message_delta",
                "delta": {"stop_reason": turn.stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": _output_tokens(turn, blocks)},
            },
        )
    )
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
        self.default_text = default_text
        # Answers requests once the script is empty (default: text(default_text)).
        self.responder: Responder | None = None
        self.valid_api_keys = set(valid_api_keys) if valid_api_keys is not None else None
        self.requests: list[RecordedRequest] = []
        self._host = host
        self._port = port
        self._script: list[Turn | Responder] = []
        self._runner: web.AppRunner | None = None
        self._arrived = asyncio.Event()
        self._closing = asyncio.Event()
        self.base_url = ""

    # -- lifecycle

    async def start(self) -> None:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._closing.clear()
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.base_url = f"http://{self._host}:{port}"

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

    # -- script and records

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
        """Wait until at least ``n`` requests have been received (TimeoutError otherwise)."""
        return self._wait_for_requests(n, timeout)

    async def _wait_for_requests(self, n: int, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                while len(self.requests) < n:
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise TimeoutError(
                f"FakeClaude received {len(self.requests)} requests, expected {n}"
            ) from None

    # -- handlers

    async def _record(self, request: web.Request) -> tuple[RecordedRequest, Any]:
        raw = await request.read()
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=parsed if isinstance(parsed, dict) else {},
            raw_body=raw,
        )
        self.requests.append(record)
        self._arrived.set()
        return record, parsed

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        return self._error_response(error(404, message="Not Found"))

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        record, parsed = await self._record(request)
        try:
            _validate(record.headers, parsed, self.valid_api_keys)
        except _Invalid as invalid:
            return self._error_response(invalid.turn)
        turn = await self._next_turn(record)
        if isinstance(turn, ErrorTurn):
            return self._error_response(turn)
        if isinstance(turn, HangTurn):
            await self._closing.wait()
            return self._abort(request)
        if isinstance(turn, CutTurn) and not record.stream:
            return self._abort(request)
        model = record.model or "claude-fake"
        if record.stream:
            return await self._stream(request, turn, model)
        assert isinstance(turn, MessageTurn)
        return await self._message(request, turn, model)

    async def _next_turn(self, record: RecordedRequest) -> Turn:
        item: Turn | Responder | None = self._script.pop(0) if self._script else self.responder
        if item is None:
            return text(self.default_text)
        if callable(item):
            result = item(record)
            return await result if inspect.isawaitable(result) else result
        return item

    async def _message(
        self, request: web.Request, turn: MessageTurn, model: str
    ) -> web.StreamResponse:
        blocks = _resolve(turn)
        pieces = sum(len(_chunks(b["text"])) for b in blocks if b["type"] == "text")
        # A non-streaming answer arrives once the whole answer has been generated.
        if await self._pause(self.time_to_first_token + self.token_delay * max(pieces - 1, 0)):
            return self._abort(request)
        body = {
            "id": _new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": blocks,
            "stop_reason": turn.stop_reason,
            "stop_sequence": None,
            "usage": _usage(turn, _output_tokens(turn, blocks)),
        }
        return web.json_response(body, headers={"request-id": _new_id("req_")})

    async def _stream(
        self, request: web.Request, turn: MessageTurn | CutTurn, model: str
    ) -> web.StreamResponse:
        limit = turn.after_events if isinstance(turn, CutTurn) else None
        message = turn.then if isinstance(turn, CutTurn) else turn
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "request-id": _new_id("req_"),
            }
        )
        await response.prepare(request)
        first_content = True
        try:
            for sent, (is_content, event) in enumerate(_stream_events(message, model)):
                if limit is not None and sent >= limit:
                    self._abort(request)
                    return response
                if is_content:
                    delay = self.time_to_first_token if first_content else self.token_delay
                    first_content = False
                    if await self._pause(delay):
                        self._abort(request)
                        return response
                await response.write(_sse(event))
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away; nothing left to send
        return response

    async def _pause(self, seconds: float) -> bool:
        """Sleep, returning True early if the fake is closing."""
        if seconds <= 0:
            return self._closing.is_set()
        try:
            async with asyncio.timeout(seconds):
                await self._closing.wait()
        except TimeoutError:
            return False
        return True

    @staticmethod
    def _abort(request: web.Request) -> web.StreamResponse:
        # Truly drop the TCP connection: the client sees a truncated response. aiohttp then
        # fails to finish the returned response and treats it as a client disconnect.
        if request.transport is not None:
            request.transport.abort()
        return web.Response()

    @staticmethod
    def _error_response(turn: ErrorTurn) -> web.Response:
        request_id = _new_id("req_")
        headers = {"request-id": request_id}
        if turn.retry_after is not None:
            value = turn.retry_after
            headers["retry-after"] = str(int(value)) if float(value).is_integer() else str(value)
        body = {
            "type": "error",
            "error": {"type": turn.type, "message": turn.message},
            "request_id": request_id,
        }
        return web.json_response(body, status=turn.status, headers=headers)
