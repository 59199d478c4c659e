"""Login / register / reset throttling on the shared Redis.

docs/security-checklist.md rows 4 and 19.

Two app instances on one database and one Redis must enforce one budget; with Redis down
these endpoints fail closed (503 `temporarily_unavailable` + Retry-After) — see
`cloud_server/accounts/throttle.py`. Real Redis, unique key prefix per test, injected clock.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from cloud_server.accounts.app_keys import THROTTLE
from cloud_server.accounts.throttle import RedisThrottle
from cloud_server.settings import Settings
from tests.server.conftest import MakeApp
from tests.server.test_ratelimit import (
    REDIS_URL,
    FakeClock,
    closed_port,
    redis_keys,
    redis_prefix,
)

__all__ = ["closed_port", "redis_prefix"]  # fixtures shared with test_ratelimit

PASSWORD = "a long and quiet river"


async def login(client: TestClient[Any, Any], email: str, password: str) -> Any:
    return await client.post("/api/auth/login", json={"email": email, "password": password})


async def two_instances(
    make_app: MakeApp, settings: Settings, prefix: str, clock: FakeClock
) -> tuple[TestClient[Any, Any], TestClient[Any, Any]]:
    shared = settings.model_copy(update={"redis_url": REDIS_URL, "redis_key_prefix": prefix})
    first, second = await make_app(shared), await make_app(shared)
    for client in (first, second):
        throttle = client.app[THROTTLE]
        assert isinstance(throttle, RedisThrottle)
        throttle.clock = clock
    return first, second


async def test_account_lockout_is_one_budget_across_instances(
    make_app: MakeApp, server_settings: Settings, redis_prefix: str
) -> None:
    clock = FakeClock()
    first, second = await two_instances(make_app, server_settings, redis_prefix, clock)
    email = "shared-lockout@example.test"
    assert (
        await first.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    ).status == 201

    statuses = []
    for attempt in range(5):
        client = first if attempt % 2 else second
        statuses.append((await login(client, email, "wrong password!")).status)
    assert statuses == [401] * 5
    locked = await login(first, email, PASSWORD)
    assert locked.status == 429
    assert locked.headers["Retry-After"] == "1"  # 2 ** 0 s after the fifth failure
    assert (await locked.json())["code"] == "rate_limited"
    assert (await login(second, email, PASSWORD)).status == 429

    clock.now += 1
    assert (await login(second, email, PASSWORD)).status == 200
    # The success on one instance reset the account for the other too.
    assert [(await login(first, email, "wrong again!!")).status for _ in range(5)] == [401] * 5

    # No address in Redis keys; every key expires.
    keys = await redis_keys(redis_prefix)
    assert keys and not any("example.test" in key for key in keys)
    assert all(ttl > 0 for ttl in keys.values()), keys


async def test_ip_budget_is_shared_by_instances(
    make_app: MakeApp, server_settings: Settings, redis_prefix: str
) -> None:
    clock = FakeClock()
    first, second = await two_instances(make_app, server_settings, redis_prefix, clock)
    statuses = [
        (await login(first if i % 2 else second, f"spray-{i}@example.test", "some password")).status
        for i in range(21)
    ]
    assert statuses[:20] == [401] * 20
    assert statuses[20] == 429
    response = await login(first, "spray-x@example.test", "some password")
    # 20 a minute: the oldest attempt leaves the window a minute after it was made.
    assert response.headers["Retry-After"] == "60"
    clock.now += 60
    assert (await login(second, "spray-y@example.test", "some password")).status == 401


async def test_reset_ip_budget_is_shared_by_instances(
    make_app: MakeApp, server_settings: Settings, redis_prefix: str
) -> None:
    clock = FakeClock()
    first, second = await two_instances(make_app, server_settings, redis_prefix, clock)
    body = {"email": "someone@example.test"}
    statuses = [
        (await (first if i % 2 else second).post("/api/auth/password-reset", json=body)).status
        for i in range(4)
    ]
    # Always 202 for one address (no enumeration). The per-IP budget (10 an hour) is
    # counted on both instances: 4 used above, 6 left.
    assert statuses == [202] * 4
    more = [
        (await second.post("/api/auth/password-reset", json={"email": f"p{i}@example.test"})).status
        for i in range(7)
    ]
    assert more == [202] * 6 + [429]


async def test_redis_down_login_fails_closed(
    make_app: MakeApp,
    server_settings: Settings,
    closed_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = server_settings.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{closed_port}/0"}
    )
    client = await make_app(settings)
    caplog.set_level(logging.ERROR, logger="cloud_server.ratelimit")
    for _ in range(2):
        response = await login(client, "anyone@example.test", PASSWORD)
        assert response.status == 503
        assert response.headers["Retry-After"] == "5"
        assert (await response.json())["code"] == "temporarily_unavailable"
    register = await client.post(
        "/api/auth/register", json={"email": "new@example.test", "password": PASSWORD}
    )
    assert register.status == 503
    outage = [r for r in caplog.records if "Redis is unavailable" in r.getMessage()]
    assert len(outage) == 1
