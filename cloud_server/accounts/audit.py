"""The security audit log: one row per security event, in the caller's transaction."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import AuditEvent

LOGGER = logging.getLogger("cloud_server.audit")


async def audit(
    session: AsyncSession,
    event: str,
    *,
    user_id: str | None = None,
    installation_id: str | None = None,
    ip: str | None = None,
    **details: Any,
) -> None:
    """Record `event`. Callers pass ids and reasons only — never a secret or a password."""
    session.add(
        AuditEvent(
            event=event,
            user_id=user_id,
            installation_id=installation_id,
            ip=ip,
            details=details or None,
        )
    )
    LOGGER.info(
        "audit %s user=%s installation=%s ip=%s %s", event, user_id, installation_id, ip, details
    )
