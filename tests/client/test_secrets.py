"""The token never shows up in an exception (message, repr, cause chain) or a log line."""

from __future__ import annotations

import logging
import traceback

import aiohttp
import pytest

from homemind_client import HomeMindClient, HomeMindError
from homemind_client.models import ChatRequest

from .helpers import (
    TOKEN,
    Disconnect,
    RawServer,
    ServeFn,
    Sleep,
    event,
    json_ok,
    problem,
    raw,
    sse,
)


def _everything_about(err: BaseException) -> str:
    parts = ["".join(traceback.format_exception(err))]
    current: BaseException | None = err
    while current is not None:
        parts += [str(current), repr(current), repr(current.args)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


async def test_token_never_in_errors_or_logs(
    serve: ServeFn,
    hangup_server: RawServer,
    closed_port_url: str,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await serve(
        {
            "GET /api/installation": problem(401, "invalid_token", "The token was refused."),
            "POST /api/chat": raw(200, b"garbage"),
            "POST /api/chat/stream": sse(event("text_delta", {"text": "a"}), Disconnect()),
            "POST /slow/api/chat/stream": sse(Sleep(5)),
            "GET /bad/api/installation": json_ok({"id": 1}),
        }
    )
    clients = [
        HomeMindClient(session, url, TOKEN, first_event_timeout=0.2)
        for url in (server.url, hangup_server.url, closed_port_url)
    ]
    clients.append(HomeMindClient(session, server.url + "/slow", TOKEN, first_event_timeout=0.2))
    clients.append(HomeMindClient(session, server.url + "/bad", TOKEN))
    for client in clients:
        client.installation_retry = client.chat_retry
        assert TOKEN not in repr(client)
        assert TOKEN not in str(vars(client).get("base_url"))

    errors: list[BaseException] = []
    for client in clients:
        for call in (
            client.get_installation(timeout=1),
            client.chat(ChatRequest(message="hi"), timeout=1),
        ):
            try:
                await call
            except HomeMindError as err:
                errors.append(err)
        try:
            async for _ in client.chat_stream(ChatRequest(message="hi")):
                pass
        except HomeMindError as err:
            errors.append(err)

    assert len(errors) >= 12  # every client failed in each way it could
    for err in errors:
        assert TOKEN not in _everything_about(err)
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    assert TOKEN not in logged
    assert TOKEN[-8:] not in logged
