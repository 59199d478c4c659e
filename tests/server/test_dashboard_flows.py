"""Dashboard flows without a browser: the magic link bound to its browser, the reset page,
and a self-hosted server's plan page (billing off: no buttons)."""

from __future__ import annotations

import base64
import html
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

from cloud_server.accounts import totp
from cloud_server.dashboard.views_app import totp_qr
from cloud_server.settings import Settings
from tests.server.conftest import DEFAULT_PASSWORD, SmtpCapture

MakeApp = Callable[..., Awaitable[TestClient[Any, Any]]]


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found
    return found.group(1)


def _token(mail: Any, page: str) -> str:
    body = mail.get_payload(decode=True).decode()
    found = re.search(page + r"#token=([A-Za-z0-9_-]+)", body)
    assert found, body
    return found.group(1)


async def _post_form(client: TestClient[Any, Any], page: str, **fields: str) -> Any:
    html = await (await client.get(page)).text()
    return await client.post(
        page, data={"csrf_token": _csrf(html), **fields}, allow_redirects=False
    )


def _mail_settings(settings: Settings, smtp: SmtpCapture) -> Settings:
    return settings.model_copy(
        update={"smtp_host": smtp.host, "smtp_port": smtp.port, "smtp_starttls": False}
    )


async def test_a_magic_link_asked_for_in_a_browser_works_only_there(
    make_app: MakeApp, server_settings: Settings, smtp_server: SmtpCapture
) -> None:
    client = await make_app(_mail_settings(server_settings, smtp_server))
    await client.post(
        "/api/auth/register", json={"email": "ana@example.test", "password": DEFAULT_PASSWORD}
    )
    asked = await _post_form(client, "/signin/link", email="ana@example.test")
    assert asked.status == 200
    assert "Check your inbox" in await asked.text()
    (mail,) = await smtp_server.wait_for(1)
    token = _token(mail, "magic-link")
    # Elsewhere (no browser cookie): refused, and the link is not spent by that.
    elsewhere = await client.post("/api/auth/magic-link/confirm", json={"token": token})
    assert elsewhere.status == 400
    here = await _post_form(client, "/magic-link", token=token)
    assert here.status == 303
    assert here.headers["Location"] == "/installations"
    assert (await client.get("/account", allow_redirects=False)).status == 200
    # Single use: the same link again shows the error next to the field.
    again = await _post_form(client, "/magic-link", token=token)
    assert again.status == 400
    assert 'id="token-error"' in await again.text()


async def test_the_reset_page_sets_a_new_password_and_reports_a_spent_link(
    make_app: MakeApp, server_settings: Settings, smtp_server: SmtpCapture
) -> None:
    client = await make_app(_mail_settings(server_settings, smtp_server))
    await client.post(
        "/api/auth/register", json={"email": "bo@example.test", "password": DEFAULT_PASSWORD}
    )
    sent = await _post_form(client, "/forgot", email="bo@example.test")
    assert "Check your inbox" in await sent.text()
    (mail,) = await smtp_server.wait_for(1)
    token = _token(mail, "reset-password")
    weak = await _post_form(client, "/reset-password", token=token, password="short")
    assert weak.status == 400
    assert 'id="password-error"' in await weak.text()
    done = await _post_form(
        client, "/reset-password", token=token, password="a brand new passphrase"
    )
    assert done.status == 200
    assert "Password changed" in await done.text()
    spent = await _post_form(client, "/reset-password", token=token, password="another new one!")
    assert 'id="token-error"' in await spent.text()
    login = await client.post(
        "/api/auth/login", json={"email": "bo@example.test", "password": "a brand new passphrase"}
    )
    assert login.status == 200


async def test_a_self_hosted_plan_page_says_billing_is_off_and_offers_nothing(
    make_app: MakeApp,
) -> None:
    client = await make_app()
    signed_up = await _post_form(
        client, "/signup", email="self@example.test", password=DEFAULT_PASSWORD
    )
    assert signed_up.status == 303
    page = await (await client.get("/billing")).text()
    assert "Billing is off on this server" in page
    assert "/billing/checkout" not in page and "/billing/portal" not in page
    html = await (await client.get("/installations")).text()
    refused = await client.post(
        "/billing/checkout", data={"csrf_token": _csrf(html), "plan": "managed"}
    )
    assert refused.status == 404


async def test_two_step_enrolment_shows_a_qr_code_of_the_otpauth_uri_and_the_key(
    make_app: MakeApp,
) -> None:
    client = await make_app()
    await client.post(
        "/api/auth/register", json={"email": "qr@example.test", "password": DEFAULT_PASSWORD}
    )
    signed_in = await _post_form(
        client, "/signin", email="qr@example.test", password=DEFAULT_PASSWORD
    )
    assert signed_in.status == 303
    page = await (await client.get("/account/two-step")).text()
    uri = html.unescape(re.search(r'<a href="(otpauth://[^"]+)"', page).group(1))  # type: ignore[union-attr]
    secret = re.search(r'<code id="totp-secret">([A-Z2-7]+)</code>', page).group(1)  # type: ignore[union-attr]
    assert f"secret={secret}" in uri
    # The QR code is the URI itself (what segno draws for it), a data URI: no image request.
    shown = re.search(r'<img id="totp-qr" src="(data:image/svg\+xml[^"]+)"', page)
    assert shown is not None
    assert html.unescape(shown.group(1)) == totp_qr(uri)
    assert html.unescape(shown.group(1)) != totp_qr(uri.replace(secret, secret[::-1]))
    # The key from the page turns two-step sign-in on.
    code = totp.code_at(base64.b32decode(secret + "=" * (-len(secret) % 8)), time.time())
    setup_token = re.search(r'name="setup_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    done = await client.post(
        "/account/two-step",
        data={
            "csrf_token": _csrf(page),
            "setup_token": setup_token,
            "secret": secret,
            "uri": uri,
            "code": code,
        },
        allow_redirects=False,
    )
    assert done.status == 303
