"""Fault suite (issue 14): each upstream failure ends in a clear, translated sentence in HA,
with the usage row written exactly once and nothing counted as a message.

Extends tests/e2e/test_e2e_chat.py (which covers 529, the user's key refused, Claude never
answering and the server going away mid-stream) with the other failures of Claude's API,
in English and German, asserted on what HA says and on the database.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from homeassistant.components import conversation
from homeassistant.core import Context, HomeAssistant
from pydantic import SecretStr
from sqlalchemy import select

from cloud_server.billing.models import UsageRecord
from cloud_server.db.engine import DB_SESSIONMAKER
from tests.fakes.claude import cut, error, stream_error, text

from .conftest import ClaudeScript, Cloud, SetupAgent, StartCloud

TRANSLATIONS = Path(__file__).parents[2] / "custom_components" / "home_mind" / "translations"


def spoken(language: str, code: str) -> str:
    strings = json.loads((TRANSLATIONS / f"{language}.json").read_text())
    return str(strings["exceptions"][code]["message"])


async def usage_rows(cloud: Cloud) -> list[UsageRecord]:
    async with cloud.app[DB_SESSIONMAKER]() as session:
        return list((await session.execute(select(UsageRecord))).scalars())


FAULTS = {
    "429": (error(429), "upstream_unavailable"),
    "500": (error(500), "upstream_unavailable"),
    "529-mid-stream": (stream_error(3, 529), "upstream_unavailable"),
    "cut-after-text": (cut(4, then=text("Half an answer that never ends properly.")), None),
}


@pytest.mark.parametrize("language", ["en", "de"])
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_claude_fault_is_spoken_and_counted_once(
    hass: HomeAssistant,
    cloud: Cloud,
    script: ClaudeScript,
    setup_agent: SetupAgent,
    fault: str,
    language: str,
) -> None:
    turn, code = FAULTS[fault]
    # The spoken error, not the local agent: the fallback is off here.
    agent_id = await setup_agent(cloud, offline_fallback=False)
    script.default = turn

    result = await conversation.async_converse(
        hass, "How warm is it?", None, Context(), language=language, agent_id=agent_id
    )

    said = result.response.speech["plain"]["speech"]
    if code is not None:
        assert said == spoken(language, code)
    else:
        # A stream cut after some text: the person hears that it failed, in their language.
        assert result.response.response_type.value == "error"
        assert said
    # Nothing is lost or doubled: one usage row per request that reached the server (the
    # client may retry a refused one once), none completed, each with its error code, and
    # the request ids distinct (a row is never written twice).
    # The server writes the row as its stream handler ends, which may be just after HA has
    # read the error event: wait for it (bounded), then read once more for a late double.
    for _ in range(100):
        if rows := await usage_rows(cloud):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)
    rows = await usage_rows(cloud)
    assert 1 <= len(rows) <= 2
    assert len({r.id for r in rows}) == len(rows)
    assert all(r.completed is False and r.error_code for r in rows)
    # Refused before any token: never a message. Cut after text: Claude billed the tokens,
    # so that one turn counts once (billing/gate.py `record`).
    counted = sum(r.counts_as_message for r in rows)
    assert counted == (1 if fault in ("cut-after-text", "529-mid-stream") else 0)


async def test_server_key_refused_by_claude_is_spoken(
    hass: HomeAssistant, start_cloud: StartCloud, setup_agent: SetupAgent, script: ClaudeScript
) -> None:
    cloud = await start_cloud(anthropic_api_key=SecretStr("sk-ant-server-revoked-" + "r" * 20))
    await cloud.mint()
    # The spoken error, not the local agent: the fallback is off here.
    agent_id = await setup_agent(cloud, offline_fallback=False)
    script.default = error(401)

    result = await conversation.async_converse(
        hass, "Hi", None, Context(), language="de", agent_id=agent_id
    )

    said: Any = result.response.speech["plain"]["speech"]
    assert result.response.response_type.value == "error"
    assert "sk-ant" not in said
    rows = await usage_rows(cloud)
    assert len(rows) == 1 and rows[0].completed is False
