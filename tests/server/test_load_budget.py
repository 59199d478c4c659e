"""Checklist row 32, the load budget, bounded for `make test` (no timing is asserted: the
figures come from bench/load_budget.py, printed, on an idle machine).

- 50 concurrent clients on the authenticated JSON endpoints (an installation token and a
  user's access token), on the real server process: not one 5xx, every answer a 200.
- The limiter never over-admits under concurrency, in process and in Redis: 50 chats
  arriving at once on a burst of 5 reach Claude exactly 5 times (the rest are 429 with
  `Retry-After`), and 50 streams at once on a concurrency cap of 3 hold exactly 3 slots.
  Each admitted chat is counted once (usage rows), a refused one never.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr
from redis.exceptions import RedisError
from sqlalchemy import select

from cloud_server.app import create_app
from cloud_server.billing.models import UsageRecord
from cloud_server.db.engine import DB_SESSIONMAKER
from cloud_server.settings import Settings
from tests.fakes.claude import FakeClaude, RecordedRequest, Turn, text
from tests.server.test_ratelimit import REDIS_URL
from tests.server.test_server_process import server, sign_up

CONCURRENCY = 50


async def test_50_concurrent_clients_on_authenticated_json_endpoints_get_no_5xx(
    tmp_path: Path,
) -> None:
    async with FakeClaude() as fake:
        proc = server(tmp_path, fake, HOMEMIND_LOG_LEVEL="WARNING")
        await proc.start()
        try:
            connector = aiohttp.TCPConnector(limit=CONCURRENCY)
            async with aiohttp.ClientSession(connector=connector) as session:
                access, _, _, token = await sign_up(session, proc.url)
                calls = [
                    ("/api/installation", token),
                    ("/api/auth/me", access),
                    ("/api/installations", access),
                ]
                statuses: Counter[int] = Counter()

                async def client(worker: int) -> None:
                    for round_ in range(12):
                        path, bearer = calls[(worker + round_) % len(calls)]
                        async with session.get(
                            proc.url + path, headers={"Authorization": f"Bearer {bearer}"}
                        ) as response:
                            await response.read()
                            statuses[response.status] += 1

                await asyncio.gather(*(client(w) for w in range(CONCURRENCY)))
        finally:
            await proc.stop()
    assert statuses == Counter({200: CONCURRENCY * 12})


@pytest.fixture(params=["memory", "redis"])
async def limiter_settings(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, Any]]:
    if request.param == "memory":
        yield {"redis_url": None}
        return
    prefix = f"homemind-load-{secrets.token_hex(6)}:"
    direct = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await direct.ping()
    except (RedisError, OSError) as err:
        await direct.aclose()
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {err}")
    try:
        yield {"redis_url": REDIS_URL, "redis_key_prefix": prefix}
    finally:
        keys = [key async for key in direct.scan_iter(match=prefix + "*")]
        if keys:
            await direct.delete(*keys)
        await direct.aclose()


async def _usage(app: Any) -> list[UsageRecord]:
    async with app[DB_SESSIONMAKER]() as session:
        return list((await session.execute(select(UsageRecord))).scalars())


async def _chats_at_once(client: Any, token: str, path: str) -> Counter[int]:
    async def one() -> int:
        response = await client.post(
            path, json={"message": "Lights on"}, headers={"Authorization": f"Bearer {token}"}
        )
        await response.read()
        if response.status == 429:
            assert response.headers["Retry-After"]
        return int(response.status)

    return Counter(await asyncio.gather(*(one() for _ in range(CONCURRENCY))))


async def test_the_limiter_never_over_admits_50_chats_at_once(
    aiohttp_client: Any,
    server_settings: Settings,
    limiter_settings: dict[str, Any],
    create_installation: Any,
) -> None:
    async with FakeClaude() as fake:
        base = server_settings.model_copy(
            update={
                "anthropic_base_url": fake.base_url,
                "anthropic_api_key": SecretStr("sk-ant-load-" + "l" * 30),
                "memory_extraction": False,
                **limiter_settings,
            }
        )
        # A burst of 5 (and a slow refill): 50 at once, exactly 5 reach Claude.
        client = await aiohttp_client(
            create_app(base.model_copy(update={"chat_rate_per_minute": 1, "chat_burst": 5}))
        )
        _, token = await create_installation(client=client)
        statuses = await _chats_at_once(client, token, "/api/chat")
        assert statuses == Counter({200: 5, 429: CONCURRENCY - 5})
        assert len(fake.requests) == 5
        assert len(await _usage(client.app)) == 5


async def test_the_concurrency_cap_holds_under_50_streams_at_once(
    aiohttp_client: Any,
    server_settings: Settings,
    limiter_settings: dict[str, Any],
    create_installation: Any,
) -> None:
    async with FakeClaude() as fake:
        client = await aiohttp_client(
            create_app(
                server_settings.model_copy(
                    update={
                        "anthropic_base_url": fake.base_url,
                        "anthropic_api_key": SecretStr("sk-ant-load-" + "l" * 30),
                        "memory_extraction": False,
                        "chat_rate_per_minute": 6000,
                        "chat_burst": 100,
                        "chat_concurrency": 3,
                        **limiter_settings,
                    }
                )
            )
        )
        _, token = await create_installation(client=client)
        release = asyncio.Event()

        async def held(_: RecordedRequest) -> Turn:
            await release.wait()
            return text("Done.")

        fake.responder = held
        running = asyncio.create_task(_chats_at_once(client, token, "/api/chat/stream"))
        await fake.wait_for_requests(3, timeout=30)
        await asyncio.sleep(0.5)  # give any over-admitted request the time to arrive
        in_flight = len(fake.requests)
        release.set()
        statuses = await running
        assert in_flight == 3
        assert statuses == Counter({200: 3, 429: CONCURRENCY - 3})
        assert len(await _usage(client.app)) == 3
