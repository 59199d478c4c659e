"""JSON API of the account itself (shared with the dashboard, which calls the same code).

- `POST /api/auth/password` `{current_password, new_password}` → 204; other sessions end.
- `GET /api/auth/sessions` → `[{id, created_at, expires_at, current}]`;
  `DELETE /api/auth/sessions/{id}` → 204; `DELETE /api/auth/sessions` → 204 (everywhere).
- `POST /api/auth/magic-link` `{email}` → 202 always; `POST /api/auth/magic-link/confirm`
  `{token}` → 200 with tokens, as a login.
- `POST /api/auth/verify-email` `{token}` → 204; `POST /api/auth/verify-email/resend` → 202.
- `GET /api/account/export` → everything as JSON; `DELETE /api/account` `{password}` → 204.
- `PATCH /api/installations/{id}` `{name}` → 200, the renamed installation.
- `POST /api/auth/totp/setup` → `{secret, otpauth_uri, setup_token}`; `POST
  /api/auth/totp/enable` `{setup_token, code}` → 204; `DELETE /api/auth/totp` `{password}` → 204.
"""

from __future__ import annotations

from aiohttp import web

from homemind_client.models import ErrorCode
from homemind_client.models.accounts import (
    AccountDelete,
    InstallationRename,
    LinkTokenConfirm,
    MagicLinkRequest,
    PasswordChange,
    SessionOut,
    TotpEnable,
    TotpSetup,
)

from ..bodies import json_model, read_model
from ..client_ip import client_ip
from ..db.engine import DB_SESSIONMAKER
from ..errors import ApiError
from . import flows, lifecycle
from . import installations as inst
from .principal import require_user
from .routes import _list_item, _token_response


async def change_password(request: web.Request) -> web.Response:
    principal = await require_user(request)
    body = await read_model(request, PasswordChange)
    await lifecycle.change_password(
        request.app,
        principal.user_id,
        body.current_password,
        body.new_password,
        keep_session=principal.session_id,
    )
    return web.Response(status=204)


async def list_sessions(request: web.Request) -> web.Response:
    principal = await require_user(request)
    found = await lifecycle.active_sessions(request.app, principal.user_id)
    return json_model(
        [
            SessionOut(
                id=s.id,
                created_at=s.created_at,
                expires_at=s.expires_at,
                current=s.id == principal.session_id,
            )
            for s in found
        ]
    )


async def delete_session(request: web.Request) -> web.Response:
    principal = await require_user(request)
    if not await lifecycle.end_session(request.app, principal.user_id, request.match_info["id"]):
        raise ApiError(ErrorCode.NOT_FOUND, "No such session.")
    return web.Response(status=204)


async def delete_all_sessions(request: web.Request) -> web.Response:
    principal = await require_user(request)
    await lifecycle.end_all_sessions(request.app, principal.user_id)
    return web.Response(status=204)


async def magic_link(request: web.Request) -> web.Response:
    body = await read_model(request, MagicLinkRequest)
    await flows.request_magic_link(request.app, body.email, ip=client_ip(request))
    return web.json_response({"status": "accepted", "detail": flows.LINK_SENT}, status=202)


async def magic_link_confirm(request: web.Request) -> web.Response:
    body = await read_model(request, LinkTokenConfirm)
    user, tokens = await flows.confirm_magic_link(request.app, body.token, ip=client_ip(request))
    return json_model(_token_response(user, tokens))


async def verify_email(request: web.Request) -> web.Response:
    body = await read_model(request, LinkTokenConfirm)
    await flows.verify_email(request.app, body.token)
    return web.Response(status=204)


async def resend_verification(request: web.Request) -> web.Response:
    principal = await require_user(request)
    await flows.resend_verification(request.app, principal.user_id)
    return web.json_response({"status": "accepted"}, status=202)


async def export_account(request: web.Request) -> web.Response:
    principal = await require_user(request)
    data = await lifecycle.export_account(request.app, principal.user_id)
    return web.json_response(
        data, headers={"Content-Disposition": 'attachment; filename="homemind-account.json"'}
    )


async def delete_account(request: web.Request) -> web.Response:
    principal = await require_user(request)
    body = await read_model(request, AccountDelete)
    await lifecycle.delete_account(request.app, principal.user_id, body.password)
    return web.Response(status=204)


async def rename_installation(request: web.Request) -> web.Response:
    principal = await require_user(request)
    body = await read_model(request, InstallationRename)
    async with request.app[DB_SESSIONMAKER].begin() as session:
        found = await inst.rename_installation(
            session, principal.user_id, request.match_info["id"], body.name, ip=client_ip(request)
        )
        item = _list_item(found) if found is not None else None
    if item is None:
        raise ApiError(ErrorCode.NOT_FOUND, "No such installation.")
    return json_model(item)


async def totp_setup(request: web.Request) -> web.Response:
    principal = await require_user(request)
    secret, uri, setup_token = await lifecycle.totp_setup(request.app, principal.user_id)
    return json_model(TotpSetup(secret=secret, otpauth_uri=uri, setup_token=setup_token))


async def totp_enable(request: web.Request) -> web.Response:
    principal = await require_user(request)
    body = await read_model(request, TotpEnable)
    await lifecycle.totp_enable(request.app, principal.user_id, body.setup_token, body.code)
    return web.Response(status=204)


async def totp_disable(request: web.Request) -> web.Response:
    principal = await require_user(request)
    body = await read_model(request, AccountDelete)
    await lifecycle.totp_disable(request.app, principal.user_id, body.password)
    return web.Response(status=204)


def setup_account_api(app: web.Application) -> None:
    app.router.add_post("/api/auth/totp/setup", totp_setup)
    app.router.add_post("/api/auth/totp/enable", totp_enable)
    app.router.add_delete("/api/auth/totp", totp_disable)
    app.router.add_post("/api/auth/password", change_password)
    app.router.add_get("/api/auth/sessions", list_sessions)
    app.router.add_delete("/api/auth/sessions", delete_all_sessions)
    app.router.add_delete("/api/auth/sessions/{id}", delete_session)
    app.router.add_post("/api/auth/magic-link", magic_link)
    app.router.add_post("/api/auth/magic-link/confirm", magic_link_confirm)
    app.router.add_post("/api/auth/verify-email", verify_email)
    app.router.add_post("/api/auth/verify-email/resend", resend_verification)
    app.router.add_get("/api/account/export", export_account)
    app.router.add_delete("/api/account", delete_account)
    app.router.add_patch("/api/installations/{id}", rename_installation)
