"""`/readyz`: may this instance take traffic now? (`/healthz` stays liveness only.)

Ready when the database answers and its schema is at this code's head revision, Redis
answers when one is configured, and the instance is not draining. Each check is bounded so
a hung dependency makes the probe fail rather than hang.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from ..app_keys import SETTINGS
from ..db.engine import DB_ENGINE, current_revisions, head_revisions
from ..lifecycle import is_draining

LOGGER = logging.getLogger(__name__)

CHECK_TIMEOUT = 2.0
_HEADS: set[str] = set()


async def _database(app: web.Application) -> tuple[str, str]:
    engine = app.get(DB_ENGINE)
    if engine is None:
        return "unavailable", "unavailable"
    if not _HEADS:
        _HEADS.update(head_revisions())
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            current = await current_revisions(engine)
    except Exception as err:
        LOGGER.warning("Readiness: the database does not answer (%s)", type(err).__name__)
        return "unavailable", "unknown"
    return "ok", "ok" if current == _HEADS else "outdated"


async def _redis(app: web.Application) -> str:
    if not app[SETTINGS].redis_url:
        return "not_configured"
    from ..ratelimit.setup import LIMITER

    client: Any = getattr(app.get(LIMITER), "redis", None)
    if client is None:
        return "unavailable"
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await client.ping()
    except Exception as err:
        LOGGER.warning("Readiness: Redis does not answer (%s)", type(err).__name__)
        return "unavailable"
    return "ok"


async def get_readyz(request: web.Request) -> web.Response:
    app = request.app
    (database, schema), redis = await asyncio.gather(_database(app), _redis(app))
    draining = is_draining(app)
    checks = {"database": database, "schema": schema, "redis": redis}
    ready = (
        not draining and database == "ok" and schema == "ok" and redis in ("ok", "not_configured")
    )
    status = "ready" if ready else ("draining" if draining else "not_ready")
    return web.json_response(
        {"status": status, "checks": checks},
        status=200 if ready else 503,
        headers={"Cache-Control": "no-store"},
    )


def setup_health(app: web.Application) -> None:
    app.router.add_get("/readyz", get_readyz)
