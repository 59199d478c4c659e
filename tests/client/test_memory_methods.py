"""`remember` and `forget`: the installation's memory, against fake servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web

from homemind_client.errors import (
    HomeMindAuthenticationError,
    HomeMindConnectionError,
    HomeMindNotFoundError,
    HomeMindRateLimitedError,
    HomeMindServerError,
    HomeMindTimeoutError,
    HomeMindValidationError,
)

from .helpers import TOKEN, Attempts, RawServer, ServeFn, json_ok, make_client, problem, sequence

REMEMBER = "/api/installation/memory"
FORGET = "/api/installation/memory/forget"

ITEM = {
    "id": "mem-1",
    "content": "Ana is our daughter.",
    "category": "person",
    "speaker_id": None,
    "created_at": "2026-01-02T03:04:05Z",
    "updated_at": "2026-01-02T03:04:05Z",
}


@pytest.mark.parametrize("status", [201, 200])
async def test_remember_sends_the_fact_and_returns_the_stored_item(
    serve: ServeFn, session: aiohttp.ClientSession, status: int
) -> None:
    server = await serve({f"POST {REMEMBER}": json_ok(ITEM, status=status)})
    client = make_client(session, server.url)

    item = await client.remember("Ana is our daughter.", category="person", speaker_id="user-7")

    assert item.id == "mem-1"
    assert item.content == "Ana is our daughter."
    (request,) = server.requests
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {
        "content": "Ana is our daughter.",
        "category": "person",
        "speaker_id": "user-7",
    }


async def test_remember_without_scope_sends_no_speaker(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    server = await serve({f"POST {REMEMBER}": json_ok(ITEM, status=201)})
    client = make_client(session, server.url)

    await client.remember("The bins go out on Tuesday.")

    assert json.loads(server.requests[0].body) == {"content": "The bins go out on Tuesday."}


async def test_forget_returns_the_forgotten_items(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    server = await serve({f"POST {FORGET}": json_ok({"forgotten": [ITEM]})})
    client = make_client(session, server.url)

    gone = await client.forget("daughter", speaker_id="user-7")

    assert [item.id for item in gone] == ["mem-1"]
    assert json.loads(server.requests[0].body) == {"query": "daughter", "speaker_id": "user-7"}


async def test_forget_nothing_found_is_a_not_found_error(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    server = await serve(
        {f"POST {FORGET}": problem(404, "memory_not_found", "Nothing remembered matches that.")}
    )
    client = make_client(session, server.url)

    with pytest.raises(HomeMindNotFoundError) as caught:
        await client.forget("the garage")

    assert caught.value.code == "memory_not_found"
    assert caught.value.status == 404
    assert server.count(FORGET) == 1


@pytest.mark.parametrize(
    ("status", "code", "error_type"),
    [
        (401, "invalid_token", HomeMindAuthenticationError),
        (422, "validation_error", HomeMindValidationError),
        (503, "memory_unavailable", HomeMindServerError),
        (500, "internal_error", HomeMindServerError),
    ],
)
async def test_remember_errors_are_typed_and_not_retried(
    serve: ServeFn,
    session: aiohttp.ClientSession,
    status: int,
    code: str,
    error_type: type[Exception],
) -> None:
    server = await serve({f"POST {REMEMBER}": problem(status, code)})
    client = make_client(session, server.url)

    with pytest.raises(error_type):
        await client.remember("Ana is our daughter.")

    # Sent and answered: the server may have acted, so it is never sent twice.
    assert server.count(REMEMBER) == 1


async def test_rate_limited_is_retried_once(serve: ServeFn, session: aiohttp.ClientSession) -> None:
    server = await serve(
        {
            f"POST {REMEMBER}": sequence(
                problem(429, "rate_limited", headers={"Retry-After": "0"}),
                json_ok(ITEM, status=201),
            )
        }
    )
    client = make_client(session, server.url)

    item = await client.remember("Ana is our daughter.")

    assert item.id == "mem-1"
    assert server.count(REMEMBER) == 2


async def test_rate_limited_twice_gives_up(serve: ServeFn, session: aiohttp.ClientSession) -> None:
    server = await serve(
        {f"POST {FORGET}": problem(429, "rate_limited", headers={"Retry-After": "0"})}
    )
    client = make_client(session, server.url)

    with pytest.raises(HomeMindRateLimitedError):
        await client.forget("garage")

    assert server.count(FORGET) == 2


async def test_hangup_after_sending_is_not_retried(
    hangup_server: RawServer, session: aiohttp.ClientSession
) -> None:
    client = make_client(session, hangup_server.url)

    with pytest.raises(HomeMindConnectionError):
        await client.remember("Ana is our daughter.")

    assert hangup_server.connections == 1


async def test_refused_connection_is_retried_once(
    closed_port_url: str, session_and_attempts: tuple[aiohttp.ClientSession, Attempts]
) -> None:
    session, attempts = session_and_attempts
    client = make_client(session, closed_port_url)

    with pytest.raises(HomeMindConnectionError):
        await client.forget("garage")

    assert attempts.count == 2


async def test_timeout_is_not_retried(serve: ServeFn, session: aiohttp.ClientSession) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(5)
        return web.json_response(ITEM, status=201)

    server = await serve({f"POST {REMEMBER}": slow})
    client = make_client(session, server.url)

    with pytest.raises(HomeMindTimeoutError):
        await client.remember("Ana is our daughter.", timeout=0.2)

    assert server.count(REMEMBER) == 1


async def test_invalid_answer_is_reported(serve: ServeFn, session: aiohttp.ClientSession) -> None:
    server = await serve({f"POST {REMEMBER}": json_ok({"unexpected": True}, status=201)})
    client = make_client(session, server.url)

    with pytest.raises(Exception, match="not a valid MemoryItem"):
        await client.remember("Ana is our daughter.")
