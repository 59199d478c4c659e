"""`/readyz`: may this instance take traffic now? (`/healthz` stays liveness only.)

Ready when the database answers, its schema is at this code's head revision and the
instance is not draining. Each check is bounded so a hung dependency makes the probe fail
rather than hang.

A database check that is only slow (it timed out: waiting for a pooled connection, or an
event loop behind on a busy machine) does not fail readiness while the database answered
within the last `BUSY_GRACE` seconds: under load every instance is slow at once, and
taking the busiest out moves its load onto the others until none is left (bench/load.py
showed HAProxy ejecting both instances that way). What readiness is for, a problem of
this instance alone (credentials, network, a schema behind the code), shows as an error
and fails it at once; so do `BUSY_GRACE` seconds without any answer.

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
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..app_keys import SETTINGS
from ..db.engine import DB_ENGINE, current_revisions, head_revisions
from ..lifecycle import is_draining

LOGGER = logging.getLogger(__name__)

CHECK_TIMEOUT = 2.0
# Seconds a slow (timed out) database check still counts as ready after the last answer.
BUSY_GRACE = 30.0
_HEADS: set[str] = set()


@dataclass
class _LastAnswer:
    at: float | None = None  # monotonic time the database last answered the check
    schema: str = "unknown"


_LAST_ANSWER: web.AppKey[_LastAnswer] = web.AppKey("readiness_last_answer", _LastAnswer)


async def _database(app: web.Application) -> tuple[str, str]:
    engine = app.get(DB_ENGINE)
    if engine is None:
        return "unavailable", "unavailable"
    if not _HEADS:
        _HEADS.update(head_revisions())
    last = app.get(_LAST_ANSWER)
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            current = await current_revisions(engine)
    except TimeoutError:
        if last is not None and last.at is not None and time.monotonic() - last.at < BUSY_GRACE:
            LOGGER.info("Readiness: the database check was slow; it answered recently")
            return "ok", last.schema
        LOGGER.warning("Readiness: the database does not answer (TimeoutError)")
        return "unavailable", "unknown"
    except Exception as err:
        LOGGER.warning("Readiness: the database does not answer (%s)", type(err).__name__)
        return "unavailable", "unknown"
    schema = "ok" if current == _HEADS else "outdated"
    if last is not None:
        last.at, last.schema = time.monotonic(), schema
    return "ok", schema


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
    if is_draining(app):
        # At once: the balancer must see it on its next check, whatever the load.
        return web.json_response(
            {"status": "draining", "checks": {}},
            status=503,
            headers={"Cache-Control": "no-store"},
        )
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
    app[_LAST_ANSWER] = _LastAnswer()
    app.router.add_get("/readyz", get_readyz)
