"""The real server process: JSON logs without secrets, and the drain on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.claude import FakeClaude, text
from tests.server.server_process import ServerProcess

SERVER_KEY = "sk-ant-fake-log-server"
OWN_KEY = "sk-ant-fake-log-own"
ENCRYPTION_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
JWT_SECRET = "jwt-secret-for-the-log-test-at-least-32-bytes"
PASSWORD = "a long passphrase nobody logs"
ANSWER = "It is nineteen degrees in the bedroom, as you like it at night."


@pytest.fixture
async def fake() -> AsyncIterator[FakeClaude]:
    async with FakeClaude() as claude:
        yield claude


def server(tmp_path: Path, fake: FakeClaude, **env: str) -> ServerProcess:
    return ServerProcess(
        {
            "HOMEMIND_MODE": "hosted",
            "HOMEMIND_PUBLIC_URL": "http://homemind.test",
            "HOMEMIND_DATA_DIR": str(tmp_path),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'homemind.db'}",
            "ENCRYPTION_KEY": ENCRYPTION_KEY,
            "JWT_SECRET": JWT_SECRET,
            "ANTHROPIC_API_KEY": SERVER_KEY,
            "ANTHROPIC_BASE_URL": fake.base_url,
            "HOMEMIND_LOG_LEVEL": "DEBUG",
            "HOMEMIND_MEMORY_EXTRACTION": "false",
            "REDIS_URL": "",
            "STRIPE_SECRET_KEY": "",
            **env,
        },
        tmp_path / "server.log",
    )


async def sign_up(session: aiohttp.ClientSession, url: str) -> tuple[str, str, str, str]:
    """(access token, refresh token, installation id, installation token) via the API."""
    body = {"email": "ana@example.test", "password": PASSWORD}
    async with session.post(f"{url}/api/auth/register", json=body) as response:
        assert response.status == 201, await response.text()
    async with session.post(f"{url}/api/auth/login", json=body) as response:
        tokens = await response.json()
    access, refresh = tokens["access_token"], tokens["refresh_token"]
    auth = {"Authorization": f"Bearer {access}"}
    async with session.post(
        f"{url}/api/installations", json={"name": "Home"}, headers=auth
    ) as response:
        installation = await response.json()
    async with session.put(
        f"{url}/api/installations/{installation['id']}/key",
        json={"api_key": OWN_KEY},
        headers=auth,
    ) as response:
        assert response.status == 200
    return access, refresh, installation["id"], installation["token"]


async def stream(session: aiohttp.ClientSession, url: str, token: str) -> list[str]:
    """The SSE event names of one streamed chat."""
    async with session.post(
        f"{url}/api/chat/stream",
        json={"message": "How warm is the bedroom?"},
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        assert response.status == 200, await response.text()
        body = await response.text()
    return [line.removeprefix("event: ") for line in body.splitlines() if line.startswith("event:")]


async def test_json_logs_carry_the_request_context_and_no_secret(
    tmp_path: Path, fake: FakeClaude
) -> None:
    proc = server(tmp_path, fake)
    await proc.start()
    try:
        async with aiohttp.ClientSession() as session:
            access, refresh, installation_id, token = await sign_up(session, proc.url)
            fake.script(text(ANSWER))
            assert (await stream(session, proc.url, token))[-1] == "done"
            # A wrong password and a bad token, logged as refusals.
            bad = {"email": "ana@example.test", "password": PASSWORD + "x"}
            async with session.post(f"{proc.url}/api/auth/login", json=bad) as response:
                assert response.status == 401
            async with session.post(
                f"{proc.url}/api/chat",
                json={"message": "hi"},
                headers={"Authorization": f"Bearer {token[:-2]}zz"},
            ) as response:
                assert response.status == 401
        proc.signal(signal.SIGTERM)
        assert await proc.wait() == 0
    finally:
        await proc.stop()

    logs = proc.logs()
    for secret in (
        SERVER_KEY,
        OWN_KEY,
        ENCRYPTION_KEY,
        JWT_SECRET,
        PASSWORD,
        access,
        refresh,
        token,
        token[:-2] + "zz",
    ):
        assert secret not in logs
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert lines, logs[-2000:]
    chat_lines = [line for line in lines if line.get("installation_id") == installation_id]
    # The access line and the chat summary at least, all with the same request and user.
    assert len(chat_lines) >= 2
    assert len({line["request_id"] for line in chat_lines}) == 1
    assert all(line.get("user_id") for line in chat_lines)
    access_lines = [line for line in lines if line["logger"] == "cloud_server.access"]
    assert all(line.get("request_id") for line in access_lines)


async def test_at_info_a_turn_logs_its_summary_not_each_http_call(
    tmp_path: Path, fake: FakeClaude
) -> None:
    proc = server(tmp_path, fake, HOMEMIND_LOG_LEVEL="INFO")
    await proc.start()
    try:
        async with aiohttp.ClientSession() as session:
            _, _, _, token = await sign_up(session, proc.url)
            fake.script(text(ANSWER))
            assert (await stream(session, proc.url, token))[-1] == "done"
        proc.signal(signal.SIGTERM)
        assert await proc.wait() == 0
    finally:
        await proc.stop()

    logs = proc.logs()
    assert "chat request_id=" in logs
    # httpx's "HTTP Request: POST .../v1/messages" line per call to Claude stays out.
    assert "HTTP Request" not in logs and "/v1/messages" not in logs


async def test_sigterm_drains_streams_then_exits(tmp_path: Path, fake: FakeClaude) -> None:
    proc = server(tmp_path, fake, HOMEMIND_DRAIN_DELAY="0.5", HOMEMIND_DRAIN_TIMEOUT="20")
    await proc.start()
    try:
        async with aiohttp.ClientSession() as session:
            _, _, _, token = await sign_up(session, proc.url)
            # A slow answer: about 3 s of tokens, still streaming when SIGTERM arrives.
            fake.token_delay = 0.15
            fake.script(text(ANSWER))
            in_flight = asyncio.create_task(stream(session, proc.url, token))
            await fake.wait_for_requests(1)
            proc.signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            async with session.get(f"{proc.url}/readyz") as response:
                assert response.status == 503
                assert (await response.json())["status"] == "draining"
            await asyncio.sleep(0.6)  # past the drain delay: new chats are refused
            async with session.post(
                f"{proc.url}/api/chat",
                json={"message": "hi"},
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                assert response.status == 503
                assert response.headers["Retry-After"]
                assert (await response.json())["code"] == "temporarily_unavailable"
            assert (await in_flight)[-1] == "done"
        assert await proc.wait() == 0
    finally:
        await proc.stop()


async def test_sigterm_ends_a_stream_that_outlasts_the_drain_with_an_error(
    tmp_path: Path, fake: FakeClaude
) -> None:
    proc = server(tmp_path, fake, HOMEMIND_DRAIN_DELAY="0", HOMEMIND_DRAIN_TIMEOUT="0.5")
    await proc.start()
    try:
        async with aiohttp.ClientSession() as session:
            _, _, _, token = await sign_up(session, proc.url)
            fake.token_delay = 0.3
            fake.script(text(ANSWER))
            in_flight = asyncio.create_task(stream(session, proc.url, token))
            await fake.wait_for_requests(1)
            await asyncio.sleep(0.5)  # some deltas are out
            proc.signal(signal.SIGTERM)
            events = await in_flight
            assert "text_delta" in events
            assert events[-1] == "error"
        assert await proc.wait() == 0
    finally:
        await proc.stop()
