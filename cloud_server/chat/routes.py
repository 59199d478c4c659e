"""`POST /api/chat` and `POST /api/chat/stream`.

Both run the same pipeline. The stream sends the first text delta as soon as Claude produces
it; deltas closer together than `stream_flush_interval` go out as one write, so a fast answer
costs a few writes rather than one per token (no compression, no proxy buffering). HA tool
calls go once each is complete, then `done` with the whole answer. The HTTP response is only
started with the first event, so anything that fails before it (auth, validation, no key,
Claude down) is an ordinary problem+json response; anything that fails after it ends the
stream with an `error` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from typing import Any

from aiohttp import web

from homemind_client.models import (
    ChatRequest,
    ChatResponse,
    DoneEvent,
    ErrorCode,
    ErrorEvent,
    ResponseToolCall,
    StreamEvent,
    ToolCallEvent,
    Usage,
    encode_event,
)

from ..accounts.app_keys import SERVER_SECRETS
from ..accounts.principal import InstallationPrincipal, require_installation
from ..accounts.scopes import require_scope
from ..app_keys import SETTINGS
from ..bodies import json_model, read_model
from ..db.outage import is_database_outage
from ..errors import REQUEST_ID_HEADER, ApiError, database_unavailable, request_id_of
from ..lifecycle import refuse_when_draining, until_drained
from ..observability.chat import ChatObserver
from .conversation import conversation_of, counts_as_message, last_user_text
from .hooks import (
    CHAT_GATE,
    COUNTS_AS_MESSAGE,
    MEMORY_PROVIDER,
    ChatAccess,
    ChatGate,
    ChatOutcome,
    RecalledFact,
)
from .pipeline import ChatTurn, ClientGone, CollectingSink
from .rate_policy import chat_limits
from .tool_ids import all_signed, sign_call_id, signing_keys
from .upstream import CLAUDE_CLIENTS

LOGGER = logging.getLogger(__name__)

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx & co.: pass each event through at once
}


def text_delta_bytes(text: str) -> bytes:
    """`encode_event(TextDeltaEvent(text=text))`, byte for byte, without building the model:
    text deltas are nearly every event of a stream."""
    data = json.dumps({"text": text}, ensure_ascii=False, separators=(",", ":"))
    return b"event: text_delta\ndata: " + data.encode() + b"\n\n"


class SseSink:
    """Writes stream events; starts the response with the first one.

    Text is coalesced: a delta goes out at once when the last text write is at least
    `flush_interval` old, otherwise it waits (with the deltas after it) for a timer at that
    moment. Any other event sends waiting text first; `finish` sends it with the last event,
    in one write. `close` (the handler's end) stops the timer.
    """

    def __init__(self, request: web.Request, flush_interval: float) -> None:
        self._request = request
        self.response = web.StreamResponse(status=200, headers=SSE_HEADERS)
        request_id = request_id_of(request)
        if request_id:
            self.response.headers[REQUEST_ID_HEADER] = request_id
        # Compression stays off (the aiohttp default): it would hold deltas back.
        self._started = False
        self._interval = flush_interval
        self._loop = asyncio.get_running_loop()
        self._waiting: list[str] = []
        self._last_text_write = -math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._timed_write: asyncio.Task[None] | None = None
        self._gone: ClientGone | None = None

    @property
    def started(self) -> bool:
        return self._started

    async def send(self, event: StreamEvent) -> None:
        await self.flush()
        await self._write(encode_event(event))

    async def text(self, text: str) -> None:
        if self._gone is not None:
            raise self._gone
        self._waiting.append(text)
        due = self._last_text_write + self._interval
        if self._loop.time() >= due:
            await self.flush()
        elif self._timer is None:
            self._timer = self._loop.call_at(due, self._on_timer)

    async def tool_call(self, call: ResponseToolCall) -> None:
        await self.send(ToolCallEvent(id=call.id, name=call.name, arguments=call.arguments))

    async def flush(self) -> None:
        """Send the text that is waiting, if any (raises `ClientGone`)."""
        await self._settle_timed_write()
        if not self._waiting:
            return
        data = text_delta_bytes("".join(self._waiting))
        self._waiting.clear()
        self._last_text_write = self._loop.time()
        await self._write(data)

    async def finish(self, event: StreamEvent) -> None:
        """Send the last event (`done`, `error`) with the text still waiting before it, in
        one write (raises `ClientGone`). The response ends when the handler returns, after
        the turn's usage is stored: a client that sees the end can count on it."""
        await self._settle_timed_write()
        data = encode_event(event)
        if self._waiting:
            data = text_delta_bytes("".join(self._waiting)) + data
            self._waiting.clear()
        await self._write(data)

    def close(self) -> None:
        """The handler is done: no timer may write after it (waiting text is dropped)."""
        self._cancel_timer()
        self._waiting.clear()
        if self._timed_write is not None:
            self._timed_write.cancel()
            self._timed_write = None

    async def _settle_timed_write(self) -> None:
        """No timer pending and the timer's write done; raises `ClientGone` if it failed."""
        self._cancel_timer()
        if self._timed_write is not None:
            # Its bytes are already in the transport's queue, in order; wait for its drain.
            timed, self._timed_write = self._timed_write, None
            await timed
        if self._gone is not None:
            raise self._gone

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        self._timed_write = self._loop.create_task(self._write_waiting())

    async def _write_waiting(self) -> None:
        if not self._waiting:
            return
        try:
            data = text_delta_bytes("".join(self._waiting))
            self._waiting.clear()
            self._last_text_write = self._loop.time()
            await self._write(data)
        except ClientGone as gone:
            # The pipeline learns of it with its next write.
            self._gone = gone

    async def _write(self, data: bytes) -> None:
        try:
            if not self.response.prepared:
                self._started = True
                await self.response.prepare(self._request)
            # StreamResponse.write hands the bytes to the transport now and drains when needed.
            await self.response.write(data)
        except (ConnectionError, RuntimeError) as err:
            # The client went away (aiohttp raises ClientConnectionResetError, or RuntimeError
            # on a closed transport on some paths).
            raise ClientGone from err


async def post_chat(request: web.Request) -> web.StreamResponse:
    return await _limited(request, streaming=False)


async def post_chat_stream(request: web.Request) -> web.StreamResponse:
    return await _limited(request, streaming=True)


async def _limited(request: web.Request, *, streaming: bool) -> web.StreamResponse:
    refuse_when_draining(request)
    # Rate and concurrency limits come before the usage gate and any call to Claude.
    principal = await require_installation(request)
    require_scope(principal.scopes, "chat")
    async with chat_limits(request, principal):
        chat = await read_model(request, ChatRequest)
        return await _handle(request, principal, chat, streaming=streaming)


async def answer(
    request: web.Request, principal: InstallationPrincipal, chat: ChatRequest
) -> ChatResponse:
    """One chat turn for another front end (the MCP server), without streaming.

    The same gate, usage record and memory as `POST /api/chat`; the caller applies the
    rate limits (it counts its own requests) and checks the `chat` scope.
    """
    response = await _handle(request, principal, chat, streaming=False)
    assert isinstance(response, web.Response) and response.body is not None
    return ChatResponse.model_validate_json(bytes(response.body))  # type: ignore[arg-type]


async def _handle(
    request: web.Request, principal: InstallationPrincipal, chat: ChatRequest, *, streaming: bool
) -> web.StreamResponse:
    started_at = time.monotonic()
    app = request.app
    settings = app[SETTINGS]
    conversation = conversation_of(chat)
    tool_keys = signing_keys(app[SERVER_SECRETS].jwt)
    user_text = last_user_text(conversation)

    def is_our_follow_up(call_ids: list[str], text: str) -> bool:
        return all_signed(tool_keys, principal.installation_id, call_ids, text)

    counted = counts_as_message(conversation, is_our_follow_up)
    request[COUNTS_AS_MESSAGE] = counted
    gate = app[CHAT_GATE]
    access = await gate.admit(request, principal)

    turn = ChatTurn(
        settings=settings,
        client=app[CLAUDE_CLIENTS].get(access.api_key),
        chat=chat,
        conversation=conversation,
        principal=principal,
        access=access,
        provider=app.get(MEMORY_PROVIDER),
        sign_tool_id=lambda raw_id: sign_call_id(
            tool_keys[0], principal.installation_id, raw_id, user_text
        ),
    )
    sse = SseSink(request, settings.stream_flush_interval) if streaming else None
    observer = ChatObserver(app, streaming=streaming, started=started_at)
    error_code: str | None = None
    completed = False
    try:
        try:
            answer = await until_drained(app, turn.run(observer.wrap(sse or CollectingSink())))
        except ApiError as err:
            error_code = err.code
            if sse is None or not sse.started:
                raise
            await _send_error(sse, err.code, err.detail)
            return sse.response
        if sse is None:
            completed = True
            _after_turn(app, principal, chat, answer, access, recalled=turn.recalled)
            return json_model(answer)
        await sse.finish(DoneEvent(response=answer))
        completed = True
        _after_turn(app, principal, chat, answer, access, recalled=turn.recalled)
        return sse.response
    except ClientGone:
        error_code = "client_disconnected"
        assert sse is not None
        return sse.response
    except asyncio.CancelledError:
        # aiohttp cancels the handler when the client disconnects (or on shutdown).
        transport = request.transport
        gone = transport is None or transport.is_closing()
        error_code = "client_disconnected" if gone else "cancelled"
        raise
    except Exception as err:
        outage = is_database_outage(err)
        if error_code is None:
            error_code = ErrorCode.DATABASE_UNAVAILABLE if outage else "internal_error"
        if sse is None or not sse.started:
            raise
        if outage:
            LOGGER.warning(
                "Chat stream: database unavailable (request_id=%s)", request_id_of(request)
            )
            failure = database_unavailable()
            await _send_error(sse, failure.code, failure.detail)
            return sse.response
        LOGGER.exception("Chat stream failed (request_id=%s)", request_id_of(request))
        await _send_error(sse, "internal_error", "Something went wrong on our side.")
        return sse.response
    finally:
        if sse is not None:
            sse.close()
        outcome = ChatOutcome(
            request_id=request_id_of(request) or "",
            model=settings.model,
            usage=turn.usage,
            model_calls=turn.model_calls,
            counts_as_message=counted,
            completed=completed,
            error_code=error_code,
        )
        _log_request(
            principal=principal,
            streaming=streaming,
            turn=turn,
            outcome=outcome,
            started_at=started_at,
        )
        observer.finish(turn, error_code)
        await _record(gate, request, principal, access, outcome)


async def _send_error(sse: SseSink, code: str, detail: str) -> None:
    with contextlib.suppress(ClientGone):
        await sse.finish(ErrorEvent(code=code, detail=detail))


def _after_turn(
    app: web.Application,
    principal: InstallationPrincipal,
    chat: ChatRequest,
    answer: ChatResponse,
    access: ChatAccess,
    *,
    recalled: list[RecalledFact] | None,
) -> None:
    """Hand a finished user turn to memory extraction; it schedules its own work."""
    provider = app.get(MEMORY_PROVIDER)
    # A task's instructions come from an automation, not a person: nothing to learn from.
    if provider is None or answer.stop_reason != "end_turn" or chat.mode == "task":
        return
    try:
        provider.after_turn(principal, chat, answer.reply, access, recalled=recalled)
    except Exception:
        LOGGER.exception("Memory after_turn failed; the answer is unaffected")


async def _record(
    gate: ChatGate,
    request: web.Request,
    principal: InstallationPrincipal,
    access: ChatAccess,
    outcome: ChatOutcome,
) -> None:
    """Record exactly once, even when this handler is being cancelled (client gone)."""
    task = asyncio.ensure_future(gate.record(request, principal, access, outcome))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        # The recording carries on in its task; let the cancellation through.
        task.add_done_callback(_log_record_failure)
        raise
    except Exception:
        LOGGER.exception("Recording chat usage failed (request_id=%s)", outcome.request_id)


def _log_record_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        LOGGER.error("Recording chat usage failed after cancellation: %r", task.exception())


def _log_request(
    *,
    principal: InstallationPrincipal,
    streaming: bool,
    turn: ChatTurn,
    outcome: ChatOutcome,
    started_at: float,
) -> None:
    usage: Usage = outcome.usage
    LOGGER.info(
        "chat request_id=%s installation=%s stream=%s calls=%d in=%d out=%d cache_read=%d "
        "cache_write=%d stop=%s outcome=%s duration_ms=%d",
        outcome.request_id,
        principal.installation_id,
        streaming,
        outcome.model_calls,
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_input_tokens,
        usage.cache_creation_input_tokens,
        turn.stop_reason or "-",
        outcome.error_code or "ok",
        (time.monotonic() - started_at) * 1000,
    )


def add_routes(app: web.Application) -> None:
    """The chat API (its resources come from `setup.py`)."""
    app.router.add_post("/api/chat", post_chat)
    app.router.add_post("/api/chat/stream", post_chat_stream)
