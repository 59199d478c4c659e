"""`GET /api/installation`: what an installation token may read about itself.

Built in one place so billing can fill `subscription` and `usage`: it registers an
async contributor with `add_installation_info_contributor(app, fn)`; each contributor
receives the request, the principal and the model built so far and returns the
(possibly updated) model.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from sqlalchemy import select

from homemind_client.models import InstallationInfo

from ..db.engine import DB_SESSIONMAKER
from ..db.models import User
from .principal import InstallationPrincipal

Contributor = Callable[
    [web.Request, InstallationPrincipal, InstallationInfo], Awaitable[InstallationInfo]
]

CONTRIBUTORS: web.AppKey[list[Contributor]] = web.AppKey("installation_info_contributors", list)


def add_installation_info_contributor(app: web.Application, contributor: Contributor) -> None:
    app[CONTRIBUTORS].append(contributor)


async def build_installation_info(
    request: web.Request, principal: InstallationPrincipal
) -> InstallationInfo:
    async with request.app[DB_SESSIONMAKER]() as session:
        tier = (
            await session.execute(select(User.tier).where(User.id == principal.user_id))
        ).scalar_one()
    info = InstallationInfo(
        id=principal.installation_id,
        name=principal.name,
        tier=tier if tier in ("free", "byok", "managed") else "free",
        has_api_key=principal.has_api_key,
    )
    for contributor in request.app.get(CONTRIBUTORS, []):
        info = await contributor(request, principal, info)
    return info
