"""LLM tools that call HA services which return data, on exposed entities only.

HA's Assist API reads states and, from 2025.2, today's or this week's calendar events
(`calendar_get_events`; `calendar__get_events` from 2026.9). It has no tool for weather
forecasts (`HassGetWeather` reports the current conditions) and no calendar tool for any
other range. These two fill exactly that gap:

- `GetWeatherForecast`: `weather.get_forecasts` (daily, twice daily or hourly) of an
  exposed weather entity, a few short entries;
- `GetCalendarEventsInRange`: `calendar.get_events` of an exposed calendar between two
  dates (up to `MAX_CALENDAR_DAYS`), for the ranges HA's own tool cannot ask for.

Exposure is HA's rule (`async_should_expose` for the conversation assistant), checked
before the service is called: an unexposed or unknown entity gives the same refusal.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any, Final, cast

import voluptuous as vol
from homeassistant.components.homeassistant.exposed_entities import async_should_expose
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import llm
from homeassistant.util import dt as dt_util
from homeassistant.util.json import JsonObjectType, JsonValueType

from .const import DOMAIN

MAX_FORECAST_ENTRIES: Final = 24
MAX_CALENDAR_DAYS: Final = 62
MAX_EVENTS: Final = 50
MAX_EVENT_TEXT: Final = 120

# The forecast fields worth a token each; the rest (dew point, UV index, ...) stay home.
_FORECAST_FIELDS: Final = (
    "condition",
    "temperature",
    "templow",
    "precipitation_probability",
    "precipitation",
    "wind_speed",
)
_UNIT_ATTRIBUTES: Final = {
    "temperature": "temperature_unit",
    "precipitation": "precipitation_unit",
    "wind_speed": "wind_speed_unit",
}

DATA_SERVICES_PROMPT: Final = (
    "Use GetWeatherForecast for the weather of coming hours or days. Use "
    "GetCalendarEventsInRange for calendar events between two dates (not only today or this "
    "week). Both only know exposed entities."
)


def _tool_result(data: JsonObjectType) -> Any:
    """`llm.ToolResult` where HA has it (2026.10+: a plain dict is logged as deprecated)."""
    wrap = getattr(llm, "ToolResult", None)
    return wrap(data=data) if wrap is not None else data


def _exposed(hass: HomeAssistant, entity_id: str, domain: str) -> None:
    """Refuse what the assistant may not see; unknown and unexposed sound the same."""
    if (
        not entity_id.startswith(f"{domain}.")
        or hass.states.get(entity_id) is None
        or not async_should_expose(hass, "conversation", entity_id)
    ):
        raise HomeAssistantError(f"{entity_id} is not an exposed {domain} entity")


def _only_exposed(hass: HomeAssistant, domain: str) -> str:
    """The one exposed entity of `domain` when the model named none."""
    exposed = [
        state.entity_id
        for state in hass.states.async_all(domain)
        if async_should_expose(hass, "conversation", state.entity_id)
    ]
    if len(exposed) != 1:
        raise HomeAssistantError(
            f"Name the {domain} entity: {len(exposed)} are exposed"
            + (f" ({', '.join(exposed)})" if exposed else "")
        )
    return exposed[0]


def _rounded(value: Any) -> Any:
    return round(value, 1) if isinstance(value, float) else value


def summarise_forecast(
    entries: list[dict[str, Any]], kind: str, limit: int
) -> list[dict[str, Any]]:
    """Each entry as its time and the few fields people ask about."""
    summary: list[dict[str, Any]] = []
    for entry in entries[:limit]:
        when = dt_util.parse_datetime(str(entry.get("datetime", "")))
        item: dict[str, Any] = {}
        if when is not None:
            local = dt_util.as_local(when)
            item["time"] = (
                local.strftime("%a %Y-%m-%d %H:%M")
                if kind == "hourly"
                else local.strftime("%a %Y-%m-%d")
            )
        if kind == "twice_daily" and "is_daytime" in entry:
            item["part"] = "day" if entry["is_daytime"] else "night"
        for field in _FORECAST_FIELDS:
            if entry.get(field) is not None:
                item[field] = _rounded(entry[field])
        summary.append(item)
    return summary


def _event_time(value: Any) -> str:
    """A date for all-day events, a local 'YYYY-MM-DD HH:MM' otherwise."""
    text = str(value)
    if len(text) == 10:  # an all-day event's date (parse_datetime would make it midnight)
        return text
    parsed = dt_util.parse_datetime(text)
    if parsed is None:
        return text
    return dt_util.as_local(parsed).strftime("%Y-%m-%d %H:%M")


def summarise_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each event as summary, start, end and, when given, a short location/description."""
    summary: list[dict[str, Any]] = []
    for event in events[:MAX_EVENTS]:
        item: dict[str, Any] = {
            "summary": str(event.get("summary", ""))[:MAX_EVENT_TEXT],
            "start": _event_time(event.get("start")),
            "end": _event_time(event.get("end")),
        }
        for field in ("location", "description"):
            if event.get(field):
                item[field] = str(event[field])[:MAX_EVENT_TEXT]
        summary.append(item)
    return summary


class GetWeatherForecastTool(llm.Tool):
    """The forecast of an exposed weather entity."""

    name = "GetWeatherForecast"
    description = (
        "Weather forecast of an exposed weather entity: daily (default), twice_daily or "
        "hourly entries with condition, temperature (templow: the low), precipitation and wind."
    )
    integration = DOMAIN  # HA 2026.10+ logs tools without one; ignored before
    parameters = vol.Schema(
        {
            vol.Optional("entity_id"): cv.string,
            vol.Optional("type", default="daily"): vol.In(["daily", "twice_daily", "hourly"]),
            vol.Optional("limit", default=7): vol.All(
                vol.Coerce(int), vol.Range(min=1, max=MAX_FORECAST_ENTRIES)
            ),
        }
    )

    async def async_call(
        self, hass: HomeAssistant, tool_input: llm.ToolInput, llm_context: llm.LLMContext
    ) -> Any:
        """Call `weather.get_forecasts` for one exposed entity; a short summary back."""
        args = self.parameters(tool_input.tool_args)
        entity_id: str = args.get("entity_id") or _only_exposed(hass, "weather")
        _exposed(hass, entity_id, "weather")
        response = await hass.services.async_call(
            "weather",
            "get_forecasts",
            {"entity_id": entity_id, "type": args["type"]},
            blocking=True,
            context=llm_context.context,
            return_response=True,
        )
        entries = cast(dict[str, Any], (response or {}).get(entity_id) or {}).get("forecast", [])
        state = hass.states.get(entity_id)
        attributes = state.attributes if state is not None else {}
        units = {
            field: attributes[unit]
            for field, unit in _UNIT_ATTRIBUTES.items()
            if attributes.get(unit) is not None
        }
        return _tool_result(
            {
                "entity_id": entity_id,
                "name": state.name if state is not None else entity_id,
                "type": args["type"],
                "units": units,
                "forecast": cast(
                    list[JsonValueType],
                    summarise_forecast(list(entries), args["type"], args["limit"]),
                ),
            }
        )


class GetCalendarEventsInRangeTool(llm.Tool):
    """Events of an exposed calendar between two dates."""

    name = "GetCalendarEventsInRange"
    description = (
        "Events of an exposed calendar from start_date to end_date (inclusive, YYYY-MM-DD, "
        f"at most {MAX_CALENDAR_DAYS} days), for ranges other than today or this week."
    )
    integration = DOMAIN
    parameters = vol.Schema(
        {
            vol.Required("entity_id"): cv.string,
            vol.Required("start_date"): cv.date,
            vol.Optional("end_date"): cv.date,
        }
    )

    async def async_call(
        self, hass: HomeAssistant, tool_input: llm.ToolInput, llm_context: llm.LLMContext
    ) -> Any:
        """Call `calendar.get_events` for one exposed calendar; a short list back."""
        args = self.parameters(tool_input.tool_args)
        entity_id: str = args["entity_id"]
        _exposed(hass, entity_id, "calendar")
        first: date = args["start_date"]
        last: date = args.get("end_date") or first
        if last < first or (last - first).days + 1 > MAX_CALENDAR_DAYS:
            raise HomeAssistantError(
                f"end_date must be on or after start_date, at most {MAX_CALENDAR_DAYS} days on"
            )
        zone = dt_util.get_default_time_zone()
        start = datetime.combine(first, time.min, zone)
        end = datetime.combine(last + timedelta(days=1), time.min, zone)
        response = await hass.services.async_call(
            "calendar",
            "get_events",
            {
                "entity_id": entity_id,
                "start_date_time": start.isoformat(),
                "end_date_time": end.isoformat(),
            },
            blocking=True,
            context=llm_context.context,
            return_response=True,
        )
        events = cast(dict[str, Any], (response or {}).get(entity_id) or {}).get("events", [])
        state = hass.states.get(entity_id)
        return _tool_result(
            {
                "entity_id": entity_id,
                "name": state.name if state is not None else entity_id,
                "from": first.isoformat(),
                "to": last.isoformat(),
                "events": cast(list[JsonValueType], summarise_events(list(events))),
                "truncated": len(events) > MAX_EVENTS,
            }
        )


def data_service_tools() -> list[llm.Tool]:
    """The tools of this module, for Home Mind's LLM API."""
    return [GetWeatherForecastTool(), GetCalendarEventsInRangeTool()]
