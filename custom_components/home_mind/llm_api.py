"""Home Mind's own LLM API: tools HA's Assist API lacks, selectable next to Assist.

`GetEntityHistory` summarises the recorded states of one exposed entity over a range in a
few buckets (min/max/mean for numbers, the dominant state for the rest), so a week of a
temperature sensor fits in a few hundred tokens. Exposure is HA's own rule
(`async_should_expose` for the conversation assistant): nothing unexposed is readable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, cast

import voluptuous as vol
from homeassistant.components.homeassistant.exposed_entities import async_should_expose
from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import HomeAssistant, State
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import llm
from homeassistant.helpers.recorder import get_instance
from homeassistant.util import dt as dt_util
from homeassistant.util.json import JsonObjectType, JsonValueType

from .automations import API_PROMPT as AUTOMATIONS_PROMPT
from .automations import automation_tools
from .const import DOMAIN
from .data_services import DATA_SERVICES_PROMPT, data_service_tools

API_ID: Final = DOMAIN
API_NAME: Final = "Home Mind history"
MAX_HOURS: Final = 24 * 14
MAX_BUCKETS: Final = 24

_API_PROMPT: Final = (
    "Use GetEntityHistory for questions about how an entity changed over time "
    "(trends, averages, when something was on). It only knows exposed entities."
)


@dataclass(slots=True)
class _Span:
    """A state and how long it lasted inside one bucket."""

    state: str
    seconds: float


def summarise(
    states: Sequence[State], start: datetime, end: datetime, buckets: int
) -> list[dict[str, Any]]:
    """Split [start, end) into `buckets` equal parts; describe each one briefly."""
    width = (end - start) / buckets
    result: list[dict[str, Any]] = []
    for index in range(buckets):
        lo, hi = start + width * index, start + width * (index + 1)
        spans: list[_Span] = []
        for position, state in enumerate(states):
            begin = max(state.last_changed, lo)
            until = states[position + 1].last_changed if position + 1 < len(states) else end
            finish = min(until, hi)
            if finish > begin and state.state not in (STATE_UNAVAILABLE, STATE_UNKNOWN):
                spans.append(_Span(state.state, (finish - begin).total_seconds()))
        entry: dict[str, Any] = {"from": lo.isoformat(timespec="minutes")}
        numbers = [(_number(span.state), span.seconds) for span in spans]
        if spans and all(value is not None for value, _ in numbers):
            values = [(value, seconds) for value, seconds in numbers if value is not None]
            total = sum(seconds for _, seconds in values)
            entry["min"] = round(min(value for value, _ in values), 2)
            entry["max"] = round(max(value for value, _ in values), 2)
            entry["mean"] = round(sum(value * seconds for value, seconds in values) / total, 2)
        elif spans:
            durations: dict[str, float] = {}
            for span in spans:
                durations[span.state] = durations.get(span.state, 0.0) + span.seconds
            entry["state"] = max(durations, key=durations.__getitem__)
            entry["changes"] = sum(1 for state in states if lo <= state.last_changed < hi)
        else:
            entry["state"] = "no data"
        result.append(entry)
    return result


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


class GetEntityHistoryTool(llm.Tool):
    """The recorded history of one exposed entity, in buckets."""

    name = "GetEntityHistory"
    description = (
        "Recorded history of one exposed entity over the last hours, summarised in buckets: "
        "min/max/mean for numeric states, else the state it was in most of the time."
    )
    integration = DOMAIN  # HA 2026.10+ logs tools without one; ignored before
    parameters = vol.Schema(
        {
            vol.Required("entity_id"): cv.string,
            vol.Optional("hours", default=24): vol.All(
                vol.Coerce(int), vol.Range(min=1, max=MAX_HOURS)
            ),
            vol.Optional("buckets", default=8): vol.All(
                vol.Coerce(int), vol.Range(min=1, max=MAX_BUCKETS)
            ),
        }
    )

    async def async_call(
        self, hass: HomeAssistant, tool_input: llm.ToolInput, llm_context: llm.LLMContext
    ) -> JsonObjectType:
        """Read the recorder in its executor; refuse unexposed entities."""
        args = self.parameters(tool_input.tool_args)
        entity_id: str = args["entity_id"]
        # The same answer for "unexposed" and "does not exist": nothing leaks either way.
        if hass.states.get(entity_id) is None or not async_should_expose(
            hass, "conversation", entity_id
        ):
            raise HomeAssistantError(f"{entity_id} is not an exposed entity")
        if "recorder" not in hass.config.components:
            raise HomeAssistantError("The recorder is not running, so there is no history")
        # Imported on use: the recorder is optional (an after-dependency only).
        from homeassistant.components.recorder import history

        end = dt_util.utcnow()
        start = end - timedelta(hours=args["hours"])
        fetch: Callable[[], dict[str, list[State]]] = lambda: history.state_changes_during_period(  # noqa: E731
            hass, start, end, entity_id, no_attributes=True, include_start_time_state=True
        )
        changes = await get_instance(hass).async_add_executor_job(fetch)
        states = changes.get(entity_id, [])
        current = hass.states.get(entity_id)
        return {
            "entity_id": entity_id,
            "name": current.name if current else entity_id,
            "unit": (current.attributes.get("unit_of_measurement") if current else None),
            "buckets": cast(list[JsonValueType], summarise(states, start, end, args["buckets"])),
        }


class HomeMindLLMAPI(llm.API):
    """Registered once; users pick it next to Assist in the options."""

    def __init__(self, hass: HomeAssistant) -> None:
        super().__init__(hass=hass, id=API_ID, name=API_NAME)

    async def async_get_api_instance(self, llm_context: llm.LLMContext) -> llm.APIInstance:
        """The history, data-service (data_services.py) and automation tools for this turn."""
        return llm.APIInstance(
            api=self,
            api_prompt=f"{_API_PROMPT} {DATA_SERVICES_PROMPT}\n{AUTOMATIONS_PROMPT}",
            llm_context=llm_context,
            tools=[GetEntityHistoryTool(), *data_service_tools(), *automation_tools()],
        )


def async_register(hass: HomeAssistant) -> Callable[[], None]:
    """Register the API (once per HA start); returns the unregister callback."""
    return llm.async_register_api(hass, HomeMindLLMAPI(hass))
