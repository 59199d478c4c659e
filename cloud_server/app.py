"""The aiohttp application factory.

Each component adds its routes and its resources (with `cleanup_ctx`, so they are
opened on start-up and closed on shutdown, in reverse order).
"""

from __future__ import annotations

from aiohttp import web

from . import __version__
from .accounts.routes import setup_accounts
from .billing.routes import setup_billing
from .chat.routes import setup_chat
from .db.engine import setup_database
from .errors import problem_middleware
from .http_security import setup_http_security
from .input_text import unstorable_text_middleware
from .keys import SETTINGS
from .memory.routes import setup_memory
from .openapi import setup_openapi
from .ratelimit import setup_ratelimit
from .settings import Settings


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers. It needs no database."""
    return web.json_response({"status": "ok", "version": __version__})


def create_app(settings: Settings | None = None) -> web.Application:
    settings = settings or Settings()
    app = web.Application(
        middlewares=[problem_middleware, unstorable_text_middleware],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    setup_http_security(app)
    app.router.add_get("/healthz", healthz)
    # Order matters: the database is opened first and closed last.
    setup_database(app)
    setup_ratelimit(app)
    setup_accounts(app)
    setup_billing(app)
    setup_memory(app)
    setup_chat(app)
    setup_openapi(app)
    return app
