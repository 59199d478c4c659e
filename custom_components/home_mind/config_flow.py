"""Config flow of Home Mind: server URL and installation token, checked with the server."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import voluptuous as vol
from homeassistant.config_entries import (
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlow,
)
from homeassistant.const import CONF_LLM_HASS_API, CONF_TOKEN, CONF_URL
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import llm
from homeassistant.helpers.selector import (
    BooleanSelector,
    SelectOptionDict,
    SelectSelector,
    SelectSelectorConfig,
    TemplateSelector,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)

from homemind_client.errors import (
    HomeMindAuthenticationError,
    HomeMindConnectionError,
    HomeMindInvalidResponseError,
    HomeMindNotFoundError,
    HomeMindServerError,
)
from homemind_client.models import InstallationInfo

from . import compat, create_client
from .const import (
    CONF_INSTRUCTIONS,
    CONF_OFFLINE_FALLBACK,
    DEFAULT_OFFLINE_FALLBACK,
    DEFAULT_URL,
    DOMAIN,
    LOGGER,
    NO_LLM_API,
    SETUP_TIMEOUT,
)
from .conversation import llm_api_ids

_TOKEN_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))
_URL_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.URL))


def _user_schema(url: str) -> vol.Schema:
    return vol.Schema(
        {
            vol.Required(CONF_URL, default=url): _URL_SELECTOR,
            vol.Required(CONF_TOKEN): _TOKEN_SELECTOR,
        }
    )


async def _async_validate(
    hass: HomeAssistant, url: str, token: str
) -> tuple[InstallationInfo | None, dict[str, str]]:
    """Ask the server who this token belongs to; errors keyed for the form."""
    try:
        client = create_client(hass, url, token)
    except ValueError:
        return None, {CONF_URL: "invalid_url"}
    try:
        return await client.get_installation(timeout=SETUP_TIMEOUT), {}
    except HomeMindAuthenticationError:
        return None, {"base": "invalid_auth"}
    except (
        HomeMindConnectionError,
        HomeMindInvalidResponseError,
        HomeMindNotFoundError,
        HomeMindServerError,
    ):
        # Unreachable, or the URL does not point at a Home Mind server.
        return None, {"base": "cannot_connect"}
    except Exception:  # any other answer: the form says "unknown", the log says why
        LOGGER.exception("Unexpected error while checking the Home Mind token")
        return None, {"base": "unknown"}


def _clean_url(url: str) -> str:
    return url.strip().rstrip("/")


class HomeMindConfigFlow(ConfigFlow, domain=DOMAIN):
    """Add a Home Mind installation."""

    VERSION = 1
    MINOR_VERSION = 1

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the server and the installation token."""
        errors: dict[str, str] = {}
        url = DEFAULT_URL
        if user_input is not None:
            url = _clean_url(user_input[CONF_URL])
            token = user_input[CONF_TOKEN].strip()
            installation, errors = await _async_validate(self.hass, url, token)
            if installation is not None:
                await self.async_set_unique_id(installation.id)
                self._abort_if_unique_id_configured()
                return self.async_create_entry(
                    title=installation.name,
                    data={CONF_URL: url, CONF_TOKEN: token},
                    options=_default_options(),
                )

        return self.async_show_form(
            step_id="user", data_schema=_user_schema(url), errors=errors or None
        )

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        """The token was refused: ask for a new one."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Check a new token for the same installation."""
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            token = user_input[CONF_TOKEN].strip()
            result, errors = await self._async_update_credentials(
                entry, entry.data[CONF_URL], token
            )
            if result is not None:
                return result

        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=vol.Schema({vol.Required(CONF_TOKEN): _TOKEN_SELECTOR}),
            description_placeholders={"name": entry.title},
            errors=errors or None,
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Move the installation to another server URL or token."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        url = entry.data[CONF_URL]
        if user_input is not None:
            url = _clean_url(user_input[CONF_URL])
            result, errors = await self._async_update_credentials(
                entry, url, user_input[CONF_TOKEN].strip()
            )
            if result is not None:
                return result

        return self.async_show_form(
            step_id="reconfigure", data_schema=_user_schema(url), errors=errors or None
        )

    async def _async_update_credentials(
        self, entry: ConfigEntry[Any], url: str, token: str
    ) -> tuple[ConfigFlowResult | None, dict[str, str]]:
        """Validate and store new credentials; they must belong to the same installation."""
        installation, errors = await _async_validate(self.hass, url, token)
        if installation is None:
            return None, errors
        await self.async_set_unique_id(installation.id)
        # A token of another installation would silently swap the household's memory.
        self._abort_if_unique_id_mismatch(reason="wrong_account")
        return compat.update_entry_and_abort(self, entry, {CONF_URL: url, CONF_TOKEN: token}), {}

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry[Any]) -> OptionsFlow:
        """The options: LLM APIs and instructions."""
        return HomeMindOptionsFlow()


def _default_options() -> dict[str, Any]:
    return {CONF_LLM_HASS_API: [llm.LLM_API_ASSIST]}


class HomeMindOptionsFlow(OptionsFlow):
    """Choose what the agent may control and give it instructions."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """One form; `self.config_entry` is provided by HA (never assigned here)."""
        multiple = compat.supports_multiple_llm_apis()
        if user_input is not None:
            selected = user_input.get(CONF_LLM_HASS_API) or []
            if isinstance(selected, str):
                selected = [selected]
            options: dict[str, Any] = {
                CONF_LLM_HASS_API: [api for api in selected if api != NO_LLM_API],
                CONF_OFFLINE_FALLBACK: bool(
                    user_input.get(CONF_OFFLINE_FALLBACK, DEFAULT_OFFLINE_FALLBACK)
                ),
            }
            if instructions := (user_input.get(CONF_INSTRUCTIONS) or "").strip():
                options[CONF_INSTRUCTIONS] = instructions
            return self.async_create_entry(title="", data=options)

        current = llm_api_ids(self.config_entry.options)
        apis = [
            SelectOptionDict(value=api.id, label=api.name) for api in llm.async_get_apis(self.hass)
        ]
        if multiple:
            api_field: Any = vol.Optional(CONF_LLM_HASS_API, default=current)
            api_selector = SelectSelector(SelectSelectorConfig(options=apis, multiple=True))
        else:
            # HA 2025.4 can give an agent one LLM API only.
            api_field = vol.Optional(
                CONF_LLM_HASS_API, default=current[0] if current else NO_LLM_API
            )
            api_selector = SelectSelector(
                SelectSelectorConfig(
                    options=[SelectOptionDict(value=NO_LLM_API, label="No control"), *apis]
                )
            )
        schema = vol.Schema(
            {
                api_field: api_selector,
                vol.Optional(
                    CONF_INSTRUCTIONS,
                    description={
                        "suggested_value": self.config_entry.options.get(CONF_INSTRUCTIONS, "")
                    },
                ): TemplateSelector(),
                vol.Optional(
                    CONF_OFFLINE_FALLBACK,
                    default=bool(
                        self.config_entry.options.get(
                            CONF_OFFLINE_FALLBACK, DEFAULT_OFFLINE_FALLBACK
                        )
                    ),
                ): BooleanSelector(),
            }
        )
        return self.async_show_form(step_id="init", data_schema=schema)
