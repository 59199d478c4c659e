"""Regression (schemathesis on PostgreSQL): NUL and lone surrogates are a 422, never a 500."""

from __future__ import annotations

from typing import Any

import pytest

from cloud_server.settings import Settings
from tests.server.conftest import DEFAULT_PASSWORD

# `engine_settings` comes first in each signature: the PostgreSQL database is made before
# the test's event loop exists.


# JSON text as a client sends it: the escapes reach the server as written.
@pytest.mark.parametrize(
    "email_json",
    [r'"nul\u0000@example.test"', r'"\udac8@example.test"'],
    ids=["nul", "lone-surrogate"],
)
async def test_register_with_unstorable_email_is_refused(
    engine_settings: Settings, make_app: Any, email_json: str
) -> None:
    client = await make_app(engine_settings)
    body = '{"email": ' + email_json + ', "password": "' + DEFAULT_PASSWORD + '"}'
    response = await client.post(
        "/api/auth/register", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status == 422
    problem = await response.json()
    assert problem["code"] == "validation_error"
    assert "NUL" in problem["detail"]


async def test_memory_paths_queries_and_bodies_refuse_nul(
    engine_settings: Settings, make_app: Any, create_user: Any
) -> None:
    client = await make_app(engine_settings)
    _, token = await create_user(client=client)
    auth = {"Authorization": f"Bearer {token}"}
    created = await client.post("/api/memory", json={"content": "tea\u0000time"}, headers=auth)
    assert created.status == 422
    listed = await client.get("/api/memory", params={"q": "tea\u0000"}, headers=auth)
    assert listed.status == 422
    by_id = await client.get("/api/memory/abc%00def", headers=auth)
    assert by_id.status == 422
    # Nothing was stored, and ordinary text still works.
    ok = await client.post("/api/memory", json={"content": "Tea at five."}, headers=auth)
    assert ok.status == 201
    everything = await (await client.get("/api/memory", headers=auth)).json()
    assert [m["content"] for m in everything] == ["Tea at five."]
