"""`homemind-server` administration commands, run as a self-hoster would."""

from __future__ import annotations

import asyncio
import io
import logging
import sys

import pytest

from cloud_server.cli import main


async def run(argv: list[str], monkeypatch: pytest.MonkeyPatch, stdin: str = "") -> int:
    """The command in a worker thread (it runs its own event loop, as from a shell)."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return await asyncio.to_thread(main, argv)


@pytest.fixture
def cli_env(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """A clean environment: data folder in tmp_path, SQLite there, no secrets set."""
    for name in ("DATABASE_URL", "ENCRYPTION_KEY", "JWT_SECRET", "HOMEMIND_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOMEMIND_DATA_DIR", str(tmp_path))
    return tmp_path


async def test_installation_create_prints_a_working_token_once(
    cli_env, monkeypatch, capsys, make_app, server_settings, auth_headers
):
    assert await run(["installation", "create", "--name", "Living room"], monkeypatch) == 0
    out = capsys.readouterr().out
    token = out.strip().splitlines()[-1]
    assert len(token) == 64 and token.startswith("hm_")
    assert out.count(token) == 1

    # The same data folder served by the app accepts the token.
    client = await make_app(
        server_settings.model_copy(
            update={"data_dir": cli_env, "database_url": f"sqlite:///{cli_env / 'homemind.db'}"}
        )
    )
    info = await client.get("/api/installation", headers=auth_headers(token))
    assert info.status == 200
    assert (await info.json())["name"] == "Living room"

    # A second installation reuses the local owner account.
    assert await run(["installation", "create", "--name", "Garage"], monkeypatch) == 0
    second = capsys.readouterr().out.strip().splitlines()[-1]
    first_owner = await (await client.get("/api/installation", headers=auth_headers(token))).json()
    second_owner = await (
        await client.get("/api/installation", headers=auth_headers(second))
    ).json()
    assert first_owner["id"] != second_owner["id"]


async def test_user_create_then_login(cli_env, monkeypatch, capsys, make_app, server_settings):
    code = await run(
        ["user", "create", "--email", "Owner@Example.test", "--name", "Owner", "--password-stdin"],
        monkeypatch,
        stdin="a long and quiet river\n",
    )
    assert code == 0
    assert "a long and quiet river" not in capsys.readouterr().out
    client = await make_app(
        server_settings.model_copy(
            update={"data_dir": cli_env, "database_url": f"sqlite:///{cli_env / 'homemind.db'}"}
        )
    )
    response = await client.post(
        "/api/auth/login",
        json={"email": "owner@example.test", "password": "a long and quiet river"},
    )
    assert response.status == 200

    # The policy applies here too, and a second account with the address is refused.
    weak = ["user", "create", "--email", "x@example.test", "--password-stdin"]
    assert await run(weak, monkeypatch, stdin="password1234\n") == 1
    again = ["user", "create", "--email", "owner@example.test", "--password-stdin"]
    assert await run(again, monkeypatch, stdin="another fine phrase\n") == 1
    assert "exists" in capsys.readouterr().err


async def test_installation_create_for_a_named_user(cli_env, monkeypatch, capsys):
    assert (
        await run(
            ["installation", "create", "--name", "X", "--user", "nobody@example.test"], monkeypatch
        )
        == 1
    )
    await run(
        ["user", "create", "--email", "me@example.test", "--password-stdin"],
        monkeypatch,
        stdin="a long and quiet river\n",
    )
    capsys.readouterr()
    assert (
        await run(
            ["installation", "create", "--name", "X", "--user", "me@example.test"], monkeypatch
        )
        == 0
    )
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("hm_")


async def _stored_keys(data_dir):
    from sqlalchemy import select

    from cloud_server.db.engine import create_engine
    from cloud_server.db.models import Installation
    from cloud_server.settings import Settings

    engine = create_engine(Settings(data_dir=data_dir).effective_database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(select(Installation.id, Installation.encrypted_api_key))
            return dict(rows.all())
    finally:
        await engine.dispose()


async def test_rotate_encryption_key_self_hosted(
    cli_env, monkeypatch, capsys, make_app, server_settings, create_installation, aiohttp_client
):
    settings = server_settings.model_copy(
        update={"data_dir": cli_env, "database_url": f"sqlite:///{cli_env / 'homemind.db'}"}
    )
    client = await make_app(settings)
    ids = [
        (await create_installation(api_key=f"sk-ant-test-key{n}", client=client))[0]
        for n in range(3)
    ]
    before = await _stored_keys(cli_env)
    await client.close()

    assert await run(["rotate-encryption-key"], monkeypatch) == 0
    assert "Re-encrypted 3 of 3" in capsys.readouterr().out
    after = await _stored_keys(cli_env)
    kids = {value.split(".")[1] for value in after.values()}
    assert len(kids) == 1 and kids.isdisjoint({v.split(".")[1] for v in before.values()})

    # The restarted server decrypts every key with the new key alone.
    from cloud_server.accounts.app_keys import SERVER_SECRETS
    from cloud_server.accounts.installations import installation_key
    from cloud_server.app import create_app
    from cloud_server.db.engine import DB_SESSIONMAKER

    restarted = await aiohttp_client(create_app(settings))
    assert list(restarted.app[SERVER_SECRETS].encryption.keys) == list(kids)

    async with restarted.app[DB_SESSIONMAKER]() as session:
        plain = [
            await installation_key(session, restarted.app[SERVER_SECRETS].encryption, i)
            for i in ids
        ]
    assert plain == ["sk-ant-test-key0", "sk-ant-test-key1", "sk-ant-test-key2"]


async def test_rotate_encryption_key_from_environment_is_idempotent(
    cli_env, monkeypatch, capsys, make_app, server_settings, create_installation
):
    import base64

    from pydantic import SecretStr

    old = base64.b64encode(b"o" * 32).decode()
    new = base64.b64encode(b"n" * 32).decode()
    settings = server_settings.model_copy(
        update={
            "data_dir": cli_env,
            "database_url": f"sqlite:///{cli_env / 'homemind.db'}",
            "encryption_key": SecretStr(old),
        }
    )
    client = await make_app(settings)
    await create_installation(api_key="sk-ant-test-env", client=client)
    await create_installation(client=client)  # no key: nothing to do for it
    await client.close()

    monkeypatch.setenv("ENCRYPTION_KEY", f"{new},{old}")
    assert await run(["rotate-encryption-key"], monkeypatch) == 0
    assert "Re-encrypted 1 of 1" in capsys.readouterr().out
    assert await run(["rotate-encryption-key"], monkeypatch) == 0
    assert "Re-encrypted 0 of 1" in capsys.readouterr().out
    [value] = [v for v in (await _stored_keys(cli_env)).values() if v]
    from cloud_server.server_secrets import parse_encryption_keys

    assert value.split(".")[1] == parse_encryption_keys(new).active_kid


async def test_a_command_gives_the_callers_logging_back(cli_env, monkeypatch, capsys):
    """`main` called inside another program (a test run, a supervisor) logs to stderr while
    its command runs, and leaves the root logger as it found it."""
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    assert await run(["installation", "create", "--name", "Hall"], monkeypatch) == 0
    assert (list(root.handlers), root.level) == before
    capsys.readouterr()
    logging.getLogger("aiohttp.access").warning("a line of the caller's own")
    assert capsys.readouterr().err == ""
