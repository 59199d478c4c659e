"""Setup, unload, the service device and diagnostics."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.const import CONF_TOKEN
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator
from syrupy.assertion import SnapshotAssertion

from custom_components.home_mind.const import DOMAIN
from homemind_client.models import ErrorCode, InstallationInfo
from homemind_client.models.accounts import SubscriptionSummary, UsageSummary

from .fake_homemind import INSTALLATION_ID, TOKEN, FakeHomeMind, Problem


async def test_setup_creates_service_device_and_agent(
    hass: HomeAssistant, init_integration: MockConfigEntry, agent_id: str
) -> None:
    assert init_integration.state is ConfigEntryState.LOADED
    assert init_integration.runtime_data.installation.id == INSTALLATION_ID
    device = dr.async_get(hass).async_get_device(identifiers={(DOMAIN, init_integration.entry_id)})
    assert device is not None
    assert device.entry_type is dr.DeviceEntryType.SERVICE
    assert device.name == "Test home"
    assert device.manufacturer == "Home Mind"
    assert device.model == "managed plan"
    # The agent is named after its installation.
    assert agent_id == "conversation.test_home"
    assert hass.states.get(agent_id) is not None


@pytest.mark.parametrize("code", [ErrorCode.INVALID_TOKEN, ErrorCode.INSTALLATION_REVOKED])
async def test_refused_token_starts_reauth(
    hass: HomeAssistant,
    fake_homemind: FakeHomeMind,
    mock_config_entry: MockConfigEntry,
    code: ErrorCode,
) -> None:
    fake_homemind.installation_problem = Problem(code)

    assert not await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()

    assert mock_config_entry.state is ConfigEntryState.SETUP_ERROR
    assert len(list(mock_config_entry.async_get_active_flows(hass, {SOURCE_REAUTH}))) == 1


@pytest.mark.parametrize(
    "problem",
    [
        Problem(ErrorCode.INTERNAL_ERROR, status=500),
        Problem(ErrorCode.UPSTREAM_UNAVAILABLE, retry_after=60),
    ],
)
async def test_server_trouble_retries_setup(
    hass: HomeAssistant,
    fake_homemind: FakeHomeMind,
    mock_config_entry: MockConfigEntry,
    problem: Problem,
) -> None:
    fake_homemind.installation_problem = problem

    await hass.config_entries.async_setup(mock_config_entry.entry_id)

    assert mock_config_entry.state is ConfigEntryState.SETUP_RETRY


async def test_unreachable_server_retries_setup(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, mock_config_entry: MockConfigEntry
) -> None:
    await fake_homemind.close()

    await hass.config_entries.async_setup(mock_config_entry.entry_id)

    assert mock_config_entry.state is ConfigEntryState.SETUP_RETRY


async def test_unload(
    hass: HomeAssistant, init_integration: MockConfigEntry, agent_id: str
) -> None:
    assert await hass.config_entries.async_unload(init_integration.entry_id)
    await hass.async_block_till_done()

    assert init_integration.state is ConfigEntryState.NOT_LOADED
    assert hass.states.get(agent_id).state == "unavailable"


def _managed_installation() -> InstallationInfo:
    """A paying household part-way through its month."""
    return InstallationInfo(
        id=INSTALLATION_ID,
        name="Test home",
        tier="managed",
        has_api_key=False,
        subscription=SubscriptionSummary(
            status="active",
            tier="managed",
            current_period_end=datetime(2025, 5, 1, tzinfo=UTC),
        ),
        usage=UsageSummary(
            messages=412,
            allowance=1000,
            hard_limit=1500,
            period_start=datetime(2025, 4, 1, tzinfo=UTC),
            period_end=datetime(2025, 5, 1, tzinfo=UTC),
        ),
    )


async def test_diagnostics_show_the_plan_and_redact_the_token(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    init_integration: MockConfigEntry,
    fake_homemind: FakeHomeMind,
    snapshot: SnapshotAssertion,
) -> None:
    hass.config_entries.async_update_entry(
        init_integration,
        options={**init_integration.options, "instructions": "My private instructions"},
    )
    await hass.async_block_till_done()
    fake_homemind.installations[TOKEN] = _managed_installation()
    await init_integration.runtime_data.coordinator.async_refresh()

    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, init_integration)

    assert TOKEN not in str(diagnostics)
    assert "My private instructions" not in str(diagnostics)
    assert diagnostics["entry"]["data"][CONF_TOKEN] == "**REDACTED**"
    assert diagnostics["coordinator"]["last_update_success"] is True
    assert diagnostics["coordinator"]["data"]["usage"]["messages"] == 412
    # The server's port changes from run to run.
    assert diagnostics["client"]["base_url"] == fake_homemind.base_url
    diagnostics["client"]["base_url"] = "http://127.0.0.1:PORT"
    diagnostics["entry"]["data"]["url"] = "http://127.0.0.1:PORT"
    assert diagnostics == snapshot


async def test_diagnostics_show_a_failed_update(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    init_integration: MockConfigEntry,
    fake_homemind: FakeHomeMind,
) -> None:
    fake_homemind.installations[TOKEN] = _managed_installation()
    await init_integration.runtime_data.coordinator.async_refresh()
    fake_homemind.installation_problem = Problem(ErrorCode.INTERNAL_ERROR, status=500)
    await init_integration.runtime_data.coordinator.async_refresh()

    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, init_integration)

    coordinator = diagnostics["coordinator"]
    assert coordinator["last_update_success"] is False
    assert coordinator["last_error"].startswith("UpdateFailed: ")
    assert "internal_error" in coordinator["last_error"]
    # What the last good poll said is still there for support to read.
    assert coordinator["data"]["tier"] == "managed"
    assert coordinator["data"]["usage"]["messages"] == 412
    assert TOKEN not in str(diagnostics)
