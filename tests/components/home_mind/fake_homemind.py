"""A scripted Home Mind server on 127.0.0.1 (the network edge of the integration).

It serves `GET /api/installation`, `POST /api/chat/stream`, `POST /api/chat` (the `done`
answer of the scripted events, as JSON) and the installation's memory
(`POST /api/installation/memory`, `.../forget`) like the real server does (bearer token,
problem+json errors, SSE produced with the shared `encode_event`) and records every chat
and memory request body, so tests assert on what the integration sent. `away = True`
makes it hang up on every request, as a server whose host went down.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from homemind_client.models import (
    PROBLEM_CONTENT_TYPE,
    ChatResponse,
    DoneEvent,
    ErrorCode,
    ErrorEvent,
    InstallationInfo,
    MemoryCreate,
    MemoryForgetRequest,
    MemoryForgetResult,
    MemoryItem,
    ResponseToolCall,
    StreamEvent,
    TextDeltaEvent,
    ToolCallEvent,
    encode_event,
)

TOKEN = "hm_test_token_fake"
OTHER_TOKEN = "hm_other_token_fake"
INSTALLATION_ID = "inst-test-1"
OTHER_INSTALLATION_ID = "inst-other-2"


def answer(*chunks: str, conversation_id: str = "conv") -> list[StreamEvent]:
    """A streamed text answer: one `text_delta` per chunk, then `done`."""
    events: list[StreamEvent] = [TextDeltaEvent(text=chunk) for chunk in chunks]
    events.append(
        DoneEvent(response=ChatResponse(conversation_id=conversation_id, reply="".join(chunks)))
    )
    return events


def tool_call(
    call_id: str, name: str, arguments: dict[str, Any], text: str = ""
) -> list[StreamEvent]:
    """The model asks HA to run one tool (`stop_reason: tool_use`)."""
    events: list[StreamEvent] = [TextDeltaEvent(text=text)] if text else []
    events.append(ToolCallEvent(id=call_id, name=name, arguments=arguments))
    events.append(
        DoneEvent(
            response=ChatResponse(
                conversation_id="conv",
                reply=text,
                tool_calls=[ResponseToolCall(id=call_id, name=name, arguments=arguments)],
                stop_reason="tool_use",
            )
        )
    )
    return events


@dataclass
class Problem:
    """Refuse the request with problem+json (before any event)."""

    code: ErrorCode
    status: int | None = None  # None: the code's own status
    retry_after: int | None = None


@dataclass
class Disconnect:
    """Send these events, then drop the connection without `done`."""

    events: list[StreamEvent] = field(default_factory=list)


@dataclass
class Stall:
    """Send these events, then stay silent (until the client gives up)."""

    events: list[StreamEvent] = field(default_factory=list)


type Script = list[StreamEvent] | Problem | Disconnect | Stall


class FakeHomeMind:
    """The fake server; `base_url` once started."""

    def __init__(self) -> None:
        self.installations: dict[str, InstallationInfo] = {
            TOKEN: InstallationInfo(id=INSTALLATION_ID, name="Test home", tier="managed"),
            OTHER_TOKEN: InstallationInfo(id=OTHER_INSTALLATION_ID, name="Other home"),
        }
        self.installation_problem: Problem | None = None
        self.scripts: deque[Script] = deque()
        # Used when no script is queued (e.g. an error that must survive client retries).
        self.default_script: Script | None = None
        self.chat_requests: list[dict[str, Any]] = []
        self.chat_headers: list[dict[str, str]] = []
        self.memories: list[MemoryItem] = []
        self.memory_requests: list[dict[str, Any]] = []
        self.memory_problem: Problem | None = None
        self.installation_requests = 0
        self.away = False
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._stalled = asyncio.Event()
        self.base_url = ""

    async def start(self) -> None:
        app = web.Application(middlewares=[self._hang_up_when_away])
        app.router.add_get("/api/installation", self._installation)
        app.router.add_post("/api/installation/memory", self._remember)
        app.router.add_post("/api/installation/memory/forget", self._forget)
        app.router.add_post("/api/chat/stream", self._chat_stream)
        app.router.add_post("/api/chat", self._chat)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        self._stalled.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def script(self, *scripts: Script) -> None:
        self.scripts.extend(scripts)

    # --- handlers -------------------------------------------------------------------

    def _installation_for(self, request: web.Request) -> InstallationInfo | None:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ")
        return self.installations.get(token) if header.startswith("Bearer ") else None

    @web.middleware
    async def _hang_up_when_away(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.away:
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        response: web.StreamResponse = await handler(request)
        return response

    async def _memory_refusal(self, request: web.Request) -> web.Response | None:
        """Record a memory request; the problem to answer instead of doing it, if any."""
        self.memory_requests.append(await request.json())
        if self._installation_for(request) is None:
            return _problem(Problem(ErrorCode.INVALID_TOKEN))
        if self.memory_problem is not None:
            return _problem(self.memory_problem)
        return None

    async def _remember(self, request: web.Request) -> web.Response:
        refusal = await self._memory_refusal(request)
        if refusal is not None:
            return refusal
        body = MemoryCreate.model_validate_json(await request.read())
        for item in self.memories:
            if item.content == body.content and item.speaker_id == body.speaker_id:
                return web.Response(body=item.model_dump_json(), content_type="application/json")
        now = datetime.now(UTC)
        item = MemoryItem(
            id=f"mem-{next(self._ids)}",
            content=body.content,
            category=body.category,
            speaker_id=body.speaker_id,
            created_at=now,
            updated_at=now,
        )
        self.memories.append(item)
        return web.Response(
            status=201, body=item.model_dump_json(), content_type="application/json"
        )

    async def _forget(self, request: web.Request) -> web.Response:
        refusal = await self._memory_refusal(request)
        if refusal is not None:
            return refusal
        body = MemoryForgetRequest.model_validate_json(await request.read())
        # Enough matching for tests: every word of the query occurs in the fact.
        words = body.query.lower().split()
        gone = [
            item
            for item in self.memories
            if all(word in item.content.lower() for word in words)
            and (body.speaker_id is None or item.speaker_id in (None, body.speaker_id))
        ]
        if not gone:
            return _problem(Problem(ErrorCode.MEMORY_NOT_FOUND))
        self.memories = [item for item in self.memories if item not in gone]
        return web.Response(
            body=MemoryForgetResult(forgotten=gone).model_dump_json(),
            content_type="application/json",
        )

    async def _installation(self, request: web.Request) -> web.Response:
        self.installation_requests += 1
        if self.installation_problem is not None:
            return _problem(self.installation_problem)
        installation = self._installation_for(request)
        if installation is None:
            return _problem(Problem(ErrorCode.INVALID_TOKEN))
        return web.Response(body=installation.model_dump_json(), content_type="application/json")

    async def _chat(self, request: web.Request) -> web.Response:
        """The whole answer at once: the `done` event of the script (AI Tasks use this)."""
        body = await request.json()
        self.chat_requests.append(body)
        self.chat_headers.append(dict(request.headers))
        if self._installation_for(request) is None:
            return _problem(Problem(ErrorCode.INVALID_TOKEN))
        script = self.scripts.popleft() if self.scripts else self.default_script
        if script is None:
            script = answer("Nothing scripted.")
        if isinstance(script, Problem):
            return _problem(script)
        events = script.events if isinstance(script, Disconnect | Stall) else script
        (done,) = [event for event in events if isinstance(event, DoneEvent)]
        return web.Response(body=done.response.model_dump_json(), content_type="application/json")

    async def _chat_stream(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.chat_requests.append(body)
        self.chat_headers.append(dict(request.headers))
        if self._installation_for(request) is None:
            return _problem(Problem(ErrorCode.INVALID_TOKEN))
        script = self.scripts.popleft() if self.scripts else self.default_script
        if script is None:
            script = answer("Nothing scripted.")
        if isinstance(script, Problem):
            return _problem(script)

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        events = script.events if isinstance(script, Disconnect | Stall) else script
        for event in events:
            await response.write(encode_event(event))
        if isinstance(script, Disconnect):
            assert request.transport is not None
            request.transport.close()
            return response
        if isinstance(script, Stall):
            await self._stalled.wait()
        return response


def error_event(code: ErrorCode, detail: str = "") -> ErrorEvent:
    return ErrorEvent(code=code, detail=detail)


def _problem(problem: Problem) -> web.Response:
    status = problem.status or problem.code.status
    headers = {}
    if problem.retry_after is not None:
        headers["Retry-After"] = str(problem.retry_after)
    body = {
        "type": "about:blank",
        "title": problem.code,
        "status": status,
        "detail": f"scripted {problem.code}",
        "code": problem.code,
        "request_id": "req-fake",
    }
    return web.Response(
        status=status,
        body=json.dumps(body),
        headers={**headers, "Content-Type": PROBLEM_CONTENT_TYPE},
    )
