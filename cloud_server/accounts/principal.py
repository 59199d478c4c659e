"""Who is calling: the principals the other components depend on.

`require_installation` authenticates an installation token (chat, memory tools,
`GET /api/installation`); `require_user` authenticates a user's access JWT
(dashboard and account API). Both raise `ApiError` with the stable codes of the
design (`invalid_token`, `installation_revoked`, ...).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from homemind_client.models import ErrorCode

from ..crypto import DecryptionError, decrypt_api_key
from ..db.base import utcnow
from ..db.engine import DB_READER, DB_SESSIONMAKER
from ..db.outage import is_database_outage
from ..errors import ApiError
from ..observability.logs import bind_principal
from .access_tokens import InvalidAccessToken, decode_access_token
from .app_keys import SERVER_SECRETS
from .installations import (
    TokenCheck,
    authenticate_token,
    installation_key,
    last_seen_due,
    touch_last_seen_by_id,
)
from .scopes import ALL_INSTALLATION_SCOPES, InstallationScope
from .service import active_session_user

LOGGER = logging.getLogger(__name__)

_PRINCIPAL_KEY = "homemind_installation_principal"
_USER_KEY = "homemind_user_principal"
_STORED_KEY = "homemind_installation_stored_key"
_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="homemind"'}


@dataclass(frozen=True, slots=True)
class InstallationPrincipal:
    installation_id: str
    user_id: str
    name: str
    has_api_key: bool
    scopes: frozenset[InstallationScope] = frozenset(ALL_INSTALLATION_SCOPES)


@dataclass(frozen=True, slots=True)
class UserPrincipal:
    user_id: str
    email: str
    session_id: str


def invalid_token(detail: str = "The token is missing, malformed or unknown.") -> ApiError:
    return ApiError(ErrorCode.INVALID_TOKEN, detail, headers=_BEARER_CHALLENGE)


def bearer_token(request: web.Request) -> str | None:
    """The token of `Authorization: Bearer <token>` (never read from the query string)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


def _required_bearer_token(request: web.Request) -> str:
    token = bearer_token(request)
    if token is None:
        raise invalid_token()
    return token


async def require_installation(request: web.Request) -> InstallationPrincipal:
    """The installation behind `Authorization: Bearer <installation token>`.

    Checked against the database on every request (never cached across requests: a
    revoked token is refused at once), in one query on a plain connection; the stored
    key comes along still encrypted, for `installation_api_key` to decrypt if asked.
    """
    cached = request.get(_PRINCIPAL_KEY)
    if isinstance(cached, InstallationPrincipal):
        return cached
    token = _required_bearer_token(request)
    # Autocommit on PostgreSQL (db/reads.py): the rare last-seen UPDATE commits by itself.
    async with request.app[DB_READER].connect() as connection:
        check, found = await authenticate_token(connection, token)
        if check is TokenCheck.REVOKED:
            raise ApiError(
                ErrorCode.INSTALLATION_REVOKED,
                "This installation was removed from its account; connect it again.",
                headers=_BEARER_CHALLENGE,
            )
        if found is None:
            raise invalid_token()
        now = utcnow()
        if last_seen_due(found.last_seen_at, now):
            await _touch_last_seen(connection, found.installation_id, now)
    principal = InstallationPrincipal(
        installation_id=found.installation_id,
        user_id=found.user_id,
        name=found.name,
        has_api_key=found.encrypted_api_key is not None,
        scopes=found.scopes,
    )
    request[_PRINCIPAL_KEY] = principal
    bind_principal(user_id=found.user_id, installation_id=found.installation_id)
    request[_STORED_KEY] = _StoredKey(found.installation_id, found.user_id, found.encrypted_api_key)
    return principal


async def _touch_last_seen(
    connection: AsyncConnection, installation_id: str, now: datetime
) -> None:
    """Bookkeeping only: a database that cannot take the write (SQLite locked by another
    process) must not refuse the request the token was good for; the next one retries."""
    try:
        await touch_last_seen_by_id(connection, installation_id, now)
        await connection.commit()
    except Exception as err:
        if not is_database_outage(err):
            raise
        LOGGER.warning("Could not write last-seen of installation %s: %r", installation_id, err)
        with contextlib.suppress(Exception):
            await connection.rollback()


@dataclass(frozen=True, slots=True)
class _StoredKey:
    """The encrypted key read with the token, kept on the request only."""

    installation_id: str
    user_id: str
    encrypted: str | None = field(repr=False)


async def installation_api_key(
    request: web.Request, principal: InstallationPrincipal
) -> str | None:
    """The installation's own Anthropic key, decrypted, or None when it has none."""
    ring = request.app[SERVER_SECRETS].encryption
    stored = request.get(_STORED_KEY)
    try:
        if isinstance(stored, _StoredKey) and stored.installation_id == principal.installation_id:
            # Read by `require_installation` in this request: no second query.
            if stored.encrypted is None:
                return None
            return decrypt_api_key(
                ring,
                stored.encrypted,
                user_id=stored.user_id,
                installation_id=stored.installation_id,
            )
        async with request.app[DB_SESSIONMAKER]() as session:
            return await installation_key(session, ring, principal.installation_id)
    except DecryptionError as err:
        # The stored key cannot be used (its master key is gone or the row was
        # tampered with): behave as if none were stored, and tell the operator.
        LOGGER.error(
            "Stored API key of installation %s cannot be decrypted: %s",
            principal.installation_id,
            err,
        )
        return None


async def require_user(request: web.Request) -> UserPrincipal:
    """The user behind `Authorization: Bearer <access JWT>` (or the session cookie)."""
    cached = request.get(_USER_KEY)
    if isinstance(cached, UserPrincipal):
        return cached
    token = _required_bearer_token(request)
    try:
        claims = decode_access_token(request.app[SERVER_SECRETS].jwt, token)
    except InvalidAccessToken as err:
        LOGGER.debug("Access token refused: %s", err)
        raise invalid_token() from err
    async with request.app[DB_SESSIONMAKER]() as session:
        user = await active_session_user(session, claims)
    if user is None:
        raise invalid_token("The session has ended; log in again.")
    principal = UserPrincipal(user_id=user.id, email=user.email, session_id=claims.session_id)
    request[_USER_KEY] = principal
    bind_principal(user_id=user.id)
    return principal
