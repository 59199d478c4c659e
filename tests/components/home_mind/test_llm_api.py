"""The history LLM API: registration, the bucket summary, exposure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from homeassistant.core import HomeAssistant, State
from homeassistant.helpers import llm
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.home_mind.llm_api import API_ID, summarise

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def _state(value: str, hours: float) -> State:
    when = T0 + timedelta(hours=hours)
    return State("light.porch", value, last_changed=when, last_updated=when)


def test_dominant_state_and_changes_per_bucket() -> None:
    states = [_state("off", 0), _state("on", 1), _state("off", 2), _state("on", 8)]

    buckets = summarise(states, T0, T0 + timedelta(hours=12), 2)

    assert buckets[0]["state"] == "off"  # off 5 of the first 6 hours
    assert buckets[0]["changes"] == 3
    assert buckets[1]["state"] == "on"  # on 8-12 h, off 6-8 h
    assert buckets[1]["changes"] == 1


def test_numbers_are_weighted_by_time_and_gaps_say_so() -> None:
    states = [_state("10", 0), _state("20", 3)]

    (first, empty) = summarise(states, T0, T0 + timedelta(hours=8), 2)

    assert first == {"from": T0.isoformat(timespec="minutes"), "min": 10, "max": 20, "mean": 12.5}
    assert summarise([], T0, T0 + timedelta(hours=1), 1)[0]["state"] == "no data"
    assert empty["mean"] == 20


async def test_the_api_is_offered_in_the_options(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    assert API_ID in {api.id for api in llm.async_get_apis(hass)}
    result = await hass.config_entries.options.async_init(init_integration.entry_id)
    (selector,) = [
        value.config for key, value in result["data_schema"].schema.items() if key == "llm_hass_api"
    ]
    assert API_ID in {option["value"] for option in selector["options"]}
