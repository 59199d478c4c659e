"""The limiter on the application: one per app, chosen by `REDIS_URL`, opened and
closed with the app (`cleanup_ctx`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ..app_keys import SETTINGS
from ..settings import Settings
from .gcra import Limiter
from .local import LocalLimiter
from .redis_store import RedisLimiter

LIMITER: web.AppKey[Limiter] = web.AppKey("rate_limiter", LocalLimiter)


def build_limiter(settings: Settings) -> Limiter:
    if settings.redis_url:
        return RedisLimiter(settings.redis_url, settings.redis_key_prefix)
    return LocalLimiter()


async def _limiter_ctx(app: web.Application) -> AsyncIterator[None]:
    limiter = app[LIMITER]
    await limiter.start()
    try:
        yield
    finally:
        await limiter.aclose()


def setup_ratelimit(app: web.Application) -> Limiter:
    """Put the limiter on the app and open/close it with the app."""
    app[LIMITER] = build_limiter(app[SETTINGS])
    app.cleanup_ctx.append(_limiter_ctx)
    return app[LIMITER]
