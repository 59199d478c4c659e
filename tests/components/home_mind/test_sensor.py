"""The diagnostic sensors: values, unavailable while the cloud is away, logged once each way."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime, timedelta

import pytest
from homeassistant.config_entries import SOURCE_REAUTH
from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN, EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.home_mind.const import DOMAIN
from homemind_client.models import ErrorCode, InstallationInfo, SubscriptionSummary, UsageSummary

from .fake_homemind import INSTALLATION_ID, TOKEN, FakeHomeMind, Problem

MESSAGES = "sensor.test_home_messages_this_period"
ALLOWANCE = "sensor.test_home_message_allowance"
PLAN = "sensor.test_home_plan"
STATUS = "sensor.test_home_subscription_status"
PERIOD_START = datetime(2026, 11, 1, tzinfo=UTC)


def managed(messages: int = 42) -> InstallationInfo:
    return InstallationInfo(
        id=INSTALLATION_ID,
        name="Test home",
        tier="managed",
        subscription=SubscriptionSummary(status="active", tier="managed"),
        usage=UsageSummary(
            messages=messages,
            allowance=1000,
            hard_limit=2000,
            period_start=PERIOD_START,
            period_end=PERIOD_START + timedelta(days=30),
        ),
    )


async def poll(hass: HomeAssistant) -> None:
    """Let the 15-minute poll happen."""
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(minutes=15, seconds=1))
    # The coordinator polls in a background task.
    await hass.async_block_till_done(wait_background_tasks=True)


@pytest.fixture
def fast_retries(init_integration: MockConfigEntry) -> None:
    """The shipped retry counts with tiny backoffs: the test counts polls, not time."""
    client = init_integration.runtime_data.client
    client.installation_retry = dataclasses.replace(client.installation_retry, backoff=0.001)


async def test_sensor_values(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, mock_config_entry: MockConfigEntry
) -> None:
    fake_homemind.installations[TOKEN] = managed()
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()

    messages = hass.states.get(MESSAGES)
    assert messages is not None
    assert messages.state == "42"
    assert messages.attributes["state_class"] == "total"
    assert messages.attributes["last_reset"] == PERIOD_START.isoformat()
    assert hass.states.get(ALLOWANCE).state == "1000"
    plan = hass.states.get(PLAN)
    assert plan.state == "managed"
    assert plan.attributes["options"] == ["free", "byok", "managed"]
    assert hass.states.get(STATUS).state == "active"

    registry = er.async_get(hass)
    for entity_id in (MESSAGES, ALLOWANCE, PLAN, STATUS):
        entity = registry.async_get(entity_id)
        assert entity is not None
        assert entity.entity_category is EntityCategory.DIAGNOSTIC
        assert entity.unique_id.startswith(mock_config_entry.entry_id)
        assert entity.translation_key is not None
        # On the installation's service device, next to the agent.
        agent = registry.async_get_entity_id("conversation", DOMAIN, mock_config_entry.entry_id)
        assert entity.device_id == registry.async_get(agent).device_id


async def test_self_hosted_server(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, mock_config_entry: MockConfigEntry
) -> None:
    # What a server without billing answers: free, no subscription, no limits.
    fake_homemind.installations[TOKEN] = InstallationInfo(
        id=INSTALLATION_ID, name="Test home", usage=UsageSummary(messages=7)
    )
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()

    assert hass.states.get(MESSAGES).state == "7"
    assert hass.states.get(ALLOWANCE).state == STATE_UNKNOWN
    assert hass.states.get(PLAN).state == "free"
    assert hass.states.get(STATUS).state == "none"


async def test_unknown_status_from_a_newer_server_is_unknown(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, mock_config_entry: MockConfigEntry
) -> None:
    info = managed()
    info.subscription.status = "on_hold"
    fake_homemind.installations[TOKEN] = info
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()

    assert hass.states.get(STATUS).state == STATE_UNKNOWN
    assert hass.states.get(PLAN).state == "managed"


async def test_poll_updates_the_values(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, init_integration: MockConfigEntry
) -> None:
    fake_homemind.installations[TOKEN] = managed(messages=43)

    await poll(hass)

    assert hass.states.get(MESSAGES).state == "43"


async def test_unavailable_while_away_logged_once_each_way(
    hass: HomeAssistant,
    fake_homemind: FakeHomeMind,
    init_integration: MockConfigEntry,
    fast_retries: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="custom_components.home_mind")
    fake_homemind.installations[TOKEN] = managed()
    await poll(hass)
    assert hass.states.get(MESSAGES).state == "42"
    caplog.clear()

    fake_homemind.away = True
    await poll(hass)
    await poll(hass)
    await poll(hass)

    for entity_id in (MESSAGES, ALLOWANCE, PLAN, STATUS):
        assert hass.states.get(entity_id).state == STATE_UNAVAILABLE
    down = [r for r in caplog.records if r.name == "custom_components.home_mind"]
    assert [r.levelno for r in down] == [logging.ERROR]
    assert "Cannot talk to the Home Mind server" in down[0].getMessage()
    assert TOKEN not in caplog.text

    caplog.clear()
    fake_homemind.away = False
    fake_homemind.installations[TOKEN] = managed(messages=44)
    await poll(hass)
    await poll(hass)

    assert hass.states.get(MESSAGES).state == "44"
    assert hass.states.get(PLAN).state == "managed"
    back = [r for r in caplog.records if r.name == "custom_components.home_mind"]
    assert [(r.levelno, r.getMessage()) for r in back] == [
        (logging.INFO, "Fetching home_mind data recovered")
    ]


async def test_the_agent_stays_while_sensors_are_unavailable(
    hass: HomeAssistant,
    fake_homemind: FakeHomeMind,
    agent_id: str,
    fast_retries: None,
) -> None:
    fake_homemind.away = True

    await poll(hass)

    assert hass.states.get(MESSAGES).state == STATE_UNAVAILABLE
    # The agent still answers (with a spoken error) rather than vanishing from Assist.
    assert hass.states.get(agent_id).state != STATE_UNAVAILABLE


async def test_refused_token_on_poll_starts_reauth(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, init_integration: MockConfigEntry
) -> None:
    fake_homemind.installation_problem = Problem(ErrorCode.INVALID_TOKEN)

    await poll(hass)

    assert hass.states.get(MESSAGES).state == STATE_UNAVAILABLE
    assert len(list(init_integration.async_get_active_flows(hass, {SOURCE_REAUTH}))) == 1
