"""Fault suite: Stripe unreachable during checkout, then back (nothing lost, nothing doubled)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from sqlalchemy import func, select

from cloud_server.billing.models import BillingCustomer
from cloud_server.db.engine import DB_SESSIONMAKER
from cloud_server.settings import Settings
from tests.fakes.stripe_api import FakeStripe
from tests.server.test_billing_webhooks import billing_settings, stripe_fake

__all__ = ["stripe_fake"]  # fixture used here


class Switch:
    """A TCP port in front of the fake Stripe that can refuse connections ("down")."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = False
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._connect, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()  # the connection is cut at once, as by a dead network path
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def _customers(client: Any) -> int:
    async with client.app[DB_SESSIONMAKER]() as session:
        return int(await session.scalar(select(func.count()).select_from(BillingCustomer)) or 0)


async def test_checkout_while_stripe_is_unreachable_then_back(
    make_app: Any, server_settings: Settings, stripe_fake: FakeStripe, create_user: Any
) -> None:
    port = int(stripe_fake.base_url.rsplit(":", 1)[1])
    switch = Switch(port)
    front = await switch.start()
    try:
        settings = billing_settings(
            server_settings, stripe_fake, stripe_api_base=f"http://127.0.0.1:{front}"
        )
        client = await make_app(settings)
        _, token = await create_user(client=client)
        auth = {"Authorization": f"Bearer {token}"}

        down = await client.post("/api/billing/checkout", json={"plan": "byok"}, headers=auth)
        assert down.status == 503
        problem = await down.json()
        assert problem["code"] == "billing_unavailable"
        assert await _customers(client) == 0
        assert stripe_fake.calls == []

        switch.up = True
        back = await client.post("/api/billing/checkout", json={"plan": "byok"}, headers=auth)
        assert back.status == 200
        assert (await back.json())["url"]
        again = await client.post("/api/billing/checkout", json={"plan": "byok"}, headers=auth)
        assert again.status == 200
        # One customer at Stripe and in our database, whatever the failures and retries.
        assert await _customers(client) == 1
        assert len(stripe_fake.calls_to("/v1/customers")) == 1
    finally:
        await switch.close()
