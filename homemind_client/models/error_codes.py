"""Every error code of the API, defined once: its HTTP status and how a client recovers.

The server raises `ApiError(ErrorCode.X, ...)`, the client builds its error tree from
these members, the integration uses the value as its translation key, and docs/api.md
lists each one (tests/client/test_error_contract.py keeps the four in step). A value is
part of the public contract: never rename one; add new members freely.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self


class Recovery(StrEnum):
    """What a client can do about an error."""

    NONE = "none"
    """Sending the same request again fails again until something else changes."""

    REAUTH = "reauth"
    """The credential is no good: ask the person for a new token or password."""

    RETRY = "retry"
    """Refused before anything was done: the same request may be sent again."""

    RETRY_AFTER = "retry_after"
    """As `RETRY`, and the answer's `Retry-After` says how long to wait first."""


class ErrorCode(StrEnum):
    """The stable `code` of a problem+json answer or a stream `error` event."""

    status: int
    recovery: Recovery
    meaning: str

    def __new__(cls, value: str, status: int, recovery: Recovery, meaning: str) -> Self:
        member = str.__new__(cls, value)
        member._value_ = value
        member.status = status
        member.recovery = recovery
        member.meaning = meaning
        return member

    @property
    def retryable(self) -> bool:
        """Nothing was done: sending the same request again is safe."""
        return self.recovery in (Recovery.RETRY, Recovery.RETRY_AFTER)

    @property
    def reauth(self) -> bool:
        """Only a new credential helps (for the integration: HA's reauth flow)."""
        return self.recovery is Recovery.REAUTH

    # Credentials.
    INVALID_TOKEN = (
        "invalid_token",
        401,
        Recovery.REAUTH,
        "The installation token or access token is missing, malformed, expired or revoked.",
    )
    INSTALLATION_REVOKED = (
        "installation_revoked",
        401,
        Recovery.REAUTH,
        "The installation this token belongs to was deleted.",
    )
    UNAUTHORIZED = (
        "unauthorized",
        401,
        Recovery.REAUTH,
        "The request needs credentials it did not carry.",
    )
    INVALID_CREDENTIALS = (
        "invalid_credentials",
        401,
        Recovery.REAUTH,
        "The email or password is not correct.",
    )
    TOTP_REQUIRED = (
        "totp_required",
        401,
        Recovery.REAUTH,
        "Login: the password is right and the account has two-step sign-in: send `totp_code`.",
    )
    INVALID_REFRESH_TOKEN = (
        "invalid_refresh_token",
        401,
        Recovery.REAUTH,
        "The refresh token is unknown, expired or was already used: log in again.",
    )
    INVALID_RESET_TOKEN = (
        "invalid_reset_token",
        400,
        Recovery.NONE,
        "The password-reset link is unknown, expired or was already used.",
    )
    INVALID_LINK = (
        "invalid_link",
        400,
        Recovery.NONE,
        "The mailed sign-in or verification link is unknown, expired, used or from "
        "another browser.",
    )
    WRONG_PASSWORD = (
        "wrong_password",
        403,
        Recovery.NONE,
        "Password change or account deletion: the password given to confirm it is not correct.",
    )
    FORBIDDEN = ("forbidden", 403, Recovery.NONE, "The credentials may not do this.")

    # Plan and keys.
    SUBSCRIPTION_REQUIRED = (
        "subscription_required",
        402,
        Recovery.NONE,
        "The account has no active subscription (hosted service).",
    )
    USAGE_LIMIT_REACHED = (
        "usage_limit_reached",
        402,
        Recovery.NONE,
        "The plan's hard message ceiling for this billing period is reached.",
    )
    NO_API_KEY = (
        "no_api_key",
        409,
        Recovery.NONE,
        "No Anthropic API key is configured for this installation (nor on the server).",
    )

    # Throttling and availability.
    RATE_LIMITED = (
        "rate_limited",
        429,
        Recovery.RETRY_AFTER,
        "Too many requests; wait the `Retry-After` seconds.",
    )
    TEMPORARILY_UNAVAILABLE = (
        "temporarily_unavailable",
        503,
        Recovery.RETRY_AFTER,
        "A dependency of this request (e.g. Redis for sign-in throttling) is down.",
    )
    DATABASE_UNAVAILABLE = (
        "database_unavailable",
        503,
        Recovery.RETRY_AFTER,
        "The server's database is unreachable, locked or full; the request changed nothing.",
    )
    UPSTREAM_UNAVAILABLE = (
        "upstream_unavailable",
        503,
        Recovery.RETRY_AFTER,
        "Claude is busy or unreachable; refused before any model output.",
    )
    UPSTREAM_REJECTED_KEY = (
        "upstream_rejected_key",
        502,
        Recovery.NONE,
        "Anthropic refused the installation's own API key.",
    )
    UPSTREAM_REJECTED = (
        "upstream_rejected",
        502,
        Recovery.NONE,
        "Claude refused the request (e.g. it is too long for the model).",
    )
    MEMORY_UNAVAILABLE = (
        "memory_unavailable",
        503,
        Recovery.NONE,
        "The memory store is not reachable; a person may try again later.",
    )
    BILLING_UNAVAILABLE = (
        "billing_unavailable",
        503,
        Recovery.NONE,
        "Stripe is not reachable or billing is not configured for this action.",
    )
    INTERNAL_ERROR = (
        "internal_error",
        500,
        Recovery.NONE,
        "The server failed; the log has the details under the same `request_id`.",
    )

    # The request itself.
    VALIDATION_ERROR = (
        "validation_error",
        422,
        Recovery.NONE,
        "The body or a query parameter is not valid; `errors`, when given, names each field.",
    )
    BAD_REQUEST = ("bad_request", 400, Recovery.NONE, "The HTTP request is malformed.")
    NOT_FOUND = (
        "not_found",
        404,
        Recovery.NONE,
        "No such path or object (another account's object is not found either).",
    )
    METHOD_NOT_ALLOWED = (
        "method_not_allowed",
        405,
        Recovery.NONE,
        "The path exists but not with this HTTP method.",
    )
    PAYLOAD_TOO_LARGE = (
        "payload_too_large",
        413,
        Recovery.NONE,
        "The body is larger than the server accepts.",
    )
    UNSUPPORTED_MEDIA_TYPE = (
        "unsupported_media_type",
        415,
        Recovery.NONE,
        "The body is not `application/json`.",
    )
    HTTP_ERROR = (
        "http_error",
        400,
        Recovery.NONE,
        "Any other HTTP-level refusal; `status` is the one HTTP gave.",
    )
    MEMORY_NOT_FOUND = (
        "memory_not_found",
        404,
        Recovery.NONE,
        "No remembered fact has this id, or none matches what to forget.",
    )
    EMAIL_TAKEN = (
        "email_taken",
        409,
        Recovery.NONE,
        "An account with this email exists.",
    )

    # Billing.
    SUBSCRIPTION_EXISTS = (
        "subscription_exists",
        409,
        Recovery.NONE,
        "The account already has a subscription; change it in the billing portal.",
    )
    NO_BILLING_ACCOUNT = (
        "no_billing_account",
        409,
        Recovery.NONE,
        "The account has no billing history yet, so there is no portal to open.",
    )
    INVALID_SIGNATURE = (
        "invalid_signature",
        400,
        Recovery.NONE,
        "A Stripe webhook's `Stripe-Signature` is missing or does not match the body.",
    )
    INVALID_EVENT = (
        "invalid_event",
        400,
        Recovery.NONE,
        "A Stripe webhook's body is not a Stripe event.",
    )


_BY_VALUE: dict[str, ErrorCode] = {member.value: member for member in ErrorCode}


def known_code(code: str | None) -> ErrorCode | None:
    """The member for a code a server sent; None for a code this version does not know.

    (Use this rather than `ErrorCode(value)`, whose signature is the members' tuple.)
    """
    return _BY_VALUE.get(code) if code is not None else None


__all__ = ["ErrorCode", "Recovery", "known_code"]
