"""Every problem+json answer becomes the right exception, with code, status and request id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest

from homemind_client import (
    ERRORS_BY_CODE,
    HomeMindAuthenticationError,
    HomeMindClient,
    HomeMindConnectionError,
    HomeMindError,
    HomeMindInstallationRevokedError,
    HomeMindInvalidResponseError,
    HomeMindNoApiKeyError,
    HomeMindNotFoundError,
    HomeMindRateLimitedError,
    HomeMindServerError,
    HomeMindSubscriptionRequiredError,
    HomeMindUpstreamError,
    HomeMindUpstreamKeyRejectedError,
    HomeMindUsageLimitError,
    HomeMindValidationError,
)
from homemind_client.errors import parse_retry_after
from homemind_client.models import ChatRequest, InstallationInfo

from .helpers import (
    CHAT_RESPONSE,
    INSTALLATION,
    TOKEN,
    ServeFn,
    event,
    json_ok,
    make_client,
    problem,
    raw,
    sse,
)

# The contract's codes with their statuses and the class each must raise.
CHAT_CODES = [
    ("invalid_token", 401, HomeMindAuthenticationError),
    ("installation_revoked", 401, HomeMindInstallationRevokedError),
    ("subscription_required", 402, HomeMindSubscriptionRequiredError),
    ("usage_limit_reached", 402, HomeMindUsageLimitError),
    ("no_api_key", 409, HomeMindNoApiKeyError),
    ("rate_limited", 429, HomeMindRateLimitedError),
    ("upstream_unavailable", 503, HomeMindUpstreamError),
    ("upstream_rejected_key", 502, HomeMindUpstreamKeyRejectedError),
    ("validation_error", 422, HomeMindValidationError),
    ("not_found", 404, HomeMindNotFoundError),
    ("internal_error", 500, HomeMindServerError),
    ("payload_too_large", 413, HomeMindValidationError),
    ("unsupported_media_type", 415, HomeMindValidationError),
]


def test_every_known_code_is_in_the_table() -> None:
    for code, _status, cls in CHAT_CODES:
        assert ERRORS_BY_CODE[code] is cls


@pytest.mark.parametrize(("code", "status", "cls"), CHAT_CODES)
async def test_chat_maps_code_to_exception(
    serve: ServeFn, session: aiohttp.ClientSession, code: str, status: int, cls: type
) -> None:
    # Retry-After is far beyond the retry cap, so even retryable answers surface at once.
    server = await serve(
        {
            "POST /api/chat": problem(
                status, code, f"detail of {code}", headers={"Retry-After": "120"}
            )
        }
    )
    client = make_client(session, server.url)
    with pytest.raises(cls) as caught:
        await client.chat(ChatRequest(message="hi"))
    err = caught.value
    assert type(err) is cls
    assert err.code == code
    assert err.status == status
    assert err.detail == f"detail of {code}"
    assert err.request_id == "req-test-1"
    assert str(err) == f"detail of {code}"


@pytest.mark.parametrize(("code", "status", "cls"), CHAT_CODES)
async def test_stream_error_before_first_byte_maps_code(
    serve: ServeFn, session: aiohttp.ClientSession, code: str, status: int, cls: type
) -> None:
    server = await serve(
        {"POST /api/chat/stream": problem(status, code, "nope", headers={"Retry-After": "120"})}
    )
    client = make_client(session, server.url)
    with pytest.raises(cls) as caught:
        async for _ in client.chat_stream(ChatRequest(message="hi")):
            pass
    assert type(caught.value) is cls
    assert caught.value.code == code
    assert caught.value.status == status


@pytest.mark.parametrize(("code", "status", "cls"), CHAT_CODES)
async def test_stream_error_event_maps_code(
    serve: ServeFn, session: aiohttp.ClientSession, code: str, status: int, cls: type
) -> None:
    server = await serve(
        {
            "POST /api/chat/stream": sse(
                event("text_delta", {"text": "Hel"}),
                event("error", {"code": code, "detail": "went wrong"}),
            )
        }
    )
    client = make_client(session, server.url)
    seen = []
    with pytest.raises(cls) as caught:
        async for item in client.chat_stream(ChatRequest(message="hi")):
            seen.append(item)
    assert [e.type for e in seen] == ["text_delta"]  # what came before the error was delivered
    assert type(caught.value) is cls
    assert caught.value.code == code
    assert caught.value.detail == "went wrong"
    assert caught.value.request_id == "req-stream-1"


async def test_unknown_error_event_code_is_a_server_error(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    server = await serve(
        {"POST /api/chat/stream": sse(event("error", {"code": "brand_new", "detail": "x"}))}
    )
    client = make_client(session, server.url)
    with pytest.raises(HomeMindServerError) as caught:
        async for _ in client.chat_stream(ChatRequest(message="hi")):
            pass
    assert caught.value.code == "brand_new"


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, HomeMindAuthenticationError),
        (402, HomeMindSubscriptionRequiredError),
        (403, HomeMindValidationError),
        (404, HomeMindNotFoundError),
        (409, HomeMindValidationError),
        (422, HomeMindValidationError),
        (400, HomeMindValidationError),
        (429, HomeMindRateLimitedError),
        (500, HomeMindServerError),
    ],
)
async def test_unknown_code_falls_back_on_status(
    serve: ServeFn, session: aiohttp.ClientSession, status: int, cls: type
) -> None:
    server = await serve({"GET /api/installation": problem(status, "something_new", "hmm")})
    client = make_client(session, server.url)
    with pytest.raises(cls) as caught:
        await client.get_installation()
    assert type(caught.value) is cls
    assert caught.value.code == "something_new"
    assert caught.value.status == status


async def test_html_error_page_falls_back_on_status(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    server = await serve({"POST /api/chat": raw(401, b"<html>go away</html>")})
    client = make_client(session, server.url)
    with pytest.raises(HomeMindAuthenticationError) as caught:
        await client.chat(ChatRequest(message="hi"))
    assert caught.value.code is None
    assert caught.value.status == 401


async def test_problem_without_schema_keeps_what_it_can(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    server = await serve(
        {"POST /api/chat": json_ok({"code": "no_api_key", "detail": "set a key"}, status=409)}
    )
    client = make_client(session, server.url)
    with pytest.raises(HomeMindNoApiKeyError) as caught:
        await client.chat(ChatRequest(message="hi"))
    assert caught.value.detail == "set a key"


@pytest.mark.parametrize(
    "handler",
    [
        raw(200, b"<html>captive portal</html>"),
        raw(200, b"not json at all", "application/json"),
        json_ok({"reply": "no conversation id"}),
        json_ok([1, 2, 3]),
        raw(204, b""),
    ],
)
async def test_ok_status_that_does_not_parse_is_invalid_response(
    serve: ServeFn, session: aiohttp.ClientSession, handler: object
) -> None:
    server = await serve({"POST /api/chat": handler})  # type: ignore[dict-item]
    client = make_client(session, server.url)
    with pytest.raises(HomeMindInvalidResponseError):
        await client.chat(ChatRequest(message="hi"))


async def test_redirect_is_not_followed(serve: ServeFn, session: aiohttp.ClientSession) -> None:
    async def redirect(request: object) -> aiohttp.web.StreamResponse:
        raise aiohttp.web.HTTPFound("http://example.invalid/elsewhere")

    server = await serve({"GET /api/installation": redirect})
    client = make_client(session, server.url)
    with pytest.raises(HomeMindInvalidResponseError) as caught:
        await client.get_installation()
    assert caught.value.status == 302
    assert server.count("/api/installation") == 1


async def test_get_installation_parses_and_sends_the_token(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    server = await serve({"GET /api/installation": json_ok(INSTALLATION)})
    client = HomeMindClient(session, server.url + "/", TOKEN, user_agent="TestHost/1.0")
    info = await client.get_installation()
    assert isinstance(info, InstallationInfo)
    assert info.id == "inst-1"
    assert info.usage.allowance == 1000
    assert client.base_url == server.url
    sent = server.requests[0].headers
    assert sent["Authorization"] == f"Bearer {TOKEN}"
    assert sent["User-Agent"].startswith("TestHost/1.0 homemind-client/")


async def test_chat_sends_the_request_body(serve: ServeFn, session: aiohttp.ClientSession) -> None:
    server = await serve({"POST /api/chat": json_ok(CHAT_RESPONSE)})
    client = make_client(session, server.url)
    answer = await client.chat(ChatRequest(message="hi", language="de", is_voice=True))
    assert answer.reply == "The kitchen light is on."
    assert answer.stop_reason == "end_turn"
    import json

    body = json.loads(server.requests[0].body)
    assert body["message"] == "hi"
    assert body["language"] == "de"
    assert body["is_voice"] is True
    assert "messages" not in body  # None fields are left out
    assert server.requests[0].headers["Content-Type"] == "application/json"


async def test_base_url_with_path_prefix(serve: ServeFn, session: aiohttp.ClientSession) -> None:
    server = await serve({"GET /prefix/api/installation": json_ok(INSTALLATION)})
    client = make_client(session, server.url + "/prefix/")
    assert (await client.get_installation()).name == "Test home"


def test_base_url_must_be_http(session: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError, match="absolute"):
        HomeMindClient(session, "ftp://example.com", TOKEN)
    with pytest.raises(ValueError, match="absolute"):
        HomeMindClient(session, "example.com", TOKEN)


async def test_connection_refused_is_connection_error(
    closed_port_url: str, session: aiohttp.ClientSession
) -> None:
    client = make_client(session, closed_port_url)
    with pytest.raises(HomeMindConnectionError) as caught:
        await client.get_installation()
    assert "127.0.0.1" in str(caught.value)


# --- Retry-After --------------------------------------------------------------------------


def test_parse_retry_after_seconds_and_dates() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0  # past: now
    for bad in (None, "", "soon", "-5", "nan", "inf"):
        assert parse_retry_after(bad) is None


async def test_retry_after_header_seconds(serve: ServeFn, session: aiohttp.ClientSession) -> None:
    server = await serve(
        {"POST /api/chat": problem(429, "rate_limited", headers={"Retry-After": "42"})}
    )
    client = make_client(session, server.url)
    with pytest.raises(HomeMindRateLimitedError) as caught:
        await client.chat(ChatRequest(message="hi"))
    assert caught.value.retry_after == 42.0


async def test_retry_after_header_http_date(serve: ServeFn, session: aiohttp.ClientSession) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    server = await serve(
        {"POST /api/chat": problem(503, "upstream_unavailable", headers={"Retry-After": when})}
    )
    client = make_client(session, server.url)
    with pytest.raises(HomeMindUpstreamError) as caught:
        await client.chat(ChatRequest(message="hi"))
    assert caught.value.retry_after is not None
    assert 3000 < caught.value.retry_after <= 3600


async def test_retry_after_from_problem_body(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    server = await serve({"POST /api/chat": problem(429, "rate_limited", retry_after=90)})
    client = make_client(session, server.url)
    with pytest.raises(HomeMindRateLimitedError) as caught:
        await client.chat(ChatRequest(message="hi"))
    assert caught.value.retry_after == 90.0


def test_error_classes_keep_their_constructor() -> None:
    # The HA integration builds and catches these; the keywords are part of the API.
    err = HomeMindRateLimitedError("slow down", retry_after=3, code="rate_limited", status=429)
    assert err.retry_after == 3
    assert isinstance(err, HomeMindError)
    assert repr(err).startswith("HomeMindRateLimitedError(")
