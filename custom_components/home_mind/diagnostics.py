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
    installation = entry.runtime_data.installation
    return {
        "entry": {
            "title": entry.title,
            "version": entry.version,
            "minor_version": entry.minor_version,
            "data": async_redact_data(dict(entry.data), TO_REDACT),
            "options": async_redact_data(dict(entry.options), TO_REDACT),
        },
        "client": {"base_url": entry.runtime_data.client.base_url},
        "installation": installation.model_dump(mode="json", exclude={"extra"}),
    }
