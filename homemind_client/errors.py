"""The one error tree of the client. Every error carries the server's stable `code`
when there was one, so callers can branch on types or on codes."""

from __future__ import annotations


class HomeMindError(Exception):
    """Base of every error raised by `homemind_client`."""

    def __init__(
        self,
        detail: str = "",
        *,
        code: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(detail or code or self.__class__.__name__)
        self.detail = detail
        self.code = code
        self.status = status
        self.request_id = request_id


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

    def __init__(self, detail: str = "", *, retry_after: float | None = None, **kwargs: object):
        super().__init__(detail, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class HomeMindUpstreamError(HomeMindError):
    """Claude is unavailable (`upstream_unavailable`); `retry_after` when known."""

    def __init__(self, detail: str = "", *, retry_after: float | None = None, **kwargs: object):
        super().__init__(detail, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


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
    "not_found": HomeMindNotFoundError,
    "internal_error": HomeMindServerError,
}
