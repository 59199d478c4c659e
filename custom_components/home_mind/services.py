"""The `home_mind.remember` and `home_mind.forget` actions, for automations and scripts.

Registered once in `async_setup` (not per entry), so an automation that uses them is
valid even while the entry is still loading; a call then says which entry is not ready.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import voluptuous as vol
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import config_validation as cv

from homemind_client.errors import HomeMindError
from homemind_client.models import ErrorCode
from homemind_client.models.memory import MAX_MEMORY_CHARS, MemoryItem

from .const import DOMAIN, LOGGER, REQUEST_TIMEOUT
from .errors import needs_reauth, translation_key_for

if TYPE_CHECKING:
    from . import HomeMindConfigEntry

SERVICE_REMEMBER: Final = "remember"
SERVICE_FORGET: Final = "forget"

ATTR_CONFIG_ENTRY_ID: Final = "config_entry_id"
ATTR_CONTENT: Final = "content"
ATTR_CATEGORY: Final = "category"
ATTR_PERSON: Final = "person"
ATTR_QUERY: Final = "query"

_TEXT = vol.All(cv.string, str.strip)

REMEMBER_SCHEMA: Final = vol.Schema(
    {
        vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string,
        vol.Required(ATTR_CONTENT): vol.All(_TEXT, vol.Length(min=1, max=MAX_MEMORY_CHARS)),
        vol.Optional(ATTR_CATEGORY): vol.All(_TEXT, vol.Length(min=1, max=50)),
        vol.Optional(ATTR_PERSON): cv.entity_domain("person"),
    }
)
FORGET_SCHEMA: Final = vol.Schema(
    {
        vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string,
        vol.Required(ATTR_QUERY): vol.All(_TEXT, vol.Length(min=1, max=500)),
        vol.Optional(ATTR_PERSON): cv.entity_domain("person"),
    }
)


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the memory actions (once, for every entry)."""
    hass.services.async_register(
        DOMAIN,
        SERVICE_REMEMBER,
        _async_remember,
        schema=REMEMBER_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )
    hass.services.async_register(
        DOMAIN,
        SERVICE_FORGET,
        _async_forget,
        schema=FORGET_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )


def _validation_error(key: str, **placeholders: str) -> ServiceValidationError:
    return ServiceValidationError(
        translation_domain=DOMAIN,
        translation_key=key,
        translation_placeholders=placeholders or None,
    )


def _loaded_entry(hass: HomeAssistant, call: ServiceCall) -> HomeMindConfigEntry:
    """The entry the call is for: the given one, or the only one loaded."""
    entry_id: str | None = call.data.get(ATTR_CONFIG_ENTRY_ID)
    if entry_id is None:
        loaded = hass.config_entries.async_loaded_entries(DOMAIN)
        if not loaded:
            raise _validation_error("no_loaded_entry")
        if len(loaded) > 1:
            raise _validation_error("entry_required")
        entry: HomeMindConfigEntry = loaded[0]
        return entry
    found = hass.config_entries.async_get_entry(entry_id)
    if found is None or found.domain != DOMAIN:
        raise _validation_error("entry_not_found", entry_id=entry_id)
    if found.state is not ConfigEntryState.LOADED:
        raise _validation_error("entry_not_loaded", name=found.title)
    return found


def _speaker_id(hass: HomeAssistant, call: ServiceCall) -> str | None:
    """The HA user behind the `person` (the chat's speaker id); None: the household."""
    person: str | None = call.data.get(ATTR_PERSON)
    if person is None:
        return None
    state = hass.states.get(person)
    if state is None:
        raise _validation_error("person_not_found", person=person)
    user_id = state.attributes.get("user_id")
    if not isinstance(user_id, str) or not user_id:
        # Facts of a person are keyed by their HA user, as in the conversation.
        raise _validation_error("person_without_user", person=state.name)
    return user_id


def _client_error(hass: HomeAssistant, entry: HomeMindConfigEntry, err: HomeMindError) -> Exception:
    key = translation_key_for(err)
    LOGGER.warning(
        "Home Mind memory request failed (%s, status %s, request %s)",
        err.code or key,
        err.status,
        err.request_id,
    )
    if needs_reauth(err):
        entry.async_start_reauth(hass)
    return HomeAssistantError(translation_domain=DOMAIN, translation_key=key)


def _item(item: MemoryItem) -> dict[str, Any]:
    return item.model_dump(mode="json")


async def _async_remember(call: ServiceCall) -> ServiceResponse:
    """Store a fact for the household or one person; returns what is remembered."""
    hass = call.hass
    entry = _loaded_entry(hass, call)
    speaker_id = _speaker_id(hass, call)
    try:
        item = await entry.runtime_data.client.remember(
            call.data[ATTR_CONTENT],
            category=call.data.get(ATTR_CATEGORY),
            speaker_id=speaker_id,
            timeout=REQUEST_TIMEOUT,
        )
    except HomeMindError as err:
        raise _client_error(hass, entry, err) from err
    return {"memory": _item(item)}


async def _async_forget(call: ServiceCall) -> ServiceResponse:
    """Forget the facts that best match the query; returns what was forgotten."""
    hass = call.hass
    entry = _loaded_entry(hass, call)
    speaker_id = _speaker_id(hass, call)
    query: str = call.data[ATTR_QUERY]
    try:
        gone = await entry.runtime_data.client.forget(
            query, speaker_id=speaker_id, timeout=REQUEST_TIMEOUT
        )
    except HomeMindError as err:
        if err.error_code is ErrorCode.MEMORY_NOT_FOUND:
            raise _validation_error("nothing_to_forget", query=query) from err
        raise _client_error(hass, entry, err) from err
    return {"forgotten": [_item(item) for item in gone]}
