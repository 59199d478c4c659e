"""Browser sessions and CSRF protection of the dashboard.

A signed-in browser holds two httpOnly, `SameSite=Lax` cookies: the refresh token of its
session family (7 days absolute, rotated with the accounts service's reuse detection:
`service.rotate_refresh`) and the 15-minute access JWT cut from it. Each page checks the
access token against its live session (`service.active_session_user`: a sign-out ends it at
once); when it is missing or expired the refresh token is exchanged and both cookies are
replaced. Requests of one browser that race for that exchange (two tabs, a page and its
download) do not sign it out: a cookie of a family signed in here (`start`), spent less than
`service.CONCURRENT_REFRESH_LEEWAY` ago, buys the losers an access cookie only; spent longer
ago it is a replay and revokes. An API client's refresh token sent as a cookie gets no leeway.

Over https (request or `HOMEMIND_PUBLIC_URL`) the cookies are `Secure` and named `__Host-…`
(no Domain, Path=/, so no sibling host can set or read them); on plain http, as a self-hosted
server on the LAN often is, browsers refuse `Secure`, so the prefix is dropped.

CSRF: a random token in its own cookie, repeated in a hidden field of every form
(double submit, compared in constant time), and a cross-site `Origin` or `Sec-Fetch-Site`
is refused outright.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from ..accounts import service
from ..accounts.access_tokens import ACCESS_TTL_SECONDS, InvalidAccessToken, decode_access_token
from ..accounts.app_keys import SERVER_SECRETS
from ..accounts.service import AccessGrant, RefreshOutcome, Tokens
from ..app_keys import SETTINGS
from ..client_ip import client_ip
from ..db.engine import DB_SESSIONMAKER
from ..db.models import User

_USER = "dashboard_user"
_SET_TOKENS = "dashboard_set_tokens"
_CLEAR = "dashboard_clear_session"
_CSRF = "dashboard_csrf"
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True, slots=True)
class CookieNames:
    refresh: str
    access: str
    csrf: str
    magic: str


SECURE_NAMES = CookieNames(
    "__Host-homemind_refresh",
    "__Host-homemind_access",
    "__Host-homemind_csrf",
    "__Host-homemind_magic",
)
PLAIN_NAMES = CookieNames("homemind_refresh", "homemind_access", "homemind_csrf", "homemind_magic")


@dataclass(frozen=True, slots=True)
class SignedIn:
    user: User
    session_id: str


def is_secure(request: web.Request) -> bool:
    return request.secure or request.app[SETTINGS].effective_public_url.startswith("https://")


def names(request: web.Request) -> CookieNames:
    return SECURE_NAMES if is_secure(request) else PLAIN_NAMES


def set_cookie(
    response: web.StreamResponse, request: web.Request, name: str, value: str, max_age: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=is_secure(request),
        httponly=True,
        samesite="Lax",
    )


def delete_cookie(response: web.StreamResponse, request: web.Request, name: str) -> None:
    set_cookie(response, request, name, "", 0)


async def start(request: web.Request, tokens: Tokens) -> None:
    """Put a new session into this response's cookies (after sign-in), marked as the
    dashboard's (only its families have the refresh leeway)."""
    async with request.app[DB_SESSIONMAKER].begin() as session:
        await service.mark_dashboard_session(session, tokens.session_id)
    request[_SET_TOKENS] = tokens
    request.pop(_CLEAR, None)


def end(request: web.Request) -> None:
    request[_CLEAR] = True
    request.pop(_SET_TOKENS, None)


async def current(request: web.Request) -> SignedIn | None:
    """The signed-in user of this browser, refreshing the access cookie when needed."""
    if _USER in request:
        found: SignedIn | None = request[_USER]
        return found
    request[_USER] = found = await _load(request)
    return found


async def _load(request: web.Request) -> SignedIn | None:
    cookie = names(request)
    ring = request.app[SERVER_SECRETS].jwt
    access = request.cookies.get(cookie.access)
    if access:
        try:
            claims = decode_access_token(ring, access)
        except InvalidAccessToken:
            claims = None
        if claims is not None:
            async with request.app[DB_SESSIONMAKER]() as session:
                user = await service.active_session_user(session, claims)
            if user is not None:
                return SignedIn(user, claims.session_id)
    refresh = request.cookies.get(cookie.refresh)
    if not refresh:
        return None
    async with request.app[DB_SESSIONMAKER].begin() as session:
        outcome, user, grant = await service.rotate_refresh(
            session,
            ring,
            refresh,
            ip=client_ip(request),
            concurrent_leeway=service.CONCURRENT_REFRESH_LEEWAY,
        )
    if outcome not in (RefreshOutcome.OK, RefreshOutcome.CONCURRENT) or user is None or not grant:
        end(request)
        return None
    # CONCURRENT: another request of this browser rotated the cookie a moment ago; its
    # response carries the new refresh token, this one only a fresh access token.
    request[_SET_TOKENS] = grant
    return SignedIn(user, grant.session_id)


def csrf_token(request: web.Request) -> str:
    """This browser's CSRF token (made, and set as a cookie, on first use)."""
    token = request.get(_CSRF) or request.cookies.get(names(request).csrf)
    if not token or len(token) < 32:
        token = secrets.token_urlsafe(32)
        request[_CSRF + "_new"] = token
    request[_CSRF] = token
    return str(token)


def _same_origin(request: web.Request) -> bool:
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    allowed = {f"{request.scheme}://{request.host}"}
    public = urlsplit(request.app[SETTINGS].effective_public_url)
    allowed.add(f"{public.scheme}://{public.netloc}")
    return origin in allowed


async def check_csrf(request: web.Request) -> bool:
    """True when a state-changing form comes from our own page in this browser."""
    if not _same_origin(request):
        return False
    form = await request.post()
    sent = form.get(CSRF_FIELD)
    expected = request.cookies.get(names(request).csrf)
    return (
        isinstance(sent, str)
        and bool(expected)
        and secrets.compare_digest(sent.encode(), str(expected).encode())
    )


def apply(request: web.Request, response: web.StreamResponse) -> None:
    """Write the pending cookie changes of this request into its response."""
    cookie = names(request)
    grant: AccessGrant | None = request.get(_SET_TOKENS)
    if grant is not None:
        if isinstance(grant, Tokens):
            lifetime = int(service.SESSION_LIFETIME.total_seconds())
            set_cookie(response, request, cookie.refresh, grant.refresh_token, lifetime)
        set_cookie(response, request, cookie.access, grant.access_token, ACCESS_TTL_SECONDS)
    elif request.get(_CLEAR):
        delete_cookie(response, request, cookie.refresh)
        delete_cookie(response, request, cookie.access)
    new_csrf = request.get(_CSRF + "_new")
    if new_csrf:
        set_cookie(response, request, cookie.csrf, new_csrf, 7 * 24 * 3600)
