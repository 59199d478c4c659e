"""`chat_stream`: SSE over a real socket, split at awkward places, slow, cut off."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from homemind_client import (
    HomeMindConnectionError,
    HomeMindInvalidResponseError,
    HomeMindTimeoutError,
)
from homemind_client.models import (
    ChatRequest,
    DoneEvent,
    TextDeltaEvent,
    ToolCallEvent,
)
from homemind_client.sse import SSEParser

from .helpers import (
    CHAT_RESPONSE,
    TOOL_USE_RESPONSE,
    Disconnect,
    ServeFn,
    Sleep,
    event,
    make_client,
    raw,
    sse,
)

DONE = event("done", CHAT_RESPONSE)
TOOL_DONE = event("done", TOOL_USE_RESPONSE)


async def collect(client: object, **kwargs: object) -> list[object]:
    events = []
    async for item in client.chat_stream(ChatRequest(message="hi"), **kwargs):  # type: ignore[attr-defined]
        events.append(item)
    return events


async def test_stream_yields_typed_events_in_order(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    server = await serve(
        {
            "POST /api/chat/stream": sse(
                event("text_delta", {"text": "The kitchen "}),
                event("text_delta", {"text": "light is on."}),
                DONE,
            )
        }
    )
    events = await collect(make_client(session, server.url))
    assert [type(e) for e in events] == [TextDeltaEvent, TextDeltaEvent, DoneEvent]
    assert "".join(e.text for e in events if isinstance(e, TextDeltaEvent)) == (
        "The kitchen light is on."
    )
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert done.response.conversation_id == "conv-1"
    sent = server.requests[0]
    assert sent.headers["Accept"] == "text/event-stream"
    assert json.loads(sent.body)["message"] == "hi"


async def test_tool_calls_are_events(serve: ServeFn, session: aiohttp.ClientSession) -> None:
    server = await serve(
        {
            "POST /api/chat/stream": sse(
                event("tool_call", {"id": "t1", "name": "HassTurnOn", "arguments": {"a": 1}}),
                TOOL_DONE,
            )
        }
    )
    events = await collect(make_client(session, server.url))
    call = events[0]
    assert isinstance(call, ToolCallEvent)
    assert (call.id, call.name, call.arguments) == ("t1", "HassTurnOn", {"a": 1})
    assert isinstance(events[1], DoneEvent)
    assert events[1].response.stop_reason == "tool_use"


def _split_everywhere(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


async def test_events_split_at_every_byte_with_crlf_and_multiline_data(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    text = "Grüße 🌍 aus der Küche"  # multi-byte characters get split mid-character
    body = (
        b": keep-alive comment\r\n\r\n"
        + b"event: text_delta\r\n"
        + b'data: {"text":\r\n'
        + f"data: {json.dumps(text)}}}\r\n\r\n".encode()
        + b'event: text_delta\rdata: {"text": "!"}\r\r'
        + DONE.replace(b"\n", b"\r\n")
    )
    server = await serve({"POST /api/chat/stream": sse(*_split_everywhere(body))})
    events = await collect(make_client(session, server.url))
    assert [type(e) for e in events] == [TextDeltaEvent, TextDeltaEvent, DoneEvent]
    assert events[0].text == text  # type: ignore[attr-defined]
    assert events[1].text == "!"  # type: ignore[attr-defined]


async def test_cr_and_lf_of_one_line_end_in_different_chunks(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    server = await serve(
        {
            "POST /api/chat/stream": sse(
                b"event: text_delta\r",
                Sleep(0.05),
                b'\ndata: {"text": "a"}\r',
                Sleep(0.05),
                b"\n\r",
                Sleep(0.05),
                b"\n" + DONE,
            )
        }
    )
    events = await collect(make_client(session, server.url))
    # A `\n` opening a chunk after a chunk-final `\r` is the same line break, not an empty
    # line: otherwise the event name would be dropped and the delta lost.
    assert [type(e) for e in events] == [TextDeltaEvent, DoneEvent]
    assert events[0].text == "a"  # type: ignore[attr-defined]


async def test_unknown_events_and_fields_are_ignored(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    server = await serve(
        {
            "POST /api/chat/stream": sse(
                b"retry: 1000\nid: 7\n\n",
                event("thinking", {"something": "new"}),
                b'data: {"no": "event name"}\n\n',
                b"event: text_delta\nfuture_field: x\n" + b'data: {"text": "ok", "extra": 1}\n\n',
                DONE,
            )
        }
    )
    events = await collect(make_client(session, server.url))
    assert [type(e) for e in events] == [TextDeltaEvent, DoneEvent]


@pytest.mark.parametrize(
    "bad",
    [
        b"event: text_delta\ndata: {not json\n\n",
        b'event: tool_call\ndata: {"id": "t1"}\n\n',  # required `name` missing
        b'event: done\ndata: {"reply": "no conversation id"}\n\n',
        b"event: text_delta\ndata: \xff\xfe\n\n",
    ],
)
async def test_malformed_event_is_invalid_response(
    serve: ServeFn, session: aiohttp.ClientSession, bad: bytes
) -> None:
    server = await serve(
        {"POST /api/chat/stream": sse(event("text_delta", {"text": "a"}), bad, DONE)}
    )
    seen = []
    with pytest.raises(HomeMindInvalidResponseError):
        async for item in make_client(session, server.url).chat_stream(ChatRequest(message="hi")):
            seen.append(item)
    assert len(seen) == 1


async def test_not_an_event_stream_is_invalid_response(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    server = await serve({"POST /api/chat/stream": raw(200, b"{}", "application/json")})
    with pytest.raises(HomeMindInvalidResponseError):
        await collect(make_client(session, server.url))


async def test_stream_ending_without_done_is_connection_error(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    server = await serve({"POST /api/chat/stream": sse(event("text_delta", {"text": "Hal"}))})
    seen = []
    with pytest.raises(HomeMindConnectionError) as caught:
        async for item in make_client(session, server.url).chat_stream(ChatRequest(message="hi")):
            seen.append(item)
    assert not isinstance(caught.value, HomeMindTimeoutError)
    assert len(seen) == 1


async def test_abrupt_disconnect_midstream_is_connection_error(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    server = await serve(
        {
            "POST /api/chat/stream": sse(
                event("text_delta", {"text": "Hal"}), b"event: text_del", Disconnect()
            )
        }
    )
    seen = []
    with pytest.raises(HomeMindConnectionError):
        async for item in make_client(session, server.url).chat_stream(ChatRequest(message="hi")):
            seen.append(item)
    assert [type(e) for e in seen] == [TextDeltaEvent]
    assert server.count("/api/chat/stream") == 1  # a started stream is never retried


async def test_no_first_event_in_time_is_timeout(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    # Keep-alive comments arrive, but no event: the first-event deadline still applies.
    server = await serve(
        {"POST /api/chat/stream": sse(b": ping\n\n", Sleep(0.2), b": ping\n\n", Sleep(5), DONE)}
    )
    with pytest.raises(HomeMindTimeoutError) as caught:
        await collect(make_client(session, server.url), first_event_timeout=0.3)
    assert "first event" in str(caught.value)
    assert server.count("/api/chat/stream") == 1


async def test_slow_headers_count_against_first_event_timeout(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    async def slow(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        await asyncio.sleep(5)
        raise AssertionError("unreachable")

    server = await serve({"POST /api/chat/stream": slow})
    with pytest.raises(HomeMindTimeoutError):
        await collect(make_client(session, server.url, first_event_timeout=0.2))


async def test_slow_first_event_within_timeout_is_fine(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    server = await serve(
        {"POST /api/chat/stream": sse(Sleep(0.2), event("text_delta", {"text": "x"}), DONE)}
    )
    events = await collect(make_client(session, server.url), first_event_timeout=10)
    assert isinstance(events[-1], DoneEvent)


async def test_idle_gap_is_timeout(serve: ServeFn, session: aiohttp.ClientSession) -> None:
    server = await serve(
        {
            "POST /api/chat/stream": sse(
                event("text_delta", {"text": "Hal"}), Sleep(5), event("text_delta", {"text": "lo"})
            )
        }
    )
    seen = []
    with pytest.raises(HomeMindTimeoutError) as caught:
        async for item in make_client(session, server.url, idle_timeout=0.3).chat_stream(
            ChatRequest(message="hi")
        ):
            seen.append(item)
    assert len(seen) == 1
    assert "answer" in str(caught.value)


async def test_keepalive_comments_keep_an_idle_stream_alive(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    pings: list[bytes | Sleep] = []
    for _ in range(4):
        pings += [Sleep(0.15), b": ping\n\n"]
    server = await serve(
        {"POST /api/chat/stream": sse(event("text_delta", {"text": "a"}), *pings, DONE)}
    )
    events = await collect(make_client(session, server.url), idle_timeout=0.5)
    assert isinstance(events[-1], DoneEvent)


async def test_total_timeout(serve: ServeFn, session: aiohttp.ClientSession) -> None:
    steps: list[bytes | Sleep] = []
    for i in range(100):
        steps += [event("text_delta", {"text": str(i)}), Sleep(0.05)]
    server = await serve({"POST /api/chat/stream": sse(*steps, DONE)})
    with pytest.raises(HomeMindTimeoutError):
        await collect(make_client(session, server.url), idle_timeout=5, total_timeout=0.4)


async def test_breaking_out_early_closes_the_stream(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    server = await serve(
        {
            "POST /api/chat/stream": sse(
                event("text_delta", {"text": "a"}), Sleep(5), event("text_delta", {"text": "b"})
            )
        }
    )
    stream = make_client(session, server.url).chat_stream(ChatRequest(message="hi"))
    first = await anext(stream)
    assert isinstance(first, TextDeltaEvent)
    await stream.aclose()  # type: ignore[attr-defined]
    # The server sees the connection go away (not left half-read in a pool).
    transport = server.requests[0].transport
    assert transport is not None
    for _ in range(200):
        if transport.is_closing():
            break
        await asyncio.sleep(0.01)
    assert transport.is_closing()


async def test_done_ends_the_stream_even_if_more_follows(
    serve: ServeFn, session: aiohttp.ClientSession
) -> None:
    server = await serve(
        {"POST /api/chat/stream": sse(DONE, event("text_delta", {"text": "late"}))}
    )
    events = await collect(make_client(session, server.url))
    assert [type(e) for e in events] == [DoneEvent]


# --- the parser on its own: line endings and boundaries the socket cannot force -------


def test_parser_handles_bom_split_and_lone_cr() -> None:
    parser = SSEParser()
    out = []
    for piece in (b"\xef", b"\xbb", b"\xbfevent: a\r", b"\ndata: 1\r", b"\r"):
        out += parser.feed(piece)
    assert [(e.event, e.data) for e in out] == [("a", "1")]


def test_parser_multiline_data_and_empty_data() -> None:
    parser = SSEParser()
    events = parser.feed(b"data: one\ndata:two\ndata\n\nevent: x\n\n")
    assert [(e.event, e.data) for e in events] == [("message", "one\ntwo\n")]


def test_parser_refuses_giant_events() -> None:
    parser = SSEParser(max_event_bytes=100)
    with pytest.raises(HomeMindInvalidResponseError):
        for _ in range(20):
            parser.feed(b"data: " + b"x" * 20 + b"\n")


def test_parser_incomplete_event_at_end_is_not_dispatched() -> None:
    parser = SSEParser()
    assert parser.feed(b"event: done\ndata: {}\n") == []
