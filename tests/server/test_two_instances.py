"""Two real server processes on one PostgreSQL and one Redis behind HAProxy (the shipped
deploy/haproxy/haproxy.cfg), the fake Claude upstream: what a hosted user notices.

- a chat goes through the balancer; a token revoked through one instance is refused by the
  other on its very next request; the chat rate budget is one budget across instances;
- SIGKILL of one instance under load. "After the failover" means: every request *sent
  after the SIGKILL* (the process is dead before the first of them is sent). Each of those
  succeeds: a connection HAProxy opens to the dead instance is refused and retried on the
  other one (redispatch), until its health check on /readyz takes the dead one out. The
  only requests allowed to fail are chat streams in flight on the dead instance when it
  died (those already answering cannot be replayed: their text reached the client). Every
  successful turn has exactly one usage row and no other row exists;
- SIGTERM under load: readiness fails first, HAProxy takes the instance out before it
  refuses anything, its streams in flight finish, it exits 0, and no request fails;
- Redis down: readiness stays up on both instances (degraded), chat keeps working with
  per-instance limits, sign-in fails closed, and the shared budget is back with Redis.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.claude import FakeClaude
from tests.server.cluster import Cluster, haproxy_binary, postgres_reachable, wait_port
from tests.server.server_process import free_port

pytestmark = pytest.mark.skipif(
    haproxy_binary() is None, reason="haproxy is not installed (.ci/run installs it)"
)

PASSWORD = "a long passphrase for the two instances"
ANSWER = "The hall light is on and the front door is locked, as you asked this morning."
# No chat limit refuses the load tests' turns; the limiter (and its Redis calls) still runs.
UNLIMITED = {
    "HOMEMIND_CHAT_RATE_PER_MINUTE": "100000",
    "HOMEMIND_CHAT_BURST": "1000",
    "HOMEMIND_CHAT_USER_RATE_PER_MINUTE": "100000",
    "HOMEMIND_CHAT_USER_BURST": "1000",
}


@pytest.fixture(autouse=True)
async def _needs_postgres() -> None:
    if not await postgres_reachable():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")


class GatedClaude(FakeClaude):
    """The fake Claude with a gate: while closed, every answer stops before its next token."""

    def __init__(self, **kwargs: float) -> None:
        super().__init__(default_text=ANSWER, **kwargs)
        self.gate = asyncio.Event()
        self.gate.set()
        self.held = 0

    async def _pause(self, seconds: float) -> bool:
        if await super()._pause(seconds):
            return True
        if not self.gate.is_set():
            self.held += 1
            try:
                await self.gate.wait()
            finally:
                self.held -= 1
        return self._closing.is_set()


@pytest.fixture
async def claude() -> AsyncIterator[GatedClaude]:
    async with GatedClaude(time_to_first_token=0.05, token_delay=0.03) as fake:
        yield fake


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Account:
    access: str
    installations: list[tuple[str, str]]  # (id, token)


async def sign_up(session: aiohttp.ClientSession, url: str, homes: int = 1) -> Account:
    """A user registered and logged in through `url`, with `homes` installations."""
    body = {"email": f"user-{time.monotonic_ns()}@example.test", "password": PASSWORD}
    async with session.post(f"{url}/api/auth/register", json=body) as response:
        assert response.status == 201, await response.text()
    async with session.post(f"{url}/api/auth/login", json=body) as response:
        assert response.status == 200, await response.text()
        access = (await response.json())["access_token"]
    installations = []
    for i in range(homes):
        async with session.post(
            f"{url}/api/installations", json={"name": f"Home {i}"}, headers=bearer(access)
        ) as response:
            assert response.status == 201, await response.text()
            created = await response.json()
        installations.append((created["id"], created["token"]))
    return Account(access, installations)


@dataclass
class Turn:
    """One chat request as the client saw it."""

    status: int
    events: list[str] = field(default_factory=list)
    request_id: str | None = None
    error: str | None = None
    body: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.events) and self.events[-1] == "done"

    @property
    def answered(self) -> bool:
        """Text had reached the client (the stream was under way)."""
        return "text_delta" in self.events


async def stream_chat(session: aiohttp.ClientSession, url: str, token: str) -> Turn:
    turn = Turn(-1)  # -1: no response
    try:
        async with session.post(
            f"{url}/api/chat/stream",
            json={"message": "Is the front door locked?"},
            headers=bearer(token),
        ) as response:
            turn.status = response.status
            turn.request_id = response.headers.get("X-Request-ID")
            if response.status != 200:
                turn.error = await response.text()
                return turn
            async for raw in response.content:
                line = raw.decode().strip()
                turn.body += line + "\n"
                if line.startswith("event:"):
                    turn.events.append(line.removeprefix("event:").strip())
            return turn
    except aiohttp.ClientError as err:
        turn.error = repr(err)  # the events received so far are kept
        return turn


async def plain_chat(session: aiohttp.ClientSession, url: str, token: str) -> tuple[int, str]:
    async with session.post(
        f"{url}/api/chat", json={"message": "Is the front door locked?"}, headers=bearer(token)
    ) as response:
        return response.status, await response.text()


async def eventually(check: Callable[[], bool | Awaitable[bool]], seconds: float = 20.0) -> None:
    """Poll `check` until true (other processes cannot signal this one)."""
    async with asyncio.timeout(seconds):
        while True:
            result = check()
            if result if isinstance(result, bool) else await result:
                return
            await asyncio.sleep(0.05)


async def in_flight(cluster: Cluster, index: int) -> float:
    return await cluster.metric(index, "homemind_chat_streams_in_flight", 'stream="true"')


@dataclass
class Record:
    seq: int  # order in which requests were sent
    kind: str  # "stream" or "get"
    ok: bool
    turn: Turn | None = None
    detail: str = ""


@dataclass
class Load:
    """Chat streams (one worker per installation) and GETs through the balancer."""

    url: str
    account: Account
    records: list[Record] = field(default_factory=list)
    chats_in_flight: int = 0
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def sent(self) -> int:
        """Sequence number the next request will get."""
        return next(self._seq)

    def start(self, session: aiohttp.ClientSession) -> None:
        for _, token in self.account.installations:
            self._tasks.append(asyncio.create_task(self._chat_worker(session, token)))
        self._tasks.append(asyncio.create_task(self._get_worker(session)))

    async def _chat_worker(self, session: aiohttp.ClientSession, token: str) -> None:
        while not self._stop.is_set():
            seq = next(self._seq)
            self.chats_in_flight += 1
            try:
                turn = await stream_chat(session, self.url, token)
            finally:
                self.chats_in_flight -= 1
            self.records.append(Record(seq, "stream", turn.ok, turn))

    async def _get_worker(self, session: aiohttp.ClientSession) -> None:
        while not self._stop.is_set():
            seq = next(self._seq)
            try:
                async with session.get(
                    f"{self.url}/api/installations", headers=bearer(self.account.access)
                ) as response:
                    ok, detail = response.status == 200, str(response.status)
                    await response.read()
            except aiohttp.ClientError as err:
                ok, detail = False, repr(err)
            self.records.append(Record(seq, "get", ok, detail=detail))
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def completed_turns(self) -> int:
        return sum(1 for r in self.records if r.kind == "stream" and r.ok)

    def successful_request_ids(self) -> list[str]:
        return [
            r.turn.request_id
            for r in self.records
            if r.ok and r.turn is not None and r.turn.request_id is not None
        ]


def describe(records: list[Record]) -> str:
    return "; ".join(
        f"#{r.seq} {r.kind} {r.turn.status if r.turn else ''} "
        f"{r.turn.events[-3:] if r.turn else ''} {r.turn.error if r.turn else r.detail}"
        for r in records
    )[:3000]


# --------------------------------------------------------------------------- basics


async def test_chat_through_the_balancer_revocation_and_one_rate_budget(
    tmp_path: Path, claude: GatedClaude
) -> None:
    env = {"HOMEMIND_CHAT_RATE_PER_MINUTE": "1", "HOMEMIND_CHAT_BURST": "4"}
    async with Cluster(tmp_path, claude.base_url, env) as cluster, aiohttp.ClientSession() as s:
        one, two = (server.url for server in cluster.servers)
        account = await sign_up(s, cluster.url, homes=3)
        (_, home), (_, budget_home), (_, spare) = account.installations

        turn = await stream_chat(s, cluster.url, home)
        assert turn.ok, turn
        assert ANSWER in turn.body

        # A session logged out through one instance is refused by the other.
        async with s.post(f"{one}/api/auth/logout", headers=bearer(account.access)) as response:
            assert response.status in (200, 204), await response.text()
        async with s.get(f"{two}/api/installations", headers=bearer(account.access)) as response:
            assert response.status == 401

        # An installation deleted through one instance is refused by the other at once.
        second = await sign_up(s, cluster.url, homes=1)
        (victim_id, victim_token) = second.installations[0]
        assert (await stream_chat(s, two, victim_token)).ok
        async with s.delete(
            f"{one}/api/installations/{victim_id}", headers=bearer(second.access)
        ) as response:
            assert response.status == 204, await response.text()
        refused = await stream_chat(s, two, victim_token)
        assert refused.status == 401
        assert "installation_revoked" in (refused.error or "")

        # One budget: a burst of 4 for this installation, whichever instance is asked.
        statuses = []
        for i in range(8):
            status, _ = await plain_chat(s, (one, two)[i % 2], budget_home)
            statuses.append(status)
        assert statuses[:4] == [200] * 4
        assert statuses[4:] == [429] * 4  # refused by both instances, not 4 more each
        status, _ = await plain_chat(s, cluster.url, budget_home)
        assert status == 429
        # Another installation has its own budget.
        status, _ = await plain_chat(s, cluster.url, spare)
        assert status == 200
        refusals = [
            await cluster.metric(i, "homemind_rate_limit_refusals_total", 'route="/api/chat"')
            for i in range(2)
        ]
        assert all(n >= 2 for n in refusals), refusals


# --------------------------------------------------------------------------- failover


async def test_sigkill_under_load_moves_traffic_and_counts_each_turn_once(
    tmp_path: Path, claude: GatedClaude
) -> None:
    async with (
        Cluster(tmp_path, claude.base_url, UNLIMITED) as cluster,
        aiohttp.ClientSession() as session,
    ):
        account = await sign_up(session, cluster.url, homes=8)
        load = Load(cluster.url, account)
        load.start(session)
        await eventually(lambda: load.completed_turns() >= 16)

        # Hold every answer before its next token, and wait until every chat in flight is
        # held and every finished turn is recorded: the kill then cuts streams mid-answer,
        # never one between its `done` and its usage row.
        claude.gate.clear()
        recorded: list[str] = []

        async def settled() -> bool:
            recorded[:] = await cluster.usage_request_ids()
            return (
                load.chats_in_flight > 0
                and claude.held == load.chats_in_flight
                and len(recorded) == load.completed_turns()
            )

        await eventually(settled)
        victim = 0 if await in_flight(cluster, 0) else 1
        on_victim = await in_flight(cluster, victim)
        assert on_victim >= 1

        cluster.servers[victim].signal(signal.SIGKILL)
        assert await cluster.servers[victim].wait() == -signal.SIGKILL
        after_kill = load.sent()
        claude.gate.set()

        # Load carries on through the survivor until the balancer has taken the dead one
        # out and plenty of requests sent after the kill have come back.
        name = f"server-{victim + 1}"
        assert cluster.balancer is not None
        balancer = cluster.balancer
        await eventually(lambda: balancer.server_down(name))
        await eventually(
            lambda: sum(1 for r in load.records if r.seq > after_kill and r.kind == "stream") >= 24
        )
        await load.stop()

        after = [r for r in load.records if r.seq > after_kill]
        assert after and all(r.ok for r in after), describe([r for r in after if not r.ok])
        failed = [r for r in load.records if not r.ok]
        # Only chat streams in flight on the dead instance failed, at most as many as it was
        # serving. None at all is a pass too: a stream that had sent no byte yet is replayed
        # by HAProxy on the survivor (deploy/haproxy/haproxy.cfg), having recorded nothing.
        assert all(r.kind == "stream" and r.seq < after_kill for r in failed), describe(failed)
        assert len(failed) <= on_victim, describe(failed)
        # Exactly one usage row per successful turn, none for the cut ones.
        rows = await cluster.usage_request_ids()
        assert sorted(rows) == sorted(load.successful_request_ids())


async def test_sigterm_under_load_drains_without_a_failed_request(
    tmp_path: Path, claude: GatedClaude
) -> None:
    claude.token_delay = 0.05  # ~2 s answers: several still streaming at SIGTERM
    async with (
        Cluster(tmp_path, claude.base_url, UNLIMITED) as cluster,
        aiohttp.ClientSession() as session,
    ):
        account = await sign_up(session, cluster.url, homes=6)
        load = Load(cluster.url, account)
        load.start(session)
        await eventually(lambda: load.completed_turns() >= 6)
        victim = cluster.servers[0]

        async def victim_streaming() -> bool:
            return await in_flight(cluster, 0) > 0

        await eventually(victim_streaming)

        victim.signal(signal.SIGTERM)
        async with session.get(f"{victim.url}/readyz") as response:
            assert response.status == 503
            assert (await response.json())["status"] == "draining"
        assert cluster.balancer is not None
        balancer = cluster.balancer
        await eventually(lambda: balancer.server_down("server-1"))
        assert await victim.wait() == 0
        after_exit = load.sent()
        await eventually(
            lambda: sum(1 for r in load.records if r.seq > after_exit and r.kind == "stream") >= 6
        )
        await load.stop()

        assert all(r.ok for r in load.records), describe([r for r in load.records if not r.ok])
        logs = [json.loads(line) for line in victim.logs().splitlines() if line.startswith("{")]
        messages = [line.get("message", "") for line in logs]
        assert any(m.startswith("Draining") for m in messages)
        assert any(m.startswith("Drained") for m in messages), messages[-10:]
        # HAProxy stopped sending before the instance refused anything: no 503 served.
        access = [line["message"] for line in logs if line["logger"] == "cloud_server.access"]
        assert any(" /api/chat/stream 200 " in m for m in access)
        assert not [m for m in access if " 503 " in m]
        rows = await cluster.usage_request_ids()
        assert sorted(rows) == sorted(load.successful_request_ids())


# --------------------------------------------------------------------------- Redis down


@dataclass
class OwnRedis:
    """A redis-server of this test's own, on a random port, that the test can stop."""

    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = await asyncio.create_subprocess_exec(
            "redis-server", *args, stdout=asyncio.subprocess.DEVNULL
        )
        await wait_port(self.port)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


async def test_redis_down_keeps_both_instances_ready_with_local_limits(
    tmp_path: Path, claude: GatedClaude
) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    redis = OwnRedis()
    await redis.start()
    env = {"HOMEMIND_CHAT_RATE_PER_MINUTE": "1", "HOMEMIND_CHAT_BURST": "3"}
    try:
        async with (
            Cluster(tmp_path, claude.base_url, env, redis_url=redis.url) as cluster,
            aiohttp.ClientSession() as s,
        ):
            one, two = (server.url for server in cluster.servers)
            account = await sign_up(s, cluster.url, homes=2)
            (_, home), (_, other) = account.installations
            assert (await stream_chat(s, cluster.url, home)).ok

            await redis.stop()
            for url in (one, two):
                async with s.get(f"{url}/readyz") as response:
                    body = await response.json()
                    assert response.status == 200, body
                    assert body["status"] == "degraded"
                    assert body["checks"]["redis"] == "unavailable"
            for i in range(2):
                assert await cluster.metric(i, "homemind_redis_up") == 0
            # Chat still works through the balancer, and the limits still hold, each
            # instance counting on its own: a burst of 3 on each (the first turn above
            # was counted in Redis, which is gone).
            assert (await stream_chat(s, cluster.url, other)).ok
            statuses = [(await plain_chat(s, one, home))[0] for _ in range(4)]
            assert statuses == [200, 200, 200, 429]
            statuses = [(await plain_chat(s, two, home))[0] for _ in range(4)]
            assert statuses == [200, 200, 200, 429]
            assert await cluster.metric(0, "homemind_rate_limit_local_decisions_total") >= 4
            # Sign-in fails closed: an outage must not multiply password guesses.
            login = {"email": "nobody@example.test", "password": PASSWORD}
            async with s.post(f"{cluster.url}/api/auth/login", json=login) as response:
                assert response.status == 503
                assert "Retry-After" in response.headers
            assert "Redis is unavailable" in cluster.servers[0].logs()

            # Redis back (empty): readiness is plain "ready" and the budget is shared again.
            await redis.start()
            for url in (one, two):
                async with asyncio.timeout(20):
                    while True:
                        async with s.get(f"{url}/readyz") as response:
                            if (await response.json())["status"] == "ready":
                                break
                        await asyncio.sleep(0.2)
            assert await cluster.metric(0, "homemind_redis_up") == 1
            assert "Redis answers again" in cluster.servers[0].logs()
            statuses = [(await plain_chat(s, (one, two)[i % 2], other))[0] for i in range(5)]
            assert statuses == [200, 200, 200, 429, 429]
    finally:
        await redis.stop()
