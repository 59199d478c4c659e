"""The history LLM API through every real layer, with HA's recorder recording."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from homeassistant.components import conversation
from homeassistant.components.homeassistant.exposed_entities import async_expose_entity
from homeassistant.const import CONF_LLM_HASS_API
from homeassistant.core import Context, HomeAssistant
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)

from custom_components.home_mind.const import DOMAIN
from tests.fakes.claude import text, tool_use

from .conftest import ClaudeScript, Cloud, SetupAgent


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(recorder_mock: Any, enable_custom_integrations: None) -> None:
    """The recorder must start before `hass` (conftest's fixture of the same name would not)."""


def _tool_result(request: Any) -> dict[str, Any]:
    blocks = request.messages[-1]["content"]
    (block,) = [b for b in blocks if b["type"] == "tool_result"]
    content = block["content"]
    raw = content if isinstance(content, str) else content[0]["text"]
    return dict(json.loads(raw))


async def test_a_week_of_temperature_in_buckets(
    hass: HomeAssistant,
    cloud: Cloud,
    setup_agent: SetupAgent,
    script: ClaudeScript,
) -> None:
    start = dt_util.utcnow() - timedelta(days=7)
    attrs = {"unit_of_measurement": "°C", "friendly_name": "Living room"}
    # The clock is frozen only while the week is written: the server's models need real time.
    with freeze_time(start) as frozen:
        for hour in range(7 * 24):
            frozen.move_to(start + timedelta(hours=hour, minutes=1))
            hass.states.async_set("sensor.living_room", str(18 + hour % 6), attrs)
            hass.states.async_set("sensor.safe_code", str(1000 + hour))
        await async_wait_recording_done(hass)
    agent_id = await setup_agent(cloud)
    async_expose_entity(hass, "conversation", "sensor.living_room", True)
    async_expose_entity(hass, "conversation", "sensor.safe_code", False)
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    # HA 2025.4 gives an agent one LLM API: ours alone.
    hass.config_entries.async_update_entry(entry, options={CONF_LLM_HASS_API: [DOMAIN]})
    await hass.async_block_till_done()
    script(
        tool_use("GetEntityHistory", {"entity_id": "sensor.living_room", "hours": 168}, id="t1"),
        text("It was between 18 and 23 degrees, 20.5 on average."),
        tool_use("GetEntityHistory", {"entity_id": "sensor.safe_code"}, id="t2"),
        text("I can't see that."),
    )

    result = await conversation.async_converse(
        hass, "How warm was the living room this week?", None, Context(), agent_id=agent_id
    )
    await conversation.async_converse(
        hass, "And the safe code?", result.conversation_id, Context(), agent_id=agent_id
    )

    assert "GetEntityHistory" in {tool["name"] for tool in script.chat_requests[0].tools}
    week = _tool_result(script.chat_requests[1])
    assert week["unit"] == "°C"
    assert len(week["buckets"]) == 8
    for bucket in week["buckets"]:
        assert 18 <= bucket["min"] <= bucket["mean"] <= bucket["max"] <= 23
    # A week in a few hundred tokens (about 4 characters a token).
    assert len(json.dumps(week)) < 1600
    refused = _tool_result(script.chat_requests[3])
    assert "buckets" not in refused
    assert "1000" not in json.dumps(refused)
