"""The OpenAPI 3.1 document at `/api/openapi.json`, built from the wire models and the routes.

Schemas come from the pydantic models the client and the server share
(`homemind_client.models`), so the document cannot drift from the wire format. Paths come
from the application's own route table: every registered route must have an entry in
`OPERATIONS` (a route without one is an error when the document is built, and a test
builds it), and an entry whose route is not registered (billing off) is left out.

Errors: every operation lists the problem+json `code`s it can answer, grouped by HTTP
status; each status's schema narrows `code` to those values. Codes a whole class of
operations shares (authentication, JSON bodies, the 500) are added by `_common_errors`.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from homemind_client.models import (
    PROBLEM_CONTENT_TYPE,
    ChatRequest,
    ChatResponse,
    ErrorCode,
    InstallationInfo,
    MemoryCreate,
    MemoryForgetRequest,
    MemoryForgetResult,
    MemoryItem,
    Problem,
)
from homemind_client.models.accounts import (
    AccountDelete,
    ApiKeyStatus,
    ApiKeyUpdate,
    InstallationCreate,
    InstallationCreated,
    InstallationListItem,
    InstallationRename,
    LinkTokenConfirm,
    LoginRequest,
    MagicLinkRequest,
    MeResponse,
    PasswordChange,
    PasswordResetConfirm,
    PasswordResetRequest,
    RefreshRequest,
    RegisterRequest,
    SessionOut,
    TokenResponse,
    TotpEnable,
    TotpSetup,
)
from homemind_client.models.billing import (
    CheckoutRequest,
    SubscriptionResponse,
    UrlResponse,
    UsageResponse,
)
from homemind_client.models.memory import (
    MemoryExport,
    MemoryUpdate,
)

from . import __version__
from .accounts.scopes import InstallationScope

LOGGER = logging.getLogger(__name__)

OPENAPI_PATH = "/api/openapi.json"
_DOCUMENT_KEY: web.AppKey[bytes] = web.AppKey("openapi_document", bytes)

Auth = Literal["none", "user", "installation", "stripe"]
USER_SCHEME = "userBearer"
INSTALLATION_SCHEME = "installationToken"


@dataclass(frozen=True, slots=True)
class Query:
    """A query parameter and its JSON schema."""

    name: str
    schema: dict[str, Any]
    description: str = ""


@dataclass(frozen=True, slots=True)
class Body:
    """A success response: a model, a list of models, an inline schema, or nothing (204)."""

    model: type[BaseModel] | None = None
    many: bool = False
    schema: dict[str, Any] | None = None
    content_type: str = "application/json"
    description: str = "OK"


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    auth: Auth
    request: type[BaseModel] | None = None
    responses: dict[int, Body] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    query: tuple[Query, ...] = ()
    headers: tuple[Query, ...] = ()
    # The raw body is not JSON the server parses with a model (the Stripe webhook).
    raw_body: dict[str, Any] | None = None
    # The installation scope the handler requires (cloud_server/accounts/scopes.py): a
    # token without it gets 403 `forbidden`.
    scope: InstallationScope | None = None


_STATUS = {member.value: member.status for member in ErrorCode}


def status_of(code: str) -> int:
    """The HTTP status of an error code (the wire models' ErrorCode is the one source)."""
    return _STATUS[code]


_NO_CONTENT = {204: Body(description="Done; no body.")}
_ACCEPTED = Body(
    schema={
        "type": "object",
        "required": ["status", "detail"],
        "properties": {"status": {"const": "accepted"}, "detail": {"type": "string"}},
    },
    description="Accepted (the same answer whether or not the account exists).",
)
_RESENT = Body(
    schema={
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"const": "accepted"}},
    },
    description="Accepted (nothing is sent when the address is already confirmed).",
)
_ACCOUNT_EXPORT = Body(
    schema={
        "type": "object",
        "required": ["exported_at", "user", "installations", "sessions", "security_events"],
        "properties": {
            "exported_at": {"type": "string", "format": "date-time"},
            "user": {"type": "object"},
            "installations": {"type": "array", "items": {"type": "object"}},
            "sessions": {"type": "array", "items": {"type": "object"}},
            "security_events": {"type": "array", "items": {"type": "object"}},
            "memory": {"type": "array", "items": {"type": "object"}},
            "billing": {"type": "object"},
        },
    },
    description=(
        "Everything stored about the account (no secret, no hash), served as an "
        "attachment (Content-Disposition)."
    ),
)
_HEALTH = Body(
    schema={
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}, "version": {"type": "string"}},
    }
)
_WEBHOOK_RESULT = Body(
    schema={
        "type": "object",
        "required": ["received"],
        "properties": {"received": {"const": True}, "result": {"type": "string"}},
    }
)
_SSE = Body(
    schema={"type": "string"},
    content_type="text/event-stream",
    description=(
        "Server-sent events: `text_delta` {text}, `tool_call` {id, name, arguments}, "
        "`done` (the same object as POST /api/chat answers) and `error` {code, detail}. "
        "An error after the stream started arrives as an `error` event."
    ),
)


def _int_or_empty(low: int, high: int, default: int) -> dict[str, Any]:
    number = {"type": "integer", "minimum": low, "maximum": high}
    return {"anyOf": [number, {"type": "string", "maxLength": 0}], "default": default}


_MEMORY_QUERY = (
    Query("q", {"type": "string", "maxLength": 500}, "Search text: most relevant first."),
    Query("speaker_id", {"type": "string", "maxLength": 128}, "The household plus one speaker."),
    # An empty value means the default (memory/routes.py `_int_param`), as found by schemathesis.
    Query("limit", _int_or_empty(1, 200, 50)),
    Query("offset", _int_or_empty(0, 1_000_000, 0)),
)

_CHAT_ERRORS = (
    "rate_limited",
    "subscription_required",
    "usage_limit_reached",
    "no_api_key",
    "upstream_unavailable",
    "upstream_rejected_key",
    "upstream_rejected",
    "temporarily_unavailable",  # draining (cloud_server/lifecycle.py)
)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "get",
        "/healthz",
        "healthz",
        "Liveness: the process answers.",
        "service",
        "none",
        responses={200: _HEALTH},
    ),
    Operation(
        "get",
        "/readyz",
        "readyz",
        "Readiness: 200 ready (or degraded: Redis down), 503 not ready or draining.",
        "service",
        "none",
        responses={200: Body(schema={"type": "object"}), 503: Body(schema={"type": "object"})},
    ),
    Operation(
        "get",
        "/metrics",
        "metrics",
        "Prometheus metrics (text format).",
        "service",
        "none",
        responses={200: Body(schema={"type": "string"}, content_type="text/plain")},
    ),
    Operation(
        "get",
        OPENAPI_PATH,
        "openapi",
        "This document.",
        "service",
        "none",
        responses={200: Body(schema={"type": "object"})},
    ),
    # --- accounts ---
    Operation(
        "post",
        "/api/auth/register",
        "register",
        "Create an account and log in.",
        "auth",
        "none",
        RegisterRequest,
        {201: Body(TokenResponse, description="Created")},
        ("email_taken", "rate_limited", "temporarily_unavailable"),
    ),
    Operation(
        "post",
        "/api/auth/login",
        "login",
        "Log in with email and password.",
        "auth",
        "none",
        LoginRequest,
        {200: Body(TokenResponse)},
        ("invalid_credentials", "totp_required", "rate_limited", "temporarily_unavailable"),
    ),
    Operation(
        "post",
        "/api/auth/refresh",
        "refresh",
        "Trade a refresh token for new tokens.",
        "auth",
        "none",
        RefreshRequest,
        {200: Body(TokenResponse)},
        ("invalid_refresh_token",),
    ),
    Operation(
        "get",
        "/api/auth/me",
        "me",
        "The logged-in user.",
        "auth",
        "user",
        responses={200: Body(MeResponse)},
    ),
    Operation(
        "post",
        "/api/auth/logout",
        "logout",
        "End this session.",
        "auth",
        "user",
        responses=_NO_CONTENT,
    ),
    Operation(
        "post",
        "/api/auth/password-reset",
        "password_reset",
        "Mail a password-reset link.",
        "auth",
        "none",
        PasswordResetRequest,
        {202: _ACCEPTED},
        ("rate_limited", "temporarily_unavailable"),
    ),
    Operation(
        "post",
        "/api/auth/password-reset/confirm",
        "password_reset_confirm",
        "Set a new password with a reset token.",
        "auth",
        "none",
        PasswordResetConfirm,
        _NO_CONTENT,
        ("invalid_reset_token",),
    ),
    Operation(
        "post",
        "/api/auth/password",
        "change_password",
        "Change the password (the current one required); every other session ends.",
        "auth",
        "user",
        PasswordChange,
        _NO_CONTENT,
        ("wrong_password",),
    ),
    Operation(
        "get",
        "/api/auth/sessions",
        "list_sessions",
        "The live sessions; `current` marks the caller's own.",
        "auth",
        "user",
        responses={200: Body(SessionOut, many=True)},
    ),
    Operation(
        "delete",
        "/api/auth/sessions",
        "delete_all_sessions",
        "Sign out everywhere, this session too.",
        "auth",
        "user",
        responses=_NO_CONTENT,
    ),
    Operation(
        "delete",
        "/api/auth/sessions/{id}",
        "delete_session",
        "End one session at once.",
        "auth",
        "user",
        responses=_NO_CONTENT,
        errors=("not_found",),
    ),
    Operation(
        "post",
        "/api/auth/magic-link",
        "magic_link",
        "Mail a sign-in link (single use, 10 minutes).",
        "auth",
        "none",
        MagicLinkRequest,
        {202: _ACCEPTED},
        ("rate_limited", "temporarily_unavailable"),
    ),
    Operation(
        "post",
        "/api/auth/magic-link/confirm",
        "magic_link_confirm",
        "Sign in with a mailed link's token.",
        "auth",
        "none",
        LinkTokenConfirm,
        {200: Body(TokenResponse)},
        ("invalid_link", "rate_limited", "temporarily_unavailable"),
    ),
    Operation(
        "post",
        "/api/auth/verify-email",
        "verify_email",
        "Confirm the address with a mailed link's token.",
        "auth",
        "none",
        LinkTokenConfirm,
        _NO_CONTENT,
        ("invalid_link",),
    ),
    Operation(
        "post",
        "/api/auth/verify-email/resend",
        "resend_verification",
        "Mail a new confirmation link while the address is unconfirmed.",
        "auth",
        "user",
        responses={202: _RESENT},
        errors=("rate_limited", "temporarily_unavailable"),
    ),
    Operation(
        "post",
        "/api/auth/totp/setup",
        "totp_setup",
        "A new two-step (TOTP) secret; nothing changes until it is enabled.",
        "auth",
        "user",
        responses={200: Body(TotpSetup)},
    ),
    Operation(
        "post",
        "/api/auth/totp/enable",
        "totp_enable",
        "Turn two-step sign-in on with the setup token and a current code.",
        "auth",
        "user",
        TotpEnable,
        _NO_CONTENT,
    ),
    Operation(
        "delete",
        "/api/auth/totp",
        "totp_disable",
        "Turn two-step sign-in off (the password required).",
        "auth",
        "user",
        AccountDelete,
        _NO_CONTENT,
        ("wrong_password",),
    ),
    Operation(
        "get",
        "/api/account/export",
        "export_account",
        "Everything stored about the account, as JSON.",
        "account",
        "user",
        responses={200: _ACCOUNT_EXPORT},
    ),
    Operation(
        "delete",
        "/api/account",
        "delete_account",
        "Erase the account and all its data (the password required).",
        "account",
        "user",
        AccountDelete,
        _NO_CONTENT,
        ("wrong_password", "billing_unavailable"),
    ),
    Operation(
        "post",
        "/api/installations",
        "create_installation",
        "Connect a Home Assistant instance: the only response with its token.",
        "installations",
        "user",
        InstallationCreate,
        {201: Body(InstallationCreated, description="Created")},
    ),
    Operation(
        "get",
        "/api/installations",
        "list_installations",
        "The account's installations.",
        "installations",
        "user",
        responses={200: Body(InstallationListItem, many=True)},
    ),
    Operation(
        "delete",
        "/api/installations/{id}",
        "delete_installation",
        "Remove an installation; its token stops working at once.",
        "installations",
        "user",
        responses=_NO_CONTENT,
        errors=("not_found",),
    ),
    Operation(
        "patch",
        "/api/installations/{id}",
        "rename_installation",
        "Rename an installation.",
        "installations",
        "user",
        InstallationRename,
        {200: Body(InstallationListItem)},
        ("not_found",),
    ),
    Operation(
        "put",
        "/api/installations/{id}/key",
        "put_installation_key",
        "Store the installation's own Anthropic key (encrypted).",
        "installations",
        "user",
        ApiKeyUpdate,
        {200: Body(ApiKeyStatus)},
        ("not_found",),
    ),
    Operation(
        "delete",
        "/api/installations/{id}/key",
        "delete_installation_key",
        "Forget the installation's Anthropic key.",
        "installations",
        "user",
        responses=_NO_CONTENT,
        errors=("not_found",),
    ),
    Operation(
        "get",
        "/api/installation",
        "get_installation",
        "What an installation token may read about itself.",
        "installations",
        "installation",
        responses={200: Body(InstallationInfo)},
    ),
    # --- chat ---
    Operation(
        "post",
        "/api/chat",
        "chat",
        "One turn, answered as a whole (also an AI Task: mode task).",
        "chat",
        "installation",
        ChatRequest,
        {200: Body(ChatResponse)},
        _CHAT_ERRORS,
        scope="chat",
    ),
    Operation(
        "post",
        "/mcp",
        "mcp",
        "The MCP server (streamable HTTP, stateless, JSON responses): JSON-RPC messages "
        "of the Model Context Protocol; tools memory_search, memory_remember, "
        "memory_forget and chat. Needs a token with the `mcp` scope.",
        "mcp",
        "installation",
        responses={
            200: Body(
                schema={"type": "object"},
                description="The JSON-RPC response (a tool's own refusal is a result "
                "with isError).",
            ),
            202: Body(description="A notification or response was accepted; no body."),
            400: Body(schema={"type": "object"}, description="Not a valid JSON-RPC message."),
            406: Body(
                schema={"type": "object"},
                description="The Accept header must allow application/json and text/event-stream.",
            ),
        },
        errors=("rate_limited",),
        headers=(Query("Accept", {"type": "string"}),),
        raw_body={"type": "object"},
        scope="mcp",
    ),
    Operation(
        "post",
        "/api/chat/stream",
        "chat_stream",
        "One turn, streamed as it is written.",
        "chat",
        "installation",
        ChatRequest,
        {200: _SSE},
        _CHAT_ERRORS,
        scope="chat",
    ),
    # --- memory ---
    Operation(
        "post",
        "/api/memory",
        "create_memory",
        "Remember a fact.",
        "memory",
        "user",
        MemoryCreate,
        {
            201: Body(MemoryItem, description="Created"),
            200: Body(MemoryItem, description="Already remembered"),
        },
        ("memory_unavailable",),
    ),
    Operation(
        "get",
        "/api/memory",
        "list_memories",
        "Remembered facts.",
        "memory",
        "user",
        responses={200: Body(MemoryItem, many=True)},
        errors=("memory_unavailable",),
        query=_MEMORY_QUERY,
    ),
    Operation(
        "delete",
        "/api/memory",
        "delete_all_memories",
        "Forget everything.",
        "memory",
        "user",
        responses=_NO_CONTENT,
        errors=("memory_unavailable",),
    ),
    Operation(
        "get",
        "/api/memory/export",
        "export_memories",
        "Everything, history included.",
        "memory",
        "user",
        responses={200: Body(MemoryExport)},
        errors=("memory_unavailable",),
    ),
    Operation(
        "get",
        "/api/memory/{id}",
        "get_memory",
        "One fact.",
        "memory",
        "user",
        responses={200: Body(MemoryItem)},
        errors=("memory_not_found", "memory_unavailable"),
    ),
    Operation(
        "patch",
        "/api/memory/{id}",
        "update_memory",
        "Correct a fact.",
        "memory",
        "user",
        MemoryUpdate,
        {200: Body(MemoryItem)},
        ("memory_not_found", "memory_unavailable"),
    ),
    Operation(
        "delete",
        "/api/memory/{id}",
        "delete_memory",
        "Forget one fact.",
        "memory",
        "user",
        responses=_NO_CONTENT,
        errors=("memory_not_found", "memory_unavailable"),
    ),
    Operation(
        "post",
        "/api/installation/memory",
        "installation_remember",
        "Remember a fact (Home Assistant's home_mind.remember).",
        "memory",
        "installation",
        MemoryCreate,
        {
            201: Body(MemoryItem, description="Created"),
            200: Body(MemoryItem, description="Already remembered"),
        },
        ("memory_unavailable",),
        scope="memory:write",
    ),
    Operation(
        "post",
        "/api/installation/memory/forget",
        "installation_forget",
        "Forget the best matches (Home Assistant's home_mind.forget).",
        "memory",
        "installation",
        MemoryForgetRequest,
        {200: Body(MemoryForgetResult)},
        ("memory_not_found", "memory_unavailable"),
        scope="memory:write",
    ),
    # --- billing ---
    Operation(
        "get",
        "/api/subscription",
        "get_subscription",
        "What the account may use and why.",
        "billing",
        "user",
        responses={200: Body(SubscriptionResponse)},
    ),
    Operation(
        "get",
        "/api/usage",
        "get_usage",
        "Usage in the current billing period.",
        "billing",
        "user",
        responses={200: Body(UsageResponse)},
    ),
    Operation(
        "post",
        "/api/billing/checkout",
        "checkout",
        "A Stripe Checkout page for a plan.",
        "billing",
        "user",
        CheckoutRequest,
        {200: Body(UrlResponse)},
        ("subscription_exists", "billing_unavailable"),
    ),
    Operation(
        "post",
        "/api/billing/portal",
        "portal",
        "A Stripe customer-portal page.",
        "billing",
        "user",
        responses={200: Body(UrlResponse)},
        errors=("no_billing_account", "billing_unavailable"),
    ),
    Operation(
        "post",
        "/api/billing/webhook",
        "stripe_webhook",
        "Stripe events, signed (Stripe-Signature over the raw body).",
        "billing",
        "stripe",
        responses={200: _WEBHOOK_RESULT},
        errors=("invalid_signature", "invalid_event", "billing_unavailable", "payload_too_large"),
        headers=(Query("Stripe-Signature", {"type": "string"}),),
        raw_body={"type": "object"},
    ),
)


_RETRY_AFTER_CODES = {"rate_limited", "temporarily_unavailable", "database_unavailable"}


def _common_errors(op: Operation) -> tuple[str, ...]:
    codes: list[str] = []
    if op.auth == "user":
        codes.append("invalid_token")
    elif op.auth == "installation":
        codes += ["invalid_token", "installation_revoked"]
    if op.scope is not None:
        codes.append("forbidden")
    if op.request is not None:
        codes += ["validation_error", "payload_too_large", "unsupported_media_type"]
    elif op.query or "{" in op.path:
        # input_text.py: NUL or a lone surrogate in a query or path value.
        codes.append("validation_error")
    if op.path.startswith("/api/") and op.path != OPENAPI_PATH:
        # Every API operation reads or writes the database (cloud_server/db/outage.py).
        codes.append("database_unavailable")
    # aiohttp's HTTP parser refuses malformed requests (bad header bytes) before any handler.
    codes += ["bad_request", "internal_error"]
    return tuple(codes)


def _path_parameters(path: str) -> list[dict[str, Any]]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    return [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names
    ]


def _error_responses(op: Operation) -> dict[str, Any]:
    by_status: dict[int, list[str]] = {}
    for code in (*op.errors, *_common_errors(op)):
        codes = by_status.setdefault(status_of(code), [])
        if code not in codes:
            codes.append(code)
    out: dict[str, Any] = {}
    for status in sorted(by_status):
        codes = by_status[status]
        schema = {
            "allOf": [
                {"$ref": "#/components/schemas/Problem"},
                {"type": "object", "properties": {"code": {"enum": codes}}},
            ]
        }
        response: dict[str, Any] = {
            "description": "Error: " + ", ".join(f"`{c}`" for c in codes),
            "content": {PROBLEM_CONTENT_TYPE: {"schema": schema}},
            "x-error-codes": codes,
        }
        if status == 400:
            # The parser's own 400 is plain text: it is sent before the app sees the request.
            response["content"]["text/plain"] = {"schema": {"type": "string"}}
        if status in (429, 503) and set(codes) & _RETRY_AFTER_CODES:
            response["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before trying again.",
                    "schema": {"type": "string"},
                }
            }
        out[str(status)] = response
    return out


class _Schemas:
    """Collects the models an operation refers to, for one `models_json_schema` call."""

    def __init__(self) -> None:
        self.models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = []

    def ref(self, model: type[BaseModel], mode: Literal["validation", "serialization"]) -> Any:
        if (model, mode) not in self.models:
            self.models.append((model, mode))
        return ("ref", model, mode)


_ID = {"id": "$response.body#/id"}
# OpenAPI links: what a response gives the next call (schemathesis follows them in its
# stateful run). Tokens cannot travel in links; the stateful test carries them.
LINKS: dict[tuple[str, int], dict[str, dict[str, Any]]] = {
    ("register", 201): {
        "LogIn": {
            "operationId": "login",
            "requestBody": {"email": "$request.body#/email", "password": "$request.body#/password"},
        },
    },
    ("login", 200): {
        "Refresh": {
            "operationId": "refresh",
            "requestBody": {"refresh_token": "$response.body#/refresh_token"},
        },
    },
    ("create_installation", 201): {
        "SetKey": {"operationId": "put_installation_key", "parameters": _ID},
        "DeleteKey": {"operationId": "delete_installation_key", "parameters": _ID},
        "Delete": {"operationId": "delete_installation", "parameters": _ID},
        # The new installation's token (shown once in this response) is what chat takes.
        "Chat": {"operationId": "chat"},
        "ChatStream": {"operationId": "chat_stream"},
        "Remember": {"operationId": "installation_remember"},
    },
    ("create_memory", 201): {
        "Get": {"operationId": "get_memory", "parameters": _ID},
        "Update": {"operationId": "update_memory", "parameters": _ID},
        "Delete": {"operationId": "delete_memory", "parameters": _ID},
    },
}


def _operation_object(op: Operation, schemas: _Schemas) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
    }
    if op.auth == "user":
        obj["security"] = [{USER_SCHEME: []}]
    elif op.auth == "installation":
        # OpenAPI 3.1 lets a bearer requirement name the roles it needs: here the scope.
        obj["security"] = [{INSTALLATION_SCHEME: [op.scope] if op.scope else []}]
    else:
        obj["security"] = []
    params = _path_parameters(op.path)
    params += [
        {"name": q.name, "in": "query", "required": False, "schema": q.schema}
        | ({"description": q.description} if q.description else {})
        for q in op.query
    ]
    params += [
        {"name": h.name, "in": "header", "required": False, "schema": h.schema} for h in op.headers
    ]
    if params:
        obj["parameters"] = params
    if op.request is not None:
        obj["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas.ref(op.request, "validation")}},
        }
    elif op.raw_body is not None:
        obj["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": op.raw_body}},
        }
    responses: dict[str, Any] = {}
    for status, body in sorted(op.responses.items()):
        response: dict[str, Any] = {"description": body.description}
        if body.model is not None:
            item = schemas.ref(body.model, "serialization")
            schema = {"type": "array", "items": item} if body.many else item
            response["content"] = {body.content_type: {"schema": schema}}
        elif body.schema is not None:
            response["content"] = {body.content_type: {"schema": body.schema}}
        if (op.operation_id, status) in LINKS:
            response["links"] = LINKS[(op.operation_id, status)]
        responses[str(status)] = response
    responses.update(_error_responses(op))
    obj["responses"] = responses
    return obj


def _refine(schemas: dict[str, Any]) -> None:
    """Rules the validators enforce that pydantic's schema cannot say, stated exactly.

    Exactly: a rule stricter than the server would make the document lie the other way
    (schemathesis checks both directions).
    """
    from zoneinfo import available_timezones

    from .accounts.passwords import MAX_LENGTH, MIN_LENGTH
    from .accounts.service import EMAIL_PATTERN

    chat = schemas.get("ChatRequest")
    if chat is not None:
        # ChatRequest._exactly_one_input: one of `message` / `messages`, not both, not neither.
        chat["oneOf"] = [
            {"required": ["message"], "properties": {"message": {"type": "string"}}},
            {"required": ["messages"], "properties": {"messages": {"type": "array"}}},
        ]
        # ChatRequest._known_time_zone: an IANA zone this server knows.
        chat["properties"]["time_zone"] = {
            "anyOf": [{"enum": sorted(available_timezones())}, {"type": "null"}],
            "default": None,
        }
    register = schemas.get("RegisterRequest")
    confirm = schemas.get("PasswordResetConfirm")
    change = schemas.get("PasswordChange")
    for model, name in ((register, "password"), (confirm, "password"), (change, "new_password")):
        if model is not None:
            # accounts/passwords.py check_password_policy (the common-password list aside).
            model["properties"][name] |= {"minLength": MIN_LENGTH, "maxLength": MAX_LENGTH}
    if register is not None:
        register["properties"]["email"]["pattern"] = EMAIL_PATTERN


def _resolve(node: Any, refs: Mapping[Any, Any]) -> Any:
    if isinstance(node, tuple) and node and node[0] == "ref":
        return copy.deepcopy(refs[(node[1], node[2])])
    if isinstance(node, dict):
        return {k: _resolve(v, refs) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, refs) for v in node]
    return node


def registered_operations(app: web.Application) -> list[tuple[str, str]]:
    """(method, path) of every route the application serves (HEAD of a GET left out)."""
    found: list[tuple[str, str]] = []
    for route in app.router.routes():
        method = route.method.lower()
        if method in ("head", "*"):
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if path is not None:
            found.append((method, path))
    return found


class UndocumentedRouteError(RuntimeError):
    """A route is served that the OpenAPI table does not describe."""


def _must_document(path: str) -> bool:
    # The API and the service endpoints; the dashboard's HTML pages are not API.
    return path.startswith("/api/") or path in ("/healthz", "/readyz", "/metrics")


def undocumented_routes(app: web.Application) -> list[str]:
    table = {(op.method, op.path) for op in OPERATIONS}
    return [
        f"{m.upper()} {p}"
        for m, p in registered_operations(app)
        if (m, p) not in table and _must_document(p)
    ]


def build_document(app: web.Application, *, strict: bool = True) -> dict[str, Any]:
    """The OpenAPI document of exactly the routes `app` serves."""
    table = {(op.method, op.path): op for op in OPERATIONS}
    served = registered_operations(app)
    missing = undocumented_routes(app)
    if missing:
        message = "Routes missing from cloud_server/openapi.py: " + ", ".join(missing)
        if strict:
            raise UndocumentedRouteError(message)
        LOGGER.warning(message)
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for method, path in served:
        op = table.get((method, path))
        if op is not None:
            paths.setdefault(path, {})[method] = _operation_object(op, schemas)
    schemas.ref(Problem, "serialization")
    refs, defs = models_json_schema(schemas.models, ref_template="#/components/schemas/{model}")
    components_schemas = dict(defs.get("$defs", {}))
    _refine(components_schemas)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Home Mind API",
            "version": __version__,
            "description": (
                "Errors are application/problem+json `{type, title, status, detail, code, "
                "request_id}`; each response lists its stable `code`s."
            ),
        },
        "paths": _resolve(paths, refs),
        "components": {
            "schemas": components_schemas,
            "securitySchemes": {
                USER_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A user's access token (15 minutes) from login or refresh.",
                },
                INSTALLATION_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "hm_ + 61 base62 characters (checksummed)",
                    "description": "An installation token, shown once when it is created.",
                },
            },
        },
    }
    return document


async def get_openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[_DOCUMENT_KEY], content_type="application/json")


async def _build_on_startup(app: web.Application) -> None:
    # Not strict here: a route someone forgot to describe must not stop the server (the
    # test suite is strict, tests/server/test_openapi.py).
    app[_DOCUMENT_KEY] = json.dumps(build_document(app, strict=False)).encode()


def setup_openapi(app: web.Application) -> None:
    """Serve the document, built at start-up when every route is registered."""
    app.router.add_get(OPENAPI_PATH, get_openapi)
    app.on_startup.append(_build_on_startup)  # type: ignore[arg-type]
