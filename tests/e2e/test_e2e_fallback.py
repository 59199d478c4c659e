"""Offline fallback through every real layer: the real server stopped, then started again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from aiohttp import web
from homeassistant.components import conversation
from homeassistant.const import STATE_OFF, STATE_ON
from homeassistant.core import Context, HomeAssistant
from homeassistant.util import dt as dt_util

from cloud_server.app import create_app
from cloud_server.settings import Settings
from tests.fakes.claude import error, text

from .conftest import ClaudeScript, Cloud, SetupAgent

OFFLINE_EN = "Home Mind is offline, so Home Assistant answered by itself."


def speech(result: conversation.ConversationResult) -> str:
    return result.response.speech["plain"]["speech"]


async def _serve(settings: Settings, port: int) -> web.AppRunner:
    runner = web.AppRunner(create_app(settings), handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def test_server_stopped_then_restarted(
    hass: HomeAssistant,
    cloud: Cloud,
    server_settings: Settings,
    setup_agent: SetupAgent,
    script: ClaudeScript,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent_id = await setup_agent(cloud)
    # HA talks to the relay in front of the server (tests/e2e/conftest.py); the server
    # comes back on its own port behind it.
    port = int(cloud.server_url.rsplit(":", 1)[1])
    script(text("Hello, I'm back."))

    # The server goes down (its process ends; nothing listens on the port any more).
    await cloud.runner.cleanup()
    offline = await conversation.async_converse(
        hass, "turn on the kitchen lights", None, Context(), agent_id=agent_id
    )
    again = await conversation.async_converse(
        hass, "turn off the kitchen lights", offline.conversation_id, Context(), agent_id=agent_id
    )

    assert hass.states.get("light.kitchen_lights").state == STATE_OFF
    assert speech(offline).startswith(OFFLINE_EN + " ")
    assert OFFLINE_EN not in speech(again)
    assert script.chat_requests == []

    # The server starts again on the same address, with the same database.
    restarted = await _serve(server_settings, port)
    try:
        later = dt_util.utcnow() + timedelta(seconds=11)
        monkeypatch.setattr("custom_components.home_mind.fallback.utcnow", lambda: later)
        back = await conversation.async_converse(
            hass, "Are you there?", offline.conversation_id, Context(), agent_id=agent_id
        )
    finally:
        await restarted.cleanup()

    assert speech(back) == "Hello, I'm back."
    (request,) = script.chat_requests
    # Claude hears what HA's own agent did while the cloud was away.
    said = [m for m in request.messages if m["role"] == "assistant"]
    assert len(said) == 2
    assert OFFLINE_EN in str(said[0]["content"])


async def test_claude_down_still_turns_on_the_light(
    hass: HomeAssistant, cloud: Cloud, setup_agent: SetupAgent, script: ClaudeScript
) -> None:
    """Our server is up but Claude is overloaded (529): HA's agent takes the turn."""
    agent_id = await setup_agent(cloud)
    script.default = error(529, type="overloaded_error")

    result = await conversation.async_converse(
        hass, "turn on the kitchen lights", None, Context(), agent_id=agent_id
    )

    assert hass.states.get("light.kitchen_lights").state == STATE_ON
    assert speech(result).startswith(OFFLINE_EN)
