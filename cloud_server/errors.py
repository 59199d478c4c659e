"""Problem+json errors with stable codes, and the middleware that renders every error.

Handlers raise `ApiError`; anything else becomes a 500 `internal_error` whose body has
no stack trace (the traceback goes to the log, with the same request id).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from homemind_client.models import PROBLEM_CONTENT_TYPE, ErrorCode, FieldError, Problem

from .db.outage import is_database_outage

LOGGER = logging.getLogger(__name__)

REQUEST_ID_KEY = "request_id"
REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

DATABASE_RETRY_AFTER_SECONDS = 2

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error the client should see: a stable `code` (which brings its HTTP status)
    and a human `detail`. `status` overrides the code's own only for `HTTP_ERROR`."""

    def __init__(
        self,
        code: ErrorCode,
        detail: str = "",
        *,
        status: int | None = None,
        title: str | None = None,
        errors: list[FieldError] | None = None,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.status = status or code.status
        self.detail = detail
        self.title = title or _TITLES.get(self.status, "Error")
        self.errors = errors
        self.retry_after = retry_after
        self.headers = dict(headers or {})
        if retry_after is not None:
            self.headers["Retry-After"] = str(retry_after)

    def problem(self, request_id: str | None) -> Problem:
        return Problem(
            type=f"https://homemind.dev/problems/{self.code}",
            title=self.title,
            status=self.status,
            detail=self.detail,
            code=self.code,
            request_id=request_id,
            errors=self.errors,
            retry_after=self.retry_after,
        )


_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    402: "Payment required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Validation error",
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
}

# aiohttp's own HTTP exceptions (routing, body size) mapped to stable codes.
_HTTP_CODES = {
    code.status: code
    for code in (
        ErrorCode.BAD_REQUEST,
        ErrorCode.UNAUTHORIZED,
        ErrorCode.FORBIDDEN,
        ErrorCode.NOT_FOUND,
        ErrorCode.METHOD_NOT_ALLOWED,
        ErrorCode.PAYLOAD_TOO_LARGE,
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    )
}


def validation_error(exc: ValidationError | None = None, detail: str = "") -> ApiError:
    """422 `validation_error` listing each field that failed (without echoing values)."""
    errors = []
    if exc is not None:
        errors = [
            FieldError(loc=[str(p) for p in err["loc"]], msg=err["msg"], type=err["type"])
            for err in exc.errors(include_url=False, include_input=False)
        ]
    return ApiError(
        ErrorCode.VALIDATION_ERROR,
        detail or "The request body is not valid.",
        errors=errors or None,
    )


def database_unavailable() -> ApiError:
    """503 for a database outage (db/outage.py): the transaction was rolled back."""
    return ApiError(
        ErrorCode.DATABASE_UNAVAILABLE,
        "The database is not reachable right now; nothing was changed. Try again shortly.",
        retry_after=DATABASE_RETRY_AFTER_SECONDS,
    )


def problem_response(error: ApiError, request_id: str | None) -> web.Response:
    response = web.json_response(
        error.problem(request_id).to_json_dict(),
        status=error.status,
        content_type=PROBLEM_CONTENT_TYPE,
        headers=error.headers,
    )
    return response


def _request_id(request: web.Request) -> str:
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    return offered if _SAFE_REQUEST_ID.match(offered) else secrets.token_hex(12)


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = _request_id(request)
    request[REQUEST_ID_KEY] = request_id
    try:
        response = await handler(request)
    except ApiError as err:
        response = problem_response(err, request_id)
    except web.HTTPException as err:
        if err.status < 400:
            raise
        code = _HTTP_CODES.get(err.status, ErrorCode.HTTP_ERROR)
        detail = "" if err.status == 413 else (err.reason or "")
        if err.status == 413:
            detail = "The request body is larger than this server accepts."
        response = problem_response(ApiError(code, detail, status=err.status), request_id)
    except Exception as err:
        if is_database_outage(err):
            LOGGER.warning("Database unavailable (request_id=%s): %r", request_id, err)
            response = problem_response(database_unavailable(), request_id)
        else:
            LOGGER.exception("Unhandled error (request_id=%s)", request_id)
            response = problem_response(
                ApiError(ErrorCode.INTERNAL_ERROR, "Something went wrong on our side."),
                request_id,
            )
    return _with_request_id(response, request_id)


def _with_request_id(response: web.StreamResponse, request_id: str) -> web.StreamResponse:
    if not response.prepared:
        response.headers[REQUEST_ID_HEADER] = request_id
    return response


def request_id_of(request: web.Request) -> str | None:
    value: Any = request.get(REQUEST_ID_KEY)
    return value if isinstance(value, str) else None
