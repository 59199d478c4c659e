"""Checklist row 26, graceful shutdown: `serve` (cloud_server/lifecycle.py) on SIGTERM.

In process (so what the app holds can be inspected after `serve` returns): a slow plain
chat is in flight when SIGTERM arrives; readiness fails first; the chat completes with 200
and its answer; then the database pool, the Redis client and the HTTP client to Claude are
all closed, and the signal handlers are given back.

As a child process:
A slow plain (non-streaming) chat is in flight when SIGTERM arrives: readiness fails first,
the chat still completes with 200 and its answer, the process exits 0, and nothing was left
open: with Python's development mode on (ResourceWarning shown, asyncio's debug checks)
the log has no "Unclosed client session" / "Unclosed connection" / unclosed socket or
transport warning and no task destroyed while pending, with the database, Redis and the
HTTP client to Claude all in use. (Streams ended by the drain: tests/server/test_server_process.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import secrets
import signal
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr
from redis.exceptions import RedisError

from cloud_server.app import create_app
from cloud_server.chat.upstream import CLAUDE_CLIENTS
from cloud_server.db.engine import DB_ENGINE
from cloud_server.lifecycle import serve
from cloud_server.ratelimit.redis_store import RedisLimiter
from cloud_server.ratelimit.setup import LIMITER
from cloud_server.settings import Settings
from tests.fakes.claude import FakeClaude, RecordedRequest, Turn, text
from tests.server.server_process import free_port
from tests.server.test_ratelimit import REDIS_URL
from tests.server.test_server_process import ANSWER, server, sign_up

LEAK_SIGNS = (
    "Unclosed client session",
    "Unclosed connection",
    "Unclosed connector",
    "unclosed <socket",
    "unclosed transport",
    "ResourceWarning",
    "Task was destroyed but it is pending",
    "Traceback",
)


@pytest.fixture
async def redis_prefix() -> str:
    direct = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await direct.ping()
    except (RedisError, OSError) as err:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {err}")
    finally:
        await direct.aclose()
    return f"homemind-shutdown-{secrets.token_hex(6)}:"


async def test_sigterm_lets_a_slow_request_finish_and_closes_every_session(
    tmp_path: Path, redis_prefix: str
) -> None:
    async with FakeClaude() as fake:
        proc = server(
            tmp_path,
            fake,
            HOMEMIND_DRAIN_DELAY="0.5",
            HOMEMIND_DRAIN_TIMEOUT="20",
            REDIS_URL=REDIS_URL,
            HOMEMIND_REDIS_PREFIX=redis_prefix,
            PYTHONDEVMODE="1",
            HOMEMIND_LOG_LEVEL="INFO",
        )
        await proc.start()
        answering = asyncio.Event()
        release = asyncio.Event()

        async def slow(_: RecordedRequest) -> Turn:
            answering.set()
            await release.wait()
            return text(ANSWER)

        try:
            async with aiohttp.ClientSession() as session:
                _, _, _, token = await sign_up(session, proc.url)
                fake.responder = slow
                in_flight = asyncio.create_task(
                    session.post(
                        f"{proc.url}/api/chat",
                        json={"message": "How warm is the bedroom?"},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                )
                await answering.wait()
                proc.signal(signal.SIGTERM)
                # Readiness fails first, while the request is still running.
                for _ in range(100):
                    async with session.get(f"{proc.url}/readyz") as ready:
                        if ready.status == 503:
                            break
                    await asyncio.sleep(0.05)
                assert ready.status == 503
                assert not in_flight.done()
                release.set()
                response = await in_flight
                assert response.status == 200
                assert (await response.json())["reply"] == ANSWER
                response.release()
            assert await proc.wait() == 0
        finally:
            release.set()
            await proc.stop()
    logs = proc.logs()
    assert "Stopped" in logs
    found = [sign for sign in LEAK_SIGNS if sign in logs]
    assert not found, logs[-4000:]


async def _ready_fails(session: aiohttp.ClientSession, url: str) -> int:
    for _ in range(100):
        async with session.get(f"{url}/readyz") as ready:
            if ready.status == 503:
                return ready.status
        await asyncio.sleep(0.05)
    return ready.status


async def test_sigterm_in_process_finishes_the_request_then_closes_db_redis_and_http(
    server_settings: Settings, redis_prefix: str
) -> None:
    async with FakeClaude() as fake:
        app = create_app(
            server_settings.model_copy(
                update={
                    "anthropic_base_url": fake.base_url,
                    "anthropic_api_key": SecretStr("sk-ant-shutdown-" + "s" * 24),
                    "memory_extraction": False,
                    "redis_url": REDIS_URL,
                    "redis_key_prefix": redis_prefix,
                    "drain_delay": 0.3,
                    "drain_timeout": 20,
                }
            )
        )
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        serving = asyncio.create_task(serve(app, "127.0.0.1", port))
        answering, release = asyncio.Event(), asyncio.Event()

        async def slow(_: RecordedRequest) -> Turn:
            answering.set()
            await release.wait()
            return text(ANSWER)

        fake.responder = slow
        try:
            async with aiohttp.ClientSession() as session:
                for _ in range(200):
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.get(f"{url}/healthz") as health:
                            if health.status == 200:
                                break
                    await asyncio.sleep(0.05)
                # What start-up built is out of every garbage collection's walk (a full one
                # stopped every stream for ~200 ms with it: cloud_server/lifecycle.py).
                assert gc.get_freeze_count() > 0
                assert not any(obj is app for obj in gc.get_objects())
                _, _, _, token = await sign_up(session, url)
                engine, limiter = app[DB_ENGINE], app[LIMITER]
                assert isinstance(limiter, RedisLimiter)
                in_flight = asyncio.create_task(
                    session.post(
                        f"{url}/api/chat",
                        json={"message": "How warm is the bedroom?"},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                )
                await answering.wait()
                os.kill(os.getpid(), signal.SIGTERM)  # serve's handler takes it
                assert await _ready_fails(session, url) == 503
                assert not in_flight.done()
                release.set()
                response = await in_flight
                assert response.status == 200
                assert (await response.json())["reply"] == ANSWER
                response.release()
            async with asyncio.timeout(30):
                await serving
        finally:
            release.set()
            if not serving.done():
                serving.cancel()
    # The embedding program's objects are collectable again; everything the app opened is
    # closed.
    assert gc.get_freeze_count() == 0
    assert engine.pool.checkedout() == 0 and engine.pool.checkedin() == 0
    assert limiter._redis is None
    assert app[CLAUDE_CLIENTS]._http.is_closed
    # And SIGTERM is the default again (pytest would otherwise ignore the next one).
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
