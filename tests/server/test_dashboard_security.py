"""Dashboard security without a browser: cookies, CSP on every page, CSRF, no enumeration."""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from sqlalchemy import select, update

from cloud_server.accounts.tokens import hash_token
from cloud_server.dashboard.setup import CSP
from cloud_server.db.engine import DB_SESSIONMAKER
from cloud_server.db.models import AuthSession, RefreshToken
from cloud_server.settings import Settings
from tests.server.conftest import DEFAULT_PASSWORD, SmtpCapture

MakeApp = Callable[..., Awaitable[TestClient[Any, Any]]]
PAGES = [
    "/signin",
    "/signup",
    "/forgot",
    "/signin/link",
    "/magic-link",
    "/verify-email",
    "/reset-password",
    "/installations",
    "/usage",
    "/billing",
    "/memory",
    "/memory/export",
    "/memory/delete-all",
    "/account",
    "/account/export",
    "/account/delete",
    "/account/two-step",
    "/installations/nope/revoke",
    "/memory/nope/edit",
]


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found
    return found.group(1)


async def _sign_up(client: TestClient[Any, Any], email: str) -> Any:
    page = await client.get("/signup")
    return await client.post(
        "/signup",
        data={"csrf_token": _csrf(await page.text()), "email": email, "password": DEFAULT_PASSWORD},
        allow_redirects=False,
    )


async def test_every_page_has_the_strict_headers_signed_in_or_not(make_app: MakeApp) -> None:
    client = await make_app()
    for signed_in in (False, True):
        if signed_in:
            assert (await _sign_up(client, "pat@example.test")).status == 303
        for path in PAGES:
            response = await client.get(path, allow_redirects=False)
            assert response.status < 500, path
            assert response.headers["Content-Security-Policy"] == CSP, path
            assert response.headers["X-Frame-Options"] == "DENY", path
            assert response.headers["X-Content-Type-Options"] == "nosniff", path
            assert "no-store" in response.headers["Cache-Control"], path
            if response.content_type == "text/html":
                # No inline script or style: everything comes from /static/.
                html = await response.text()
                assert "<script>" not in html and "style=" not in html and "<style" not in html
    assert "'unsafe-inline'" not in CSP and "frame-ancestors 'none'" in CSP


async def test_https_cookies_are_host_prefixed_secure_httponly_lax(
    make_app: MakeApp, server_settings: Settings
) -> None:
    client = await make_app(
        server_settings.model_copy(update={"public_url": "https://homemind.example"})
    )
    page = await client.get("/signup")
    (csrf_cookie,) = page.headers.getall("Set-Cookie")
    assert csrf_cookie.startswith("__Host-homemind_csrf=")
    token = _csrf(await page.text())
    # The test client speaks plain http, so it keeps no Secure cookie: sent by hand.
    response = await client.post(
        "/signup",
        data={"csrf_token": token, "email": "sec@example.test", "password": DEFAULT_PASSWORD},
        headers={"Cookie": f"__Host-homemind_csrf={token}"},
        allow_redirects=False,
    )
    assert response.status == 303
    cookies = [*response.headers.getall("Set-Cookie"), csrf_cookie]
    names = {c.split("=", 1)[0] for c in cookies}
    assert {"__Host-homemind_refresh", "__Host-homemind_access"} <= names
    for cookie in cookies:
        attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
        assert {"httponly", "secure", "path", "samesite"} <= attributes, cookie
        assert "domain" not in attributes, cookie
        assert "SameSite=Lax" in cookie and "Path=/" in cookie


def _set_cookie(response: aiohttp.ClientResponse, name: str) -> str | None:
    for header in response.headers.getall("Set-Cookie", []):
        pair = header.split(";", 1)[0]
        if pair.startswith(f"{name}="):
            value = pair.split("=", 1)[1].strip('"')
            if value:  # not a deletion (an empty value with Max-Age=0)
                return value
    return None


async def test_requests_racing_to_refresh_keep_the_browser_signed_in_and_a_late_replay_does_not(
    engine_settings: Settings, make_app: MakeApp
) -> None:
    client = await make_app(engine_settings)
    signed_up = await _sign_up(client, "race@example.test")
    first = _set_cookie(signed_up, "homemind_refresh")
    assert first is not None
    # A browser whose access cookie has expired opens four pages at once: each request
    # carries the same refresh cookie (cookies sent by hand, none kept between requests).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as browser:

        async def account(refresh: str) -> aiohttp.ClientResponse:
            url = client.make_url("/account")
            cookie = {"Cookie": f"homemind_refresh={refresh}"}
            async with browser.get(url, headers=cookie, allow_redirects=False) as response:
                await response.read()
                return response

        pages = await asyncio.gather(*[account(first) for _ in range(4)])
        assert [page.status for page in pages] == [200] * 4
        assert all(_set_cookie(page, "homemind_access") for page in pages)
        rotated = [r for page in pages if (r := _set_cookie(page, "homemind_refresh"))]
        assert len(rotated) == 1  # exactly one rotation; the others got an access cookie only
        # The cookie the browser keeps is the rotated one, and it goes on working.
        again = await account(rotated[0])
        assert again.status == 200
        newest = _set_cookie(again, "homemind_refresh")
        assert newest is not None

        # The first cookie, sent again after the leeway, is a replay: the family is revoked.
        async with client.app[DB_SESSIONMAKER].begin() as session:
            spent = (
                await session.execute(
                    select(RefreshToken).where(RefreshToken.token_hash == hash_token(first))
                )
            ).scalar_one()
            assert spent.used_at is not None
            await session.execute(
                update(RefreshToken)
                .where(RefreshToken.id == spent.id)
                .values(used_at=spent.used_at - timedelta(seconds=31))
            )
        assert (await account(first)).status == 303
        assert (await account(newest)).status == 303
        async with client.app[DB_SESSIONMAKER]() as session:
            family = await session.get(AuthSession, spent.session_id)
            assert family is not None and family.revoked_at is not None


async def test_an_api_refresh_token_sent_as_a_cookie_gets_no_leeway(
    engine_settings: Settings, make_app: MakeApp
) -> None:
    client = await make_app(engine_settings)
    registered = await client.post(
        "/api/auth/register", json={"email": "api@example.test", "password": DEFAULT_PASSWORD}
    )
    spent = (await registered.json())["refresh_token"]
    rotated = await client.post("/api/auth/refresh", json={"refresh_token": spent})
    newest = (await rotated.json())["refresh_token"]
    # A moment later, the spent API token as a dashboard cookie: a replay, not a race.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as browser:
        url = client.make_url("/account")
        cookie = {"Cookie": f"homemind_refresh={spent}"}
        async with browser.get(url, headers=cookie, allow_redirects=False) as page:
            assert page.status == 303
            assert _set_cookie(page, "homemind_access") is None
    # The whole family is revoked, the API client's newest token with it.
    again = await client.post("/api/auth/refresh", json={"refresh_token": newest})
    assert again.status == 401


async def test_forms_without_the_token_or_from_another_site_are_refused(make_app: MakeApp) -> None:
    client = await make_app()
    page = await client.get("/signup")
    token = _csrf(await page.text())
    form = {"email": "x@example.test", "password": DEFAULT_PASSWORD}
    assert (await client.post("/signup", data=form)).status == 403
    assert (await client.post("/signup", data={**form, "csrf_token": "x" * 43})).status == 403
    cross = await client.post(
        "/signup", data={**form, "csrf_token": token}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status == 403
    sibling = await client.post(
        "/signup", data={**form, "csrf_token": token}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert sibling.status == 403


async def test_hosted_sign_up_answers_alike_for_new_and_taken_addresses(
    make_app: MakeApp, server_settings: Settings, smtp_server: SmtpCapture
) -> None:
    settings = server_settings.model_copy(
        update={
            "mode": "hosted",
            "encryption_key": SecretStr(base64.b64encode(secrets.token_bytes(32)).decode()),
            "jwt_secret": SecretStr(base64.b64encode(secrets.token_bytes(32)).decode()),
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "smtp_starttls": False,
        }
    )
    client = await make_app(settings)
    first = await _sign_up(client, "taken@example.test")
    again = await _sign_up(client, "taken@example.test")
    assert first.status == again.status == 200
    strip = lambda html: re.sub(r'value="[^"]+"', "", html)  # noqa: E731 - the CSRF token differs
    assert strip(await first.text()) == strip(await again.text())
    # Neither opens a session; the owner of the taken address is told by mail.
    assert not any("refresh" in c for c in again.headers.getall("Set-Cookie", []))
    mails = await smtp_server.wait_for(2)
    assert "Confirm your Home Mind address" in mails[0]["Subject"]
    assert "already have a Home Mind account" in mails[1]["Subject"]


async def test_sign_in_errors_are_the_same_for_unknown_and_wrong_password(
    make_app: MakeApp,
) -> None:
    client = await make_app()
    assert (await _sign_up(client, "known@example.test")).status == 303
    client.session.cookie_jar.clear()
    answers = []
    for email in ("known@example.test", "unknown@example.test"):
        page = await client.get("/signin")
        response = await client.post(
            "/signin",
            data={
                "csrf_token": _csrf(await page.text()),
                "email": email,
                "password": "wrong password!",
            },
        )
        answers.append((response.status, re.sub(r'value="[^"]*"', "", await response.text())))
    assert answers[0] == answers[1]
    assert answers[0][0] == 401
    assert "The email or password is not correct." in answers[0][1]
