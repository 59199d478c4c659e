"""Config, reauth, reconfigure and options flows (all of config_flow.py)."""

from __future__ import annotations

import pytest
from homeassistant import config_entries
from homeassistant.const import CONF_LLM_HASS_API, CONF_TOKEN, CONF_URL
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import llm
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.home_mind.const import (
    CONF_INSTRUCTIONS,
    CONF_OFFLINE_FALLBACK,
    DEFAULT_URL,
    DOMAIN,
)
from homemind_client.models import ErrorCode

from .fake_homemind import (
    INSTALLATION_ID,
    OTHER_TOKEN,
    TOKEN,
    FakeHomeMind,
    Problem,
)


async def _start(hass: HomeAssistant) -> str:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    return result["flow_id"]


async def test_user_flow_creates_entry(hass: HomeAssistant, fake_homemind: FakeHomeMind) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_USER}
    )
    # The hosted service is the default server.
    schema = result["data_schema"].schema
    url_key = next(key for key in schema if key == CONF_URL)
    assert url_key.default() == DEFAULT_URL

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {CONF_URL: f" {fake_homemind.base_url}/ ", CONF_TOKEN: f" {TOKEN} "},
    )
    await hass.async_block_till_done()

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Test home"
    assert result["data"] == {CONF_URL: fake_homemind.base_url, CONF_TOKEN: TOKEN}
    assert result["options"] == {CONF_LLM_HASS_API: [llm.LLM_API_ASSIST]}
    assert result["result"].unique_id == INSTALLATION_ID


@pytest.mark.parametrize(
    ("setup", "field", "error"),
    [
        ("wrong_token", "base", "invalid_auth"),
        ("revoked", "base", "invalid_auth"),
        ("server_down", "base", "cannot_connect"),
        ("not_home_mind", "base", "cannot_connect"),
        ("bad_url", CONF_URL, "invalid_url"),
        ("unexpected", "base", "unknown"),
    ],
)
async def test_user_flow_errors_then_recovers(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, setup: str, field: str, error: str
) -> None:
    url, token = fake_homemind.base_url, TOKEN
    down = FakeHomeMind()
    if setup == "wrong_token":
        token = "hm_not_a_token"
    elif setup == "revoked":
        fake_homemind.installation_problem = Problem(ErrorCode.INSTALLATION_REVOKED)
    elif setup == "server_down":
        await down.start()
        url = down.base_url
        await down.close()
    elif setup == "not_home_mind":
        url = f"{fake_homemind.base_url}/somewhere/else"
    elif setup == "bad_url":
        url = "ftp://example.invalid"
    elif setup == "unexpected":
        # An answer the flow has no specific message for.
        fake_homemind.installation_problem = Problem(ErrorCode.SUBSCRIPTION_REQUIRED)
    flow_id = await _start(hass)

    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_URL: url, CONF_TOKEN: token}
    )

    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {field: error}

    fake_homemind.installation_problem = None
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_URL: fake_homemind.base_url, CONF_TOKEN: TOKEN}
    )
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_same_installation_cannot_be_added_twice(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, fake_homemind: FakeHomeMind
) -> None:
    flow_id = await _start(hass)

    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_URL: fake_homemind.base_url, CONF_TOKEN: TOKEN}
    )

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_reauth_stores_new_token(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, fake_homemind: FakeHomeMind
) -> None:
    new_token = "hm_rotated_token_fake"
    fake_homemind.installations[new_token] = fake_homemind.installations.pop(TOKEN)
    result = await mock_config_entry.start_reauth_flow(hass)
    assert result["step_id"] == "reauth_confirm"
    assert result["description_placeholders"] == {"name": "Test home"}

    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOKEN: TOKEN})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "invalid_auth"}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_TOKEN: new_token}
    )
    await hass.async_block_till_done()

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert mock_config_entry.data[CONF_TOKEN] == new_token
    assert mock_config_entry.state is config_entries.ConfigEntryState.LOADED


async def test_reauth_refuses_another_installation(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> None:
    result = await mock_config_entry.start_reauth_flow(hass)

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_TOKEN: OTHER_TOKEN}
    )

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_account"
    assert mock_config_entry.data[CONF_TOKEN] == TOKEN


async def test_reconfigure_changes_url(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, fake_homemind: FakeHomeMind
) -> None:
    # Start from an address that no longer works; the form proposes it for editing.
    moved_from = "http://127.0.0.1:9"
    hass.config_entries.async_update_entry(
        mock_config_entry, data={**mock_config_entry.data, CONF_URL: moved_from}
    )
    result = await mock_config_entry.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure"
    schema = result["data_schema"].schema
    assert next(key for key in schema if key == CONF_URL).default() == moved_from

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: "not a url", CONF_TOKEN: TOKEN}
    )
    assert result["errors"] == {CONF_URL: "invalid_url"}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: fake_homemind.base_url, CONF_TOKEN: TOKEN}
    )
    await hass.async_block_till_done()

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert mock_config_entry.data[CONF_URL] == fake_homemind.base_url
    assert mock_config_entry.unique_id == INSTALLATION_ID


async def test_reconfigure_refuses_another_installation(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, fake_homemind: FakeHomeMind
) -> None:
    result = await mock_config_entry.start_reconfigure_flow(hass)

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: fake_homemind.base_url, CONF_TOKEN: OTHER_TOKEN}
    )

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_account"
    assert mock_config_entry.data[CONF_TOKEN] == TOKEN


async def test_options_single_api_on_ha_2025_4(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HA without `llm.MergedAPI`: one API or none, from a single select."""
    monkeypatch.delattr(llm, "MergedAPI", raising=False)
    result = await hass.config_entries.options.async_init(mock_config_entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    schema = result["data_schema"].schema
    api_key = next(key for key in schema if key == CONF_LLM_HASS_API)
    assert api_key.default() == llm.LLM_API_ASSIST
    selector = schema[api_key].config
    assert selector["multiple"] is False
    # Every registered API is offered (HA 2026.x adds its admin-only "Home Assistant" API).
    offered = {option["value"] for option in selector["options"]}
    assert offered == {"none"} | {api.id for api in llm.async_get_apis(hass)}
    assert llm.LLM_API_ASSIST in offered

    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {CONF_LLM_HASS_API: "none", CONF_INSTRUCTIONS: "  Call me captain.  "},
    )

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert mock_config_entry.options == {
        CONF_LLM_HASS_API: [],
        CONF_INSTRUCTIONS: "Call me captain.",
        CONF_OFFLINE_FALLBACK: True,
    }

    # The chat-only choice is shown as "none" next time, the instructions kept.
    result = await hass.config_entries.options.async_init(mock_config_entry.entry_id)
    schema = result["data_schema"].schema
    assert next(key for key in schema if key == CONF_LLM_HASS_API).default() == "none"
    instructions_key = next(key for key in schema if key == CONF_INSTRUCTIONS)
    assert instructions_key.description == {"suggested_value": "Call me captain."}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_LLM_HASS_API: llm.LLM_API_ASSIST, CONF_INSTRUCTIONS: ""}
    )
    assert mock_config_entry.options == {
        CONF_LLM_HASS_API: [llm.LLM_API_ASSIST],
        CONF_OFFLINE_FALLBACK: True,
    }


async def test_options_multiple_apis_where_supported(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HA 2025.5+ (simulated: `llm.MergedAPI` present): several APIs, empty = chat only."""
    monkeypatch.setattr(llm, "MergedAPI", object, raising=False)
    result = await hass.config_entries.options.async_init(mock_config_entry.entry_id)
    schema = result["data_schema"].schema
    api_key = next(key for key in schema if key == CONF_LLM_HASS_API)
    assert api_key.default() == [llm.LLM_API_ASSIST]
    selector = schema[api_key].config
    assert selector["multiple"] is True
    assert {option["value"] for option in selector["options"]} == {llm.LLM_API_ASSIST}

    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_LLM_HASS_API: []}
    )

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert mock_config_entry.options == {CONF_LLM_HASS_API: [], CONF_OFFLINE_FALLBACK: True}


async def test_options_turn_the_offline_fallback_off(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> None:
    """On by default; switched off it stays off and the form shows it off."""
    result = await hass.config_entries.options.async_init(mock_config_entry.entry_id)
    schema = result["data_schema"].schema
    assert next(key for key in schema if key == CONF_OFFLINE_FALLBACK).default() is True

    # One API is a plain value where the form offers one choice, a list where it offers several.
    selector = next(value for key, value in schema.items() if key == CONF_LLM_HASS_API)
    multiple = getattr(selector, "config", {}).get("multiple", False)
    assist: str | list[str] = [llm.LLM_API_ASSIST] if multiple else llm.LLM_API_ASSIST
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_LLM_HASS_API: assist, CONF_OFFLINE_FALLBACK: False}
    )

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert mock_config_entry.options[CONF_OFFLINE_FALLBACK] is False
    result = await hass.config_entries.options.async_init(mock_config_entry.entry_id)
    schema = result["data_schema"].schema
    assert next(key for key in schema if key == CONF_OFFLINE_FALLBACK).default() is False
