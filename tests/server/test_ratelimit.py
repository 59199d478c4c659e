"""Rate limits: GCRA in process and in Redis, chat limits over HTTP (docs/security-checklist.md
row 19).

Real Redis on 127.0.0.1:6379 with a unique key prefix per test (deleted afterwards); a fake
Claude on 127.0.0.1. Clocks are injected, so the GCRA arithmetic is exact and no test waits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from redis.exceptions import RedisError

from cloud_server.app import create_app
from cloud_server.chat.hooks import CHAT_GATE, MEMORY_PROVIDER
from cloud_server.chat.rate_policy import ChatPolicy
from cloud_server.ratelimit.gcra import (
    CONCURRENCY,
    Admission,
    Limiter,
    Rate,
    RateCheck,
    Slot,
    SlotClaim,
)
from cloud_server.ratelimit.local import LocalLimiter
from cloud_server.ratelimit.redis_store import RedisLimiter
from cloud_server.ratelimit.setup import LIMITER
from cloud_server.settings import Settings
from tests.fakes.claude import FakeClaude, RecordedRequest, Turn, text
from tests.server.chat_helpers import FAKE_SERVER_KEY, NoMemory, RecordingGate

REDIS_URL = os.environ.get("HOMEMIND_TEST_REDIS", "redis://127.0.0.1:6379/0")


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A unique key prefix on the test Redis; every key under it is deleted afterwards."""
    prefix = f"homemind-test-{secrets.token_hex(6)}:"
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except (RedisError, OSError) as err:
        client.close()
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {err}")
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()


async def redis_keys(prefix: str) -> dict[str, int]:
    """Each key under `prefix` and its TTL in milliseconds."""
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        return {key: await client.pttl(key) async for key in client.scan_iter(match=prefix + "*")}
    finally:
        await client.aclose()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections (bound, never listening)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


# --------------------------------------------------------------------------- the limiter


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Limiter, FakeClock]]:
    clock = FakeClock()
    made: Limiter
    if request.param == "memory":
        made = LocalLimiter(clock=clock)
    else:
        prefix = request.getfixturevalue("redis_prefix")
        made = RedisLimiter(REDIS_URL, prefix, clock=clock)
    await made.start()
    try:
        yield made, clock
    finally:
        await made.aclose()


async def hit(limit: Limiter, key: str, rate: Rate, burst: int) -> Admission:
    """One request against one rate, no slot."""
    return await limit.admit([RateCheck(key, rate, burst)])


async def take(limit: Limiter, key: str, slots: int, lease: float = 60) -> Slot | None:
    """One of `slots` concurrent slots of `key`, no rate (None: all taken)."""
    admission = await limit.admit([], SlotClaim(key, slots, lease))
    assert admission.admitted == (admission.slot is not None)
    return admission.slot


async def test_burst_then_steady_rate_then_recovery(limiter: tuple[Limiter, FakeClock]) -> None:
    limit, clock = limiter
    rate = Rate(30, 60)  # one request every 2 s sustained
    decisions = [await hit(limit, "home", rate, 10) for _ in range(10)]
    assert all(d.admitted and d.slot is None for d in decisions)

    refused = await hit(limit, "home", rate, 10)
    assert refused.refused_by == "home"
    assert refused.retry_after_seconds == pytest.approx(2.0)
    assert refused.retry_after == 2
    # A refusal costs nothing: waiting what it said is enough.
    clock.now += 1.5
    still = await hit(limit, "home", rate, 10)
    assert (still.admitted, still.retry_after_seconds) == (False, pytest.approx(0.5))
    assert still.retry_after == 1
    clock.now += 0.5
    assert (await hit(limit, "home", rate, 10)).admitted
    assert not (await hit(limit, "home", rate, 10)).admitted

    # Other keys have their own budget; an idle key is back to a full burst.
    assert all([(await hit(limit, "other home", rate, 10)).admitted for _ in range(10)])
    assert not (await hit(limit, "other home", rate, 10)).admitted
    clock.now += 20
    assert all([(await hit(limit, "home", rate, 10)).admitted for _ in range(10)])
    assert not (await hit(limit, "home", rate, 10)).admitted


async def test_concurrency_slots(limiter: tuple[Limiter, FakeClock]) -> None:
    limit, _ = limiter
    first = await take(limit, "home", 2)
    second = await take(limit, "home", 2)
    assert first is not None and second is not None
    full = await limit.admit([], SlotClaim("home", 2, 60))
    assert (full.refused_by, full.slot) == (CONCURRENCY, None)
    assert await take(limit, "other home", 2) is not None
    await first.release()
    await first.release()  # twice is harmless: it frees one slot only
    third = await take(limit, "home", 2)
    assert third is not None
    assert await take(limit, "home", 2) is None


def test_a_slot_claim_needs_a_limit() -> None:
    # A cap of 0 is no cap: the chat then claims no slot at all (rate_policy.py).
    with pytest.raises(ValueError, match="at least 1"):
        SlotClaim("home", 0, 60)


async def test_a_refused_request_takes_no_slot_and_spends_no_budget(
    limiter: tuple[Limiter, FakeClock],
) -> None:
    """All or nothing: the installation's budget and slots are untouched by requests that
    the user's budget or the concurrency cap refused."""
    limit, _ = limiter
    home, user = RateCheck("inst", Rate(30, 60), 5), RateCheck("user", Rate(30, 60), 2)
    claim = SlotClaim("inst", 1, 60)
    admitted = await limit.admit([home, user], claim)
    assert admitted.admitted and admitted.slot is not None
    # The slot is held: refused before any rate is counted.
    for _ in range(3):
        assert (await limit.admit([home, user], claim)).refused_by == CONCURRENCY
    await admitted.slot.release()
    second = await limit.admit([home, user], claim)
    assert second.admitted and second.slot is not None
    await second.slot.release()
    # The user's burst of 2 is spent: the next requests are refused by the user's rate...
    for _ in range(3):
        refused = await limit.admit([home, user], claim)
        assert (refused.refused_by, refused.slot) == ("user", None)
    # ...and took neither the slot nor the installation's budget: 3 of its 5 remain.
    assert [(await hit(limit, "inst", home.rate, home.burst)).admitted for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]
    assert await take(limit, "inst", 1) is not None


async def test_redis_slot_of_a_dead_holder_expires_after_its_lease(redis_prefix: str) -> None:
    clock = FakeClock()
    limit = RedisLimiter(REDIS_URL, redis_prefix, clock=clock)
    await limit.start()
    try:
        assert await take(limit, "home", 1, 30) is not None  # never released
        assert await take(limit, "home", 1, 30) is None
        clock.now += 31
        assert await take(limit, "home", 1, 30) is not None
    finally:
        await limit.aclose()


async def test_redis_keys_carry_ttls(redis_prefix: str) -> None:
    limit = RedisLimiter(REDIS_URL, redis_prefix)  # Redis's own clock, as in production
    await limit.start()
    try:
        admission = await limit.admit(
            [RateCheck("home", Rate(30, 60), 10)], SlotClaim("home", 4, 120)
        )
        assert admission.admitted and admission.slot is not None
        keys = await redis_keys(redis_prefix)
        assert len(keys) == 2
        assert all(0 < ttl <= 120_000 for ttl in keys.values()), keys
    finally:
        await limit.aclose()


def test_chat_policy_defaults_by_mode() -> None:
    hosted = ChatPolicy.of(Settings(mode="hosted"))
    assert (hosted.rate_per_minute, hosted.burst, hosted.concurrency) == (30, 10, 4)
    assert (hosted.user_rate_per_minute, hosted.user_burst) == (60, 20)
    own = ChatPolicy.of(Settings(mode="self-hosted"))
    assert (own.rate_per_minute, own.user_rate_per_minute, own.concurrency) == (0, 0, 0)
    chosen = ChatPolicy.of(
        Settings(mode="self-hosted", chat_rate_per_minute=12, chat_concurrency=2)
    )
    assert (chosen.rate_per_minute, chosen.concurrency) == (12, 2)
    assert ChatPolicy.of(Settings(mode="hosted", chat_concurrency=0)).concurrency == 0


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMEMIND_CHAT_RATE_PER_MINUTE", "45")
    monkeypatch.setenv("HOMEMIND_CHAT_BURST", "7")
    monkeypatch.setenv("HOMEMIND_CHAT_CONCURRENCY", "3")
    monkeypatch.setenv("HOMEMIND_TRUSTED_PROXIES", "10.0.0.0/8, 2001:db8::/32")
    settings = Settings()
    assert (settings.chat_rate_per_minute, settings.chat_burst) == (45, 7)
    assert settings.chat_concurrency == 3
    monkeypatch.setenv("HOMEMIND_TRUSTED_PROXIES", "10.0.0.0/8, the load balancer")
    with pytest.raises(ValueError, match="the load balancer"):
        Settings()


# --------------------------------------------------------------------------- chat over HTTP


class CountingGate(RecordingGate):
    """Admits everyone; counts admissions (the usage gate must not see refused requests)."""

    admitted: int = 0

    async def admit(self, request: Any, principal: Any) -> Any:
        self.admitted += 1
        return await super().admit(request, principal)


@pytest.fixture
async def fake() -> AsyncIterator[FakeClaude]:
    async with FakeClaude() as claude:
        yield claude


MakeChatApp = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def chat_app(aiohttp_client: Any, server_settings: Settings, fake: FakeClaude) -> MakeChatApp:
    """`await chat_app(gate, clock, **settings)`: a server on `server_settings`' database."""

    async def make(gate: CountingGate, clock: FakeClock, **overrides: Any) -> TestClient[Any, Any]:
        settings = server_settings.model_copy(
            update={
                "anthropic_base_url": fake.base_url,
                "anthropic_api_key": SecretStr(FAKE_SERVER_KEY),
                "memory_extraction": False,
                **overrides,
            }
        )
        app = create_app(settings)
        app[CHAT_GATE] = gate
        app[MEMORY_PROVIDER] = NoMemory()
        limiter = app[LIMITER]
        limiter.clock = clock  # type: ignore[attr-defined]
        if isinstance(limiter, RedisLimiter):
            limiter.fallback.clock = clock
        client: TestClient[Any, Any] = await aiohttp_client(app)
        return client

    return make


async def chat(client: TestClient[Any, Any], token: str, path: str = "/api/chat") -> Any:
    return await client.post(
        path, json={"message": "Turn on the lights"}, headers={"Authorization": f"Bearer {token}"}
    )


async def assert_rate_limited(response: Any, retry_after: int) -> None:
    assert response.status == 429
    assert response.headers["Retry-After"] == str(retry_after)
    assert response.content_type == "application/problem+json"
    body = await response.json(content_type=None)
    assert (body["code"], body["retry_after"]) == ("rate_limited", retry_after)


async def test_chat_burst_then_429_with_retry_after_then_recovery(
    chat_app: MakeChatApp,
    fake: FakeClaude,
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
) -> None:
    gate, clock = CountingGate(), FakeClock()
    client = await chat_app(gate, clock, chat_rate_per_minute=20, chat_burst=3)
    _, token = await create_installation(client=client)
    _, neighbour = await create_installation(client=client)

    assert [(await chat(client, token)).status for _ in range(3)] == [200] * 3
    # 20 a minute = one every 3 s: the limiter's own figure reaches the client.
    await assert_rate_limited(await chat(client, token), 3)
    await assert_rate_limited(await chat(client, token, "/api/chat/stream"), 3)
    # Refused before the usage gate and before Claude.
    assert (gate.admitted, len(fake.requests)) == (3, 3)
    # Another household is not affected.
    assert (await chat(client, neighbour)).status == 200

    clock.now += 3
    response = await chat(client, token, "/api/chat/stream")
    assert response.status == 200
    assert "event: done" in await response.text()
    await assert_rate_limited(await chat(client, token), 3)


async def test_chat_user_budget_spans_installations(
    chat_app: MakeChatApp,
    create_user: Callable[..., Awaitable[tuple[str, str]]],
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
) -> None:
    gate, clock = CountingGate(), FakeClock()
    client = await chat_app(
        gate,
        clock,
        chat_rate_per_minute=60,
        chat_burst=10,
        chat_user_rate_per_minute=30,
        chat_user_burst=3,
    )
    user_id, _ = await create_user(client=client)
    _, kitchen = await create_installation(user_id=user_id, client=client)
    _, cabin = await create_installation(user_id=user_id, client=client)
    _, stranger = await create_installation(client=client)

    assert (await chat(client, kitchen)).status == 200
    assert (await chat(client, cabin)).status == 200
    assert (await chat(client, kitchen)).status == 200
    await assert_rate_limited(await chat(client, cabin), 2)
    assert (await chat(client, stranger)).status == 200


def _held(release: asyncio.Event) -> Callable[[RecordedRequest], Awaitable[Turn]]:
    async def answer(_: RecordedRequest) -> Turn:
        await release.wait()
        return text("Done.")

    return answer


async def _in_flight(fake: FakeClaude, tasks: list[asyncio.Task[Any]], count: int) -> None:
    await fake.wait_for_requests(count)
    assert not any(task.done() for task in tasks)


async def test_concurrency_cap_per_installation(
    chat_app: MakeChatApp,
    fake: FakeClaude,
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
) -> None:
    gate, clock = CountingGate(), FakeClock()
    client = await chat_app(gate, clock, chat_concurrency=2)
    _, token = await create_installation(client=client)
    _, neighbour = await create_installation(client=client)
    release = asyncio.Event()
    fake.responder = _held(release)

    running = [asyncio.create_task(chat(client, token, "/api/chat/stream")) for _ in range(2)]
    await _in_flight(fake, running, 2)
    await assert_rate_limited(await chat(client, token), 1)
    assert gate.admitted == 2

    release.set()
    assert [(await task).status for task in running] == [200, 200]
    # Slots are given back when the answers end (also for the neighbour all along).
    assert (await chat(client, token)).status == 200
    assert (await chat(client, neighbour)).status == 200


async def test_two_instances_share_one_budget_and_one_cap(
    chat_app: MakeChatApp,
    fake: FakeClaude,
    redis_prefix: str,
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
) -> None:
    gate, clock = CountingGate(), FakeClock()
    shared = {
        "redis_url": REDIS_URL,
        "redis_key_prefix": redis_prefix,
        "chat_rate_per_minute": 30,
        "chat_burst": 4,
        "chat_concurrency": 2,
    }
    first = await chat_app(gate, clock, **shared)
    second = await chat_app(gate, clock, **shared)  # same database, same Redis
    _, token = await create_installation(client=first)

    assert (await chat(first, token)).status == 200
    assert (await chat(second, token)).status == 200
    assert (await chat(first, token)).status == 200
    assert (await chat(second, token)).status == 200
    await assert_rate_limited(await chat(first, token), 2)
    await assert_rate_limited(await chat(second, token), 2)
    assert len(fake.requests) == 4

    clock.now += 10  # the budget is back: now one request in flight on each instance
    release = asyncio.Event()
    fake.responder = _held(release)
    running = [
        asyncio.create_task(chat(first, token, "/api/chat/stream")),
        asyncio.create_task(chat(second, token, "/api/chat/stream")),
    ]
    await _in_flight(fake, running, 6)
    await assert_rate_limited(await chat(first, token), 1)
    release.set()
    assert [(await task).status for task in running] == [200, 200]
    assert all(ttl > 0 for ttl in (await redis_keys(redis_prefix)).values())


async def test_redis_down_chat_fails_open_onto_the_local_limiter(
    chat_app: MakeChatApp,
    fake: FakeClaude,
    closed_port: int,
    caplog: pytest.LogCaptureFixture,
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
) -> None:
    gate, clock = CountingGate(), FakeClock()
    client = await chat_app(
        gate,
        clock,
        redis_url=f"redis://127.0.0.1:{closed_port}/0",
        chat_rate_per_minute=30,
        chat_burst=3,
        chat_concurrency=2,
    )
    _, token = await create_installation(client=client)
    caplog.set_level(logging.ERROR, logger="cloud_server.ratelimit")

    # The household keeps its assistant ...
    assert [(await chat(client, token)).status for _ in range(3)] == [200] * 3
    # ... and this instance still enforces the budget on its own.
    await assert_rate_limited(await chat(client, token), 2)
    outage = [r for r in caplog.records if "Redis is unavailable" in r.getMessage()]
    assert len(outage) == 1  # logged once, not once per request
    assert outage[0].levelno == logging.ERROR
