"""Installations: one Home Assistant each, with its token and optional Anthropic key.

Every function that takes a `user_id` only ever sees that user's installations: a
foreign or deleted id behaves exactly like an unknown one (None → 404).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from ..crypto import decrypt_api_key, encrypt_api_key, envelope_kid, key_hint, reencrypt_api_key
from ..db.base import UTCDateTime, utcnow
from ..db.models import Installation, User
from ..server_secrets import KeyRing
from .audit import audit
from .scopes import ALL_INSTALLATION_SCOPES, InstallationScope
from .scopes import parse as parse_scopes
from .scopes import stored as stored_scopes
from .tokens import (
    hash_token,
    is_well_formed_installation_token,
    new_installation_token,
    token_hint,
)

# `last_seen_at` is written at most this often per installation (not on every request).
LAST_SEEN_RESOLUTION = timedelta(minutes=1)
MIN_API_KEY_LENGTH = 8


class ApiKeyFormatError(ValueError):
    pass


async def create_installation(
    session: AsyncSession,
    user_id: str,
    name: str,
    *,
    ip: str | None = None,
    scopes: Iterable[InstallationScope] | None = None,
) -> tuple[Installation, str]:
    """The new installation and its token (shown once, never stored); all scopes by default."""
    token = new_installation_token()
    installation = Installation(
        user_id=user_id,
        name=name,
        token_hash=hash_token(token),
        token_hint=token_hint(token),
        scopes=stored_scopes(scopes),
    )
    session.add(installation)
    await session.flush()
    await audit(
        session, "installation_created", user_id=user_id, installation_id=installation.id, ip=ip
    )
    return installation, token


async def list_installations(session: AsyncSession, user_id: str) -> list[Installation]:
    result = await session.execute(
        select(Installation)
        .where(Installation.user_id == user_id, Installation.revoked_at.is_(None))
        .order_by(Installation.created_at, Installation.id)
    )
    return list(result.scalars())


async def get_owned(
    session: AsyncSession, user_id: str, installation_id: str
) -> Installation | None:
    result = await session.execute(
        select(Installation).where(
            Installation.id == installation_id,
            Installation.user_id == user_id,
            Installation.revoked_at.is_(None),
        )
    )
    return result.scalar_one_or_none()


async def rename_installation(
    session: AsyncSession, user_id: str, installation_id: str, name: str, *, ip: str | None = None
) -> Installation | None:
    installation = await get_owned(session, user_id, installation_id)
    if installation is None:
        return None
    installation.name = name
    await audit(
        session, "installation_renamed", user_id=user_id, installation_id=installation.id, ip=ip
    )
    return installation


async def revoke_installation(
    session: AsyncSession, user_id: str, installation_id: str, *, ip: str | None = None
) -> bool:
    """Delete for the user: the token stops working at once and the key is erased."""
    result = await session.execute(
        update(Installation)
        .where(
            Installation.id == installation_id,
            Installation.user_id == user_id,
            Installation.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow(), encrypted_api_key=None, key_hint=None)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    await audit(
        session, "installation_deleted", user_id=user_id, installation_id=installation_id, ip=ip
    )
    return True


def clean_api_key(api_key: str) -> str:
    value = api_key.strip()
    if len(value) < MIN_API_KEY_LENGTH or any(c.isspace() for c in value):
        raise ApiKeyFormatError("This does not look like an Anthropic API key.")
    return value


async def set_api_key(
    session: AsyncSession,
    ring: KeyRing,
    user_id: str,
    installation_id: str,
    api_key: str,
    *,
    ip: str | None = None,
) -> Installation | None:
    installation = await get_owned(session, user_id, installation_id)
    if installation is None:
        return None
    value = clean_api_key(api_key)
    installation.encrypted_api_key = encrypt_api_key(
        ring, value, user_id=user_id, installation_id=installation.id
    )
    installation.key_hint = key_hint(value)
    await audit(session, "api_key_set", user_id=user_id, installation_id=installation.id, ip=ip)
    return installation


async def delete_api_key(
    session: AsyncSession, user_id: str, installation_id: str, *, ip: str | None = None
) -> bool:
    installation = await get_owned(session, user_id, installation_id)
    if installation is None:
        return False
    installation.encrypted_api_key = None
    installation.key_hint = None
    await audit(session, "api_key_deleted", user_id=user_id, installation_id=installation.id, ip=ip)
    return True


class TokenCheck(enum.Enum):
    OK = "ok"
    INVALID = "invalid"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class InstallationAuth:
    """The columns a request needs about the installation behind its token (no ORM object)."""

    installation_id: str
    user_id: str
    name: str
    # Still encrypted: decrypted only by the code that needs the key.
    encrypted_api_key: str | None
    last_seen_at: datetime | None
    scopes: frozenset[InstallationScope] = frozenset(ALL_INSTALLATION_SCOPES)


# One statement for the hot path (built once: its compiled form is cached by SQLAlchemy).
_AUTH_QUERY = (
    select(
        Installation.id,
        Installation.user_id,
        Installation.name,
        Installation.encrypted_api_key,
        Installation.last_seen_at,
        Installation.revoked_at,
        User.is_active,
        Installation.scopes,
    )
    .join(User, User.id == Installation.user_id)
    .where(Installation.token_hash == bindparam("token_hash"))
)
_TOUCH_LAST_SEEN = (
    update(Installation)
    .where(
        Installation.id == bindparam("installation_id"),
        or_(
            Installation.last_seen_at.is_(None),
            Installation.last_seen_at < bindparam("stale_before", type_=UTCDateTime()),
        ),
    )
    .values(last_seen_at=bindparam("now", type_=UTCDateTime()))
)


async def authenticate_token(
    connection: AsyncConnection, token: str
) -> tuple[TokenCheck, InstallationAuth | None]:
    """Check a presented token in one Core query on a plain connection (every token request).

    Malformed tokens never reach the database; a deleted installation or a disabled user
    is `REVOKED` at once (nothing is cached between requests).
    """
    if not is_well_formed_installation_token(token):
        return TokenCheck.INVALID, None
    row = (await connection.execute(_AUTH_QUERY, {"token_hash": hash_token(token)})).first()
    if row is None:
        return TokenCheck.INVALID, None
    installation_id, user_id, name, encrypted, last_seen_at, revoked_at, is_active, scopes = row
    if revoked_at is not None or not is_active:
        return TokenCheck.REVOKED, None
    return TokenCheck.OK, InstallationAuth(
        installation_id, user_id, name, encrypted, last_seen_at, parse_scopes(scopes)
    )


def last_seen_due(last_seen_at: datetime | None, now: datetime) -> bool:
    return last_seen_at is None or now - last_seen_at >= LAST_SEEN_RESOLUTION


async def touch_last_seen_by_id(
    connection: AsyncConnection, installation_id: str, now: datetime
) -> None:
    """Record activity with a conditional UPDATE, at most once per `LAST_SEEN_RESOLUTION`.

    Call it only when `last_seen_due`; the WHERE clause keeps concurrent requests from
    writing twice.
    """
    await connection.execute(
        _TOUCH_LAST_SEEN,
        {
            "installation_id": installation_id,
            "stale_before": now - LAST_SEEN_RESOLUTION,
            "now": now,
        },
    )


async def installation_key(
    session: AsyncSession, ring: KeyRing, installation_id: str
) -> str | None:
    installation = await session.get(Installation, installation_id)
    if installation is None or installation.encrypted_api_key is None:
        return None
    return decrypt_api_key(
        ring,
        installation.encrypted_api_key,
        user_id=installation.user_id,
        installation_id=installation.id,
    )


async def rotate_encryption(session: AsyncSession, ring: KeyRing) -> tuple[int, int]:
    """Re-encrypt every stored key under the active key: (rows changed, rows total).

    Idempotent: rows already on the active key are left as they are.
    """
    result = await session.execute(
        select(Installation).where(Installation.encrypted_api_key.is_not(None))
    )
    changed = total = 0
    for installation in result.scalars():
        value = installation.encrypted_api_key
        assert value is not None
        total += 1
        if envelope_kid(value) == ring.active_kid:
            continue
        installation.encrypted_api_key = reencrypt_api_key(
            ring, value, user_id=installation.user_id, installation_id=installation.id
        )
        changed += 1
    if changed:
        await audit(session, "encryption_key_rotated", rows=changed, kid=ring.active_kid)
    return changed, total
