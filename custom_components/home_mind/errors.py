"""Home Mind errors as sentences a person hears, in their own language."""

from __future__ import annotations

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import translation

from homemind_client.errors import (
    HomeMindAuthenticationError,
    HomeMindConnectionError,
    HomeMindError,
    HomeMindTimeoutError,
)

from .const import DOMAIN


def translation_key_for(err: HomeMindError) -> str:
    """The `exceptions` translation key of a client error.

    Every wire code is its own key (tests/components/home_mind/test_translations.py
    checks each has a sentence in every language). Without a code we know, the error's
    class decides: its first code, or the connection keys for errors of the transport.
    """
    code = err.error_code
    if code is not None:
        return code.value
    if isinstance(err, HomeMindTimeoutError):
        return "timeout"
    if isinstance(err, HomeMindConnectionError):
        return "cannot_connect"
    for cls in type(err).__mro__:
        if issubclass(cls, HomeMindError) and cls.codes:
            return cls.codes[0].value
    return "unknown"


def needs_reauth(err: HomeMindError) -> bool:
    """Only a new installation token fixes this: start HA's reauth flow."""
    return isinstance(err, HomeMindAuthenticationError)


def _language_candidates(language: str | None) -> list[str]:
    """`de-CH` -> `de-CH`, `de`: the exact tag first, then its base language."""
    if not language:
        return []
    candidates = [language]
    base = language.replace("_", "-").split("-", 1)[0]
    if base and base != language:
        candidates.append(base)
    return candidates


async def async_localized_message(hass: HomeAssistant, language: str | None, key: str) -> str:
    """The exception sentence for `key` in `language` (English when not translated).

    HA loads every language on top of the English strings, so a language without its
    own sentence returns the English one; a regional tag falls back to its base language.
    """
    translation_key = f"component.{DOMAIN}.exceptions.{key}.message"
    english = (await translation.async_get_translations(hass, "en", "exceptions", {DOMAIN})).get(
        translation_key, key
    )
    for candidate in _language_candidates(language):
        if candidate == "en":
            break
        strings = await translation.async_get_translations(hass, candidate, "exceptions", {DOMAIN})
        message = strings.get(translation_key)
        if message and message != english:
            return message
    return english


async def async_spoken_error(
    hass: HomeAssistant, language: str | None, key: str
) -> HomeAssistantError:
    """A translated `HomeAssistantError` whose text is already in the user's language.

    `conversation.async_converse` speaks `str(err)`, and HA's own rendering of a
    translation key is English-only (and drops the full stop), so the sentence is looked
    up here and given as the message; the key stays on the error for the UI and logs.
    """
    message = await async_localized_message(hass, language, key)
    return HomeAssistantError(message, translation_domain=DOMAIN, translation_key=key)
