"""The one error tree of the client. Every error carries the server's stable `code`
when there was one, so callers can branch on types or on codes.

Messages hold only what the server said (`detail`) or the `code`; never a header,
never the token.
"""

from __future__ import annotations

import email.utils
import math
from datetime import UTC, datetime
from typing import Any, ClassVar

from .models.error_codes import ErrorCode, known_code

# Filled by the classes below as they are defined: each names the codes it stands for.
ERRORS_BY_CODE: dict[ErrorCode, type[HomeMindError]] = {}


class HomeMindError(Exception):
    """Base of every error raised by `homemind_client`.

    `retry_after` (seconds) is set when the server said when to try again. A subclass
    declares the wire codes it stands for with `codes=(ErrorCode.X, ...)`; each code has
    exactly one class (tests/client/test_error_contract.py checks there is one for each).
    """

    codes: ClassVar[tuple[ErrorCode, ...]] = ()

    def __init_subclass__(cls, codes: tuple[ErrorCode, ...] = (), **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.codes = codes
        for code in codes:
            if code in ERRORS_BY_CODE:
                raise TypeError(f"{code} already belongs to {ERRORS_BY_CODE[code].__name__}")
            ERRORS_BY_CODE[code] = cls

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

    @property
    def error_code(self) -> ErrorCode | None:
        """The code as a member of `ErrorCode`; None when absent or unknown to this version."""
        return known_code(self.code)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(detail={self.detail!r}, code={self.code!r}, "
            f"status={self.status!r}, request_id={self.request_id!r})"
        )


class HomeMindConnectionError(HomeMindError):
    """The server could not be reached, or the connection broke."""


class HomeMindTimeoutError(HomeMindConnectionError):
    """The server did not answer (or stopped streaming) within the time allowed."""


class HomeMindAuthenticationError(
    HomeMindError,
    codes=(
        ErrorCode.INVALID_TOKEN,
        ErrorCode.UNAUTHORIZED,
        ErrorCode.INVALID_CREDENTIALS,
        ErrorCode.TOTP_REQUIRED,
        ErrorCode.INVALID_REFRESH_TOKEN,
    ),
):
    """The credential was refused (`invalid_token`, ...): the user must give a new one."""


class HomeMindInstallationRevokedError(
    HomeMindAuthenticationError, codes=(ErrorCode.INSTALLATION_REVOKED,)
):
    """The installation was deleted (`installation_revoked`)."""


class HomeMindSubscriptionRequiredError(HomeMindError, codes=(ErrorCode.SUBSCRIPTION_REQUIRED,)):
    """No active subscription (`subscription_required`)."""


class HomeMindUsageLimitError(HomeMindError, codes=(ErrorCode.USAGE_LIMIT_REACHED,)):
    """The plan's hard message ceiling is reached (`usage_limit_reached`)."""


class HomeMindNoApiKeyError(HomeMindError, codes=(ErrorCode.NO_API_KEY,)):
    """No Anthropic key is configured for this installation (`no_api_key`)."""


class HomeMindRateLimitedError(HomeMindError, codes=(ErrorCode.RATE_LIMITED,)):
    """Too many requests (`rate_limited`); retry after `retry_after` seconds."""


class HomeMindUpstreamError(HomeMindError, codes=(ErrorCode.UPSTREAM_UNAVAILABLE,)):
    """Claude is unavailable (`upstream_unavailable`); `retry_after` when known."""


class HomeMindUpstreamKeyRejectedError(HomeMindError, codes=(ErrorCode.UPSTREAM_REJECTED_KEY,)):
    """Anthropic refused the installation's own key (`upstream_rejected_key`)."""


class HomeMindValidationError(
    HomeMindError,
    codes=(
        ErrorCode.VALIDATION_ERROR,
        ErrorCode.BAD_REQUEST,
        ErrorCode.FORBIDDEN,
        ErrorCode.METHOD_NOT_ALLOWED,
        ErrorCode.PAYLOAD_TOO_LARGE,
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        ErrorCode.HTTP_ERROR,
        ErrorCode.INVALID_RESET_TOKEN,
        ErrorCode.INVALID_LINK,
        ErrorCode.WRONG_PASSWORD,
        ErrorCode.EMAIL_TAKEN,
        ErrorCode.SUBSCRIPTION_EXISTS,
        ErrorCode.NO_BILLING_ACCOUNT,
        ErrorCode.INVALID_SIGNATURE,
        ErrorCode.INVALID_EVENT,
    ),
):
    """The server refused the request as sent (`validation_error` and other 4xx)."""


class HomeMindNotFoundError(HomeMindError, codes=(ErrorCode.NOT_FOUND, ErrorCode.MEMORY_NOT_FOUND)):
    """The object does not exist (or belongs to someone else)."""


class HomeMindServerError(
    HomeMindError,
    codes=(
        ErrorCode.INTERNAL_ERROR,
        ErrorCode.TEMPORARILY_UNAVAILABLE,
        ErrorCode.DATABASE_UNAVAILABLE,
        ErrorCode.MEMORY_UNAVAILABLE,
        ErrorCode.BILLING_UNAVAILABLE,
    ),
):
    """The server (or a service it needs) failed, without a more specific class."""


class HomeMindUpstreamRejectedError(HomeMindServerError, codes=(ErrorCode.UPSTREAM_REJECTED,)):
    """Claude refused the request (`upstream_rejected`), e.g. too long for the model."""


class HomeMindInvalidResponseError(HomeMindError):
    """The server's answer could not be understood (not the protocol we speak)."""


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
    known = known_code(code)
    if known is not None:
        cls = ERRORS_BY_CODE[known]
    elif status is not None:
        cls = error_class_for_status(status)
    else:
        cls = HomeMindServerError
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
    "HomeMindUpstreamRejectedError",
    "HomeMindUsageLimitError",
    "HomeMindValidationError",
    "error_class_for_status",
    "error_for",
    "parse_retry_after",
]
