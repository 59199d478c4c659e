"""Single-use links sent by e-mail: magic sign-in links and address verification.

Checklist row 30 (docs in SECURITY.md): 256 random bits, only the SHA-256 stored, single use
(one conditional UPDATE claims the row, race-safe on SQLite and PostgreSQL), at most ten
minutes for a sign-in link (a day for a verification link: it grants nothing but the
confirmation), the link built from the configured public URL (never the Host header), and
the landing page never consumes it: the page POSTs the token (mail scanners prefetch GETs).
A magic link asked for in a browser is bound to it by a cookie nonce (ASVS 6.6.2).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.base import utcnow
from ..db.models import EmailToken, User
from .audit import audit
from .tokens import hash_token

MAGIC_LINK = "magic_link"
VERIFY_EMAIL = "verify_email"
LIFETIMES = {MAGIC_LINK: timedelta(minutes=10), VERIFY_EMAIL: timedelta(hours=24)}
_PREFIXES = {MAGIC_LINK: "hmm_", VERIFY_EMAIL: "hmv_"}
_TOKEN_RE = re.compile(r"^hm[mv]_[A-Za-z0-9_-]{43}$")


def new_browser_nonce() -> str:
    return secrets.token_urlsafe(32)


def _browser_hash(nonce: str | None) -> str | None:
    return hashlib.sha256(nonce.encode()).hexdigest() if nonce else None


async def issue(
    session: AsyncSession, user: User, purpose: str, *, browser_nonce: str | None = None
) -> str:
    """A new link token for the user (the plain token goes into the mail only)."""
    now = utcnow()
    token = _PREFIXES[purpose] + secrets.token_urlsafe(32)
    session.add(
        EmailToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=hash_token(token),
            browser_hash=_browser_hash(browser_nonce),
            created_at=now,
            expires_at=now + LIFETIMES[purpose],
        )
    )
    await session.flush()
    await audit(session, f"{purpose}_sent", user_id=user.id)
    return token


async def consume(
    session: AsyncSession, token: str, purpose: str, *, browser_nonce: str | None = None
) -> User | None:
    """The token's user when it is valid, unused, unexpired and (if bound) from this browser.

    A used, expired, unknown or foreign-browser token gives None; a token is used once.
    """
    if not _TOKEN_RE.fullmatch(token) or not token.startswith(_PREFIXES[purpose]):
        return None
    now = utcnow()
    row = (
        await session.execute(
            select(EmailToken).where(
                EmailToken.token_hash == hash_token(token), EmailToken.purpose == purpose
            )
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    if row.browser_hash is not None and not secrets.compare_digest(
        row.browser_hash, _browser_hash(browser_nonce) or ""
    ):
        return None
    claimed = await session.execute(
        update(EmailToken)
        .where(EmailToken.id == row.id, EmailToken.used_at.is_(None), EmailToken.expires_at > now)
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        return None
    user = await session.get(User, row.user_id)
    if user is None or not user.is_active:
        return None
    await audit(session, f"{purpose}_used", user_id=user.id)
    return user


async def mark_verified(session: AsyncSession, user: User) -> None:
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
    # Other verification links of this account are worthless now.
    await session.execute(
        update(EmailToken)
        .where(
            EmailToken.user_id == user.id,
            EmailToken.purpose == VERIFY_EMAIL,
            EmailToken.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
