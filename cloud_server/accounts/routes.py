"""HTTP routes of the accounts component; the logic lives in `service` and `installations`."""

from __future__ import annotations

import logging
from typing import Protocol

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from homemind_client.models import ErrorCode
from homemind_client.models.accounts import (
    ApiKeyStatus,
    ApiKeyUpdate,
    InstallationCreate,
    InstallationCreated,
    InstallationListItem,
    LoginRequest,
    MeResponse,
    PasswordResetConfirm,
    PasswordResetRequest,
    RefreshRequest,
    RegisterRequest,
    TokenResponse,
    UserOut,
)

from ..bodies import json_model, read_model
from ..client_ip import client_ip
from ..db.engine import DB_SESSIONMAKER
from ..db.models import Installation, User
from ..errors import ApiError
from . import flows, service
from . import installations as inst
from .app_keys import SERVER_SECRETS
from .audit import audit
from .installation_info import build_installation_info
from .principal import require_installation, require_user
from .scopes import listed as listed_scopes
from .service import RefreshOutcome, Tokens

LOGGER = logging.getLogger(__name__)


_field_error = flows.field_error


def _user_out(user: User) -> UserOut:
    tier = user.tier if user.tier in ("free", "byok", "managed") else "free"
    return UserOut(id=user.id, email=user.email, name=user.name, tier=tier)


def _token_response(user: User, tokens: service.Tokens) -> TokenResponse:
    return TokenResponse(
        user=_user_out(user),
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_in=tokens.expires_in,
    )


def _list_item(installation: Installation) -> InstallationListItem:
    return InstallationListItem(
        id=installation.id,
        name=installation.name,
        token_hint=installation.token_hint,
        has_api_key=installation.encrypted_api_key is not None,
        key_hint=installation.key_hint,
        last_seen_at=installation.last_seen_at,
        created_at=installation.created_at,
        scopes=listed_scopes(installation.scopes),
    )


async def register(request: web.Request) -> web.Response:
    body = await read_model(request, RegisterRequest)
    user, tokens = await flows.register(
        request.app, body.email, body.password, body.name, ip=client_ip(request)
    )
    return json_model(_token_response(user, tokens), status=201)


async def login(request: web.Request) -> web.Response:
    body = await read_model(request, LoginRequest)
    user, tokens = await flows.login(
        request.app, body.email, body.password, ip=client_ip(request), totp_code=body.totp_code
    )
    return json_model(_token_response(user, tokens))


async def refresh(request: web.Request) -> web.Response:
    body = await read_model(request, RefreshRequest)
    ring = request.app[SERVER_SECRETS].jwt
    async with request.app[DB_SESSIONMAKER].begin() as session:
        outcome, user, tokens = await service.rotate_refresh(
            session, ring, body.refresh_token, ip=client_ip(request)
        )
    # Raised after the transaction: a detected reuse must stay revoked.
    if outcome is not RefreshOutcome.OK or user is None or not isinstance(tokens, Tokens):
        raise ApiError(
            ErrorCode.INVALID_REFRESH_TOKEN, "The refresh token is not valid; log in again."
        )
    return json_model(_token_response(user, tokens))


async def me(request: web.Request) -> web.Response:
    principal = await require_user(request)
    async with request.app[DB_SESSIONMAKER]() as session:
        user = await service.get_user(session, principal.user_id)
    if user is None:
        raise ApiError(ErrorCode.INVALID_TOKEN, "The session has ended; log in again.")
    out = _user_out(user)
    return json_model(MeResponse(**out.model_dump(), created_at=user.created_at))


async def logout(request: web.Request) -> web.Response:
    principal = await require_user(request)
    async with request.app[DB_SESSIONMAKER].begin() as session:
        await service.revoke_session(session, principal.session_id, "logout")
        await audit(session, "logout", user_id=principal.user_id, ip=client_ip(request))
    return web.Response(status=204)


async def password_reset(request: web.Request) -> web.Response:
    body = await read_model(request, PasswordResetRequest)
    await flows.request_password_reset(request.app, body.email, ip=client_ip(request))
    return web.json_response(
        {"status": "accepted", "detail": "If the account exists, a reset link is on its way."},
        status=202,
    )


async def password_reset_confirm(request: web.Request) -> web.Response:
    body = await read_model(request, PasswordResetConfirm)
    await flows.confirm_password_reset(request.app, body.token, body.password)
    return web.Response(status=204)


async def create_installation(request: web.Request) -> web.Response:
    principal = await require_user(request)
    body = await read_model(request, InstallationCreate)
    async with request.app[DB_SESSIONMAKER].begin() as session:
        installation, token = await inst.create_installation(
            session, principal.user_id, body.name, ip=client_ip(request), scopes=body.scopes
        )
    created = InstallationCreated(
        id=installation.id,
        name=installation.name,
        token=token,
        token_hint=installation.token_hint,
        created_at=installation.created_at,
        scopes=listed_scopes(installation.scopes),
    )
    return json_model(created, status=201)


async def list_installations(request: web.Request) -> web.Response:
    principal = await require_user(request)
    async with request.app[DB_SESSIONMAKER]() as session:
        found = await inst.list_installations(session, principal.user_id)
    return json_model([_list_item(i) for i in found])


class _InstallationChange(Protocol):
    async def __call__(
        self, session: AsyncSession, user_id: str, installation_id: str, *, ip: str | None
    ) -> bool: ...


def _not_found() -> ApiError:
    return ApiError(ErrorCode.NOT_FOUND, "No such installation.")


async def _change_installation(request: web.Request, change: _InstallationChange) -> web.Response:
    """Apply `change` to the caller's installation `{id}`: 204, or 404 when it has none."""
    principal = await require_user(request)
    async with request.app[DB_SESSIONMAKER].begin() as session:
        changed = await change(
            session, principal.user_id, request.match_info["id"], ip=client_ip(request)
        )
    if not changed:
        raise _not_found()
    return web.Response(status=204)


async def delete_installation(request: web.Request) -> web.Response:
    return await _change_installation(request, inst.revoke_installation)


async def put_key(request: web.Request) -> web.Response:
    principal = await require_user(request)
    body = await read_model(request, ApiKeyUpdate)
    ring = request.app[SERVER_SECRETS].encryption
    try:
        async with request.app[DB_SESSIONMAKER].begin() as session:
            installation = await inst.set_api_key(
                session,
                ring,
                principal.user_id,
                request.match_info["id"],
                body.api_key,
                ip=client_ip(request),
            )
            hint = installation.key_hint if installation else None
    except inst.ApiKeyFormatError as err:
        raise _field_error("api_key", str(err)) from err
    if installation is None:
        raise _not_found()
    return json_model(ApiKeyStatus(has_api_key=True, key_hint=hint))


async def delete_key(request: web.Request) -> web.Response:
    return await _change_installation(request, inst.delete_api_key)


async def get_installation(request: web.Request) -> web.Response:
    principal = await require_installation(request)
    return json_model(await build_installation_info(request, principal))


def add_routes(app: web.Application) -> None:
    """The accounts API (its resources come from `setup.py`)."""
    app.router.add_post("/api/auth/register", register)
    app.router.add_post("/api/auth/login", login)
    app.router.add_post("/api/auth/refresh", refresh)
    app.router.add_get("/api/auth/me", me)
    app.router.add_post("/api/auth/logout", logout)
    app.router.add_post("/api/auth/password-reset", password_reset)
    app.router.add_post("/api/auth/password-reset/confirm", password_reset_confirm)
    app.router.add_post("/api/installations", create_installation)
    app.router.add_get("/api/installations", list_installations)
    app.router.add_delete("/api/installations/{id}", delete_installation)
    app.router.add_put("/api/installations/{id}/key", put_key)
    app.router.add_delete("/api/installations/{id}/key", delete_key)
    app.router.add_get("/api/installation", get_installation)
