"""Fault suite, the server's own dependencies (issue 14), as a person in HA hears them.

- The database goes away (the server reaches PostgreSQL through a proxy this test cuts;
  the shared PostgreSQL stays up): HA speaks the translated `database_unavailable`
  sentence, nothing is counted, and after the database is back the next turn is answered
  by the same server, without a restart.
- The server process is killed (SIGKILL) in the middle of an answer: HA's turn ends within
  the integration's idle timeout with the spoken "cannot connect" sentence; the restarted
  server on the same SQLite file answers the next turn.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from homeassistant.components import conversation
from homeassistant.const import CONF_URL
from homeassistant.core import Context, HomeAssistant

from cloud_server.server_secrets import SECRETS_FILE
from custom_components.home_mind.const import DOMAIN, IDLE_TIMEOUT
from tests.components.home_mind.spoken import CANNOT_CONNECT_EN
from tests.fakes.claude import FakeClaude, text
from tests.fault_proxy import FaultProxy, database_behind_proxy
from tests.ha_tools import chat_session as new_chat_session
from tests.pg_database import pg_url
from tests.server.server_process import ServerProcess

from .conftest import SERVER_KEY, ClaudeScript, Cloud, SetupAgent, StartCloud
from .secrets_scan import SecretsScan
from .test_e2e_faults import spoken, usage_rows


async def _dump(database: str) -> str:
    """Every row of every table as JSON text (what the secrets scan reads)."""
    connection = await asyncpg.connect(pg_url(database), timeout=5)
    try:
        tables = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )
        rows = []
        for table in tables:
            name = table["tablename"].replace('"', '""')
            rows += await connection.fetch(f'SELECT row_to_json(t)::text AS row FROM "{name}" t')
        return "\n".join(row["row"] for row in rows)
    finally:
        await connection.close()


@pytest.fixture
async def pg_via_proxy(
    socket_enabled: None, secrets_scan: SecretsScan
) -> AsyncIterator[tuple[FaultProxy, str]]:
    """This test's own database on the shared PostgreSQL, reached through a proxy."""
    async with database_behind_proxy("homemind_e2e_fault") as database:
        try:
            yield database.proxy, database.url
        finally:
            await database.proxy.close()  # the server's connections end before the scan
            secrets_scan.text("the PostgreSQL database", await _dump(database.name))


def _speech(result: conversation.ConversationResult) -> str:
    return str(result.response.speech["plain"]["speech"])


@pytest.mark.parametrize("language", ["en", "de"])
async def test_database_gone_is_spoken_then_the_next_turn_is_answered(
    hass: HomeAssistant,
    start_cloud: StartCloud,
    setup_agent: SetupAgent,
    script: ClaudeScript,
    pg_via_proxy: tuple[FaultProxy, str],
    language: str,
) -> None:
    proxy, url = pg_via_proxy
    cloud: Cloud = await start_cloud(database_url=url)
    await cloud.mint()
    agent_id = await setup_agent(cloud, offline_fallback=False)
    script(text("The kitchen light is on."))

    proxy.cut()
    refused = await conversation.async_converse(
        hass, "Is the kitchen light on?", None, Context(), language=language, agent_id=agent_id
    )
    assert _speech(refused) == spoken(language, "database_unavailable")
    assert refused.response.response_type.value == "error"
    # Refused before anything was done: Claude was never asked.
    assert script.chat_requests == []

    proxy.restore()
    answered = await conversation.async_converse(
        hass, "Is the kitchen light on?", None, Context(), language=language, agent_id=agent_id
    )
    assert _speech(answered) == "The kitchen light is on."
    rows = await usage_rows(cloud)
    assert len(rows) == 1 and rows[0].completed and rows[0].counts_as_message


def _server(tmp_path: Path, claude: FakeClaude) -> ServerProcess:
    return ServerProcess(
        {
            "HOMEMIND_MODE": "self-hosted",
            "HOMEMIND_DATA_DIR": str(tmp_path),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'homemind.db'}",
            "ANTHROPIC_API_KEY": SERVER_KEY,
            "ANTHROPIC_BASE_URL": claude.base_url,
            "HOMEMIND_MEMORY_EXTRACTION": "false",
            "REDIS_URL": "",
            "STRIPE_SECRET_KEY": "",
            "ENCRYPTION_KEY": "",
            "JWT_SECRET": "",
        },
        tmp_path / "server.log",
    )


async def _installation(url: str, scan: SecretsScan) -> tuple[str, str]:
    """(installation id, token) through the real server's HTTP API (the create answers,
    the one place these secrets may appear, are not recorded by the scan)."""
    body = {"email": "kill@example.test", "password": "a long passphrase for the kill test"}
    scan.secret(body["password"], "a user's password")
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/auth/register", json=body) as response:
            assert response.status == 201, await response.text()
            tokens = await response.json()
            access = tokens["access_token"]
            scan.secret(access, "an access token")
            scan.secret(tokens["refresh_token"], "a refresh token")
        async with http.post(
            f"{url}/api/installations",
            json={"name": "Cottage"},
            headers={"Authorization": f"Bearer {access}"},
        ) as response:
            assert response.status == 201, await response.text()
            created: dict[str, Any] = await response.json()
    scan.secret(created["token"], "an installation token")
    return created["id"], created["token"]


async def test_server_killed_mid_stream_is_spoken_within_the_idle_timeout(
    hass: HomeAssistant,
    claude: FakeClaude,
    script: ClaudeScript,
    setup_agent: SetupAgent,
    tmp_path: Path,
    secrets_scan: SecretsScan,
) -> None:
    proc = _server(tmp_path, claude)
    secrets_scan.database(tmp_path / "homemind.db")
    await proc.start()
    try:
        for name, value in json.loads((tmp_path / SECRETS_FILE).read_text()).items():
            secrets_scan.secret(value, f"the server's {name}")
        installation_id, token = await _installation(proc.url, secrets_scan)
        server = Cloud(app=None, runner=None, base_url=proc.url)  # type: ignore[arg-type]
        server.installation_id, server.token = installation_id, token
        agent_id = await setup_agent(server, offline_fallback=False)
        # Claude starts answering, then takes its time with the rest.
        claude.token_delay = 30
        script(text("The weather today is sunny and warm, with a light breeze later on."))
        first_text = asyncio.Event()

        def listener(_log: conversation.ChatLog, delta: dict[str, Any]) -> None:
            if delta.get("content"):
                first_text.set()

        async def converse() -> conversation.ConversationResult:
            with (
                new_chat_session(hass) as session,
                conversation.async_get_chat_log(hass, session, chat_log_delta_listener=listener),
            ):
                return await conversation.async_converse(
                    hass, "Weather?", session.conversation_id, Context(), agent_id=agent_id
                )

        turn = hass.async_create_task(converse())
        async with asyncio.timeout(30):
            await first_text.wait()
        proc.signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
        # The person hears an error within the integration's idle timeout.
        async with asyncio.timeout(IDLE_TIMEOUT):
            result = await turn
        assert _speech(result) == CANNOT_CONNECT_EN
        assert result.response.response_type.value == "error"

        # The same SQLite file, a new process: the next turn is answered.
        claude.token_delay = 0
        script(text("Sunny."))
        restarted = _server(tmp_path, claude)
        await restarted.start()
        try:
            # It came back on another port: point the entry at it (as a person would).
            entry = hass.config_entries.async_entries(DOMAIN)[0]
            hass.config_entries.async_update_entry(
                entry, data={**entry.data, CONF_URL: restarted.url}
            )
            await hass.config_entries.async_reload(entry.entry_id)
            await hass.async_block_till_done()
            again = await conversation.async_converse(
                hass, "Weather?", None, Context(), agent_id=agent_id
            )
            assert _speech(again) == "Sunny."
            # The killed turn left no row (its process died before recording); the answered
            # one is recorded once, and the file is intact.
            with sqlite3.connect(tmp_path / "homemind.db") as db:
                assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
                rows = db.execute("SELECT completed FROM usage_records").fetchall()
            assert rows == [(1,)]
        finally:
            await restarted.stop()
            secrets_scan.text("the restarted server's log", restarted.logs())
    finally:
        await proc.stop()
        secrets_scan.text("the server's log", proc.logs())
