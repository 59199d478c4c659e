"""What every page handler shares: rendering, redirects, sign-in and CSRF checks, forms."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web

from ..app_keys import SETTINGS
from ..errors import ApiError
from . import session
from .i18n import _

PageHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The address Home Assistant is told to use, and whether billing (Stripe) is on.
PUBLIC_URL: web.AppKey[str] = web.AppKey("dashboard_public_url", str)
BILLING_ON: web.AppKey[bool] = web.AppKey("dashboard_billing_on", bool)
SignedInHandler = Callable[[web.Request, session.SignedIn], Awaitable[web.StreamResponse]]


def render(
    request: web.Request, template: str, context: dict[str, Any] | None = None, status: int = 200
) -> web.Response:
    signed_in: session.SignedIn | None = request.get("dashboard_user")
    settings = request.app[SETTINGS]
    base = {
        "csrf_field": session.CSRF_FIELD,
        "csrf_token": session.csrf_token(request),
        "user": signed_in.user if signed_in else None,
        "hosted": settings.hosted,
        "billing_enabled": settings.billing_enabled,
        "path": request.path,
    }
    base.update(context or {})
    return aiohttp_jinja2.render_template(template, request, base, status=status)


def redirect(location: str) -> web.Response:
    # 303: the browser follows with a GET (no form resubmission).
    return web.Response(status=303, headers={"Location": location})


def signin_redirect(request: web.Request) -> web.Response:
    return redirect(f"/signin?next={quote(request.path_qs, safe='')}")


def safe_next(value: str | None, default: str = "/installations") -> str:
    """Only paths of this site (never `//host` or a scheme: no open redirect)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return default


def requires_user(handler: SignedInHandler) -> PageHandler:
    """Pages of a signed-in user; POSTs must also pass the CSRF check."""

    @wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        if request.method == "POST" and not await session.check_csrf(request):
            return forbidden(request)
        signed_in = await session.current(request)
        if signed_in is None:
            return signin_redirect(request)
        return await handler(request, signed_in)

    return wrapper


def public_form(handler: PageHandler) -> PageHandler:
    """Pages anyone may use (sign in, sign up...): CSRF-checked POSTs all the same."""

    @wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        if request.method == "POST" and not await session.check_csrf(request):
            return forbidden(request)
        await session.current(request)
        return await handler(request)

    return wrapper


def forbidden(request: web.Request) -> web.Response:
    return render(
        request,
        "error.html",
        {
            "title": _("This form has expired"),
            "message": _("Reload the page and try again."),
        },
        status=403,
    )


async def form(request: web.Request) -> dict[str, str]:
    data = await request.post()
    return {
        k: v.strip() if k not in ("password", "new_password", "current_password") else v
        for k, v in data.items()
        if isinstance(v, str)
    }


def field_errors(err: ApiError, default_field: str) -> dict[str, str]:
    """The API error as messages by form field (the page shows each next to its field)."""
    found: dict[str, str] = {}
    for item in err.errors or []:
        name = str(item.loc[-1]) if item.loc else default_field
        found.setdefault(name, item.msg)
    if not found:
        found[default_field] = err.detail
    return found
