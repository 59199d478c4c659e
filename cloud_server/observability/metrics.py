"""Prometheus metrics (prometheus-client), one registry per application.

A registry per app (not the library's global one) keeps test apps and several apps in one
process from sharing counters. `/metrics` is served on the main port only when
`HOMEMIND_METRICS_ON_MAIN_PORT` allows it (self-hosted default; never by default when
hosted), and on its own port when `HOMEMIND_METRICS_PORT` is set.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from ..app_keys import SETTINGS

LOGGER = logging.getLogger(__name__)

# Seconds; chat phases span tens of milliseconds (first token) to a minute (long answers).
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_CHAT_BUCKETS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2, 3, 5, 8, 12, 20, 30, 60)
_RECALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2)


class Metrics:
    """Every metric the server exports, registered on its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Histogram(
            "homemind_http_request_duration_seconds",
            "HTTP requests by route template, method and status (streams: until their end).",
            ["route", "method", "status"],
            buckets=_HTTP_BUCKETS,
            registry=r,
        )
        self.chat_first_token = Histogram(
            "homemind_chat_first_token_seconds",
            "From the chat request's arrival to its first text sent to the client.",
            ["stream"],
            buckets=_CHAT_BUCKETS,
            registry=r,
        )
        self.chat_duration = Histogram(
            "homemind_chat_duration_seconds",
            "From the chat request's arrival to its end, by outcome (ok or an error code).",
            ["stream", "outcome"],
            buckets=_CHAT_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "homemind_upstream_errors_total",
            "Failed calls to Claude by kind (retried ones included).",
            ["kind"],
            registry=r,
        )
        self.streams_in_flight = Gauge(
            "homemind_chat_streams_in_flight",
            "Chat requests being answered now (streaming and not).",
            ["stream"],
            registry=r,
        )
        self.memory_recall = Histogram(
            "homemind_memory_recall_seconds",
            "Memory recall before a chat turn, by outcome (ok, timeout, error).",
            ["outcome"],
            buckets=_RECALL_BUCKETS,
            registry=r,
        )
        self.webhook_events = Counter(
            "homemind_webhook_events_total",
            "Stripe webhook events by result (applied, duplicate, ignored, failed).",
            ["result"],
            registry=r,
        )
        self.rate_limit_refusals = Counter(
            "homemind_rate_limit_refusals_total",
            "Requests refused with 429 by route template.",
            ["route"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class DatabasePoolCollector(Collector):
    """Connection-pool use read from SQLAlchemy's pool at scrape time."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        from ..db.engine import DB_ENGINE, pool_stats

        engine = self._app.get(DB_ENGINE)
        pool: Any = engine.pool if engine is not None else None
        in_use = GaugeMetricFamily(
            "homemind_db_pool_connections_in_use", "Database connections checked out now."
        )
        size = GaugeMetricFamily(
            "homemind_db_pool_size", "Database connections the pool keeps (without overflow)."
        )
        if pool is not None:
            for family, reader in ((in_use, "checkedout"), (size, "size")):
                method = getattr(pool, reader, None)
                if callable(method):
                    family.add_metric([], float(method()))
        yield in_use
        yield size
        stats = pool_stats(engine) if engine is not None else None
        if stats is None:
            return
        for name, doc, value in (
            ("homemind_db_pool_checkouts", "Connections taken from the pool.", stats.checkouts),
            (
                "homemind_db_pool_wait_seconds",
                "Time spent waiting for a pooled connection (a new one's connect included).",
                stats.wait_seconds,
            ),
            (
                "homemind_db_pool_held_seconds",
                "Time connections spent checked out (held seconds / checkouts = mean hold).",
                stats.held_seconds,
            ),
        ):
            counter = CounterMetricFamily(name, doc)
            counter.add_metric([], float(value))
            yield counter

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []


class RedisCollector(Collector):
    """Whether the shared Redis answers, and the limits decided locally while it did not
    (read from the limiter at scrape time; nothing when no Redis is configured)."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        from ..ratelimit.redis_store import RedisLimiter
        from ..ratelimit.setup import LIMITER

        limiter = self._app.get(LIMITER)
        if not isinstance(limiter, RedisLimiter):
            return
        up = GaugeMetricFamily(
            "homemind_redis_up",
            "1 while the shared Redis answers; 0 while rate limits are per instance.",
        )
        up.add_metric([], 1.0 if limiter.up else 0.0)
        yield up
        local = CounterMetricFamily(
            "homemind_rate_limit_local_decisions",
            "Chat admissions (rates and concurrency) decided in this process while Redis was down.",
        )
        local.add_metric([], float(limiter.local_decisions))
        yield local

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []


METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)


def metrics_of(app: web.Application) -> Metrics:
    return app[METRICS]


def route_of(request: web.Request) -> str:
    """The route template (bounded label values), never the raw path."""
    info = request.match_info
    route = info.route if info is not None else None
    resource = route.resource if route is not None else None
    if resource is None:
        return "unmatched"
    return resource.canonical


async def get_metrics(request: web.Request) -> web.Response:
    body = metrics_of(request.app).render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _metrics_port_ctx(main_app: web.Application) -> Any:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        side = web.Application()
        side[METRICS] = app[METRICS]
        side.router.add_get("/metrics", get_metrics)
        runner = web.AppRunner(side, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, settings.metrics_host, settings.metrics_port)
        await site.start()
        LOGGER.info("Metrics on http://%s:%s/metrics", settings.metrics_host, _bound_port(runner))
        app[METRICS_SITE] = runner
        try:
            yield
        finally:
            await runner.cleanup()

    return ctx


def _bound_port(runner: web.AppRunner) -> int | str:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return "?"


METRICS_SITE: web.AppKey[web.AppRunner] = web.AppKey("metrics_site", web.AppRunner)


def metrics_port_of(app: web.Application) -> int | None:
    """The bound port of the separate metrics site (tests bind port 0)."""
    runner = app.get(METRICS_SITE)
    if runner is None:
        return None
    port = _bound_port(runner)
    return port if isinstance(port, int) else None


def setup_metrics(app: web.Application) -> Metrics:
    metrics = Metrics()
    app[METRICS] = metrics
    metrics.registry.register(DatabasePoolCollector(app))
    metrics.registry.register(RedisCollector(app))
    settings = app[SETTINGS]
    if settings.effective_metrics_on_main_port:
        app.router.add_get("/metrics", get_metrics)
    if settings.metrics_port is not None:
        app.cleanup_ctx.append(_metrics_port_ctx(app))
    return metrics


def count_webhook_event(app: web.Application, result: str) -> None:
    metrics = app.get(METRICS)
    if metrics is not None:
        metrics.webhook_events.labels(result).inc()
