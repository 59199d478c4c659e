"""Serving and draining: what happens between SIGTERM and exit.

On SIGTERM (or SIGINT) `serve` drains before it stops the app:

1. readiness (`/readyz`) answers 503 `draining` at once, so the load balancer's health
   check takes this instance out;
2. after `HOMEMIND_DRAIN_DELAY` seconds (time for the balancer to notice) new chat
   requests are refused with 503 `temporarily_unavailable` and `Retry-After`;
3. chats in flight get up to `HOMEMIND_DRAIN_TIMEOUT` seconds to finish; any still running
   then are stopped: a stream ends with an `error` event, a plain request with a 503;
4. the listening socket closes and the app's cleanup runs (database, Redis, clients).

aiohttp's own `run_app` closes the listening socket first and then cancels what is still
running after its timeout (no `error` event), hence this small runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from homemind_client.models import ErrorCode

from .app_keys import SETTINGS
from .errors import ApiError

LOGGER = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 2
# After the stop signal, how long the stopped handlers get to write their error event.
_ABORT_GRACE = 2.0


class Draining(Exception):
    """Raised inside a chat that the drain stopped."""


@dataclass
class DrainState:
    draining: bool = False  # readiness fails
    refusing: bool = False  # new chats are refused
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    abort: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.idle.set()


DRAIN: web.AppKey[DrainState] = web.AppKey("drain", DrainState)


def setup_lifecycle(app: web.Application) -> None:
    app[DRAIN] = DrainState()


def is_draining(app: web.Application) -> bool:
    state = app.get(DRAIN)
    return state is not None and state.draining


def server_restarting(
    detail: str = "This server is restarting; ask again in a moment.",
) -> ApiError:
    return ApiError(ErrorCode.TEMPORARILY_UNAVAILABLE, detail, retry_after=RETRY_AFTER_SECONDS)


def refuse_when_draining(request: web.Request) -> None:
    state = request.app.get(DRAIN)
    if state is not None and state.refusing:
        raise server_restarting()


async def until_drained[T](app: web.Application, work: Awaitable[T]) -> T:
    """Run one chat's work, counted as in flight; stopped (`server_restarting`) by the drain."""
    state = app.get(DRAIN)
    if state is None:
        return await work
    state.in_flight += 1
    state.idle.clear()
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(state.abort.wait())
    try:
        await asyncio.wait((task, stopper), return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if task.cancelled():
                raise server_restarting("This server is restarting; the answer was cut short.")
        return task.result()
    except asyncio.CancelledError:
        # Our own caller was cancelled (client gone): stop the work too, and wait for it so
        # that what it counted (tokens spent) is final before the caller records it.
        task.cancel()
        await asyncio.wait((task,))
        raise
    finally:
        stopper.cancel()
        state.in_flight -= 1
        if state.in_flight == 0:
            state.idle.set()


async def drain(app: web.Application) -> None:
    """Steps 1-3 of the module docstring; returns when nothing is in flight."""
    settings = app[SETTINGS]
    state = app[DRAIN]
    state.draining = True
    LOGGER.info(
        "Draining: readiness fails now; new chats refused in %.1fs; %d in flight",
        settings.effective_drain_delay,
        state.in_flight,
    )
    if settings.effective_drain_delay > 0:
        await asyncio.sleep(settings.effective_drain_delay)
    state.refusing = True
    try:
        async with asyncio.timeout(settings.drain_timeout):
            await state.idle.wait()
        LOGGER.info("Drained: no chat in flight")
        return
    except TimeoutError:
        pass
    LOGGER.warning("Drain timeout: stopping %d chats in flight", state.in_flight)
    state.abort.set()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_ABORT_GRACE):
            await state.idle.wait()


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (every platform but Windows), else None
    (asyncio's own). Under load it cut the server's CPU per chat turn by about a tenth
    (bench/load.py): socket reads and writes, timers and callbacks cost less in it."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def freeze_start_up_objects() -> None:
    """Keep what start-up built (modules, the app, pools, the embedder) out of every later
    garbage collection: it lives as long as the process. A full collection walks every
    object the collector tracks and stops the event loop meanwhile; with the start-up
    objects in its view one took ~200 ms here, and every stream in flight waited that long
    (bench/chat_latency.py). Collected first, so no start-up garbage is kept for good."""
    gc.collect()
    gc.freeze()


async def serve(app: web.Application, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT, then drain and stop (the `serve` command)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5)
    await runner.setup()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    try:
        # Before the socket opens: no request waits for this collection.
        freeze_start_up_objects()
        site = web.TCPSite(runner, host, port)
        await site.start()
        stop = asyncio.Event()
        for signum in signals:
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        LOGGER.info("Stop signal received")
        await drain(app)
    finally:
        # The default handlers again: a second SIGTERM during cleanup (or after `serve`
        # returned, in an embedding program) must not be swallowed.
        for signum in signals:
            loop.remove_signal_handler(signum)
        await runner.cleanup()
        # An embedding program (or a test) goes on: its objects are collectable again.
        gc.unfreeze()
    LOGGER.info("Stopped")
