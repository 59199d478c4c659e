"""Fault: Redis goes away while one instance is serving, and comes back.

The shared Redis stays up: the server reaches it through a proxy this test cuts and
restores (tests/fault_proxy.py), under a key prefix of its own. What a user sees, on one
instance (docs/security-checklist.md row 19): chat keeps answering and this instance
enforces the budget on its own counters (fail open); sign-in is refused with 503
`temporarily_unavailable` (fail closed). When Redis is back the shared budget is used
again where it was left, sign-in works, and every answered chat is counted exactly once.
(Whether `/readyz` reports a Redis outage is the deployment's decision; not asserted here.)
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr
from redis.exceptions import RedisError
from sqlalchemy import select

from cloud_server.app import create_app
from cloud_server.billing.models import UsageRecord
from cloud_server.db.engine import DB_SESSIONMAKER
from cloud_server.ratelimit.redis_store import REDIS_RETRY_PAUSE, RedisLimiter
from cloud_server.ratelimit.setup import LIMITER
from cloud_server.settings import Settings
from tests.fakes.claude import FakeClaude
from tests.fault_proxy import FaultProxy
from tests.server.conftest import DEFAULT_PASSWORD
from tests.server.test_ratelimit import REDIS_URL, FakeClock, assert_rate_limited, chat


@pytest.fixture
async def redis_via_proxy() -> AsyncIterator[tuple[FaultProxy, str, str]]:
    """(proxy, URL through it, key prefix) on the shared Redis; the keys are deleted after."""
    prefix = f"homemind-fault-{secrets.token_hex(6)}:"
    direct = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await direct.ping()
    except (RedisError, OSError) as err:
        await direct.aclose()
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {err}")
    host, port = direct.connection_pool.connection_kwargs["host"], 6379
    port = int(direct.connection_pool.connection_kwargs.get("port", port))
    proxy = await FaultProxy(host, port).start()
    try:
        yield proxy, f"redis://127.0.0.1:{proxy.port}/0", prefix
    finally:
        await proxy.close()
        keys = [key async for key in direct.scan_iter(match=prefix + "*")]
        if keys:
            await direct.delete(*keys)
        await direct.aclose()


async def _usage_rows(app: Any) -> list[UsageRecord]:
    async with app[DB_SESSIONMAKER]() as session:
        return list((await session.execute(select(UsageRecord))).scalars())


async def _keys(prefix: str) -> list[str]:
    direct = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        return [key async for key in direct.scan_iter(match=prefix + "*")]
    finally:
        await direct.aclose()


async def _login(client: Any, email: str) -> Any:
    return await client.post("/api/auth/login", json={"email": email, "password": DEFAULT_PASSWORD})


async def test_redis_down_and_back_on_one_instance(
    aiohttp_client: Any,
    server_settings: Settings,
    redis_via_proxy: tuple[FaultProxy, str, str],
    create_user: Any,
    create_installation: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy, redis_url, prefix = redis_via_proxy
    async with FakeClaude() as claude:
        app = create_app(
            server_settings.model_copy(
                update={
                    "anthropic_base_url": claude.base_url,
                    "anthropic_api_key": SecretStr("sk-ant-redis-fault-" + "r" * 20),
                    "memory_extraction": False,
                    "redis_url": redis_url,
                    "redis_key_prefix": prefix,
                    "chat_rate_per_minute": 30,
                    "chat_burst": 3,
                }
            )
        )
        limiter = app[LIMITER]
        assert isinstance(limiter, RedisLimiter)
        clock = FakeClock()  # exact GCRA arithmetic: the budget does not refill by itself
        limiter.clock = limiter.fallback.clock = clock
        client = await aiohttp_client(app)
        user_id, _ = await create_user(client=client, email="redis-fault@example.test")
        _, token = await create_installation(user_id=user_id, client=client)
        caplog.set_level(logging.INFO)

        # Redis up: two of the three in the shared budget.
        assert [(await chat(client, token)).status for _ in range(2)] == [200, 200]
        assert (await _login(client, "redis-fault@example.test")).status == 200

        proxy.cut()
        # Chat fails open onto this instance's own budget (a full burst of 3) ...
        assert [(await chat(client, token)).status for _ in range(3)] == [200] * 3
        await assert_rate_limited(await chat(client, token), 2)
        # ... sign-in fails closed, with a clear code.
        refused = await _login(client, "redis-fault@example.test")
        assert refused.status == 503
        assert refused.headers["Retry-After"]
        assert (await refused.json())["code"] == "temporarily_unavailable"
        outage = [r for r in caplog.records if "Redis is unavailable" in r.getMessage()]
        assert len(outage) == 1  # once, not once per request

        proxy.restore()
        await asyncio.sleep(REDIS_RETRY_PAUSE + 0.5)  # the limiter leaves Redis alone this long
        # Redis's budget again, not this instance's (which is spent): Redis's keys expired
        # (in real time) while it was away, so a full burst, then 429.
        assert [(await chat(client, token)).status for _ in range(3)] == [200] * 3
        await assert_rate_limited(await chat(client, token), 2)
        assert await _keys(prefix), "the budget is held in Redis again"
        assert (await _login(client, "redis-fault@example.test")).status == 200

        # Nothing lost, nothing doubled: one call to Claude and one usage row per answer.
        answered = 2 + 3 + 3
        assert len(claude.requests) == answered
        rows = await _usage_rows(app)
        assert len(rows) == answered and len({r.id for r in rows}) == answered
        assert all(r.completed for r in rows)
