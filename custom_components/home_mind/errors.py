"""Home Mind errors as sentences a person hears, in their own language."""

from __future__ import annotations

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import translation

from homemind_client.errors import (
    HomeMindAuthenticationError,
    HomeMindConnectionError,
    HomeMindError,
    HomeMindInstallationRevokedError,
    HomeMindNoApiKeyError,
    HomeMindRateLimitedError,
    HomeMindSubscriptionRequiredError,
    HomeMindTimeoutError,
    HomeMindUpstreamError,
    HomeMindUpstreamKeyRejectedError,
    HomeMindUsageLimitError,
    HomeMindValidationError,
)

from .const import DOMAIN

# Most specific first: a revoked installation is also an authentication error, and a
# timeout is also a connection error.
_TRANSLATION_KEYS: tuple[tuple[type[HomeMindError], str], ...] = (
    (HomeMindInstallationRevokedError, "installation_revoked"),
    (HomeMindAuthenticationError, "invalid_token"),
    (HomeMindSubscriptionRequiredError, "subscription_required"),
    (HomeMindUsageLimitError, "usage_limit_reached"),
    (HomeMindNoApiKeyError, "no_api_key"),
    (HomeMindRateLimitedError, "rate_limited"),
    (HomeMindUpstreamKeyRejectedError, "upstream_rejected_key"),
    (HomeMindUpstreamError, "upstream_unavailable"),
    (HomeMindValidationError, "validation_error"),
    (HomeMindTimeoutError, "timeout"),
    (HomeMindConnectionError, "cannot_connect"),
)

# The errors only a new installation token can fix: they start HA's reauth flow.
REAUTH_KEYS = frozenset({"invalid_token", "installation_revoked"})


def translation_key_for(err: HomeMindError) -> str:
    """The `exceptions` translation key of a client error."""
    for error_type, key in _TRANSLATION_KEYS:
        if isinstance(err, error_type):
            return key
    return "unknown"


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
