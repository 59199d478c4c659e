"""Fake Home Mind servers on 127.0.0.1 (the network edge of the client under test): helpers."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from homemind_client import HomeMindClient

# Obviously fake; long enough that an accidental substring match is impossible.
TOKEN = "hm_test_fake_token_0123456789abcdefXYZ"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

INSTALLATION = {
    "id": "inst-1",
    "name": "Test home",
    "tier": "managed",
    "has_api_key": False,
    "subscription": {"status": "active", "tier": "managed"},
    "usage": {"messages": 3, "allowance": 1000},
}

CHAT_RESPONSE = {
    "conversation_id": "conv-1",
    "reply": "The kitchen light is on.",
    "tool_calls": [],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 10, "output_tokens": 5},
    "notices": [],
}
TOOL_CALL = {"id": "t1", "name": "HassTurnOn", "arguments": {"name": "kitchen"}}
# The answer of a turn that ends asking HA to run TOOL_CALL.
TOOL_USE_RESPONSE = CHAT_RESPONSE | {
    "reply": "",
    "stop_reason": "tool_use",
    "tool_calls": [TOOL_CALL],
}


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    transport: asyncio.BaseTransport | None = None


@dataclass
class FakeServer:
    url: str
    requests: list[Recorded] = field(default_factory=list)

    def count(self, path: str) -> int:
        return sum(1 for r in self.requests if r.path == path)


def problem(
    status: int,
    code: str | None,
    detail: str = "",
    *,
    headers: dict[str, str] | None = None,
    retry_after: int | None = None,
    request_id: str | None = "req-test-1",
) -> Handler:
    """A handler answering with an RFC 9457 problem document."""

    async def handler(request: web.Request) -> web.StreamResponse:
        body: dict[str, Any] = {"type": "about:blank", "title": "Error", "status": status}
        if code is not None:
            body["code"] = code
        body["detail"] = detail
        if request_id is not None:
            body["request_id"] = request_id
        if retry_after is not None:
            body["retry_after"] = retry_after
        return web.Response(
            status=status,
            body=json.dumps(body).encode(),
            content_type="application/problem+json",
            headers=headers,
        )

    return handler


def json_ok(payload: Any, status: int = 200) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(payload, status=status)

    return handler


def raw(status: int, body: bytes, content_type: str = "text/html") -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=body, content_type=content_type)

    return handler


def sequence(*handlers: Handler) -> Handler:
    """Answer the n-th request with the n-th handler (the last one repeats)."""
    calls = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        current = handlers[min(calls, len(handlers) - 1)]
        calls += 1
        return await current(request)

    return handler


class Disconnect:
    """In an `sse()` script: drop the connection at this point, mid-stream."""


class Sleep:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


def sse(*script: bytes | Sleep | Disconnect, headers: dict[str, str] | None = None) -> Handler:
    """A `text/event-stream` answer written piece by piece, each piece flushed on its own."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "X-Request-ID": "req-stream-1"}
            | (headers or {})
        )
        await response.prepare(request)
        for step in script:
            if isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
            elif isinstance(step, Disconnect):
                assert request.transport is not None
                request.transport.abort()
                return response
            else:
                await response.write(step)
        await response.write_eof()
        return response

    return handler


def event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def fast(client: HomeMindClient) -> HomeMindClient:
    """Same retry counts as shipped, tiny backoffs (the tests count requests, not time)."""
    client.installation_retry = dataclasses.replace(client.installation_retry, backoff=0.001)
    client.chat_retry = dataclasses.replace(client.chat_retry, backoff=0.001)
    return client


@dataclass
class RawServer:
    """A TCP server that reads a request and hangs up without answering."""

    url: str
    connections: int = 0


@dataclass
class Attempts:
    count: int = 0


def make_client(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> HomeMindClient:
    return fast(HomeMindClient(session, url, TOKEN, **kwargs))


ServeFn = Callable[[dict[str, Handler]], Awaitable[FakeServer]]
