"""Diagnostics of a Home Mind entry, with the token (and the user's instructions) redacted."""

from __future__ import annotations

from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_TOKEN
from homeassistant.core import HomeAssistant

from . import HomeMindConfigEntry
from .const import CONF_INSTRUCTIONS

TO_REDACT = {CONF_TOKEN, CONF_INSTRUCTIONS}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: HomeMindConfigEntry
) -> dict[str, Any]:
    """What support needs to see: never the installation token."""
    coordinator = entry.runtime_data.coordinator
    error = coordinator.last_exception
    interval = coordinator.update_interval
    diagnostics = {
        "entry": {
            "title": entry.title,
            "version": entry.version,
            "minor_version": entry.minor_version,
            "data": dict(entry.data),
            "options": dict(entry.options),
        },
        "client": {"base_url": entry.runtime_data.client.base_url},
        "coordinator": {
            # False while the server cannot be reached (the sensors are then unavailable).
            "last_update_success": coordinator.last_update_success,
            # The client's messages name the server and the failure, never the token.
            "last_error": f"{type(error).__name__}: {error}" if error is not None else None,
            "update_interval_seconds": interval.total_seconds() if interval else None,
            # The last poll that worked: plan, subscription and usage (kept through failures).
            "data": coordinator.data.model_dump(mode="json", exclude={"extra"}),
        },
    }
    # Over everything, so a token never slips out through a field added later.
    redacted: dict[str, Any] = async_redact_data(diagnostics, TO_REDACT)
    return redacted
