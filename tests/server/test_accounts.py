"""Accounts API: register, login, refresh, me, logout, passwords.

docs/security-checklist.md rows 1-8.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
import pytest
from argon2 import PasswordHasher
from pydantic import SecretStr
from sqlalchemy import select, update

from cloud_server.accounts.access_tokens import AUDIENCE, ISSUER
from cloud_server.accounts.app_keys import SERVER_SECRETS, THROTTLE
from cloud_server.db.engine import DB_SESSIONMAKER
from cloud_server.db.models import AuthSession, User

DEFAULT_PASSWORD = "correct horse battery staple"

PASSWORD = "a long and quiet river"


async def register(client: Any, email: str, password: str = PASSWORD, **extra: Any) -> Any:
    return await client.post(
        "/api/auth/register", json={"email": email, "password": password, **extra}
    )


async def login(client: Any, email: str, password: str = PASSWORD) -> Any:
    return await client.post("/api/auth/login", json={"email": email, "password": password})


def unique_email(prefix: str = "user") -> str:
    import secrets

    return f"{prefix}-{secrets.token_hex(4)}@example.test"


async def stored_user(client: Any, email: str) -> User:
    async with client.app[DB_SESSIONMAKER]() as session:
        return (
            await session.execute(select(User).where(User.email_normalized == email.lower()))
        ).scalar_one()


# --- the happy path, on both engines -------------------------------------------------


async def test_register_login_refresh_me_logout(engine_settings, make_app, auth_headers):
    client = await make_app(engine_settings)
    email = unique_email("Mixed.Case")
    created = await register(client, email, name="Ada")
    assert created.status == 201
    body = await created.json()
    assert body["user"] == {"id": body["user"]["id"], "email": email, "name": "Ada", "tier": "free"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 900

    # Any spelling of the address reaches the same account.
    logged_in = await login(client, email.upper())
    assert logged_in.status == 200
    tokens = await logged_in.json()
    assert tokens["user"]["id"] == body["user"]["id"]

    me = await client.get("/api/auth/me", headers=auth_headers(tokens["access_token"]))
    assert me.status == 200
    me_body = await me.json()
    assert me_body["email"] == email and me_body["tier"] == "free"
    assert me_body["created_at"].endswith(("Z", "+00:00"))

    refreshed = await client.post(
        "/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status == 200
    new = await refreshed.json()
    assert new["refresh_token"] != tokens["refresh_token"]
    assert (
        await client.get("/api/auth/me", headers=auth_headers(new["access_token"]))
    ).status == 200

    out = await client.post("/api/auth/logout", headers=auth_headers(new["access_token"]))
    assert out.status == 204
    # Row 8: the access token dies at once, long before its `exp`.
    after = await client.get("/api/auth/me", headers=auth_headers(new["access_token"]))
    assert after.status == 401
    assert (await after.json())["code"] == "invalid_token"
    # ... and so does the session's refresh token.
    again = await client.post("/api/auth/refresh", json={"refresh_token": new["refresh_token"]})
    assert again.status == 401
    # Another session of the same user is untouched.
    assert (
        await client.get("/api/auth/me", headers=auth_headers(body["access_token"]))
    ).status == 200


async def test_register_twice_is_a_conflict(make_app):
    client = await make_app()
    email = unique_email()
    assert (await register(client, email)).status == 201
    second = await register(client, email.upper())
    assert second.status == 409
    assert (await second.json())["code"] == "email_taken"


# --- row 1: argon2id -------------------------------------------------------------------


async def test_password_stored_as_argon2id_with_owasp_floor(make_app):
    client = await make_app()
    email = unique_email()
    await register(client, email)
    stored = (await stored_user(client, email)).password_hash
    assert stored.startswith("$argon2id$")
    params = dict(part.split("=") for part in stored.split("$")[3].split(","))
    assert int(params["m"]) >= 19456 and int(params["t"]) >= 2 and int(params["p"]) >= 1
    assert PASSWORD not in stored


async def test_login_rehashes_a_weaker_hash(make_app):
    client = await make_app()
    email = unique_email()
    await register(client, email)
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    async with client.app[DB_SESSIONMAKER].begin() as session:
        await session.execute(
            update(User).where(User.email_normalized == email).values(password_hash=weak)
        )
    assert (await login(client, email)).status == 200
    upgraded = (await stored_user(client, email)).password_hash
    assert upgraded != weak and "m=19456,t=2,p=1" in upgraded
    assert (await login(client, email)).status == 200


# --- row 2: password policy ----------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "accepted"),
    [
        ("seven77", False),
        ("eight888", True),
        ("x" * 64, True),
        ("y" * 127 + "z", True),
        ("y" * 129, False),
        ("password1234", False),
        ("Password123456", False),
        ("qwertyuiop", False),
        ("aaaaaaaaaaaaaaaaaaaa", True),  # long and plain: no composition rules
        ("🏠🔑 mein Zuhause 🌙", True),  # Unicode passphrases are fine
    ],
)
async def test_password_policy(make_app, password, accepted):
    client = await make_app()
    response = await register(client, unique_email(), password)
    if accepted:
        assert response.status == 201
    else:
        assert response.status == 422
        problem = await response.json()
        assert problem["code"] == "validation_error"
        assert problem["errors"][0]["loc"] == ["password"]
        assert password not in await response.text()


async def test_password_is_compared_exactly(make_app):
    client = await make_app()
    email = unique_email()
    password = "p" * 99 + "Q" + "r" * 20
    assert (await register(client, email, password)).status == 201
    assert (await login(client, email, password)).status == 200
    differing = password[:99] + "q" + password[100:]
    assert (await login(client, email, differing)).status == 401
    assert (await login(client, email, password[:-1])).status == 401
    assert (await login(client, email, password + " ")).status == 401


# --- row 3: no enumeration -----------------------------------------------------------


async def test_login_answer_is_the_same_for_unknown_email(make_app):
    client = await make_app()
    email = unique_email()
    await register(client, email)
    wrong = await login(client, email, "not the password at all")
    unknown = await login(client, unique_email("nobody"), "not the password at all")
    assert wrong.status == unknown.status == 401
    a, b = await wrong.json(), await unknown.json()
    a.pop("request_id"), b.pop("request_id")
    assert a == b and a["code"] == "invalid_credentials"


async def test_password_reset_answer_is_the_same_for_unknown_email(make_app):
    client = await make_app()
    email = unique_email()
    await register(client, email)
    known = await client.post("/api/auth/password-reset", json={"email": email})
    unknown = await client.post("/api/auth/password-reset", json={"email": unique_email("no")})
    assert known.status == unknown.status == 202
    assert await known.json() == await unknown.json()


# --- row 4: throttling ---------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_account_throttle_429_with_retry_after_then_recovers(
    make_app, smtp_server, server_settings
):
    settings = server_settings.model_copy(
        update={
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "smtp_starttls": False,
        }
    )
    client = await make_app(settings)
    clock = FakeClock()
    client.app[THROTTLE].clock = clock  # type: ignore[attr-defined]
    email = unique_email()
    await register(client, email)

    statuses = [(await login(client, email, "wrong password!")).status for _ in range(5)]
    assert statuses == [401] * 5
    locked = await login(client, email)  # even the right password waits
    assert locked.status == 429
    assert int(locked.headers["Retry-After"]) > 0
    assert (await locked.json())["code"] == "rate_limited"

    # The owner can still reset the password while login is slowed down.
    reset = await client.post("/api/auth/password-reset", json={"email": email})
    assert reset.status == 202
    assert len(await smtp_server.wait_for(1)) == 1

    clock.now += int(locked.headers["Retry-After"])
    assert (await login(client, email)).status == 200
    # Success reset the account's counter: failures start from zero again.
    assert [(await login(client, email, "wrong again!!")).status for _ in range(5)] == [401] * 5


async def test_account_cannot_be_tried_100_times_an_hour(make_app):
    client = await make_app()
    clock = FakeClock()
    client.app[THROTTLE].clock = clock  # type: ignore[attr-defined]
    email = unique_email()
    await register(client, email)
    start, failures = clock.now, 0
    while clock.now - start < 3600:
        response = await login(client, email, "guess guess guess")
        if response.status == 429:
            clock.now += int(response.headers["Retry-After"])
        else:
            assert response.status == 401
            failures += 1
    assert 5 <= failures < 100


async def test_ip_throttle_across_accounts(make_app):
    client = await make_app()
    client.app[THROTTLE].clock = FakeClock()  # type: ignore[attr-defined]
    statuses = [
        (await login(client, unique_email("spray"), "some password")).status for _ in range(21)
    ]
    assert statuses[:20] == [401] * 20
    assert statuses[20] == 429


# --- rows 5 and 6: access JWT ----------------------------------------------------------


def _claims(user_id: str, session_id: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": user_id,
        "sid": session_id,
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "jti": "j" * 32,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


async def test_forged_and_wrong_access_tokens_are_refused(make_app, auth_headers):
    client = await make_app()
    body = await (await register(client, unique_email())).json()
    good = jwt.decode(body["access_token"], options={"verify_signature": False})
    user_id, sid = good["sub"], good["sid"]
    ring = client.app[SERVER_SECRETS].jwt
    key, kid = ring.active, ring.active_kid
    header = {"kid": kid, "typ": "at+jwt"}

    def sign(claims: dict[str, Any], algorithm: str = "HS256", **headers: Any) -> str:
        return jwt.encode(claims, key, algorithm=algorithm, headers={**header, **headers})

    base = _claims(user_id, sid)
    # The control: a token forged here with the right key and claims is accepted.
    assert (await client.get("/api/auth/me", headers=auth_headers(sign(base)))).status == 200

    now = int(time.time())
    forged = {
        "alg none": jwt.encode(base, None, algorithm="none", headers=header),
        "HS512": sign(base, "HS512"),
        "HS384": sign(base, "HS384"),
        "typ JWT": sign(base, typ="JWT"),
        "embedded jwk": sign(base, jwk={"kty": "oct", "k": "c2VjcmV0"}),
        "jku": sign(base, jku="https://evil.example/keys"),
        "unknown kid": sign(base, kid="00000000"),
        "other key": jwt.encode(base, "k" * 40, algorithm="HS256", headers=header),
        "wrong aud": sign(_claims(user_id, sid, aud="dashboard")),
        "wrong iss": sign(_claims(user_id, sid, iss="someone-else")),
        "no exp": sign(_claims(user_id, sid, exp=None)),
        "no sid": sign(_claims(user_id, sid, sid=None)),
        "no jti": sign(_claims(user_id, sid, jti=None)),
        "expired": sign(_claims(user_id, sid, iat=now - 1000, nbf=now - 1000, exp=now - 31)),
        "not yet valid": sign(_claims(user_id, sid, nbf=now + 60)),
        "too long-lived": sign(_claims(user_id, sid, exp=now + 86400)),
        "other session": sign(_claims(user_id, "0" * 32)),
        "refresh token": body["refresh_token"],
        "garbage": "not.a.jwt",
    }
    for name, token in forged.items():
        response = await client.get("/api/auth/me", headers=auth_headers(token))
        assert response.status == 401, name
        assert (await response.json())["code"] == "invalid_token", name


async def test_access_token_header_and_claims(make_app):
    client = await make_app()
    body = await (await register(client, unique_email())).json()
    header = jwt.get_unverified_header(body["access_token"])
    assert header == {
        "alg": "HS256",
        "typ": "at+jwt",
        "kid": client.app[SERVER_SECRETS].jwt.active_kid,
    }
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert set(claims) >= {"iss", "aud", "sub", "sid", "iat", "nbf", "exp", "jti"}
    assert claims["exp"] - claims["iat"] == 900
    assert claims["sub"] == body["user"]["id"]


async def test_jwt_key_rotation_by_kid(make_app, server_settings, auth_headers):
    old, new = "o" * 40, "n" * 40
    client = await make_app(server_settings.model_copy(update={"jwt_secret": SecretStr(old)}))
    email = unique_email()
    token = (await (await register(client, email)).json())["access_token"]
    await client.close()

    # Promote the new key: new tokens use it, the old one still verifies.
    rotated = await make_app(
        server_settings.model_copy(update={"jwt_secret": SecretStr(f"{new},{old}")})
    )
    assert (await rotated.get("/api/auth/me", headers=auth_headers(token))).status == 200
    fresh = (await (await login(rotated, email)).json())["access_token"]
    assert jwt.get_unverified_header(fresh)["kid"] != jwt.get_unverified_header(token)["kid"]
    await rotated.close()

    # Drop the old key: its tokens are refused, the new ones work.
    dropped = await make_app(server_settings.model_copy(update={"jwt_secret": SecretStr(new)}))
    assert (await dropped.get("/api/auth/me", headers=auth_headers(token))).status == 401
    assert (await dropped.get("/api/auth/me", headers=auth_headers(fresh))).status == 200


# --- row 7: refresh rotation ---------------------------------------------------------


async def test_refresh_reuse_revokes_the_family(engine_settings, make_app, auth_headers):
    client = await make_app(engine_settings)
    first = await (await register(client, unique_email())).json()
    rt1 = first["refresh_token"]
    second = await (await client.post("/api/auth/refresh", json={"refresh_token": rt1})).json()
    rt2 = second["refresh_token"]

    replay = await client.post("/api/auth/refresh", json={"refresh_token": rt1})
    assert replay.status == 401
    assert (await replay.json())["code"] == "invalid_refresh_token"
    # The whole family is gone: the newest refresh token and its access token too.
    assert (await client.post("/api/auth/refresh", json={"refresh_token": rt2})).status == 401
    me = await client.get("/api/auth/me", headers=auth_headers(second["access_token"]))
    assert me.status == 401


async def test_concurrent_refreshes_only_one_wins(engine_settings, make_app):
    client = await make_app(engine_settings)
    rt = (await (await register(client, unique_email())).json())["refresh_token"]
    responses = await asyncio.gather(
        *[client.post("/api/auth/refresh", json={"refresh_token": rt}) for _ in range(4)]
    )
    assert sorted(r.status for r in responses) == [200, 401, 401, 401]


async def test_refresh_family_has_an_absolute_end(engine_settings, make_app):
    client = await make_app(engine_settings)
    body = await (await register(client, unique_email())).json()
    sid = jwt.decode(body["access_token"], options={"verify_signature": False})["sid"]
    async with client.app[DB_SESSIONMAKER]() as session:
        family = await session.get(AuthSession, sid)
        assert family is not None
        assert (family.expires_at - family.created_at).total_seconds() == 7 * 86400
        end = family.expires_at

    rt = body["refresh_token"]
    for _ in range(3):
        rt = (await (await client.post("/api/auth/refresh", json={"refresh_token": rt})).json())[
            "refresh_token"
        ]
    async with client.app[DB_SESSIONMAKER]() as session:
        family = await session.get(AuthSession, sid)
        assert family is not None and family.expires_at == end  # not extended by rotation

    # Seven days and a second later (moved the family's clock back instead of ours).
    from datetime import timedelta

    async with client.app[DB_SESSIONMAKER].begin() as session:
        await session.execute(
            update(AuthSession)
            .where(AuthSession.id == sid)
            .values(expires_at=family.expires_at - timedelta(days=7, seconds=1))
        )
    assert (await client.post("/api/auth/refresh", json={"refresh_token": rt})).status == 401


async def test_malformed_refresh_token_is_401_not_500(make_app):
    client = await make_app()
    for token in ["x", "hmr_" + "a" * 43, "hmr_short", "hm_" + "A" * 61]:
        response = await client.post("/api/auth/refresh", json={"refresh_token": token})
        assert response.status == 401


# --- password reset, with a real SMTP server (rows 3 and 8) --------------------------


async def test_password_reset_by_email(engine_settings, make_app, smtp_server, auth_headers):
    settings = engine_settings.model_copy(
        update={
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "smtp_starttls": False,
        }
    )
    client = await make_app(settings)
    email = unique_email()
    old = await (await register(client, email)).json()

    assert (await client.post("/api/auth/password-reset", json={"email": email})).status == 202
    [mail] = await smtp_server.wait_for(1)
    assert mail["To"] == email
    text = mail.get_payload(decode=True).decode()
    assert "http://homemind.test/reset-password#token=" in text
    token = text.split("#token=")[1].split()[0]

    new_password = "a brand new passphrase"
    weak = await client.post(
        "/api/auth/password-reset/confirm", json={"token": token, "password": "password1234"}
    )
    assert weak.status == 422  # the policy applies; the token is not spent by a refusal
    done = await client.post(
        "/api/auth/password-reset/confirm", json={"token": token, "password": new_password}
    )
    assert done.status == 204
    again = await client.post(
        "/api/auth/password-reset/confirm", json={"token": token, "password": "yet another phrase"}
    )
    assert again.status == 400 and (await again.json())["code"] == "invalid_reset_token"

    assert (await login(client, email)).status == 401
    assert (await login(client, email, new_password)).status == 200
    # Every earlier session ended with the reset.
    assert (
        await client.get("/api/auth/me", headers=auth_headers(old["access_token"]))
    ).status == 401
    refresh = await client.post("/api/auth/refresh", json={"refresh_token": old["refresh_token"]})
    assert refresh.status == 401


async def test_reset_mail_for_unknown_email_is_not_sent(make_app, smtp_server, server_settings):
    settings = server_settings.model_copy(
        update={
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "smtp_starttls": False,
        }
    )
    client = await make_app(settings)
    known = unique_email()
    await register(client, known)
    await client.post("/api/auth/password-reset", json={"email": unique_email("nobody")})
    await client.post("/api/auth/password-reset", json={"email": known})
    messages = await smtp_server.wait_for(1)
    assert [m["To"] for m in messages] == [known]
    await client.close()  # waits for background mail work
    assert len(smtp_server.messages) == 1


async def test_expired_reset_token_is_refused(make_app):
    from datetime import timedelta

    from cloud_server.accounts import service
    from cloud_server.db.models import PasswordResetToken

    client = await make_app()
    email = unique_email()
    await register(client, email)
    async with client.app[DB_SESSIONMAKER].begin() as session:
        found = await service.request_password_reset(session, email)
    assert found is not None
    _, token = found
    async with client.app[DB_SESSIONMAKER].begin() as session:
        row = (await session.execute(select(PasswordResetToken))).scalars().one()
        assert (row.expires_at - row.created_at) <= timedelta(minutes=10)
        row.expires_at = row.created_at - timedelta(seconds=1)
    response = await client.post(
        "/api/auth/password-reset/confirm", json={"token": token, "password": DEFAULT_PASSWORD}
    )
    assert response.status == 400


# --- argon2 work on every path (rows 1 and 3): counted through the passwords seam ------


class Argon2Calls:
    """Every argon2 hash / verify the server does, with the thread it ran on."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def of(self, kind: str) -> list[str]:
        return [thread for k, thread in self.calls if k == kind]


@pytest.fixture
def argon2_calls(monkeypatch: pytest.MonkeyPatch) -> Argon2Calls:
    import threading

    from cloud_server.accounts import passwords

    spy = Argon2Calls()
    real_hash, real_verify = passwords._argon2_hash, passwords._argon2_verify

    def counted_hash(hasher: Any, password: str) -> str:
        spy.calls.append(("hash", threading.current_thread().name))
        return real_hash(hasher, password)

    def counted_verify(hasher: Any, stored: str, password: str) -> bool:
        spy.calls.append(("verify", threading.current_thread().name))
        return real_verify(hasher, stored, password)

    monkeypatch.setattr(passwords, "_argon2_hash", counted_hash)
    monkeypatch.setattr(passwords, "_argon2_verify", counted_verify)
    return spy


def _in_pool(threads: list[str]) -> bool:
    return bool(threads) and all(name.startswith("argon2") for name in threads)


async def test_taken_email_costs_the_same_argon2_work_as_a_new_one(make_app, argon2_calls):
    client = await make_app()
    email = unique_email()
    argon2_calls.calls.clear()
    assert (await register(client, email)).status == 201
    new_account = argon2_calls.of("hash")
    argon2_calls.calls.clear()
    taken = await register(client, email.upper(), "another long passphrase")
    assert taken.status == 409 and (await taken.json())["code"] == "email_taken"
    assert len(argon2_calls.of("hash")) == len(new_account) == 1
    assert _in_pool(argon2_calls.of("hash"))
    # The refused password was hashed, not stored: the owner's still works.
    assert (await login(client, email)).status == 200


async def test_registration_probes_share_the_per_ip_limit(make_app):
    client = await make_app()
    client.app[THROTTLE].clock = FakeClock()  # type: ignore[attr-defined]
    email = unique_email()
    statuses = [(await register(client, email)).status for _ in range(20)]
    assert statuses == [201] + [409] * 19
    # Probing taken addresses and signing up new ones use up one budget per IP.
    for probe in (email, unique_email("new")):
        refused = await register(client, probe)
        assert refused.status == 429 and int(refused.headers["Retry-After"]) > 0
        assert (await refused.json())["code"] == "rate_limited"


async def test_account_without_password_is_verified_against_the_dummy_hash(make_app, argon2_calls):
    from cloud_server.accounts import service

    client = await make_app()
    async with client.app[DB_SESSIONMAKER].begin() as session:
        owner = await service.local_owner(session)
        assert owner.password_hash == service.NO_PASSWORD
    argon2_calls.calls.clear()
    refused = await login(client, service.LOCAL_OWNER_EMAIL, "any long passphrase")
    assert refused.status == 401
    unknown = await login(client, unique_email("nobody"), "any long passphrase")
    assert unknown.status == 401
    assert (await refused.json())["code"] == (await unknown.json())["code"]
    # One full argon2 verify (in the pool) for each, as for a wrong password.
    assert len(argon2_calls.of("verify")) == 2 and _in_pool(argon2_calls.of("verify"))
    assert argon2_calls.of("hash") == []


async def test_dummy_hash_is_made_at_start_up_in_the_pool(make_app, argon2_calls):
    from cloud_server.accounts import passwords

    passwords._dummy_hash.cache_clear()
    client = await make_app()  # start-up
    made_at_start = argon2_calls.of("hash")
    assert len(made_at_start) == 1 and _in_pool(made_at_start)
    argon2_calls.calls.clear()
    assert (await login(client, unique_email("nobody"), "any long passphrase")).status == 401
    assert argon2_calls.of("hash") == []  # nothing left to compute on a login
    assert len(argon2_calls.of("verify")) == 1 and _in_pool(argon2_calls.of("verify"))


async def test_dummy_hash_made_lazily_is_made_in_the_pool(make_app, argon2_calls):
    from cloud_server.accounts import passwords, service

    client = await make_app()
    passwords._dummy_hash.cache_clear()  # as if start-up had not made it
    argon2_calls.calls.clear()
    async with client.app[DB_SESSIONMAKER].begin() as session:
        assert (
            await service.authenticate(session, unique_email("nobody"), "some passphrase") is None
        )
    assert len(argon2_calls.of("hash")) == 1 and _in_pool(argon2_calls.of("hash"))
    assert _in_pool(argon2_calls.of("verify"))


async def test_completed_reset_voids_the_other_reset_links(engine_settings, make_app, auth_headers):
    from cloud_server.accounts import service

    client = await make_app(engine_settings)
    email = unique_email()
    old = await (await register(client, email)).json()
    tokens = []
    for _ in range(2):
        async with client.app[DB_SESSIONMAKER].begin() as session:
            found = await service.request_password_reset(session, email)
        assert found is not None
        tokens.append(found[1])
    first = await client.post(
        "/api/auth/password-reset/confirm",
        json={"token": tokens[0], "password": "a brand new passphrase"},
    )
    assert first.status == 204
    second = await client.post(
        "/api/auth/password-reset/confirm",
        json={"token": tokens[1], "password": "an attacker's passphrase"},
    )
    assert second.status == 400 and (await second.json())["code"] == "invalid_reset_token"
    assert (await login(client, email, "a brand new passphrase")).status == 200
    # And every earlier session ended (row 8).
    assert (
        await client.get("/api/auth/me", headers=auth_headers(old["access_token"]))
    ).status == 401
