"""Typed async client of the Home Mind cloud API. Imports neither Home Assistant nor the server.

async with aiohttp.ClientSession() as session:
    client = HomeMindClient(session, "https://cloud.example", token)
    async for event in client.chat_stream(ChatRequest(message="hi")):
        ...
"""

from __future__ import annotations

from . import models
from .client import DEFAULT_URL, ChatStreamEvent, HomeMindClient, RetryPolicy, __version__
from .errors import (
    ERRORS_BY_CODE,
    HomeMindAuthenticationError,
    HomeMindConnectionError,
    HomeMindError,
    HomeMindInstallationRevokedError,
    HomeMindInvalidResponseError,
    HomeMindNoApiKeyError,
    HomeMindNotFoundError,
    HomeMindRateLimitedError,
    HomeMindServerError,
    HomeMindSubscriptionRequiredError,
    HomeMindTimeoutError,
    HomeMindUpstreamError,
    HomeMindUpstreamKeyRejectedError,
    HomeMindUpstreamRejectedError,
    HomeMindUsageLimitError,
    HomeMindValidationError,
)

__all__ = [
    "DEFAULT_URL",
    "ERRORS_BY_CODE",
    "ChatStreamEvent",
    "HomeMindAuthenticationError",
    "HomeMindClient",
    "HomeMindConnectionError",
    "HomeMindError",
    "HomeMindInstallationRevokedError",
    "HomeMindInvalidResponseError",
    "HomeMindNoApiKeyError",
    "HomeMindNotFoundError",
    "HomeMindRateLimitedError",
    "HomeMindServerError",
    "HomeMindSubscriptionRequiredError",
    "HomeMindTimeoutError",
    "HomeMindUpstreamError",
    "HomeMindUpstreamKeyRejectedError",
    "HomeMindUpstreamRejectedError",
    "HomeMindUsageLimitError",
    "HomeMindValidationError",
    "RetryPolicy",
    "__version__",
    "models",
]
