"""`/mcp`: the MCP streamable-HTTP endpoint, an ASGI app served from aiohttp.

The SDK's transport is ASGI; `aiohttp_asgi` (a maintained aiohttp↔ASGI bridge) runs it
for one aiohttp request. Before the bridge, the request is ours: the installation token is
checked like every installation request (`require_installation`: a revoked token is
refused at once), the token needs the `mcp` scope, and chat's rate limits apply with their
own counters (`mcp:` keys). Refusals are our usual problem+json with stable codes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aiohttp import web
from aiohttp_asgi.resource import ASGIContext

from ..accounts.principal import require_installation
from ..accounts.scopes import require_scope
from ..chat.rate_policy import chat_limits
from ..lifecycle import refuse_when_draining
from .setup import MCP_SESSIONS
from .tools import SCOPE_KEY, Caller

type Scope = MutableMapping[str, Any]
type Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
type Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PATH = "/mcp"


async def mcp_endpoint(request: web.Request) -> web.StreamResponse:
    refuse_when_draining(request)
    principal = await require_installation(request)
    require_scope(principal.scopes, "mcp")
    manager = request.app[MCP_SESSIONS]
    caller = Caller(request, principal)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await manager.handle_request({**scope, SCOPE_KEY: caller}, receive, send)

    async with chat_limits(request, principal, prefix="mcp"):
        return await ASGIContext(app, request, root_path="").get_response()


def add_routes(app: web.Application) -> None:
    """POST carries the JSON-RPC messages. A stateless server has no stream to GET and no
    session to DELETE: aiohttp answers those 405, which MCP clients expect."""
    app.router.add_post(PATH, mcp_endpoint)
