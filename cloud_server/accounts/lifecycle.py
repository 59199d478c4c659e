"""The whole life of an account: password change, sessions, export and deletion.

Other components own part of an account's data (billing: Stripe, subscriptions, usage;
memory: the facts). They register an `AccountDataHook` with `add_account_data_hook`; the
export asks each for its section and the deletion asks each to erase its part *before*
the user row goes (billing cancels the Stripe subscriptions first), so an error there
leaves the account in place and the user can try again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy import delete, select, update

from homemind_client.models import ErrorCode, FieldError

from ..db.base import utcnow
from ..db.engine import DB_SESSIONMAKER
from ..db.models import AuditEvent, AuthSession, Installation, User
from ..errors import ApiError
from . import passwords, service, totp
from .app_keys import SERVER_SECRETS
from .audit import audit
from .flows import field_error
from .passwords import PasswordPolicyError


@dataclass(frozen=True, slots=True)
class AccountDataHook:
    name: str
    export: Callable[[web.Application, str], Awaitable[Any]]
    erase: Callable[[web.Application, str], Awaitable[None]]


ACCOUNT_DATA_HOOKS: web.AppKey[list[AccountDataHook]] = web.AppKey("account_data_hooks", list)


def add_account_data_hook(app: web.Application, hook: AccountDataHook) -> None:
    app.setdefault(ACCOUNT_DATA_HOOKS, []).append(hook)


def field_error_403(field: str) -> ApiError:
    message = "The password is not correct."
    return ApiError(
        ErrorCode.WRONG_PASSWORD,
        message,
        errors=[FieldError(loc=[field], msg=message, type="value_error")],
    )


async def _check_password(user: User, password: str, field: str) -> None:
    if not await passwords.verify_password(user.password_hash, password):
        raise field_error_403(field)


async def change_password(
    app: web.Application, user_id: str, current: str, new: str, *, keep_session: str | None
) -> None:
    """Set a new password (current one required) and end every other session."""
    try:
        passwords.check_password_policy(new)
    except PasswordPolicyError as err:
        raise field_error("new_password", str(err)) from err
    async with app[DB_SESSIONMAKER].begin() as session:
        user = await service.get_user(session, user_id)
        if user is None:
            raise ApiError(ErrorCode.INVALID_TOKEN, "The session has ended; log in again.")
        await _check_password(user, current, "current_password")
        user.password_hash = await passwords.hash_password(new)
        await session.execute(
            update(AuthSession)
            .where(
                AuthSession.user_id == user_id,
                AuthSession.revoked_at.is_(None),
                AuthSession.id != (keep_session or ""),
            )
            .values(revoked_at=utcnow(), revoked_reason="password_changed")
            .execution_options(synchronize_session=False)
        )
        await audit(session, "password_changed", user_id=user_id)


async def active_sessions(app: web.Application, user_id: str) -> list[AuthSession]:
    now = utcnow()
    async with app[DB_SESSIONMAKER]() as session:
        rows = await session.execute(
            select(AuthSession)
            .where(
                AuthSession.user_id == user_id,
                AuthSession.revoked_at.is_(None),
                AuthSession.expires_at > now,
            )
            .order_by(AuthSession.created_at.desc())
        )
        return list(rows.scalars())


async def end_session(app: web.Application, user_id: str, session_id: str) -> bool:
    """End one of the user's sessions; False when it is not theirs or already over."""
    async with app[DB_SESSIONMAKER].begin() as session:
        result = await session.execute(
            update(AuthSession)
            .where(
                AuthSession.id == session_id,
                AuthSession.user_id == user_id,
                AuthSession.revoked_at.is_(None),
            )
            .values(revoked_at=utcnow(), revoked_reason="signed_out")
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)


async def end_all_sessions(app: web.Application, user_id: str) -> None:
    async with app[DB_SESSIONMAKER].begin() as session:
        await service.revoke_all_sessions(session, user_id, "signed_out_everywhere")


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


async def export_account(app: web.Application, user_id: str) -> dict[str, Any]:
    """Everything stored about the account, as JSON-ready data (no secret, no hash)."""
    async with app[DB_SESSIONMAKER]() as session:
        user = await service.get_user(session, user_id)
        if user is None:
            raise ApiError(ErrorCode.INVALID_TOKEN, "The session has ended; log in again.")
        installations = (
            await session.execute(select(Installation).where(Installation.user_id == user_id))
        ).scalars()
        sessions = (
            await session.execute(select(AuthSession).where(AuthSession.user_id == user_id))
        ).scalars()
        events = (
            await session.execute(
                select(AuditEvent)
                .where(AuditEvent.user_id == user_id)
                .order_by(AuditEvent.created_at)
            )
        ).scalars()
        data: dict[str, Any] = {
            "exported_at": utcnow().isoformat(),
            "user": {
                "id": user.id,
                "email": user.email,
                "name": user.name,
                "tier": user.tier,
                "created_at": _iso(user.created_at),
                "email_verified_at": _iso(user.email_verified_at),
            },
            "installations": [
                {
                    "id": i.id,
                    "name": i.name,
                    "token_hint": i.token_hint,
                    "has_api_key": i.encrypted_api_key is not None,
                    "key_hint": i.key_hint,
                    "created_at": _iso(i.created_at),
                    "last_seen_at": _iso(i.last_seen_at),
                    "revoked_at": _iso(i.revoked_at),
                }
                for i in installations
            ],
            "sessions": [
                {
                    "id": s.id,
                    "created_at": _iso(s.created_at),
                    "expires_at": _iso(s.expires_at),
                    "revoked_at": _iso(s.revoked_at),
                }
                for s in sessions
            ],
            "security_events": [
                {"event": e.event, "created_at": _iso(e.created_at), "ip": e.ip} for e in events
            ],
        }
    for hook in app.get(ACCOUNT_DATA_HOOKS, []):
        data[hook.name] = await hook.export(app, user_id)
    return data


async def delete_account(app: web.Application, user_id: str, password: str) -> None:
    """Erase the account and every byte of its data (password required).

    Order: the other components first (billing cancels the Stripe subscriptions before
    anything is removed here), then the user row; installations, sessions, tokens and
    usage go with it (foreign keys cascade), the audit trail of the account is removed too.
    """
    async with app[DB_SESSIONMAKER]() as session:
        user = await service.get_user(session, user_id)
        if user is None:
            raise ApiError(ErrorCode.INVALID_TOKEN, "The session has ended; log in again.")
        await _check_password(user, password, "password")
    for hook in app.get(ACCOUNT_DATA_HOOKS, []):
        await hook.erase(app, user_id)
    async with app[DB_SESSIONMAKER].begin() as session:
        await session.execute(delete(AuditEvent).where(AuditEvent.user_id == user_id))
        await session.execute(delete(Installation).where(Installation.user_id == user_id))
        await session.execute(delete(User).where(User.id == user_id))


async def totp_setup(app: web.Application, user_id: str) -> tuple[str, str, str]:
    """A new secret for the user's app: (base32 text, otpauth URI, sealed setup token).

    Nothing is stored until `totp_enable` gets a right code with the setup token.
    """
    ring = app[SERVER_SECRETS].encryption
    async with app[DB_SESSIONMAKER]() as session:
        user = await service.get_user(session, user_id)
        if user is None:
            raise ApiError(ErrorCode.INVALID_TOKEN, "The session has ended; log in again.")
        secret = totp.new_secret()
        return (
            totp.secret_text(secret),
            totp.provisioning_uri(secret, user.email),
            totp.seal(ring, user_id, secret),
        )


async def totp_enable(app: web.Application, user_id: str, setup_token: str, code: str) -> None:
    ring = app[SERVER_SECRETS].encryption
    try:
        secret = totp.unseal(ring, user_id, setup_token)
    except totp.SealError as err:
        raise field_error("code", "Start again: this setup is not valid.") from err
    step = totp.verify(secret, code, None)
    if step is None:
        raise field_error("code", "This code is not correct; use the newest one from your app.")
    async with app[DB_SESSIONMAKER].begin() as session:
        user = await service.get_user(session, user_id)
        if user is None:
            raise ApiError(ErrorCode.INVALID_TOKEN, "The session has ended; log in again.")
        user.totp_secret = totp.seal(ring, user_id, secret)
        user.totp_last_step = step
        await audit(session, "totp_enabled", user_id=user_id)


async def totp_disable(app: web.Application, user_id: str, password: str) -> None:
    async with app[DB_SESSIONMAKER].begin() as session:
        user = await service.get_user(session, user_id)
        if user is None:
            raise ApiError(ErrorCode.INVALID_TOKEN, "The session has ended; log in again.")
        await _check_password(user, password, "password")
        user.totp_secret = None
        user.totp_last_step = None
        await audit(session, "totp_disabled", user_id=user_id)
