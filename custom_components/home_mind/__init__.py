"""Home Mind: a conversation agent with long-term memory, served by the Home Mind cloud."""

from __future__ import annotations

from dataclasses import dataclass

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_TOKEN, CONF_URL, Platform
from homeassistant.const import __version__ as HA_VERSION
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryNotReady
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.typing import ConfigType

from homemind_client.client import HomeMindClient
from homemind_client.models import InstallationInfo

from .compat import ai_task_platforms
from .const import (
    DOMAIN,
    FIRST_EVENT_TIMEOUT,
    IDLE_TIMEOUT,
    LOGGER,
    REQUEST_TIMEOUT,
)
from .coordinator import HomeMindCoordinator, async_delete_issues
from .llm_api import async_register as async_register_llm_api
from .services import async_setup_services

# The AI Task entity only where HA has AI Task with structure and attachments (2025.8+).
PLATFORMS: list[Platform] = [Platform.CONVERSATION, Platform.SENSOR, *ai_task_platforms()]
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)

INTEGRATION_VERSION = "0.1.0"


@dataclass(slots=True)
class HomeMindData:
    """What the entry's platforms share: the API client and the installation's coordinator."""

    client: HomeMindClient
    coordinator: HomeMindCoordinator

    @property
    def installation(self) -> InstallationInfo:
        """The installation as of the last successful poll."""
        return self.coordinator.data


type HomeMindConfigEntry = ConfigEntry[HomeMindData]


def create_client(hass: HomeAssistant, url: str, token: str) -> HomeMindClient:
    """A client on HA's shared aiohttp session, with voice-friendly timeouts."""
    return HomeMindClient(
        async_get_clientsession(hass),
        url,
        token,
        request_timeout=REQUEST_TIMEOUT,
        first_event_timeout=FIRST_EVENT_TIMEOUT,
        idle_timeout=IDLE_TIMEOUT,
        user_agent=f"HomeMind-HomeAssistant/{INTEGRATION_VERSION} HomeAssistant/{HA_VERSION}",
    )


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the memory actions and the history LLM API, once for all entries."""
    async_setup_services(hass)
    async_register_llm_api(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: HomeMindConfigEntry) -> bool:
    """Check the token with the server, then set up the agent and the sensors."""
    client = create_client(hass, entry.data[CONF_URL], entry.data[CONF_TOKEN])
    coordinator = HomeMindCoordinator(hass, entry, client)
    try:
        # A refused token raises ConfigEntryAuthFailed from here (reauth).
        await coordinator.async_config_entry_first_refresh()
    except ConfigEntryNotReady as err:
        LOGGER.debug("Home Mind is not reachable yet: %s", err.__cause__)
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN, translation_key="cannot_connect"
        ) from err.__cause__

    entry.runtime_data = HomeMindData(client=client, coordinator=coordinator)
    # A disabled or removed entry leaves no issue behind; the next setup raises them again.
    entry.async_on_unload(lambda: async_delete_issues(hass, entry.entry_id))
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    entry.async_on_unload(entry.add_update_listener(_async_update_listener))
    # HA 2025.4 requires a bool here; 2026.11 still accepts it from custom integrations.
    return True


async def _async_update_listener(hass: HomeAssistant, entry: HomeMindConfigEntry) -> None:
    """Options or credentials changed: reload so the agent picks them up."""
    await hass.config_entries.async_reload(entry.entry_id)


async def async_unload_entry(hass: HomeAssistant, entry: HomeMindConfigEntry) -> bool:
    """Unload the conversation agent."""
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)


async def async_remove_entry(hass: HomeAssistant, entry: HomeMindConfigEntry) -> None:
    """The installation is gone from HA: so are its subscription issues."""
    async_delete_issues(hass, entry.entry_id)
