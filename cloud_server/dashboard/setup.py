"""Wires the dashboard into the application: templates, static files, pages, headers.

Every dashboard response (pages, redirects, static files, error pages) carries a strict
Content-Security-Policy (scripts and styles from this origin only: no inline script, no
inline style), `X-Frame-Options: DENY`, `nosniff`, `Referrer-Policy: same-origin`, and
pages are `Cache-Control: no-store` (they show account data).
"""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from ..app_keys import SETTINGS
from . import session, views_app, views_auth
from .i18n import translations
from .pages import BILLING_ON, PUBLIC_URL, PageHandler, render

LOGGER = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self' https:; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not "no-referrer": with it browsers send `Origin: null` on our own form posts, and the
    # CSRF check needs the real origin. Other sites still get no referrer; mailed tokens
    # travel after `#`, which is never part of a referrer.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}

DASHBOARD_RESOURCES: web.AppKey[frozenset[web.AbstractResource]] = web.AppKey(
    "dashboard_resources", frozenset
)


def _is_dashboard(request: web.Request) -> bool:
    route = request.match_info.route
    resource = route.resource
    return resource is not None and resource in request.app[DASHBOARD_RESOURCES]


def _decorate(request: web.Request, response: web.StreamResponse) -> None:
    session.apply(request, response)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")


@web.middleware
async def dashboard_middleware(request: web.Request, handler: PageHandler) -> web.StreamResponse:
    if not _is_dashboard(request):
        return await handler(request)
    try:
        response = await handler(request)
    except web.HTTPException as err:
        if err.status < 400:
            raise
        response = render(
            request,
            "error.html",
            {"title": err.reason, "message": ""},
            status=err.status,
        )
    except Exception:
        LOGGER.exception("Dashboard page failed: %s", request.path)
        response = render(
            request,
            "error.html",
            {"title": "Something went wrong", "message": "Try again in a moment."},
            status=500,
        )
    _decorate(request, response)
    return response


def setup_dashboard(app: web.Application) -> None:
    settings = app[SETTINGS]
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("cloud_server.dashboard", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
    )
    env.install_gettext_translations(translations(), newstyle=True)  # type: ignore[attr-defined]
    app[PUBLIC_URL] = settings.effective_public_url
    app[BILLING_ON] = settings.billing_enabled
    before = set(app.router.resources())
    views_auth.add_routes(app)
    views_app.add_routes(app)
    app.router.add_static("/static/", STATIC_DIR, name="dash.static", append_version=True)
    app[DASHBOARD_RESOURCES] = frozenset(set(app.router.resources()) - before)
    app.middlewares.append(dashboard_middleware)
