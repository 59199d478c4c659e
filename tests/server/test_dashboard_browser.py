"""The dashboard in a real browser: Debian's chromium driven by Playwright, against the real
server on 127.0.0.1 with the fake Claude, the fake Stripe and a real SMTP server (aiosmtpd).

One journey, keyboard only: sign up → confirm the address from the mail → create an
installation → copy its token → chat with it through `homemind_client` → see the message in
the usage chart → remember a fact through chat and forget it on the memory page → check
out (fake Stripe) → the webhook flips the plan shown → delete the account. On every page:
the CSP and frame headers, every input labelled, no console error; a screenshot per page
under tmp_path (and into docs/screenshots/ with HOMEMIND_UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr
from sqlalchemy import select

from cloud_server.app import create_app
from cloud_server.billing.models import Subscription
from cloud_server.dashboard.setup import CSP
from cloud_server.db.engine import DB_SESSIONMAKER
from cloud_server.db.models import User
from cloud_server.settings import Settings
from homemind_client import HomeMindClient
from homemind_client.models import ChatRequest
from tests.fakes.claude import FakeClaude, text, tool_use
from tests.fakes.stripe_api import WEBHOOK_SECRET, FakeStripe, event, signed, subscription_object
from tests.server.conftest import DEFAULT_PASSWORD, SmtpCapture

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PRICE_BYOK = "price_test_byok"
PRICE_MANAGED = "price_test_managed"

playwright_api = pytest.importorskip("playwright.async_api")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Stack:
    base: str
    app: web.Application
    claude: FakeClaude
    stripe: FakeStripe
    smtp: SmtpCapture


@pytest.fixture
async def stack(tmp_path: Path, smtp_server: SmtpCapture) -> AsyncIterator[Stack]:
    async with FakeClaude() as claude, FakeStripe() as stripe:
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        settings = Settings(
            data_dir=tmp_path,
            database_url=f"sqlite:///{tmp_path / 'homemind.db'}",
            mode="hosted",
            public_url=base,
            encryption_key=SecretStr(base64.b64encode(secrets.token_bytes(32)).decode()),
            jwt_secret=SecretStr(base64.b64encode(secrets.token_bytes(32)).decode()),
            anthropic_api_key=SecretStr("sk-ant-server-key"),
            anthropic_base_url=claude.base_url,
            memory_extraction=False,
            smtp_host=smtp_server.host,
            smtp_port=smtp_server.port,
            smtp_starttls=False,
            redis_url=None,
            stripe_secret_key=SecretStr(stripe.secret_key),
            stripe_webhook_secret=SecretStr(WEBHOOK_SECRET),
            stripe_price_byok=PRICE_BYOK,
            stripe_price_managed=PRICE_MANAGED,
            stripe_api_base=stripe.base_url,
        )
        app = create_app(settings)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield Stack(base, app, claude, stripe, smtp_server)
        finally:
            await runner.cleanup()


@dataclass
class PageWatch:
    """What the browser saw: console errors and the headers of every page."""

    base: str
    console_errors: list[str] = field(default_factory=list)
    documents: list[tuple[str, int, dict[str, str]]] = field(default_factory=list)

    def on_console(self, message: Any) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def on_response(self, response: Any) -> None:
        if response.request.resource_type == "document" and response.url.startswith(self.base):
            self.documents.append((response.url, response.status, response.headers))


async def _tab_to(page: Any, selector: str, limit: int = 60) -> None:
    """Press Tab until the element matching `selector` has the focus (keyboard only)."""
    target = page.locator(selector)
    await target.first.wait_for()
    for _ in range(limit):
        if await target.first.evaluate("el => el === document.activeElement"):
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"{selector} cannot be reached with the keyboard")


async def _type_into(page: Any, selector: str, value: str) -> None:
    await _tab_to(page, selector)
    await page.keyboard.type(value)


async def _press(page: Any, selector: str) -> None:
    await _tab_to(page, selector)
    async with page.expect_navigation():
        await page.keyboard.press("Enter")


async def _check_page(page: Any, name: str, shots: Path) -> None:
    """Every visible input labelled; a screenshot kept."""
    unlabelled = await page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
            .filter(el => el.type !== 'hidden' && !el.hidden)
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
            .map(el => el.name)"""
    )
    assert unlabelled == [], f"{name}: inputs without a label: {unlabelled}"
    await page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    if os.environ.get("HOMEMIND_UPDATE_SCREENSHOTS"):
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(DOCS_SCREENSHOTS / f"{name}.png"), full_page=True)


def _link_from(mail: Any, path: str) -> str:
    body = mail.get_payload(decode=True).decode()
    found = re.search(r"(http://\S+/" + re.escape(path) + r"#token=[A-Za-z0-9_-]+)", body)
    assert found, body
    return found.group(1)


async def test_the_whole_journey_in_a_browser(stack: Stack, tmp_path: Path) -> None:
    if shutil.which(CHROMIUM) is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    base = stack.base
    email = f"pat-{secrets.token_hex(4)}@example.test"
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        context = await browser.new_context(viewport={"width": 1100, "height": 800})
        await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
        page = await context.new_page()
        watch = PageWatch(base)
        page.on("console", watch.on_console)
        page.on("pageerror", lambda err: watch.console_errors.append(str(err)))
        page.on("response", watch.on_response)

        # Sign up: the hosted answer says nothing about whether the address was known.
        await page.goto(f"{base}/signup")
        await _check_page(page, "signup", shots)
        await _type_into(page, "#email", email)
        await _type_into(page, "#password", DEFAULT_PASSWORD)
        await _press(page, "button[type=submit].primary")
        assert "Check your inbox" in await page.inner_text("h1")
        await _check_page(page, "check-mail", shots)
        for public in ("forgot", "signin/link", "reset-password", "magic-link"):
            await page.goto(f"{base}/{public}")
            await _check_page(page, public.replace("/", "-"), shots)

        # Confirm the address from the mail (the landing page consumes nothing until POST).
        (mail,) = await stack.smtp.wait_for(1)
        await page.goto(_link_from(mail, "verify-email"))
        await _check_page(page, "verify-email", shots)
        await _press(page, "button[type=submit].primary")
        assert page.url.startswith(f"{base}/installations")
        assert "Your address is confirmed" in await page.inner_text("main")

        # Cookies: httpOnly, SameSite=Lax; never readable by scripts.
        cookies = {c["name"]: c for c in await context.cookies()}
        for name in ("homemind_refresh", "homemind_access", "homemind_csrf"):
            assert cookies[name]["httpOnly"] is True
            assert cookies[name]["sameSite"] == "Lax"
        assert await page.evaluate("document.cookie") == ""

        # CSRF: a state-changing POST without the form's token, or from another origin, fails.
        refused = await page.request.post(
            f"{base}/installations", form={"name": "Evil", "csrf_token": "forged"}
        )
        assert refused.status == 403
        csrf = cookies["homemind_csrf"]["value"]
        cross = await page.request.post(
            f"{base}/installations",
            form={"name": "Evil", "csrf_token": csrf},
            headers={"Origin": "https://evil.example"},
        )
        assert cross.status == 403

        # Create an installation; its token is shown once, with a working copy button.
        await _check_page(page, "installations-empty", shots)
        await _type_into(page, "#name", "Home")
        await _press(page, "form[action='/installations'] button[type=submit]")
        token = await page.input_value("#token")
        assert re.fullmatch(r"hm_[0-9A-Za-z]{61}", token)
        assert "config_flow_start/?domain=home_mind" in await page.content()
        await _tab_to(page, "button[data-copy]")
        await page.keyboard.press("Enter")
        # A locator wait (polled by Playwright itself): `wait_for_function` with a string
        # polls through `new Function` in the page, which the page's CSP refuses once the
        # first check is false.
        await playwright_api.expect(page.locator("[data-copy-status]")).to_have_text(
            re.compile(r"\S")
        )
        assert await page.evaluate("navigator.clipboard.readText()") == token
        await _check_page(page, "installation-token", shots)
        await page.goto(f"{base}/installations")
        await _check_page(page, "installations", shots)
        await page.goto(base + await page.get_attribute("a[href$='/revoke']", "href"))
        await _check_page(page, "installation-revoke", shots)

        # The token works in homemind_client against the real server and the fake Claude.
        stack.claude.script(text("Hello from Claude."))
        async with aiohttp.ClientSession() as http:
            client = HomeMindClient(http, base, token)
            answer = await client.chat(ChatRequest(message="Hi there"))
            assert answer.reply == "Hello from Claude."

            # The message shows in the usage page and its chart.
            await page.goto(f"{base}/installations")
            await _press(page, "nav a[href='/usage']")
            assert (await page.inner_text("#messages-count")).startswith("1")
            today = time.strftime("%Y-%m-%d", time.gmtime())
            bar = page.locator(f"g.bar[data-day='{today}']")
            assert await bar.get_attribute("data-messages") == "1"
            await _check_page(page, "usage", shots)

            # Remember a fact through chat; forget it on the memory page.
            stack.claude.script(
                tool_use("memory_remember", {"content": "Our daughter is called Ana."}),
                text("I will remember that."),
            )
            answer = await client.chat(ChatRequest(message="Our daughter is called Ana."))
            assert answer.reply == "I will remember that."
        await _press(page, "nav a[href='/memory']")
        assert "Our daughter is called Ana." in await page.inner_text("main")
        await _check_page(page, "memory", shots)
        await _press(page, "button[aria-label='Forget: Our daughter is called Ana.']")
        assert "Our daughter is called Ana." not in await page.inner_text("main")

        # Check out with the fake Stripe; the webhook flips the plan the page shows.
        await _press(page, "nav a[href='/billing']")
        assert await page.get_attribute("#plan-status", "data-status") == "trialing"
        await _check_page(page, "billing", shots)

        # The browser cannot reach Stripe from here: the checkout form's answer is taken
        # as it comes (a redirect to the fake's checkout URL) and a stand-in page is shown.
        redirected: list[str] = []

        async def stripe_checkout(route: Any) -> None:
            answer = await route.fetch(max_redirects=0)
            redirected.append(answer.headers.get("location", ""))
            await route.fulfill(
                status=200, content_type="text/html", body="<title>Stripe Checkout</title>"
            )

        await page.route(f"{base}/billing/checkout", stripe_checkout)
        await _press(page, "form[action='/billing/checkout'] input[value='managed'] + button")
        assert redirected[0].startswith("https://checkout.stripe.test/c/pay/cs_")
        (session_call,) = stack.stripe.calls_to("/v1/checkout/sessions")
        assert session_call.params["line_items"][0]["price"] == PRICE_MANAGED
        async with stack.app[DB_SESSIONMAKER]() as db:
            user_id = (await db.execute(select(User.id).where(User.email == email))).scalar_one()
        obj = subscription_object(
            "sub_journey",
            status="active",
            price=PRICE_MANAGED,
            user_id=user_id,
            customer=next(iter(stack.stripe.customers)),
        )
        stack.stripe.subscriptions["sub_journey"] = obj
        body, headers = signed(
            event("customer.subscription.created", obj, created=int(time.time()))
        )
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{base}/api/billing/webhook", data=body, headers=headers) as delivered,
        ):
            assert delivered.status == 200
        await page.goto(f"{base}/billing?checkout=success")
        assert await page.get_attribute("#plan-status", "data-status") == "active"
        assert await page.inner_text("#plan-tier") == "Managed"
        await _check_page(page, "billing-active", shots)

        # Delete the account: Stripe cancelled first, then every byte here.
        await _press(page, "nav a[href='/account']")
        await _check_page(page, "account", shots)
        await page.goto(f"{base}/account/two-step")
        await _check_page(page, "account-two-step", shots)
        await page.goto(f"{base}/account")
        await _press(page, "a[href='/account/delete']")
        await _check_page(page, "account-delete", shots)
        await _type_into(page, "#password", DEFAULT_PASSWORD)
        await _press(page, "button[type=submit].danger")
        assert "Your account is gone" in await page.inner_text("h1")
        assert stack.stripe.subscriptions["sub_journey"]["status"] == "canceled"
        async with stack.app[DB_SESSIONMAKER]() as db:
            assert (await db.execute(select(User).where(User.email == email))).first() is None
            assert (await db.execute(select(Subscription))).first() is None

        # Pages after sign-out: the session is gone.
        await page.goto(f"{base}/installations")
        assert page.url.startswith(f"{base}/signin")
        await _check_page(page, "signin", shots)
        await browser.close()

    assert watch.console_errors == []
    assert watch.documents, "no page was seen"
    # Every page the browser loaded (the Stripe stand-in aside) had the strict headers.
    for url, status, headers in watch.documents:
        if url.startswith(base) and status < 300 and not url.endswith("/billing/checkout"):
            assert headers.get("content-security-policy") == CSP, url
            assert headers.get("x-frame-options") == "DENY", url
