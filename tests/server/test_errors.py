"""Bad input and failures: problem+json with stable codes, never a stack trace
(docs/security-checklist.md rows 17 and 18), and nothing half-written."""

from __future__ import annotations

import logging

from aiohttp import web
from sqlalchemy import func, select

from cloud_server.app import create_app
from cloud_server.db.engine import DB_SESSIONMAKER
from cloud_server.db.models import User

PROBLEM = "application/problem+json"


async def assert_problem(response, status: int, code: str) -> dict:
    assert response.status == status
    assert response.content_type == PROBLEM
    body = await response.json()
    assert body["status"] == status and body["code"] == code
    assert {"type", "title", "detail", "request_id"} <= body.keys()
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


async def test_oversized_body_is_413(make_app, server_settings):
    client = await make_app(server_settings.model_copy(update={"max_body_bytes": 2048}))
    big = {"email": "a@example.test", "password": "x" * 5000}
    response = await client.post("/api/auth/login", json=big)
    await assert_problem(response, 413, "payload_too_large")


async def test_wrong_content_type_is_415(make_app):
    client = await make_app()
    response = await client.post(
        "/api/auth/login",
        data='{"email": "a@example.test", "password": "whatever123"}',
        headers={"Content-Type": "text/plain"},
    )
    await assert_problem(response, 415, "unsupported_media_type")


async def test_malformed_json_unknown_fields_and_wrong_types_are_422(make_app):
    client = await make_app()
    response = await client.post(
        "/api/auth/register", data="{not json", headers={"Content-Type": "application/json"}
    )
    await assert_problem(response, 422, "validation_error")

    response = await client.post(
        "/api/auth/register",
        json={"email": "admin@example.test", "password": "a fine passphrase", "is_admin": True},
    )
    body = await assert_problem(response, 422, "validation_error")
    assert ["is_admin"] in [error["loc"] for error in body["errors"]]

    response = await client.post("/api/auth/login", json={"email": 42, "password": ["x"]})
    body = await assert_problem(response, 422, "validation_error")
    assert {tuple(e["loc"]) for e in body["errors"]} == {("email",), ("password",)}
    assert "42" not in str(body["errors"])  # values are not echoed

    response = await client.post("/api/auth/login", json=["email", "password"])
    await assert_problem(response, 422, "validation_error")


async def test_refused_registration_writes_nothing(make_app):
    client = await make_app()
    for body in (
        {"email": "half@example.test", "password": "short"},
        {"email": "not-an-email", "password": "a fine passphrase"},
    ):
        response = await client.post("/api/auth/register", json=body)
        await assert_problem(response, 422, "validation_error")
    async with client.app[DB_SESSIONMAKER]() as session:
        assert (await session.execute(select(func.count()).select_from(User))).scalar() == 0


async def test_unauthenticated_calls_are_401_problems(make_app):
    client = await make_app()
    for method, path in [
        ("GET", "/api/auth/me"),
        ("POST", "/api/auth/logout"),
        ("GET", "/api/installations"),
        ("POST", "/api/installations"),
        ("DELETE", "/api/installations/abc"),
        ("PUT", "/api/installations/abc/key"),
        ("GET", "/api/installation"),
    ]:
        response = await client.request(method, path)
        body = await assert_problem(response, 401, "invalid_token")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert body["detail"]


async def test_500_has_no_traceback_and_the_log_has_it(aiohttp_client, server_settings, caplog):
    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("database password is hunter2 at /srv/app/secret.py")

    app = create_app(server_settings)
    app.router.add_get("/test/boom", boom)
    client = await aiohttp_client(app)
    with caplog.at_level(logging.ERROR):
        response = await client.get("/test/boom", headers={"X-Request-ID": "req-12345678"})
    body = await assert_problem(response, 500, "internal_error")
    text = await response.text()
    for leak in ("Traceback", "RuntimeError", "hunter2", ".py", "/srv"):
        assert leak not in text
    assert body["request_id"] == "req-12345678"
    records = [r for r in caplog.records if r.exc_info]
    assert records, "the traceback must reach the log"
    assert "req-12345678" in records[0].getMessage()
    assert records[0].exc_info[0] is RuntimeError
