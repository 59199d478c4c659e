"""Owner scoping and secrets at rest and in logs (docs/security-checklist.md rows 9-12):
after a full run, neither the database (on both engines) nor the log holds a password, a token or
an Anthropic key in clear."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from sqlalchemy import MetaData, select

from cloud_server.db.engine import DB_ENGINE


async def test_other_users_installation_is_404_everywhere(engine_settings, make_app, auth_headers):
    client = await make_app(engine_settings)

    async def account(prefix: str) -> str:
        body = await (
            await client.post(
                "/api/auth/register",
                json={
                    "email": f"{prefix}-{secrets.token_hex(4)}@example.test",
                    "password": "a long and quiet river",
                },
            )
        ).json()
        return body["access_token"]

    alice, bob = await account("alice"), await account("bob")
    created = await (
        await client.post(
            "/api/installations", json={"name": "Alice's"}, headers=auth_headers(alice)
        )
    ).json()
    key_url = f"/api/installations/{created['id']}/key"
    assert (
        await client.put(
            key_url, json={"api_key": "sk-ant-test-alice"}, headers=auth_headers(alice)
        )
    ).status == 200

    attempts = [
        ("DELETE", f"/api/installations/{created['id']}", None),
        ("PUT", key_url, {"api_key": "sk-ant-test-mallory"}),
        ("DELETE", key_url, None),
    ]
    for method, path, body in attempts:
        response = await client.request(method, path, json=body, headers=auth_headers(bob))
        assert response.status == 404, (method, path)
        assert (await response.json())["code"] == "not_found"
    # Unknown ids answer exactly the same.
    for fake_id in [secrets.token_hex(16), "0", "../" + created["id"], created["id"].upper()]:
        response = await client.delete(f"/api/installations/{fake_id}", headers=auth_headers(bob))
        assert response.status == 404

    assert await (await client.get("/api/installations", headers=auth_headers(bob))).json() == []
    mine = await (await client.get("/api/installations", headers=auth_headers(alice))).json()
    assert [(i["id"], i["key_hint"]) for i in mine] == [(created["id"], "lice")]
    info = await client.get("/api/installation", headers=auth_headers(created["token"]))
    assert info.status == 200


async def _full_run(client, auth_headers, smtp_server) -> list[str]:
    """Exercise every secret-bearing path; returns every secret value that was used."""
    email = f"dump-{secrets.token_hex(4)}@example.test"
    password = "plaintext passphrase " + secrets.token_hex(4)
    new_password = "second passphrase " + secrets.token_hex(4)
    api_key = "sk-ant-test-" + secrets.token_hex(4)
    found = [password, new_password, api_key]

    body = await (
        await client.post("/api/auth/register", json={"email": email, "password": password})
    ).json()
    found += [body["access_token"], body["refresh_token"]]
    login = await (
        await client.post("/api/auth/login", json={"email": email, "password": password})
    ).json()
    refreshed = await (
        await client.post("/api/auth/refresh", json={"refresh_token": login["refresh_token"]})
    ).json()
    found += [login["refresh_token"], refreshed["refresh_token"], refreshed["access_token"]]
    access = refreshed["access_token"]

    created = await (
        await client.post("/api/installations", json={"name": "Home"}, headers=auth_headers(access))
    ).json()
    found.append(created["token"])
    await client.put(
        f"/api/installations/{created['id']}/key",
        json={"api_key": api_key},
        headers=auth_headers(access),
    )
    assert (
        await client.get("/api/installation", headers=auth_headers(created["token"]))
    ).status == 200
    await client.post("/api/auth/login", json={"email": email, "password": password + "x"})

    await client.post("/api/auth/password-reset", json={"email": email})
    [mail] = await smtp_server.wait_for(1)
    reset_token = mail.get_payload(decode=True).decode().split("#token=")[1].split()[0]
    found.append(reset_token)
    confirmed = await client.post(
        "/api/auth/password-reset/confirm", json={"token": reset_token, "password": new_password}
    )
    assert confirmed.status == 204
    assert (
        await client.post("/api/auth/login", json={"email": email, "password": new_password})
    ).status == 200
    return found


async def _dump(client) -> str:
    """Every row of every table, as text."""
    engine = client.app[DB_ENGINE]
    metadata = MetaData()
    async with engine.connect() as connection:
        await connection.run_sync(metadata.reflect)
        parts = []
        for table in metadata.sorted_tables:
            rows = (await connection.execute(select(table))).all()
            parts.append(f"{table.name}: {rows!r}")
    return "\n".join(parts)


async def test_no_secret_in_database_or_logs(
    engine_settings, make_app, auth_headers, smtp_server, caplog
):
    settings = engine_settings.model_copy(
        update={
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "smtp_starttls": False,
        }
    )
    client = await make_app(settings)
    with caplog.at_level(logging.DEBUG):
        used = await _full_run(client, auth_headers, smtp_server)
    dump = await _dump(client)
    assert "users:" in dump and "installations:" in dump
    for value in used:
        assert value not in dump
        assert value not in caplog.text
    # Only ciphertext of the key, only hashes of tokens.
    assert "gcm1." in dump
    if settings.database_url and settings.database_url.startswith("sqlite"):
        # The raw files too (including the write-ahead log).
        db_file = Path(settings.database_url.removeprefix("sqlite:///"))
        raw = b"".join(p.read_bytes() for p in db_file.parent.glob(db_file.name + "*"))
        for value in used:
            assert value.encode() not in raw
