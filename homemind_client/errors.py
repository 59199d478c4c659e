"""The one error tree of the client. Every error carries the server's stable `code`
when there was one, so callers can branch on types or on codes.

Messages hold only what the server said (`detail`) or the `code`; never a header,
never the token.
"""

from __future__ import annotations

import email.utils
import math
from datetime import UTC, datetime


class HomeMindError(Exception):
    """Base of every error raised by `homemind_client`.

    `retry_after` (seconds) is set when the server said when to try again.
    """

    def __init__(
        self,
        detail: str = "",
        *,
        code: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail or code or self.__class__.__name__)
        self.detail = detail
        self.code = code
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(detail={self.detail!r}, code={self.code!r}, "
            f"status={self.status!r}, request_id={self.request_id!r})"
        )


class HomeMindConnectionError(HomeMindError):
    """The server could not be reached, or the connection broke."""


class HomeMindTimeoutError(HomeMindConnectionError):
    """The server did not answer (or stopped streaming) within the time allowed."""


class HomeMindAuthenticationError(HomeMindError):
    """The token was refused (`invalid_token`): the user must give a new one."""


class HomeMindInstallationRevokedError(HomeMindAuthenticationError):
    """The installation was deleted (`installation_revoked`)."""


class HomeMindSubscriptionRequiredError(HomeMindError):
    """No active subscription (`subscription_required`)."""


class HomeMindUsageLimitError(HomeMindError):
    """The plan's hard message ceiling is reached (`usage_limit_reached`)."""


class HomeMindNoApiKeyError(HomeMindError):
    """No Anthropic key is configured for this installation (`no_api_key`)."""


class HomeMindRateLimitedError(HomeMindError):
    """Too many requests (`rate_limited`); retry after `retry_after` seconds."""


class HomeMindUpstreamError(HomeMindError):
    """Claude is unavailable (`upstream_unavailable`); `retry_after` when known."""


class HomeMindUpstreamKeyRejectedError(HomeMindError):
    """Anthropic refused the installation's own key (`upstream_rejected_key`)."""


class HomeMindValidationError(HomeMindError):
    """The server refused the request as invalid (`validation_error` and other 4xx)."""


class HomeMindNotFoundError(HomeMindError):
    """The object does not exist (or belongs to someone else)."""


class HomeMindServerError(HomeMindError):
    """The server failed (5xx) without a more specific code."""


class HomeMindInvalidResponseError(HomeMindError):
    """The server's answer could not be understood (not the protocol we speak)."""


ERRORS_BY_CODE: dict[str, type[HomeMindError]] = {
    "invalid_token": HomeMindAuthenticationError,
    "unauthorized": HomeMindAuthenticationError,
    "installation_revoked": HomeMindInstallationRevokedError,
    "subscription_required": HomeMindSubscriptionRequiredError,
    "usage_limit_reached": HomeMindUsageLimitError,
    "no_api_key": HomeMindNoApiKeyError,
    "rate_limited": HomeMindRateLimitedError,
    "upstream_unavailable": HomeMindUpstreamError,
    "upstream_rejected_key": HomeMindUpstreamKeyRejectedError,
    "validation_error": HomeMindValidationError,
    "bad_request": HomeMindValidationError,
    "payload_too_large": HomeMindValidationError,
    "unsupported_media_type": HomeMindValidationError,
    "not_found": HomeMindNotFoundError,
    "internal_error": HomeMindServerError,
    "temporarily_unavailable": HomeMindServerError,
    "memory_not_found": HomeMindNotFoundError,
}


def error_class_for_status(status: int) -> type[HomeMindError]:
    """The fallback class when the server gave no code we know."""
    if status == 401:
        return HomeMindAuthenticationError
    if status == 402:
        return HomeMindSubscriptionRequiredError
    if status == 404:
        return HomeMindNotFoundError
    if status == 429:
        return HomeMindRateLimitedError
    if 400 <= status < 500:
        return HomeMindValidationError
    if status >= 500:
        return HomeMindServerError
    return HomeMindInvalidResponseError


def error_for(
    *,
    status: int | None,
    code: str | None,
    detail: str = "",
    request_id: str | None = None,
    retry_after: float | None = None,
) -> HomeMindError:
    """The error for a problem+json answer (or a stream `error` event, `status=None`).

    The `code` decides when we know it; otherwise the HTTP status does.
    """
    cls = ERRORS_BY_CODE.get(code or "")
    if cls is None:
        cls = error_class_for_status(status) if status is not None else HomeMindServerError
    return cls(detail, code=code, status=status, request_id=request_id, retry_after=retry_after)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a `Retry-After` header: delta-seconds or an HTTP date; None if unusable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # RFC 9110 dates are always GMT.
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, delta)


__all__ = [
    "ERRORS_BY_CODE",
    "HomeMindAuthenticationError",
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
    "HomeMindUsageLimitError",
    "HomeMindValidationError",
    "error_class_for_status",
    "error_for",
    "parse_retry_after",
]
