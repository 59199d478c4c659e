"""The diagnostic sensors against the real (self-hosted) server: no billing, status "none"."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from homeassistant.components import conversation
from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from tests.fakes.claude import text

from .conftest import ClaudeScript, Cloud, Relay, SetupAgent

MESSAGES = "sensor.cottage_messages_this_period"


async def poll(hass: HomeAssistant) -> None:
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(minutes=15, seconds=1))
    await hass.async_block_till_done(wait_background_tasks=True)


async def test_self_hosted_sensors_count_messages(
    hass: HomeAssistant, script: ClaudeScript, agent_id: str
) -> None:
    assert hass.states.get(MESSAGES).state == "0"
    assert hass.states.get("sensor.cottage_message_allowance").state == STATE_UNKNOWN
    assert hass.states.get("sensor.cottage_plan").state == "free"
    assert hass.states.get("sensor.cottage_subscription_status").state == "none"

    script(text("Hello."))
    await conversation.async_converse(hass, "Hi", None, Context(), agent_id=agent_id)
    await poll(hass)

    assert hass.states.get(MESSAGES).state == "1"
    # A self-hosted server has nothing to pay: no repair issue, ever.
    assert not [
        issue for issue in ir.async_get(hass).issues.values() if issue.domain == "home_mind"
    ]


async def test_sensors_unavailable_while_the_server_is_gone(
    hass: HomeAssistant,
    cloud: Cloud,
    setup_agent: SetupAgent,
    script: ClaudeScript,
    relay_to: Callable[[str], Awaitable[Relay]],
) -> None:
    relay = await relay_to(cloud.base_url)
    await setup_agent(cloud, relay.base_url)
    assert hass.states.get(MESSAGES).state == "0"

    await relay.close()
    await poll(hass)
    assert hass.states.get(MESSAGES).state == STATE_UNAVAILABLE
