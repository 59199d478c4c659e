"""Fixtures: fake Home Mind servers on 127.0.0.1 and sessions that count attempts."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from .helpers import Attempts, FakeServer, Handler, RawServer, Recorded, ServeFn


@pytest.fixture
async def serve() -> AsyncIterator[ServeFn]:
    """`await serve({"GET /api/installation": handler, ...})` → a running FakeServer."""
    runners: list[web.AppRunner] = []
    handler_tasks: set[asyncio.Task[object]] = set()

    async def start(routes: dict[str, Handler]) -> FakeServer:
        server = FakeServer(url="")

        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            task = asyncio.current_task()
            if task is not None:
                handler_tasks.add(task)  # type: ignore[arg-type]
            server.requests.append(
                Recorded(
                    request.method,
                    request.path,
                    dict(request.headers),
                    await request.read(),
                    request.transport,
                )
            )
            return await handler(request)

        app = web.Application(middlewares=[record])
        for key, handler in routes.items():
            method, path = key.split(" ", 1)
            app.router.add_route(method, path, handler)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        server.url = f"http://127.0.0.1:{port}"
        return server

    yield start
    # Handlers still sleeping (slow-server scripts) end with the test, not at interpreter exit.
    pending = [t for t in handler_tasks if not t.done()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def hangup_server() -> AsyncIterator[RawServer]:
    state = RawServer(url="")

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        with contextlib.suppress(asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            await reader.readuntil(b"\r\n\r\n")
        writer.transport.abort()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    yield state
    server.close()
    await server.wait_closed()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def session_and_attempts() -> AsyncIterator[tuple[aiohttp.ClientSession, Attempts]]:
    """A session whose aiohttp trace counts every request attempt (even refused ones)."""
    attempts = Attempts()

    async def on_request_start(*_: object) -> None:
        attempts.count += 1

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        yield session, attempts


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http
