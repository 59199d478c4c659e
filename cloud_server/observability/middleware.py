"""The request middleware: log context, one access line, HTTP metrics.

It sits inside `problem_middleware` (which assigns the request id and renders errors), so it
sees an `ApiError` before it becomes a response and can label it with its status.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from ..errors import REQUEST_ID_KEY, ApiError, Handler
from .logs import INSTALLATION_ID, REQUEST_ID, USER_ID
from .metrics import METRICS, route_of

LOGGER = logging.getLogger("cloud_server.access")

# Probes and scrapes are frequent and uninteresting: their access lines are DEBUG.
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    tokens = (
        REQUEST_ID.set(request.get(REQUEST_ID_KEY)),
        USER_ID.set(None),
        INSTALLATION_ID.set(None),
    )
    started = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except ApiError as err:
        status = err.status
        raise
    except web.HTTPException as err:
        status = err.status
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away (nginx's convention)
        raise
    finally:
        elapsed = time.monotonic() - started
        route = route_of(request)
        metrics = request.app.get(METRICS)
        if metrics is not None:
            metrics.http_requests.labels(route, request.method, str(status)).observe(elapsed)
            if status == 429:
                metrics.rate_limit_refusals.labels(route).inc()
        LOGGER.log(
            logging.DEBUG if route in _QUIET_ROUTES else logging.INFO,
            "%s %s %d %.1fms",
            request.method,
            request.path,  # never the query string (reset links carry tokens there)
            status,
            elapsed * 1000,
        )
        for var, token in zip((REQUEST_ID, USER_ID, INSTALLATION_ID), tokens, strict=True):
            var.reset(token)
