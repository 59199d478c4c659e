"""The account API the dashboard shares: password change, sessions, mailed links, export,
and deletion of every byte of an account (on SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from sqlalchemy import select, update

from cloud_server.db.engine import DB_SESSIONMAKER
from cloud_server.db.models import EmailToken
from cloud_server.settings import Settings
from tests.fakes.stripe_api import WEBHOOK_SECRET, FakeStripe
from tests.server.conftest import DEFAULT_PASSWORD, SmtpCapture

MakeApp = Callable[..., Awaitable[TestClient[Any, Any]]]
NEW_PASSWORD = "a completely different passphrase"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register(client: TestClient[Any, Any], email: str) -> dict[str, Any]:
    response = await client.post(
        "/api/auth/register", json={"email": email, "password": DEFAULT_PASSWORD}
    )
    assert response.status == 201, await response.text()
    data: dict[str, Any] = await response.json()
    return data


async def login(client: TestClient[Any, Any], email: str, password: str = DEFAULT_PASSWORD) -> Any:
    return await client.post("/api/auth/login", json={"email": email, "password": password})


async def test_password_change_needs_the_current_one_and_ends_the_other_sessions(
    make_app: MakeApp,
) -> None:
    client = await make_app()
    first = await register(client, "pat@example.test")
    other = await (await login(client, "pat@example.test")).json()
    wrong = await client.post(
        "/api/auth/password",
        json={"current_password": "not it at all", "new_password": NEW_PASSWORD},
        headers=bearer(first["access_token"]),
    )
    assert wrong.status == 403
    assert (await wrong.json())["code"] == "wrong_password"
    weak = await client.post(
        "/api/auth/password",
        json={"current_password": DEFAULT_PASSWORD, "new_password": "short"},
        headers=bearer(first["access_token"]),
    )
    assert weak.status == 422
    assert (await weak.json())["errors"][0]["loc"] == ["new_password"]
    done = await client.post(
        "/api/auth/password",
        json={"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(first["access_token"]),
    )
    assert done.status == 204
    # The caller's session stays; the other one is over at once.
    assert (await client.get("/api/auth/me", headers=bearer(first["access_token"]))).status == 200
    assert (await client.get("/api/auth/me", headers=bearer(other["access_token"]))).status == 401
    assert (await login(client, "pat@example.test")).status == 401
    assert (await login(client, "pat@example.test", NEW_PASSWORD)).status == 200


async def test_sessions_are_listed_and_ended_one_by_one_or_everywhere(make_app: MakeApp) -> None:
    client = await make_app()
    me = await register(client, "sam@example.test")
    other = await (await login(client, "sam@example.test")).json()
    listed = await (
        await client.get("/api/auth/sessions", headers=bearer(me["access_token"]))
    ).json()
    assert len(listed) == 2
    assert [s["current"] for s in listed].count(True) == 1
    theirs = next(s for s in listed if not s["current"])
    ended = await client.delete(
        f"/api/auth/sessions/{theirs['id']}", headers=bearer(me["access_token"])
    )
    assert ended.status == 204
    assert (await client.get("/api/auth/me", headers=bearer(other["access_token"]))).status == 401
    # Another user's session id is a 404, not a way to sign people out.
    stranger = await register(client, "stranger@example.test")
    mine = next(s for s in listed if s["current"])
    foreign = await client.delete(
        f"/api/auth/sessions/{mine['id']}", headers=bearer(stranger["access_token"])
    )
    assert foreign.status == 404
    everywhere = await client.delete("/api/auth/sessions", headers=bearer(me["access_token"]))
    assert everywhere.status == 204
    assert (await client.get("/api/auth/me", headers=bearer(me["access_token"]))).status == 401


def _token_from(mail: Any, page: str) -> tuple[str, str]:
    body = mail.get_payload(decode=True).decode()
    found = re.search(r"(\S+)/" + page + r"#token=([A-Za-z0-9_-]+)", body)
    assert found, body
    return found.group(1), found.group(2)


@pytest.fixture
def mail_settings(server_settings: Settings, smtp_server: SmtpCapture) -> Settings:
    return server_settings.model_copy(
        update={
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "smtp_starttls": False,
        }
    )


async def test_magic_link_signs_in_once_within_ten_minutes_and_never_on_get(
    make_app: MakeApp, mail_settings: Settings, smtp_server: SmtpCapture
) -> None:
    client = await make_app(mail_settings)
    await register(client, "lee@example.test")
    unknown = await client.post("/api/auth/magic-link", json={"email": "nobody@example.test"})
    asked = await client.post(
        "/api/auth/magic-link",
        json={"email": "lee@example.test"},
        headers={"Host": "evil.example"},
    )
    # The same answer whether or not the account exists.
    assert unknown.status == asked.status == 202
    assert await unknown.json() == await asked.json()
    (mail,) = await smtp_server.wait_for(1)
    base, token = _token_from(mail, "magic-link")
    assert base == "http://homemind.test"  # the configured URL, never the Host header
    # The landing page shows a button; opening it consumes nothing.
    landing = await client.get("/magic-link")
    assert landing.status == 200
    async with client.app[DB_SESSIONMAKER]() as db:
        row = (await db.execute(select(EmailToken))).scalar_one()
        assert row.used_at is None
        assert row.token_hash != token and token not in row.token_hash
        assert row.expires_at - row.created_at <= timedelta(minutes=10)
    first = await client.post("/api/auth/magic-link/confirm", json={"token": token})
    assert first.status == 200
    assert (await first.json())["user"]["email"] == "lee@example.test"
    again = await client.post("/api/auth/magic-link/confirm", json={"token": token})
    assert again.status == 400
    assert (await again.json())["code"] == "invalid_link"


async def test_magic_link_expires_after_ten_minutes(
    make_app: MakeApp, mail_settings: Settings, smtp_server: SmtpCapture
) -> None:
    client = await make_app(mail_settings)
    await register(client, "kim@example.test")
    await client.post("/api/auth/magic-link", json={"email": "kim@example.test"})
    (mail,) = await smtp_server.wait_for(1)
    _, token = _token_from(mail, "magic-link")
    # Ten minutes and one second later (the clock of the row moved back instead).
    async with client.app[DB_SESSIONMAKER].begin() as db:
        row = (await db.execute(select(EmailToken))).scalar_one()
        shift = timedelta(minutes=10, seconds=1)
        await db.execute(
            update(EmailToken).values(
                created_at=row.created_at - shift, expires_at=row.expires_at - shift
            )
        )
    late = await client.post("/api/auth/magic-link/confirm", json={"token": token})
    assert late.status == 400


async def test_hosted_sign_up_gets_its_trial_only_once_the_address_is_confirmed(
    make_app: MakeApp, mail_settings: Settings, smtp_server: SmtpCapture
) -> None:
    async with FakeStripe() as stripe:
        settings = mail_settings.model_copy(
            update={
                "mode": "hosted",
                "encryption_key": SecretStr(base64.b64encode(secrets.token_bytes(32)).decode()),
                "jwt_secret": SecretStr(base64.b64encode(secrets.token_bytes(32)).decode()),
                "stripe_secret_key": SecretStr(stripe.secret_key),
                "stripe_webhook_secret": SecretStr(WEBHOOK_SECRET),
                "stripe_price_managed": "price_m",
                "stripe_price_byok": "price_b",
                "stripe_api_base": stripe.base_url,
            }
        )
        client = await make_app(settings)
        me = await register(client, "new@example.test")
        before = await (
            await client.get("/api/subscription", headers=bearer(me["access_token"]))
        ).json()
        assert before["tier"] == "free"
        assert before["status"] == "none"
        (mail,) = await smtp_server.wait_for(1)
        _, token = _token_from(mail, "verify-email")
        assert (await client.post("/api/auth/verify-email", json={"token": token})).status == 204
        after = await (
            await client.get("/api/subscription", headers=bearer(me["access_token"]))
        ).json()
        assert after["tier"] == "managed"
        assert after["status"] == "trialing"
        assert (await client.post("/api/auth/verify-email", json={"token": token})).status == 400


async def test_installations_can_be_renamed_by_their_owner_only(
    make_app: MakeApp, create_installation: Any
) -> None:
    client = await make_app()
    me = await register(client, "owner@example.test")
    other = await register(client, "other@example.test")
    installation_id, _ = await create_installation(user_id=me["user"]["id"], client=client)
    renamed = await client.patch(
        f"/api/installations/{installation_id}",
        json={"name": "Cabin"},
        headers=bearer(me["access_token"]),
    )
    assert renamed.status == 200
    assert (await renamed.json())["name"] == "Cabin"
    foreign = await client.patch(
        f"/api/installations/{installation_id}",
        json={"name": "Mine"},
        headers=bearer(other["access_token"]),
    )
    assert foreign.status == 404
