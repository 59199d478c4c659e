"""Installations: creation, listing, deletion, Anthropic keys, `GET /api/installation`,
and the installation token itself (format, storage, revocation, owner scoping)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from cloud_server.accounts.scopes import ALL_INSTALLATION_SCOPES
from cloud_server.accounts.tokens import is_well_formed_installation_token
from cloud_server.db.engine import DB_SESSIONMAKER
from cloud_server.db.models import Installation
from cloud_server.openapi import INSTALLATION_SCHEME, OPENAPI_PATH


async def test_create_list_and_use_token(engine_settings, make_app, create_user, auth_headers):
    client = await make_app(engine_settings)
    _, access = await create_user()
    created = await client.post(
        "/api/installations", json={"name": "Cabin"}, headers=auth_headers(access)
    )
    assert created.status == 201
    body = await created.json()
    token = body["token"]
    assert len(token) == 64 and token.startswith("hm_")
    assert is_well_formed_installation_token(token)
    assert body["token_hint"].endswith(token[-4:])

    listed = await (await client.get("/api/installations", headers=auth_headers(access))).json()
    assert [item["id"] for item in listed] == [body["id"]]
    assert "token" not in listed[0]
    assert listed[0]["has_api_key"] is False and listed[0]["key_hint"] is None

    info = await client.get("/api/installation", headers=auth_headers(token))
    assert info.status == 200
    data = await info.json()
    assert data["id"] == body["id"] and data["name"] == "Cabin"
    assert data["tier"] == "free" and data["has_api_key"] is False
    assert data["subscription"]["status"] == "none"

    async with client.app[DB_SESSIONMAKER]() as session:
        row = (
            await session.execute(select(Installation).where(Installation.id == body["id"]))
        ).scalar_one()
    assert token not in (row.token_hash, row.token_hint)
    assert row.last_seen_at is not None


async def test_deleted_installation_token_is_revoked_at_once(
    engine_settings, make_app, create_user, auth_headers
):
    client = await make_app(engine_settings)
    _, access = await create_user()
    created = await (
        await client.post("/api/installations", json={"name": "A"}, headers=auth_headers(access))
    ).json()
    token = created["token"]
    assert (await client.get("/api/installation", headers=auth_headers(token))).status == 200
    deleted = await client.delete(
        f"/api/installations/{created['id']}", headers=auth_headers(access)
    )
    assert deleted.status == 204
    refused = await client.get("/api/installation", headers=auth_headers(token))
    assert refused.status == 401
    assert (await refused.json())["code"] == "installation_revoked"
    listed = await (await client.get("/api/installations", headers=auth_headers(access))).json()
    assert listed == []
    again = await client.delete(f"/api/installations/{created['id']}", headers=auth_headers(access))
    assert again.status == 404


async def test_key_put_and_delete_show_only_hint(
    engine_settings, make_app, create_user, auth_headers
):
    client = await make_app(engine_settings)
    _, access = await create_user()
    created = await (
        await client.post("/api/installations", json={"name": "A"}, headers=auth_headers(access))
    ).json()
    url = f"/api/installations/{created['id']}/key"
    put = await client.put(
        url, json={"api_key": "sk-ant-test-fake-1234"}, headers=auth_headers(access)
    )
    assert put.status == 200
    text = await put.text()
    assert "sk-ant-test-fake" not in text
    assert await put.json() == {"has_api_key": True, "key_hint": "1234"}
    listed: list[dict[str, Any]] = await (
        await client.get("/api/installations", headers=auth_headers(access))
    ).json()
    assert listed[0]["has_api_key"] is True and listed[0]["key_hint"] == "1234"
    info = await (
        await client.get("/api/installation", headers=auth_headers(created["token"]))
    ).json()
    assert info["has_api_key"] is True
    assert (await client.delete(url, headers=auth_headers(access))).status == 204
    listed = await (await client.get("/api/installations", headers=auth_headers(access))).json()
    assert listed[0]["has_api_key"] is False and listed[0]["key_hint"] is None


async def test_principal_helpers_give_installation_and_decrypted_key(
    engine_settings, aiohttp_client, create_installation, auth_headers
):
    """What chat and memory rely on: `require_installation` + `installation_api_key`."""
    from aiohttp import web

    from cloud_server.accounts.principal import installation_api_key, require_installation
    from cloud_server.app import create_app

    async def whoami(request: web.Request) -> web.Response:
        principal = await require_installation(request)
        key = await installation_api_key(request, principal)
        return web.json_response(
            {"id": principal.installation_id, "user": principal.user_id, "key": key}
        )

    app = create_app(engine_settings)
    app.router.add_get("/test/whoami", whoami)
    client = await aiohttp_client(app)
    with_key, token = await create_installation(api_key="sk-ant-test-fake", client=client)
    without_key, other_token = await create_installation(client=client)

    answer = await (await client.get("/test/whoami", headers=auth_headers(token))).json()
    assert answer["id"] == with_key and answer["key"] == "sk-ant-test-fake"
    answer = await (await client.get("/test/whoami", headers=auth_headers(other_token))).json()
    assert answer["id"] == without_key and answer["key"] is None

    for bad in ["", "Bearer", "Bearer hm_short", "Basic " + token, token]:
        response = await client.get("/test/whoami", headers={"Authorization": bad})
        assert response.status == 401
        assert (await response.json())["code"] == "invalid_token"
    # Right shape, wrong checksum; and a well-formed token nobody was given.
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    response = await client.get("/test/whoami", headers=auth_headers(tampered))
    assert (await response.json())["code"] == "invalid_token"


async def test_malformed_tokens_never_reach_the_database(make_app, create_installation):
    from sqlalchemy import event

    from cloud_server.db.engine import DB_ENGINE

    client = await make_app()
    _, token = await create_installation(client=client)
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    engine = client.app[DB_ENGINE].sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        bad_checksum = token[:-1] + ("0" if token[-1] != "0" else "1")
        for bad in [bad_checksum, "hm_" + "A" * 61, token[:-1], token + "A", "ghp_" + token[4:]]:
            response = await client.get(
                "/api/installation", headers={"Authorization": f"Bearer {bad}"}
            )
            assert (await response.json())["code"] == "invalid_token"
        assert statements == []
        # The control: a well-formed token is looked up.
        await client.get("/api/installation", headers={"Authorization": f"Bearer {token}"})
        assert statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


async def test_last_seen_is_not_written_on_every_request(
    engine_settings, make_app, create_installation
):
    # On PostgreSQL the token check runs in autocommit (cloud_server/db/reads.py): the
    # last-seen write must still be stored.
    client = await make_app(engine_settings)
    installation_id, token = await create_installation(client=client)
    headers = {"Authorization": f"Bearer {token}"}

    async def last_seen():
        async with client.app[DB_SESSIONMAKER]() as session:
            return (await session.get(Installation, installation_id)).last_seen_at

    assert await last_seen() is None
    await client.get("/api/installation", headers=headers)
    first = await last_seen()
    assert first is not None
    await client.get("/api/installation", headers=headers)
    assert await last_seen() == first


async def test_scoped_tokens_through_the_api(engine_settings, make_app, create_user, auth_headers):
    """A token limited to some scopes is made, listed and enforced as asked."""
    client = await make_app(engine_settings)
    _, access = await create_user()
    made = await client.post(
        "/api/installations",
        json={"name": "Claude Desktop", "scopes": ["memory:read", "mcp"]},
        headers=auth_headers(access),
    )
    assert made.status == 201
    body = await made.json()
    assert body["scopes"] == ["memory:read", "mcp"]
    everything = await (
        await client.post("/api/installations", json={"name": "HA"}, headers=auth_headers(access))
    ).json()
    assert everything["scopes"] == ["chat", "memory:read", "memory:write", "mcp"]

    listed = await (await client.get("/api/installations", headers=auth_headers(access))).json()
    assert {item["name"]: item["scopes"] for item in listed} == {
        "Claude Desktop": ["memory:read", "mcp"],
        "HA": ["chat", "memory:read", "memory:write", "mcp"],
    }
    remember = await client.post(
        "/api/installation/memory", json={"content": "x"}, headers=auth_headers(body["token"])
    )
    assert remember.status == 403
    assert (await remember.json())["code"] == "forbidden"

    for scopes in (["root"], []):
        refused = await client.post(
            "/api/installations",
            json={"name": "Bad", "scopes": scopes},
            headers=auth_headers(access),
        )
        assert refused.status == 422


async def test_every_scoped_operation_refuses_a_token_without_its_scope(
    server_settings, make_app, create_user, auth_headers
):
    """What the document says an installation operation needs is what its handler enforces:
    a token lacking the scope gets the documented 403, every other operation lets it in."""
    client = await make_app(server_settings)
    _, access = await create_user()
    document = await (await client.get(OPENAPI_PATH)).json()
    operations = [
        (method, path, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if INSTALLATION_SCHEME in (op["security"] or [{}])[0]
    ]
    scoped = {path for _, path, op in operations if op["security"][0][INSTALLATION_SCHEME]}
    assert {"/api/chat", "/api/chat/stream", "/api/installation/memory", "/mcp"} <= scoped
    for held in ALL_INSTALLATION_SCOPES:
        made = await client.post(
            "/api/installations",
            json={"name": f"Only {held}", "scopes": [held]},
            headers=auth_headers(access),
        )
        token = (await made.json())["token"]
        for method, path, op in operations:
            needed = op["security"][0][INSTALLATION_SCHEME]
            response = await client.request(
                method,
                path,
                json={} if method == "post" else None,
                headers={**auth_headers(token), "Accept": "application/json, text/event-stream"},
            )
            if needed and held not in needed:
                assert response.status == 403, (held, method, path)
                assert (await response.json())["code"] == "forbidden"
                assert "forbidden" in op["responses"]["403"]["x-error-codes"]
            else:
                assert response.status != 403, (held, method, path, await response.text())
