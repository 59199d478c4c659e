"""Data-returning service tools of Home Mind's LLM API: forecasts and calendar ranges.

Driven through the agent: the scripted server asks for the tool, HA runs it on a weather
and a calendar entity of the harness, and the next request carries what the tool returned.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest
from homeassistant.components import conversation
from homeassistant.components.calendar import CalendarEntity, CalendarEvent
from homeassistant.components.homeassistant.exposed_entities import async_expose_entity
from homeassistant.components.weather import Forecast, WeatherEntity, WeatherEntityFeature
from homeassistant.const import CONF_LLM_HASS_API, UnitOfTemperature
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import llm
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    setup_test_component_platform,
)

from custom_components.home_mind.const import DOMAIN
from custom_components.home_mind.data_services import summarise_events, summarise_forecast

from .fake_homemind import FakeHomeMind, answer, tool_call

CHRISTMAS = date(2030, 12, 24)


class Forecaster(WeatherEntity):
    """Three rainy-then-sunny days ahead."""

    _attr_name = "Home forecast"
    _attr_condition = "cloudy"
    _attr_native_temperature = 11.0
    _attr_native_temperature_unit = UnitOfTemperature.CELSIUS
    _attr_supported_features = WeatherEntityFeature.FORECAST_DAILY

    async def async_forecast_daily(self) -> list[Forecast]:
        start = dt_util.start_of_local_day() + timedelta(hours=12)
        return [
            Forecast(
                datetime=(start + timedelta(days=day)).isoformat(),
                condition="rainy" if day == 0 else "sunny",
                native_temperature=14.0 + day,
                native_templow=6.0 + day,
                precipitation_probability=80 if day == 0 else 5,
                humidity=90,
                uv_index=3,
            )
            for day in range(3)
        ]


class Diary(CalendarEntity):
    """A calendar with one event on Christmas Eve 2030 and one all-day event after it."""

    def __init__(self, name: str) -> None:
        self._attr_name = name
        zone = dt_util.get_default_time_zone()
        self._events = [
            CalendarEvent(
                start=datetime(2030, 12, 24, 18, 0, tzinfo=zone),
                end=datetime(2030, 12, 24, 22, 0, tzinfo=zone),
                summary=f"{name}: dinner at grandma's",
                location="Main street 1",
            ),
            CalendarEvent(
                start=date(2030, 12, 26),
                end=date(2030, 12, 27),
                summary=f"{name}: boxing day",
            ),
        ]

    @property
    def event(self) -> CalendarEvent | None:
        return None

    async def async_get_events(
        self, hass: HomeAssistant, start_date: datetime, end_date: datetime
    ) -> list[CalendarEvent]:
        return [
            event
            for event in self._events
            if event.start_datetime_local < end_date and event.end_datetime_local > start_date
        ]


@pytest.fixture
async def sources(hass: HomeAssistant) -> None:
    """A weather entity and two calendars; the diary is not exposed."""
    setup_test_component_platform(hass, "weather", [Forecaster()])
    assert await async_setup_component(hass, "weather", {"weather": {"platform": "test"}})
    setup_test_component_platform(hass, "calendar", [Diary("Family"), Diary("Secret diary")])
    assert await async_setup_component(hass, "calendar", {"calendar": {"platform": "test"}})
    await hass.async_block_till_done()
    async_expose_entity(hass, "conversation", "weather.home_forecast", True)
    async_expose_entity(hass, "conversation", "calendar.family", True)
    async_expose_entity(hass, "conversation", "calendar.secret_diary", False)


@pytest.fixture
async def our_api_only(
    hass: HomeAssistant, init_integration: MockConfigEntry, agent_id: str
) -> str:
    """The agent with Home Mind's LLM API alone (HA 2025.4 gives an agent one API)."""
    hass.config_entries.async_update_entry(init_integration, options={CONF_LLM_HASS_API: [DOMAIN]})
    await hass.async_block_till_done()
    return agent_id


async def run_tool(
    hass: HomeAssistant, fake: FakeHomeMind, agent_id: str, name: str, args: dict[str, Any]
) -> Any:
    """Let the model call one tool; what HA answered it."""
    fake.script(tool_call("call-1", name, args), answer("Done."))
    await conversation.async_converse(hass, "Tell me", None, Context(), agent_id=agent_id)
    first, second = fake.chat_requests[-2:]
    assert name in {tool["name"] for tool in first["tools"]}
    result = second["messages"][-1]
    assert result["role"] == "tool_result"
    return result["result"]


@pytest.mark.usefixtures("sources")
async def test_the_forecast_of_an_exposed_weather_entity(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, our_api_only: str
) -> None:
    result = await run_tool(hass, fake_homemind, our_api_only, "GetWeatherForecast", {"limit": 2})

    assert result["entity_id"] == "weather.home_forecast"  # the one exposed, found alone
    assert result["units"]["temperature"] == "°C"
    first, second = result["forecast"]
    assert first["condition"] == "rainy"
    assert (first["temperature"], first["templow"], first["precipitation_probability"]) == (
        14.0,
        6.0,
        80,
    )
    assert "humidity" not in first and "uv_index" not in first  # compact
    assert second["condition"] == "sunny"
    assert set(first) <= {
        "time",
        "condition",
        "temperature",
        "templow",
        "precipitation_probability",
    }


@pytest.mark.usefixtures("sources")
async def test_calendar_events_of_a_range_and_nothing_of_an_unexposed_calendar(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, our_api_only: str
) -> None:
    family = await run_tool(
        hass,
        fake_homemind,
        our_api_only,
        "GetCalendarEventsInRange",
        {"entity_id": "calendar.family", "start_date": "2030-12-24", "end_date": "2030-12-26"},
    )
    diary = await run_tool(
        hass,
        fake_homemind,
        our_api_only,
        "GetCalendarEventsInRange",
        {"entity_id": "calendar.secret_diary", "start_date": "2030-12-24"},
    )

    assert [event["summary"] for event in family["events"]] == [
        "Family: dinner at grandma's",
        "Family: boxing day",
    ]
    assert family["events"][0]["start"] == "2030-12-24 18:00"
    assert family["events"][0]["location"] == "Main street 1"
    assert family["events"][1]["start"] == "2030-12-26"
    # The unexposed calendar is refused; none of its events reach the model.
    assert "not an exposed calendar entity" in str(diary)
    assert "Secret diary:" not in str(diary)


@pytest.mark.usefixtures("sources")
async def test_an_unexposed_weather_entity_is_not_readable(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, our_api_only: str
) -> None:
    async_expose_entity(hass, "conversation", "weather.home_forecast", False)

    result = await run_tool(
        hass,
        fake_homemind,
        our_api_only,
        "GetWeatherForecast",
        {"entity_id": "weather.home_forecast"},
    )

    assert "not an exposed weather entity" in str(result)
    assert "rainy" not in str(result)


@pytest.mark.usefixtures("sources")
async def test_the_tools_fill_gaps_of_this_releases_assist_api(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str
) -> None:
    # The entry's default: HA's Assist API. What does it offer on this HA release?
    fake_homemind.script(answer("Hi."))
    await conversation.async_converse(hass, "hi", None, Context(), agent_id=agent_id)
    assist = {tool["name"]: tool for tool in fake_homemind.chat_requests[-1]["tools"]}

    assert not [name for name in assist if "forecast" in name.lower()]
    (calendar,) = [tool for name, tool in assist.items() if "calendar" in name]
    # HA's calendar tool knows only today and this week; ours takes any dates.
    assert calendar["parameters"]["properties"]["range"]["enum"] == ["today", "week"]
    assert not {"GetWeatherForecast", "GetCalendarEventsInRange"} & set(assist)
    assert DOMAIN in {api.id for api in llm.async_get_apis(hass)}


def test_forecast_and_events_are_summarised_compactly() -> None:
    entries = [
        {
            "datetime": f"2030-01-0{day}T12:00:00+00:00",
            "condition": "sunny",
            "temperature": 1.234,
            "dew_point": 0.5,
            "cloud_coverage": 10,
        }
        for day in range(1, 6)
    ]
    summary = summarise_forecast(entries, "daily", 3)
    assert len(summary) == 3
    assert summary[0]["temperature"] == 1.2
    assert "dew_point" not in summary[0] and "cloud_coverage" not in summary[0]

    events = [
        {"summary": "x" * 500, "start": "2030-01-01", "end": "2030-01-02", "description": "y" * 500}
    ]
    (event,) = summarise_events(events)
    assert len(event["summary"]) == len(event["description"]) == 120
