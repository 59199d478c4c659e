"""Who is calling: the principals the other components depend on.

`require_installation` authenticates an installation token (chat, memory tools,
`GET /api/installation`); `require_user` authenticates a user's access JWT
(dashboard and account API). Both raise `ApiError` with the stable codes of the
design (`invalid_token`, `installation_revoked`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True, slots=True)
class InstallationPrincipal:
    installation_id: str
    user_id: str
    name: str
    has_api_key: bool


@dataclass(frozen=True, slots=True)
class UserPrincipal:
    user_id: str
    email: str
    session_id: str


async def require_installation(request: web.Request) -> InstallationPrincipal:
    """The installation behind `Authorization: Bearer <installation token>`."""
    raise NotImplementedError


async def installation_api_key(
    request: web.Request, principal: InstallationPrincipal
) -> str | None:
    """The installation's own Anthropic key, decrypted, or None when it has none."""
    raise NotImplementedError


async def require_user(request: web.Request) -> UserPrincipal:
    """The user behind `Authorization: Bearer <access JWT>` (or the session cookie)."""
    raise NotImplementedError
