"""`/readyz` and `/metrics`: what a load balancer and Prometheus see."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from sqlalchemy import text as sql

from cloud_server.app import create_app
from cloud_server.chat.hooks import MEMORY_PROVIDER
from cloud_server.db.engine import DB_ENGINE
from cloud_server.lifecycle import DRAIN
from cloud_server.observability.metrics import metrics_port_of
from cloud_server.settings import Settings
from tests.fakes.claude import FakeClaude, error, text
from tests.server.chat_helpers import FAKE_SERVER_KEY, DictMemory, read_sse
from tests.server.metrics_helpers import sample, scrape

MakeApp = Callable[..., Awaitable[TestClient[Any, Any]]]
REDIS_URL = "redis://127.0.0.1:6379/0"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hosted(settings: Settings, **more: Any) -> Settings:
    return settings.model_copy(
        update={
            "mode": "hosted",
            "encryption_key": SecretStr("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="),
            "jwt_secret": SecretStr("a-jwt-secret-of-at-least-thirty-two-bytes!!"),
            **more,
        }
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeClaude]:
    async with FakeClaude() as claude:
        yield claude


# --------------------------------------------------------------------------- readiness


async def test_ready_when_database_migrated(make_app: MakeApp) -> None:
    client = await make_app()
    response = await client.get("/readyz")
    assert response.status == 200
    body = await response.json()
    assert body == {
        "status": "ready",
        "checks": {"database": "ok", "schema": "ok", "redis": "not_configured"},
    }


async def test_not_ready_on_an_old_schema(make_app: MakeApp) -> None:
    client = await make_app()
    async with client.app[DB_ENGINE].begin() as connection:
        await connection.execute(sql("UPDATE alembic_version SET version_num = '0002_memory'"))
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["checks"]["schema"] == "outdated"
    # Liveness does not depend on the database.
    assert (await client.get("/healthz")).status == 200


async def test_redis_configured_and_reachable_is_ready(
    make_app: MakeApp, server_settings: Settings
) -> None:
    client = await make_app(server_settings.model_copy(update={"redis_url": REDIS_URL}))
    response = await client.get("/readyz")
    if response.status != 200:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    assert (await response.json())["checks"]["redis"] == "ok"


async def test_redis_configured_but_down_stays_ready_degraded(
    make_app: MakeApp, server_settings: Settings
) -> None:
    # Redis is shared: failing readiness on it would take every instance out at once.
    url = f"redis://127.0.0.1:{closed_port()}/0"
    settings = server_settings.model_copy(update={"redis_url": url, "metrics_on_main_port": True})
    client = await make_app(settings)
    response = await client.get("/readyz")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["redis"] == "unavailable"
    metrics = await (await client.get("/metrics")).text()
    assert "homemind_redis_up 0.0" in metrics


async def test_draining_is_not_ready(make_app: MakeApp) -> None:
    client = await make_app()
    client.app[DRAIN].draining = True
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["status"] == "draining"


# --------------------------------------------------------------------------- exposure


async def test_metrics_on_the_main_port_when_self_hosted(make_app: MakeApp) -> None:
    client = await make_app()
    await client.get("/healthz")
    samples = await scrape(client)
    count = "homemind_http_request_duration_seconds_count"
    assert sample(samples, count, route="/healthz", method="GET", status="200") == 1


async def test_metrics_not_on_the_main_port_when_hosted(
    make_app: MakeApp, server_settings: Settings
) -> None:
    client = await make_app(hosted(server_settings))
    response = await client.get("/metrics")
    assert response.status == 404


async def test_metrics_on_their_own_port_when_hosted(
    make_app: MakeApp, server_settings: Settings
) -> None:
    client = await make_app(hosted(server_settings, metrics_port=0))
    assert (await client.get("/metrics")).status == 404
    await client.get("/healthz")
    port = metrics_port_of(client.app)
    assert port is not None
    async with aiohttp.ClientSession() as session:
        samples = await scrape(session, f"http://127.0.0.1:{port}/metrics")
        # That port serves nothing else.
        other = await session.get(f"http://127.0.0.1:{port}/healthz")
        assert other.status == 404
    assert sample(samples, "homemind_http_request_duration_seconds_count", route="/healthz") == 1
    assert sample(samples, "homemind_db_pool_connections_in_use") == 0


# --------------------------------------------------------------------------- chat metrics


async def chat_client(
    aiohttp_client: Any, settings: Settings, fake: FakeClaude, memory: Any
) -> TestClient[Any, Any]:
    app = create_app(
        settings.model_copy(
            update={
                "anthropic_base_url": fake.base_url,
                "anthropic_api_key": SecretStr(FAKE_SERVER_KEY),
            }
        )
    )
    app[MEMORY_PROVIDER] = memory
    client: TestClient[Any, Any] = await aiohttp_client(app)
    return client


async def test_a_streamed_turn_is_measured(
    aiohttp_client: Any,
    server_settings: Settings,
    fake: FakeClaude,
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
) -> None:
    memory = DictMemory()
    memory.add("The bedroom is kept at 19 degrees")
    client = await chat_client(aiohttp_client, server_settings, fake, memory)
    _, token = await create_installation(client=client)
    fake.script(text("Nineteen degrees, as you like it."))

    response = await client.post(
        "/api/chat/stream",
        json={"message": "How warm is the bedroom?"},
        headers={"Authorization": f"Bearer {token}"},
    )
    events = await read_sse(response)
    assert events[-1].name == "done"

    samples = await scrape(client)
    assert sample(samples, "homemind_chat_first_token_seconds_count", stream="true") == 1
    assert sample(samples, "homemind_chat_duration_seconds_count", stream="true", outcome="ok") == 1
    assert sample(samples, "homemind_memory_recall_seconds_count", outcome="ok") == 1
    assert sample(samples, "homemind_chat_streams_in_flight") == 0
    assert (
        sample(
            samples,
            "homemind_http_request_duration_seconds_count",
            route="/api/chat/stream",
            status="200",
        )
        == 1
    )


async def test_claude_failures_are_counted_by_kind(
    aiohttp_client: Any,
    server_settings: Settings,
    fake: FakeClaude,
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
) -> None:
    client = await chat_client(aiohttp_client, server_settings, fake, DictMemory())
    _, token = await create_installation(client=client)
    # Overloaded twice: the quick retry fails too, the client gets 503.
    fake.script(error(529), error(529))

    response = await client.post(
        "/api/chat", json={"message": "hi"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status == 503

    samples = await scrape(client)
    assert sample(samples, "homemind_upstream_errors_total", kind="overloaded") == 2
    assert (
        sample(
            samples,
            "homemind_chat_duration_seconds_count",
            stream="false",
            outcome="upstream_unavailable",
        )
        == 1
    )
    assert sample(samples, "homemind_chat_first_token_seconds_count") == 0


async def test_rate_limit_refusals_are_counted(
    aiohttp_client: Any,
    server_settings: Settings,
    fake: FakeClaude,
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
) -> None:
    settings = server_settings.model_copy(update={"chat_rate_per_minute": 1.0, "chat_burst": 1})
    client = await chat_client(aiohttp_client, settings, fake, DictMemory())
    _, token = await create_installation(client=client)
    fake.script(text("One."))
    headers = {"Authorization": f"Bearer {token}"}

    assert (await client.post("/api/chat", json={"message": "a"}, headers=headers)).status == 200
    assert (await client.post("/api/chat", json={"message": "b"}, headers=headers)).status == 429

    samples = await scrape(client)
    assert sample(samples, "homemind_rate_limit_refusals_total", route="/api/chat") == 1


# HOMEMIND_DB_POOL_SIZE / HOMEMIND_DB_MAX_OVERFLOW: a pool these tests can fill.
SMALL_POOL = {"db_pool_size": 2, "db_max_overflow": 1}


async def test_a_busy_database_pool_does_not_fail_readiness_after_an_answer(
    make_app: MakeApp, server_settings: Settings, pg_session_url: str
) -> None:
    # Under load every instance is slow at once: taking the busiest out only moves its load.
    client = await make_app(
        server_settings.model_copy(update={"database_url": pg_session_url, **SMALL_POOL})
    )
    assert (await client.get("/readyz")).status == 200  # the database answered
    engine = client.app[DB_ENGINE]
    held = [await engine.connect() for _ in range(3)]  # the whole pool: size 2 + overflow 1
    try:
        response = await client.get("/readyz")  # its check waits for a connection, times out
        assert response.status == 200
        assert (await response.json())["checks"]["database"] == "ok"
    finally:
        for connection in held:
            await connection.close()


async def test_a_busy_database_pool_fails_readiness_without_a_recent_answer(
    make_app: MakeApp, server_settings: Settings, pg_session_url: str
) -> None:
    client = await make_app(
        server_settings.model_copy(update={"database_url": pg_session_url, **SMALL_POOL})
    )
    engine = client.app[DB_ENGINE]
    held = [await engine.connect() for _ in range(3)]
    try:
        response = await client.get("/readyz")
        assert response.status == 503
        assert (await response.json())["checks"]["database"] == "unavailable"
    finally:
        for connection in held:
            await connection.close()
