"""Security headers on every response the application sends (checklist row 21).

Set in `on_response_prepare`, so they are on every answer the app makes: handlers,
problem+json errors, the router's own 404/405, and SSE streams. (aiohttp's parser answers a
malformed request with a bare 400 before the app sees it; that one carries no body to protect.)

- `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`,
  `X-Frame-Options: DENY` and `Content-Security-Policy: frame-ancestors 'none'` everywhere
  (a page that sets its own CSP keeps it: the dashboard's pages own theirs);
- `Cache-Control: no-store` on the whole API (`/api/...`: tokens, account data, streams);
- `Strict-Transport-Security` (1 year, subdomains) in hosted mode, where TLS terminates in
  front of us; a self-hosted server is often reached over plain HTTP on the LAN.

No CORS headers are ever sent: the dashboard is same-origin, and a browser on another
origin must not read the API's answers (row 22).
"""

from __future__ import annotations

from aiohttp import web

from .app_keys import SETTINGS

HSTS = "max-age=31536000; includeSubDomains"
_ALWAYS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_FRAME_ANCESTORS = "frame-ancestors 'none'"


async def _add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    for name, value in _ALWAYS.items():
        headers.setdefault(name, value)
    csp = headers.get("Content-Security-Policy")
    if csp is None:
        headers["Content-Security-Policy"] = _FRAME_ANCESTORS
    elif "frame-ancestors" not in csp:
        headers["Content-Security-Policy"] = f"{csp.rstrip('; ')}; {_FRAME_ANCESTORS}"
    if request.path.startswith("/api/"):
        headers["Cache-Control"] = "no-store"  # also over SSE's `no-cache`
    settings = request.app.get(SETTINGS)
    if settings is not None and settings.hosted:
        headers.setdefault("Strict-Transport-Security", HSTS)
    for name in [h for h in headers if h.lower().startswith("access-control-")]:
        del headers[name]


def setup_http_security(app: web.Application) -> None:
    app.on_response_prepare.append(_add_security_headers)  # type: ignore[arg-type]
