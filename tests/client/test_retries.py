"""Retries happen only where repeating the request is safe (counted at the fake server)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from homemind_client import (
    HomeMindAuthenticationError,
    HomeMindClient,
    HomeMindConnectionError,
    HomeMindRateLimitedError,
    HomeMindServerError,
    HomeMindTimeoutError,
    HomeMindUpstreamError,
    HomeMindUpstreamKeyRejectedError,
    RetryPolicy,
)
from homemind_client.models import ChatRequest, DoneEvent

from .helpers import (
    CHAT_RESPONSE,
    INSTALLATION,
    TOKEN,
    Attempts,
    Disconnect,
    Handler,
    RawServer,
    ServeFn,
    event,
    json_ok,
    make_client,
    problem,
    raw,
    sequence,
    sse,
)

DONE = event("done", CHAT_RESPONSE)
MESSAGE = ChatRequest(message="turn on the kitchen light")


def hang(seconds: float = 5.0) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.json_response(INSTALLATION)

    return handler


# --- get_installation: a GET, safe to repeat ----------------------------------------------


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_installation_retries_gateway_errors_then_succeeds(
    serve: ServeFn, session: aiohttp.ClientSession, status: int
) -> None:
    server = await serve(
        {
            "GET /api/installation": sequence(
                raw(status, b"<html>bad gateway</html>"),
                problem(status, None),
                json_ok(INSTALLATION),
            )
        }
    )
    info = await make_client(session, server.url).get_installation()
    assert info.id == "inst-1"
    assert server.count("/api/installation") == 3


async def test_installation_gives_up_after_two_retries(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    server = await serve({"GET /api/installation": problem(503, "upstream_unavailable")})
    with pytest.raises(HomeMindUpstreamError):
        await make_client(session, server.url).get_installation()
    assert server.count("/api/installation") == 3


async def test_installation_retries_with_shipped_backoff(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    # The default policy (real backoff with jitter), once, end to end.
    server = await serve(
        {"GET /api/installation": sequence(problem(503, None), json_ok(INSTALLATION))}
    )
    client = HomeMindClient(session, server.url, TOKEN)
    assert (await client.get_installation()).id == "inst-1"
    assert server.count("/api/installation") == 2


async def test_installation_honours_short_retry_after(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    server = await serve(
        {
            "GET /api/installation": sequence(
                problem(429, "rate_limited", headers={"Retry-After": "0"}), json_ok(INSTALLATION)
            )
        }
    )
    assert (await make_client(session, server.url).get_installation()).id == "inst-1"
    assert server.count("/api/installation") == 2


async def test_installation_long_retry_after_is_not_waited_for(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    server = await serve(
        {"GET /api/installation": problem(429, "rate_limited", headers={"Retry-After": "3600"})}
    )
    with pytest.raises(HomeMindRateLimitedError) as caught:
        await make_client(session, server.url).get_installation()
    assert caught.value.retry_after == 3600
    assert server.count("/api/installation") == 1


@pytest.mark.parametrize(
    ("handler", "cls"),
    [
        (problem(401, "invalid_token"), HomeMindAuthenticationError),
        (problem(500, "internal_error"), HomeMindServerError),
    ],
)
async def test_installation_does_not_retry_definite_answers(
    serve: ServeFn, session: aiohttp.ClientSession, handler: object, cls: type
) -> None:
    server = await serve({"GET /api/installation": handler})  # type: ignore[dict-item]
    with pytest.raises(cls):
        await make_client(session, server.url).get_installation()
    assert server.count("/api/installation") == 1


async def test_installation_retries_a_timeout(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    server = await serve({"GET /api/installation": sequence(hang(), json_ok(INSTALLATION))})
    info = await make_client(session, server.url).get_installation(timeout=0.3)
    assert info.id == "inst-1"
    assert server.count("/api/installation") == 2


async def test_installation_timeouts_give_up(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    server = await serve({"GET /api/installation": hang()})
    with pytest.raises(HomeMindTimeoutError):
        await make_client(session, server.url).get_installation(timeout=0.2)
    assert server.count("/api/installation") == 3


async def test_installation_retries_a_hangup(
    hangup_server: RawServer, session_and_attempts: tuple[aiohttp.ClientSession, Attempts]
) -> None:
    session, attempts = session_and_attempts
    with pytest.raises(HomeMindConnectionError):
        await make_client(session, hangup_server.url).get_installation()
    assert attempts.count == 3
    # aiohttp itself may repeat an idempotent GET once per attempt on a fresh connection.
    assert hangup_server.connections in (3, 6)


async def test_installation_retries_refused_connections(
    closed_port_url: str, session_and_attempts: tuple[aiohttp.ClientSession, Attempts]
) -> None:
    session, attempts = session_and_attempts
    with pytest.raises(HomeMindConnectionError):
        await make_client(session, closed_port_url).get_installation()
    assert attempts.count == 3


# --- chat: may have been processed once sent --------------------------------------------


async def test_chat_is_not_retried_after_the_request_was_sent(
    hangup_server: RawServer, session: aiohttp.ClientSession
) -> None:
    # The server read the whole request, then hung up: it may have answered Claude already.
    with pytest.raises(HomeMindConnectionError):
        await make_client(session, hangup_server.url).chat(MESSAGE)
    assert hangup_server.connections == 1


async def test_chat_is_retried_once_when_the_connection_was_refused(
    closed_port_url: str, session_and_attempts: tuple[aiohttp.ClientSession, Attempts]
) -> None:
    session, attempts = session_and_attempts
    with pytest.raises(HomeMindConnectionError):
        await make_client(session, closed_port_url).chat(MESSAGE)
    assert attempts.count == 2


async def test_chat_timeout_is_not_retried(serve: ServeFn, session: aiohttp.ClientSession) -> None:
    server = await serve({"POST /api/chat": hang()})
    with pytest.raises(HomeMindTimeoutError):
        await make_client(session, server.url).chat(MESSAGE, timeout=0.2)
    assert server.count("/api/chat") == 1


@pytest.mark.parametrize(
    "refusal",
    [
        problem(503, "upstream_unavailable", headers={"Retry-After": "0"}),
        problem(429, "rate_limited", headers={"Retry-After": "0"}),
        problem(429, None),
        # Any code whose `ErrorCode.recovery` says nothing was done.
        problem(503, "temporarily_unavailable", headers={"Retry-After": "0"}),
    ],
)
async def test_chat_retries_once_when_refused_before_any_work(
    serve: ServeFn, session: aiohttp.ClientSession, refusal: object
) -> None:
    server = await serve({"POST /api/chat": sequence(refusal, json_ok(CHAT_RESPONSE))})  # type: ignore[arg-type]
    answer = await make_client(session, server.url).chat(MESSAGE)
    assert answer.conversation_id == "conv-1"
    assert server.count("/api/chat") == 2


async def test_chat_retries_at_most_once(serve: ServeFn, session: aiohttp.ClientSession) -> None:
    server = await serve({"POST /api/chat": problem(503, "upstream_unavailable")})
    with pytest.raises(HomeMindUpstreamError):
        await make_client(session, server.url).chat(MESSAGE)
    assert server.count("/api/chat") == 2


@pytest.mark.parametrize(
    ("handler", "cls"),
    [
        (problem(502, "upstream_rejected_key"), HomeMindUpstreamKeyRejectedError),
        (problem(503, None), HomeMindServerError),  # a plain 503 says nothing about the turn
        (problem(504, None), HomeMindServerError),
        (problem(500, "internal_error"), HomeMindServerError),
        (problem(503, "memory_unavailable"), HomeMindServerError),  # may have half happened
        (problem(429, "rate_limited", headers={"Retry-After": "30"}), HomeMindRateLimitedError),
    ],
)
async def test_chat_does_not_retry_other_failures(
    serve: ServeFn, session: aiohttp.ClientSession, handler: object, cls: type
) -> None:
    server = await serve({"POST /api/chat": handler})  # type: ignore[dict-item]
    with pytest.raises(cls):
        await make_client(session, server.url).chat(MESSAGE)
    assert server.count("/api/chat") == 1


# --- chat_stream: never once a byte of the stream arrived --------------------------------


async def test_stream_retried_when_refused_before_the_stream(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    server = await serve(
        {
            "POST /api/chat/stream": sequence(
                problem(503, "upstream_unavailable", headers={"Retry-After": "0"}),
                sse(event("text_delta", {"text": "ok"}), DONE),
            )
        }
    )
    events = [e async for e in make_client(session, server.url).chat_stream(MESSAGE)]
    assert isinstance(events[-1], DoneEvent)
    assert server.count("/api/chat/stream") == 2


async def test_stream_error_event_is_not_retried(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    server = await serve(
        {
            "POST /api/chat/stream": sse(
                event("error", {"code": "upstream_unavailable", "detail": "Claude is busy"})
            )
        }
    )
    with pytest.raises(HomeMindUpstreamError):
        async for _ in make_client(session, server.url).chat_stream(MESSAGE):
            pass
    assert server.count("/api/chat/stream") == 1


async def test_stream_cut_after_headers_is_not_retried(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    server = await serve({"POST /api/chat/stream": sse(Disconnect())})
    with pytest.raises(HomeMindConnectionError):
        async for _ in make_client(session, server.url).chat_stream(MESSAGE):
            pass
    assert server.count("/api/chat/stream") == 1


async def test_stream_hangup_before_headers_is_not_retried(
    hangup_server: RawServer, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(HomeMindConnectionError):
        async for _ in make_client(session, hangup_server.url).chat_stream(MESSAGE):
            pass
    assert hangup_server.connections == 1


async def test_stream_retry_respects_the_first_event_deadline(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    # A 2 s Retry-After (within the cap) does not fit a 0.5 s first-event budget: no retry.
    server = await serve(
        {
            "POST /api/chat/stream": problem(
                503, "upstream_unavailable", headers={"Retry-After": "2"}
            )
        }
    )
    with pytest.raises(HomeMindUpstreamError):
        async for _ in make_client(session, server.url).chat_stream(
            MESSAGE, first_event_timeout=0.5
        ):
            pass
    assert server.count("/api/chat/stream") == 1


def test_retry_policy_bounds() -> None:
    policy = RetryPolicy(max_retries=2, backoff=0.25, max_backoff=2.0, max_retry_after=5.0)
    for attempt in range(2):
        delay = policy.delay(attempt, None)
        assert delay is not None
        assert 0.25 * 2**attempt * 0.5 <= delay <= 0.25 * 2**attempt * 1.5
    assert policy.delay(2, None) is None
    assert policy.delay(0, 6.0) is None
    assert policy.delay(0, 4.0) == 4.0
