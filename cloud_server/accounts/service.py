"""Accounts logic: users, sessions (refresh-token families), password reset.

Functions take an `AsyncSession` and never commit: the caller owns the transaction
(`async with sessionmaker.begin() as session`), so a failing request writes nothing.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.base import utcnow
from ..db.models import AuthSession, PasswordResetToken, RefreshToken, User
from ..server_secrets import KeyRing
from . import passwords
from .access_tokens import ACCESS_TTL_SECONDS, AccessClaims, issue_access_token
from .audit import audit
from .tokens import (
    REFRESH_PREFIX,
    RESET_PREFIX,
    hash_token,
    is_well_formed_opaque,
    new_refresh_token,
    new_reset_token,
)

SESSION_LIFETIME = timedelta(days=7)
# How long a just-spent refresh token may still buy an access token (and no refresh token)
# instead of revoking its family, for callers that opt in: a browser sends its cookie with
# every request, so two tabs or two requests after the access cookie expired race for one
# rotation. The same trade-off as Okta's refresh grace period (30 s by default).
CONCURRENT_REFRESH_LEEWAY = timedelta(seconds=30)
# `AuthSession.client` of a family signed in through the dashboard (the leeway's only users:
# an API client's refresh token sent as a cookie gets none).
DASHBOARD_CLIENT = "dashboard"
RESET_LIFETIME = timedelta(minutes=10)
LOCAL_OWNER_EMAIL = "owner@localhost"
# Marks an account that has no password yet (no argon2 hash ever matches it).
NO_PASSWORD = "!"  # noqa: S105 (a marker, not a password)

_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,253}$")
# The same rule on the raw value (normalize_email strips and lowercases first), for the
# OpenAPI document.
EMAIL_PATTERN = r"^\s*[^@\s]{1,64}@[^@\s]{1,253}\s*$"


class EmailTakenError(Exception):
    pass


class InvalidEmailError(ValueError):
    pass


def normalize_email(email: str) -> str:
    normalized = email.strip().lower()
    if not _EMAIL_RE.fullmatch(normalized):
        raise InvalidEmailError("Enter a valid email address.")
    return normalized


@dataclass(frozen=True, slots=True)
class AccessGrant:
    """An access token of a live session family."""

    access_token: str
    expires_in: int
    session_id: str


@dataclass(frozen=True, slots=True)
class Tokens(AccessGrant):
    """An access token and the family's next refresh token."""

    refresh_token: str


async def find_user_by_email(session: AsyncSession, email: str) -> User | None:
    try:
        normalized = normalize_email(email)
    except InvalidEmailError:
        return None
    result = await session.execute(select(User).where(User.email_normalized == normalized))
    return result.scalar_one_or_none()


async def create_user(
    session: AsyncSession,
    email: str,
    password: str | None,
    name: str | None = None,
    *,
    ip: str | None = None,
    email_verified: bool = True,
) -> User:
    """A new account; `password=None` makes one that cannot log in until a reset.

    `email_verified=False` for hosted sign-ups (the trial waits for the confirmation);
    accounts made by an operator (CLI, self-hosted) count as verified.
    """
    normalized = normalize_email(email)
    if password is not None:
        passwords.check_password_policy(password)
    # Hashed before the existence check, so a taken address costs the same argon2 work as
    # a new one. The answer itself still differs (409 vs 201 with tokens: the design returns
    # tokens at registration, so without e-mail verification the status cannot be the same);
    # that residual disclosure is documented in SECURITY.md and bounded by the per-IP limit.
    password_hash = await passwords.hash_password(password) if password else NO_PASSWORD
    existing = await session.execute(select(User.id).where(User.email_normalized == normalized))
    if existing.first() is not None:
        raise EmailTakenError
    user = User(
        email=email.strip(),
        email_normalized=normalized,
        name=name,
        password_hash=password_hash,
        email_verified_at=utcnow() if email_verified else None,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as err:  # a concurrent registration of the same address
        raise EmailTakenError from err
    await audit(session, "user_registered", user_id=user.id, ip=ip)
    return user


async def start_session(session: AsyncSession, ring: KeyRing, user: User) -> Tokens:
    """A new refresh family and its first tokens (login, registration)."""
    now = utcnow()
    family = AuthSession(user_id=user.id, created_at=now, expires_at=now + SESSION_LIFETIME)
    session.add(family)
    await session.flush()
    refresh = new_refresh_token()
    session.add(RefreshToken(session_id=family.id, token_hash=hash_token(refresh), created_at=now))
    await session.flush()
    return Tokens(
        access_token=issue_access_token(ring, user.id, family.id),
        refresh_token=refresh,
        expires_in=ACCESS_TTL_SECONDS,
        session_id=family.id,
    )


async def authenticate(
    session: AsyncSession, email: str, password: str, *, ip: str | None = None
) -> User | None:
    """The user when the password matches; the same work is done for unknown emails."""
    user = await find_user_by_email(session, email)
    if user is None or not user.is_active:
        await passwords.verify_dummy(password)
        await audit(session, "login_failed", user_id=user.id if user else None, ip=ip)
        return None
    # An account without a password (`NO_PASSWORD`) is verified against the dummy hash.
    if not await passwords.verify_password(user.password_hash, password):
        await audit(session, "login_failed", user_id=user.id, ip=ip)
        return None
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = await passwords.hash_password(password)
    await audit(session, "login_succeeded", user_id=user.id, ip=ip)
    return user


class RefreshOutcome(enum.Enum):
    OK = "ok"
    INVALID = "invalid"
    REUSED = "reused"
    # Spent within the caller's leeway: an access token only, the family lives on.
    CONCURRENT = "concurrent"


async def rotate_refresh(
    session: AsyncSession,
    ring: KeyRing,
    token: str,
    *,
    ip: str | None = None,
    concurrent_leeway: timedelta | None = None,
) -> tuple[RefreshOutcome, User | None, AccessGrant | None]:
    """Exchange a refresh token for new tokens; a replayed token revokes its family.

    The exchange is one conditional UPDATE (`used_at IS NULL`), so two concurrent
    uses of one token cannot both succeed, on SQLite as on PostgreSQL: exactly one gets
    `Tokens`. With `concurrent_leeway`, a token of a dashboard family spent no longer ago
    than that gets an `AccessGrant` of its still-live family (outcome CONCURRENT) instead of
    revoking it.
    """
    if not is_well_formed_opaque(token, REFRESH_PREFIX):
        return RefreshOutcome.INVALID, None, None
    now = utcnow()
    token_hash = hash_token(token)
    claimed = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.token_hash == token_hash, RefreshToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    row = (
        await session.execute(
            select(RefreshToken, AuthSession, User)
            .join(AuthSession, AuthSession.id == RefreshToken.session_id)
            .join(User, User.id == AuthSession.user_id)
            .where(RefreshToken.token_hash == token_hash)
        )
    ).first()
    if row is None:
        return RefreshOutcome.INVALID, None, None
    refresh, family, user = row
    live = family.revoked_at is None and family.expires_at > now and user.is_active
    if (
        claimed.rowcount != 1
        and live
        and concurrent_leeway is not None
        and family.client == DASHBOARD_CLIENT
        and refresh.used_at is not None
        and now - refresh.used_at <= concurrent_leeway
    ):
        await audit(session, "refresh_concurrent_use", user_id=user.id, ip=ip, family=family.id)
        grant = AccessGrant(
            access_token=issue_access_token(ring, user.id, family.id),
            expires_in=ACCESS_TTL_SECONDS,
            session_id=family.id,
        )
        return RefreshOutcome.CONCURRENT, user, grant
    if claimed.rowcount != 1:
        if family.revoked_at is None:
            await revoke_session(session, family.id, "refresh_reuse")
        await audit(session, "refresh_reuse_detected", user_id=user.id, ip=ip, family=family.id)
        return RefreshOutcome.REUSED, user, None
    if not live:
        return RefreshOutcome.INVALID, None, None
    child = new_refresh_token()
    session.add(
        RefreshToken(
            session_id=family.id, token_hash=hash_token(child), parent_id=refresh.id, created_at=now
        )
    )
    await session.flush()
    tokens = Tokens(
        access_token=issue_access_token(ring, user.id, family.id),
        refresh_token=child,
        expires_in=ACCESS_TTL_SECONDS,
        session_id=family.id,
    )
    return RefreshOutcome.OK, user, tokens


async def mark_dashboard_session(session: AsyncSession, session_id: str) -> None:
    """The family now lives in a browser's cookies (see CONCURRENT_REFRESH_LEEWAY)."""
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id)
        .values(client=DASHBOARD_CLIENT)
        .execution_options(synchronize_session=False)
    )


async def revoke_session(session: AsyncSession, session_id: str, reason: str) -> None:
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )


async def revoke_all_sessions(session: AsyncSession, user_id: str, reason: str) -> None:
    await session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )


async def active_session_user(session: AsyncSession, claims: AccessClaims) -> User | None:
    """The user of a decoded access token, if its session is still alive (logout = at once)."""
    row = (
        await session.execute(
            select(User, AuthSession)
            .join(AuthSession, AuthSession.user_id == User.id)
            .where(AuthSession.id == claims.session_id, User.id == claims.user_id)
        )
    ).first()
    if row is None:
        return None
    user: User = row[0]
    family: AuthSession = row[1]
    if family.revoked_at is not None or family.expires_at <= utcnow() or not user.is_active:
        return None
    return user


async def get_user(session: AsyncSession, user_id: str) -> User | None:
    user: User | None = await session.get(User, user_id)
    return user


async def request_password_reset(session: AsyncSession, email: str) -> tuple[User, str] | None:
    """A single-use reset token for the account, or None when there is no such account."""
    user = await find_user_by_email(session, email)
    if user is None or not user.is_active:
        return None
    now = utcnow()
    token = new_reset_token()
    session.add(
        PasswordResetToken(
            user_id=user.id,
            token_hash=hash_token(token),
            created_at=now,
            expires_at=now + RESET_LIFETIME,
        )
    )
    await audit(session, "password_reset_requested", user_id=user.id)
    return user, token


async def confirm_password_reset(session: AsyncSession, token: str, password: str) -> bool:
    """Set the new password and end every session; False for an unusable token."""
    passwords.check_password_policy(password)
    if not is_well_formed_opaque(token, RESET_PREFIX):
        return False
    now = utcnow()
    claimed = await session.execute(
        update(PasswordResetToken)
        .where(
            PasswordResetToken.token_hash == hash_token(token),
            PasswordResetToken.used_at.is_(None),
            PasswordResetToken.expires_at > now,
        )
        .values(used_at=now)
        .returning(PasswordResetToken.user_id)
    )
    user_id = claimed.scalar_one_or_none()
    if user_id is None:
        return False
    user = await session.get(User, user_id)
    if user is None:
        return False
    user.password_hash = await passwords.hash_password(password)
    # Every other link sent before this one dies too: a leaked older mail is worthless.
    await session.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.user_id == user_id, PasswordResetToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    await revoke_all_sessions(session, user_id, "password_reset")
    await audit(session, "password_reset_completed", user_id=user_id)
    return True


async def local_owner(session: AsyncSession) -> User:
    """The self-hoster's account used when an installation is created without `--user`."""
    user = await find_user_by_email(session, LOCAL_OWNER_EMAIL)
    if user is not None:
        return user
    return await create_user(session, LOCAL_OWNER_EMAIL, None, name="Owner")
