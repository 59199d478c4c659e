"""The accounts component's resources on the application (the routes are in `routes.py`).

`setup_accounts` loads the server's secrets (failing fast, with a `ConfigError` naming
the variable, before any request is served), picks the login throttle matching the
app's limiter, and opens the mailer and the argon2 pool with the app.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from ..app_keys import SETTINGS
from ..ratelimit.setup import LIMITER
from ..server_secrets import load_server_secrets
from . import passwords
from .app_keys import BACKGROUND, MAILER, SERVER_SECRETS, THROTTLE
from .installation_info import CONTRIBUTORS
from .mailer import Mailer
from .throttle import make_throttle


async def _accounts_ctx(app: web.Application) -> AsyncIterator[None]:
    # The dummy hash for unknown-email logins, made now in the argon2 pool: the first
    # such login then costs the same as the others, and the event loop never hashes.
    await passwords.prepare()
    yield
    background: set[asyncio.Task[None]] = app[BACKGROUND]
    tasks = list(background)
    if tasks:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=10)
    await passwords.shutdown()


def setup_accounts(app: web.Application) -> None:
    """Put the accounts resources on the app (after `setup_ratelimit`)."""
    settings = app[SETTINGS]
    app[SERVER_SECRETS] = load_server_secrets(settings)
    # With REDIS_URL, one budget across instances (the limiter's connection).
    app[THROTTLE] = make_throttle(app[LIMITER])
    app[MAILER] = Mailer(settings)
    app[BACKGROUND] = set()
    app[CONTRIBUTORS] = []
    app.cleanup_ctx.append(_accounts_ctx)
