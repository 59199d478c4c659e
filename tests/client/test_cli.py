"""`homemind` end to end against a fake server (the CLI runs its own loop in a thread)."""

from __future__ import annotations

import asyncio
import json

import pytest

from homemind_client.cli import main

from .helpers import (
    CHAT_RESPONSE,
    INSTALLATION,
    TOKEN,
    TOOL_CALL,
    TOOL_USE_RESPONSE,
    ServeFn,
    Sleep,
    event,
    json_ok,
    problem,
    sse,
)

STREAM = sse(
    event("text_delta", {"text": "The kitchen "}),
    Sleep(0.02),
    event("text_delta", {"text": "light is on."}),
    event("done", CHAT_RESPONSE),
)
TOOL_STREAM = sse(event("tool_call", TOOL_CALL), event("done", TOOL_USE_RESPONSE))


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("HOMEMIND_TOKEN", TOKEN)
    monkeypatch.delenv("HOMEMIND_URL", raising=False)
    return monkeypatch


async def run(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_chat_streams_the_answer(
    serve: ServeFn, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await serve({"POST /api/chat/stream": STREAM})
    env.setenv("HOMEMIND_URL", server.url)
    code = await run("chat", "turn on the kitchen light", "--language", "de", "--voice")
    out, err = capsys.readouterr()
    assert code == 0
    assert out == "The kitchen light is on.\n"
    assert err == ""
    sent = server.requests[0]
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    body = json.loads(sent.body)
    assert body["message"] == "turn on the kitchen light"
    assert body["language"] == "de"
    assert body["is_voice"] is True


async def test_chat_json_prints_only_the_final_response(
    serve: ServeFn, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await serve({"POST /api/chat/stream": STREAM})
    code = await run("chat", "hi", "--json", "--url", server.url)  # options after the command
    out, _ = capsys.readouterr()
    assert code == 0
    response = json.loads(out)
    assert response["conversation_id"] == "conv-1"
    assert response["reply"] == "The kitchen light is on."


async def test_tool_calls_go_to_stderr(
    serve: ServeFn, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await serve({"POST /api/chat/stream": TOOL_STREAM})
    code = await run("--url", server.url, "chat", "turn on the kitchen light")
    out, err = capsys.readouterr()
    assert code == 0
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == '[tool] HassTurnOn {"name": "kitchen"}'
    assert "cannot execute" in lines[1]


async def test_token_option_and_url_from_environment(
    serve: ServeFn, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await serve({"GET /api/installation": json_ok(INSTALLATION)})
    env.delenv("HOMEMIND_TOKEN")
    env.setenv("HOMEMIND_URL", server.url)
    code = await run("--token", "hm_other_fake_token", "installation")
    out, err = capsys.readouterr()
    assert code == 0
    assert json.loads(out)["id"] == "inst-1"
    assert "hm_other_fake_token" not in out + err
    assert server.requests[0].headers["Authorization"] == "Bearer hm_other_fake_token"


async def test_missing_token_is_a_configuration_error(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.delenv("HOMEMIND_TOKEN")
    code = await run("installation")
    _, err = capsys.readouterr()
    assert code == 3
    assert "HOMEMIND_TOKEN" in err


@pytest.mark.parametrize(
    ("status", "code", "exit_code"),
    [
        (401, "invalid_token", 6),
        (401, "installation_revoked", 7),
        (402, "subscription_required", 8),
        (402, "usage_limit_reached", 9),
        (409, "no_api_key", 10),
        (429, "rate_limited", 11),
        (503, "upstream_unavailable", 12),
        (502, "upstream_rejected_key", 13),
        (422, "validation_error", 14),
        (500, "internal_error", 16),
    ],
)
async def test_errors_exit_with_distinct_codes(
    serve: ServeFn,
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    status: int,
    code: str,
    exit_code: int,
) -> None:
    server = await serve(
        {
            "POST /api/chat/stream": problem(
                status, code, "Something went wrong.", headers={"Retry-After": "60"}
            )
        }
    )
    result = await run("--url", server.url, "chat", "hi")
    out, err = capsys.readouterr()
    assert result == exit_code
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("homemind: error: Something went wrong.")
    assert f"code {code}" in err
    assert "request id req-test-1" in err


async def test_error_midstream_after_text(
    serve: ServeFn, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await serve(
        {
            "POST /api/chat/stream": sse(
                event("text_delta", {"text": "Hal"}),
                event("error", {"code": "upstream_unavailable", "detail": "Claude went away."}),
            )
        }
    )
    result = await run("--url", server.url, "chat", "hi")
    out, err = capsys.readouterr()
    assert result == 12
    assert out == "Hal"
    assert "Claude went away." in err


async def test_connection_refused_exit_code(
    closed_port_url: str, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await run("--url", closed_port_url, "installation")
    _, err = capsys.readouterr()
    assert result == 4
    assert err.startswith("homemind: error: Cannot talk to the Home Mind server")


async def test_bad_url_is_a_configuration_error(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    result = await run("--url", "localhost:8080", "installation")
    _, err = capsys.readouterr()
    assert result == 3
    assert "URL" in err


async def test_token_echoed_by_a_server_is_masked(
    serve: ServeFn, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await serve(
        {"GET /api/installation": problem(401, "invalid_token", f"Bad token {TOKEN}")}
    )
    result = await run("--url", server.url, "installation")
    out, err = capsys.readouterr()
    assert result == 6
    assert TOKEN not in out + err
    assert "Bad token ***" in err
