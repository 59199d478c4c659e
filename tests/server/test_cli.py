"""`homemind-server` administration commands, run as a self-hoster would."""

from __future__ import annotations

import asyncio
import io
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
