"""The aiohttp application factory.

Each component has a `setup` module that puts its resources on the app as typed
`AppKey`s (with `cleanup_ctx`, so they are opened on start-up and closed on shutdown,
in reverse order) and a `routes` module whose `add_routes` registers its handlers.
See docs/architecture.md.
"""

from __future__ import annotations

from aiohttp import web

from . import __version__
from .accounts import routes as accounts_routes
from .accounts.account_routes import setup_account_api
from .accounts.setup import setup_accounts
from .app_keys import SETTINGS
from .billing import routes as billing_routes
from .billing.setup import setup_billing
from .chat import routes as chat_routes
from .chat.setup import setup_chat
from .dashboard.setup import setup_dashboard
from .db.engine import setup_database
from .errors import problem_middleware
from .http_security import setup_http_security
from .input_text import unstorable_text_middleware
from .lifecycle import setup_lifecycle
from .mcp_server import routes as mcp_routes
from .mcp_server.setup import setup_mcp
from .memory import routes as memory_routes
from .memory.setup import setup_memory
from .observability.health import setup_health
from .observability.metrics import setup_metrics
from .observability.middleware import observe_middleware
from .openapi import setup_openapi
from .ratelimit.setup import setup_ratelimit
from .settings import Settings


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers. It needs no database."""
    return web.json_response({"status": "ok", "version": __version__})


def create_app(settings: Settings | None = None) -> web.Application:
    settings = settings or Settings()
    app = web.Application(
        middlewares=[problem_middleware, observe_middleware, unstorable_text_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    setup_http_security(app)
    app.router.add_get("/healthz", healthz)
    setup_lifecycle(app)
    setup_metrics(app)
    setup_health(app)
    # Each component's resources (its `setup` module), in dependency order: the database
    # is opened first and closed last; billing installs chat's gate before chat looks.
    setup_database(app)
    setup_ratelimit(app)
    setup_accounts(app)
    setup_billing(app)
    setup_memory(app)
    setup_chat(app)
    setup_mcp(app)
    # Then the routes, which only route.
    for routes in (accounts_routes, billing_routes, memory_routes, chat_routes, mcp_routes):
        routes.add_routes(app)
    setup_account_api(app)
    setup_dashboard(app)
    setup_openapi(app)
    return app
