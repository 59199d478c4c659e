"""The real server, a fake Claude and a fake Stripe on 127.0.0.1, in a background thread.

For tests whose client side is synchronous (schemathesis uses `requests`): the server's
event loop runs in its own thread, so a blocking client in the test's thread talks to it
over real sockets, as any client would.

`LiveStack(settings)` starts everything; `stack.account()` registers a user through the
HTTP API and creates an installation, returning the real tokens a client would hold.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import requests
from aiohttp import web
from pydantic import SecretStr

from cloud_server.app import create_app
from cloud_server.settings import Settings
from tests.fakes.claude import FakeClaude
from tests.fakes.stripe_api import FakeStripe

SERVER_ANTHROPIC_KEY = "sk-ant-api03-server-" + "k" * 40
STRIPE_WEBHOOK_SECRET = "whsec_live_stack_" + "w" * 24
PASSWORD = "violet tractor under the bridge"


@dataclass(frozen=True)
class Account:
    email: str
    password: str
    user_id: str
    access_token: str
    refresh_token: str
    installation_id: str
    installation_token: str

    @property
    def user_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    @property
    def installation_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.installation_token}"}


class LiveStack:
    """Start with `with LiveStack(settings) as stack:`; `stack.base_url` is the server."""

    def __init__(self, settings: Settings, *, billing: bool = True) -> None:
        self._settings = settings
        self._billing = billing
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.claude = FakeClaude()
        self.stripe = FakeStripe()
        self.base_url = ""
        self.settings = settings
        self.app: web.Application | None = None
        self._runner: web.AppRunner | None = None

    def run[T](self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self) -> None:
        await self.claude.start()
        updates: dict[str, Any] = {
            "anthropic_base_url": self.claude.base_url,
            "anthropic_api_key": SecretStr(SERVER_ANTHROPIC_KEY),
            "memory_extraction": False,
        }
        if self._billing:
            await self.stripe.__aenter__()
            updates |= {
                "stripe_secret_key": SecretStr(self.stripe.secret_key),
                "stripe_webhook_secret": SecretStr(STRIPE_WEBHOOK_SECRET),
                "stripe_price_byok": "price_byok_live",
                "stripe_price_managed": "price_managed_live",
                "stripe_api_base": self.stripe.base_url,
            }
        self.settings = self._settings.model_copy(update=updates)
        self.app = create_app(self.settings)
        self._runner = web.AppRunner(self.app, handle_signals=False, shutdown_timeout=5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._billing:
            await self.stripe.__aexit__(None, None, None)
        await self.claude.close()

    def __enter__(self) -> LiveStack:
        self._thread.start()
        try:
            self.run(self._start())
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self._thread.is_alive():
                self.run(self._stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    def account(self, name: str = "Cottage") -> Account:
        """Register → (tokens) → create an installation, through the HTTP API."""
        email = f"live-{secrets.token_hex(5)}@example.test"
        with requests.Session() as http:
            r = http.post(
                f"{self.base_url}/api/auth/register",
                json={"email": email, "password": PASSWORD, "name": "Live"},
                timeout=30,
            )
            r.raise_for_status()
            tokens = r.json()
            r = http.post(
                f"{self.base_url}/api/installations",
                json={"name": name},
                headers={"Authorization": f"Bearer {tokens['access_token']}"},
                timeout=30,
            )
            r.raise_for_status()
            installation = r.json()
        return Account(
            email=email,
            password=PASSWORD,
            user_id=tokens["user"]["id"],
            access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"],
            installation_id=installation["id"],
            installation_token=installation["token"],
        )
