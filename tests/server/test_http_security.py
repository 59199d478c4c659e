"""Checklist rows 21-22: security headers on every response, and no CORS at all."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from cloud_server.app import create_app
from cloud_server.http_security import HSTS
from cloud_server.openapi import OPERATIONS
from cloud_server.settings import Settings
from tests.fakes.claude import FakeClaude

EVIL = "https://evil.example"


def _check(response: Any, *, api: bool, hosted: bool) -> None:
    where = f"{response.method} {response.url.path} -> {response.status}"
    headers = response.headers
    assert headers.get("X-Content-Type-Options") == "nosniff", where
    assert "frame-ancestors 'none'" in headers.get("Content-Security-Policy", ""), where
    assert headers.get("Referrer-Policy") == "no-referrer", where
    if api:
        assert headers.get("Cache-Control") == "no-store", where
    assert (headers.get("Strict-Transport-Security") == HSTS) is hosted, where
    assert not [h for h in headers if h.lower().startswith("access-control-")], where


def _hosted(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "mode": "hosted",
            "encryption_key": SecretStr(base64.b64encode(b"e" * 32).decode()),
            "jwt_secret": SecretStr("j" * 40),
            "public_url": "https://homemind.test",
        }
    )


@pytest.mark.parametrize("hosted", [False, True], ids=["self-hosted", "hosted"])
async def test_every_route_and_error_carries_the_headers(
    aiohttp_client: Any, server_settings: Settings, create_user: Any, hosted: bool
) -> None:
    settings = _hosted(server_settings) if hosted else server_settings
    app = create_app(settings)

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    app.router.add_get("/api/test-boom", boom)
    client = await aiohttp_client(app)
    _, token = await create_user(client=client)
    served = {(r.method.lower(), r.resource.canonical) for r in app.router.routes() if r.resource}
    checked = 0
    for op in OPERATIONS:
        if (op.method, op.path) not in served:
            continue
        path = op.path.replace("{id}", "0" * 32)
        for headers in ({"Origin": EVIL}, {"Origin": EVIL, "Authorization": f"Bearer {token}"}):
            response = await client.request(op.method, path, headers=headers, json={})
            _check(response, api=path.startswith("/api/"), hosted=hosted)
            checked += 1
    assert checked >= 50
    for method, path in (
        ("GET", "/no-such-page"),
        ("PUT", "/api/auth/me"),
        ("GET", "/api/test-boom"),
    ):
        response = await client.request(method, path, headers={"Origin": EVIL})
        assert response.status in (404, 405, 500)
        _check(response, api=path.startswith("/api/"), hosted=hosted)


async def test_cors_preflight_is_not_granted(make_app: Any) -> None:
    client = await make_app()
    response = await client.options(
        "/api/auth/login",
        headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"},
    )
    assert response.status in (403, 404, 405)
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_sse_stream_carries_the_headers(
    make_app: Any, server_settings: Settings, create_installation: Any
) -> None:
    async with FakeClaude() as claude:
        client = await make_app(
            server_settings.model_copy(
                update={
                    "anthropic_base_url": claude.base_url,
                    "anthropic_api_key": SecretStr("sk-ant-test-" + "x" * 30),
                    "memory_extraction": False,
                }
            )
        )
        _, token = await create_installation(client=client)
        response = await client.post(
            "/api/chat/stream",
            json={"message": "hi"},
            headers={"Authorization": f"Bearer {token}", "Origin": EVIL},
        )
        assert response.status == 200
        assert response.content_type == "text/event-stream"
        _check(response, api=True, hosted=False)
        assert b"event: done" in await response.read()
