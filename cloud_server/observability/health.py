"""`/readyz`: may this instance take traffic now? (`/healthz` stays liveness only.)

Ready when the database answers, its schema is at this code's head revision and the
instance is not draining. Each check is bounded so a hung dependency makes the probe fail
rather than hang.

Redis does not decide readiness: it is shared by every instance, so failing readiness on
it would take them all out at once (a full outage) while chat can still run on each
instance's own limits (`ratelimit/redis_store.py`). A configured Redis that does not
answer makes the answer 200 `degraded` with `checks.redis: "unavailable"`; the ping also
tells the limiter, so `homemind_redis_up` is right on an idle instance too
(docs/runbooks/redis-down.md).
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
    from ..ratelimit.redis_store import RedisLimiter
    from ..ratelimit.setup import LIMITER

    limiter = app.get(LIMITER)
    client: Any = getattr(limiter, "redis", None)
    if client is None:
        return "unavailable"
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await client.ping()
    except Exception as err:
        LOGGER.warning("Readiness: Redis does not answer (%s)", type(err).__name__)
        if isinstance(limiter, RedisLimiter):
            limiter.report_failure(err)
        return "unavailable"
    if isinstance(limiter, RedisLimiter):
        limiter.report_success()
    return "ok"


async def get_readyz(request: web.Request) -> web.Response:
    app = request.app
    (database, schema), redis = await asyncio.gather(_database(app), _redis(app))
    draining = is_draining(app)
    checks = {"database": database, "schema": schema, "redis": redis}
    ready = not draining and database == "ok" and schema == "ok"
    if not ready:
        status = "draining" if draining else "not_ready"
    else:
        status = "ready" if redis in ("ok", "not_configured") else "degraded"
    return web.json_response(
        {"status": status, "checks": checks},
        status=200 if ready else 503,
        headers={"Cache-Control": "no-store"},
    )


def setup_health(app: web.Application) -> None:
    app.router.add_get("/readyz", get_readyz)
