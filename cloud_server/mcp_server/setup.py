"""The MCP server's resources: one stateless streamable-HTTP session manager per app.

Stateless with JSON responses: every POST to `/mcp` is one JSON-RPC exchange answered in
one response (no server-held sessions, no long-lived streams), so each request is
authenticated and rate-limited on its own and any instance behind a load balancer can
answer it. The manager's task group lives in a task of its own from start-up to shutdown
(anyio wants a task group left in the task that entered it; aiohttp runs start-up and
cleanup in different tasks).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import anyio
from aiohttp import web
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from .tools import build_server

MCP_SESSIONS: web.AppKey[StreamableHTTPSessionManager] = web.AppKey(
    "mcp_sessions", StreamableHTTPSessionManager
)


class _StatelessRouterNoise(logging.Filter):
    """Drop the SDK's "Error in message router" for a stream it closed itself.

    In stateless mode the SDK (1.12) closes each request's streams when the response is
    sent and its message router then logs the `ClosedResourceError` at ERROR, once per
    request; nothing failed. Every other record passes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (
            record.getMessage() == "Error in message router"
            and isinstance(error, anyio.ClosedResourceError)
        )


async def _run(manager: StreamableHTTPSessionManager, started: asyncio.Event) -> None:
    async with manager.run():
        started.set()
        await asyncio.Event().wait()  # until cancelled at shutdown


async def _sessions_ctx(app: web.Application) -> AsyncIterator[None]:
    manager = StreamableHTTPSessionManager(app=build_server(), json_response=True, stateless=True)
    started = asyncio.Event()
    task = asyncio.create_task(_run(manager, started), name="mcp-sessions")
    waiting = asyncio.ensure_future(started.wait())
    await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():  # the manager failed to start: say why, do not wait forever
        waiting.cancel()
        task.result()
    app[MCP_SESSIONS] = manager
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def setup_mcp(app: web.Application) -> None:
    """Start the session manager with the app (after memory and chat, which it uses)."""
    router_log = logging.getLogger("mcp.server.streamable_http")
    if not any(isinstance(known, _StatelessRouterNoise) for known in router_log.filters):
        router_log.addFilter(_StatelessRouterNoise())
    app.cleanup_ctx.append(_sessions_ctx)
