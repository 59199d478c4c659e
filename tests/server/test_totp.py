"""Two-step sign-in (TOTP, cryptography's RFC 6238 implementation): set up, sign in with a
code, each code once, off with the password; the secret never stored in clear."""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from cloud_server.accounts import totp
from cloud_server.db.engine import DB_SESSIONMAKER
from cloud_server.db.models import User
from tests.server.conftest import DEFAULT_PASSWORD

MakeApp = Callable[..., Awaitable[TestClient[Any, Any]]]
EMAIL = "two@example.test"


def _secret(text: str) -> bytes:
    return base64.b32decode(text + "=" * (-len(text) % 8))


async def _login(client: TestClient[Any, Any], **extra: str) -> Any:
    return await client.post(
        "/api/auth/login", json={"email": EMAIL, "password": DEFAULT_PASSWORD, **extra}
    )


async def test_two_step_sign_in_from_setup_to_off(make_app: MakeApp) -> None:
    client = await make_app()
    registered = await (
        await client.post("/api/auth/register", json={"email": EMAIL, "password": DEFAULT_PASSWORD})
    ).json()
    auth = {"Authorization": f"Bearer {registered['access_token']}"}
    setup = await (await client.post("/api/auth/totp/setup", headers=auth)).json()
    assert setup["otpauth_uri"].startswith("otpauth://totp/Home%20Mind:")
    secret = _secret(setup["secret"])
    # A wrong first code enables nothing.
    wrong = await client.post(
        "/api/auth/totp/enable",
        json={"setup_token": setup["setup_token"], "code": "000000"},
        headers=auth,
    )
    assert wrong.status == 422
    assert (await _login(client)).status == 200
    now = time.time()
    enabled = await client.post(
        "/api/auth/totp/enable",
        json={"setup_token": setup["setup_token"], "code": totp.code_at(secret, now)},
        headers=auth,
    )
    assert enabled.status == 204
    async with client.app[DB_SESSIONMAKER]() as db:
        stored = (
            await db.execute(select(User.totp_secret).where(User.email == EMAIL))
        ).scalar_one()
    assert stored and setup["secret"] not in stored and stored.startswith("totp1.")

    missing = await _login(client)
    assert missing.status == 401
    assert (await missing.json())["code"] == "totp_required"
    # The code used to enable is spent; the next step's code works once.
    assert (await _login(client, totp_code=totp.code_at(secret, now))).status == 401
    later = totp.code_at(secret, now + totp.STEP_SECONDS)
    assert (await _login(client, totp_code=later)).status == 200
    replay = await _login(client, totp_code=later)
    assert replay.status == 401
    assert (await replay.json())["code"] == "invalid_credentials"
    # A mailed sign-in link would skip the second step: none is offered.
    assert (await client.post("/api/auth/magic-link", json={"email": EMAIL})).status == 202

    off_wrong = await client.delete(
        "/api/auth/totp", json={"password": "nope nope nope"}, headers=auth
    )
    assert off_wrong.status == 403
    off = await client.delete("/api/auth/totp", json={"password": DEFAULT_PASSWORD}, headers=auth)
    assert off.status == 204
    assert (await _login(client)).status == 200


def test_codes_one_step_either_side_count_and_others_do_not() -> None:
    secret = totp.new_secret()
    now = 1_900_000_000.0
    step = int(now) // totp.STEP_SECONDS
    assert totp.verify(secret, totp.code_at(secret, now - 30), None, now) == step - 1
    assert totp.verify(secret, totp.code_at(secret, now + 30), None, now) == step + 1
    assert totp.verify(secret, totp.code_at(secret, now - 90), None, now) is None
    assert totp.verify(secret, totp.code_at(secret, now), step, now) is None
    assert totp.verify(secret, "12345", None, now) is None
