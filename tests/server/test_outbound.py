"""Checklist row 34: the server calls only its configured upstreams and follows no redirect.

A redirect from "Stripe" or "Claude" to another host would hand that host our secret key
(the SDKs resend their auth headers) and let an upstream steer us anywhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from cloud_server.settings import Settings


@pytest.fixture
async def elsewhere() -> AsyncIterator[tuple[TestServer, list[web.Request]]]:
    """Another host, recording every request that reaches it."""
    hits: list[web.Request] = []

    async def record(request: web.Request) -> web.Response:
        hits.append(request)
        return web.json_response({"url": "https://elsewhere.test/phish", "id": "x"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server, hits
    await server.close()


async def _redirector(target: str) -> TestServer:
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(target + request.path_qs)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_stripe_redirect_is_not_followed(
    make_app: Any, server_settings: Settings, create_user: Any, elsewhere: Any
) -> None:
    other, hits = elsewhere
    stripe_api = await _redirector(str(other.make_url("")).rstrip("/"))
    try:
        client = await make_app(
            server_settings.model_copy(
                update={
                    "stripe_secret_key": SecretStr("sk_test_outbound"),
                    "stripe_webhook_secret": SecretStr("whsec_outbound"),
                    "stripe_price_byok": "price_byok",
                    "stripe_api_base": str(stripe_api.make_url("")).rstrip("/"),
                }
            )
        )
        _, token = await create_user(client=client)
        response = await client.post(
            "/api/billing/checkout",
            json={"plan": "byok"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status == 503
        assert (await response.json())["code"] == "billing_unavailable"
        assert hits == []  # the other host never saw a request (nor the key)
    finally:
        await stripe_api.close()


async def test_claude_redirect_is_not_followed(
    make_app: Any, server_settings: Settings, create_installation: Any, elsewhere: Any
) -> None:
    other, hits = elsewhere
    claude = await _redirector(str(other.make_url("")).rstrip("/"))
    try:
        client = await make_app(
            server_settings.model_copy(
                update={
                    "anthropic_base_url": str(claude.make_url("")).rstrip("/"),
                    "anthropic_api_key": SecretStr("sk-ant-outbound-" + "o" * 30),
                    "memory_extraction": False,
                }
            )
        )
        _, token = await create_installation(client=client)
        response = await client.post(
            "/api/chat", json={"message": "hi"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status in (502, 503)
        assert hits == []
    finally:
        await claude.close()
