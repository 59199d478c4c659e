"""Chat metrics for one request: first token, end, in flight, recall, upstream failures."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aiohttp import web

from homemind_client.models import ResponseToolCall

from .metrics import METRICS, Metrics

if TYPE_CHECKING:
    from ..chat.pipeline import ChatTurn, Sink


class TimedSink:
    """Passes events through to the real sink and notes when the first text went out."""

    def __init__(self, inner: Sink, observer: ChatObserver) -> None:
        self._inner = inner
        self._observer = observer

    @property
    def started(self) -> bool:
        return self._inner.started

    async def text(self, text: str) -> None:
        await self._inner.text(text)
        self._observer.first_text()

    async def tool_call(self, call: ResponseToolCall) -> None:
        await self._inner.tool_call(call)


class ChatObserver:
    """Created when a chat request is admitted; `finish` exactly once at its end."""

    def __init__(self, app: web.Application, *, streaming: bool, started: float) -> None:
        self._metrics: Metrics | None = app.get(METRICS)
        self._stream = "true" if streaming else "false"
        self._started = started  # time.monotonic() when the request arrived
        self._first_seen = False
        if self._metrics is not None:
            self._metrics.streams_in_flight.labels(self._stream).inc()

    def wrap(self, sink: Sink) -> Sink:
        return TimedSink(sink, self)

    def first_text(self) -> None:
        if self._first_seen:
            return
        self._first_seen = True
        if self._metrics is not None:
            self._metrics.chat_first_token.labels(self._stream).observe(
                time.monotonic() - self._started
            )

    def finish(self, turn: ChatTurn | None, error_code: str | None) -> None:
        metrics = self._metrics
        if metrics is None:
            return
        metrics.streams_in_flight.labels(self._stream).dec()
        metrics.chat_duration.labels(self._stream, error_code or "ok").observe(
            time.monotonic() - self._started
        )
        if turn is None:
            return
        if turn.recall_seconds is not None:
            metrics.memory_recall.labels(turn.recall_outcome).observe(turn.recall_seconds)
        for kind in turn.upstream_failures:
            metrics.upstream_errors.labels(kind).inc()
