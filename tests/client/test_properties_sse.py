"""Property tests of the SSE parser (homemind_client/sse.py): any chunking, any garbage."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homemind_client.errors import HomeMindInvalidResponseError
from homemind_client.sse import ServerSentEvent, SSEParser

# Field values never hold line breaks (the format has no escape for them).
_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=40
)
_NAME = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n:"),
    min_size=1,
    max_size=12,
)
_EOL = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[ServerSentEvent]]:
    """A valid stream (with comments, BOM, mixed line ends) and the events it holds."""
    out: list[str] = ["\ufeff"] if draw(st.booleans()) else []
    # One line ending per stream: `\r` then `\n` from two lines would be one `\r\n`.
    eol = draw(_EOL)
    expected: list[ServerSentEvent] = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            out.append(":" + draw(_TEXT) + eol)  # keep-alive comment
        name = draw(st.none() | _NAME.filter(lambda n: n.strip() == n))
        lines = draw(st.lists(_TEXT, min_size=1, max_size=3))
        if name is not None:
            out.append(f"event: {name}{eol}")
        for line in lines:
            out.append(f"data: {line}{eol}")
        out.append(eol)
        expected.append(ServerSentEvent(event=name or "message", data="\n".join(lines)))
    return "".join(out).encode(), expected


def _cuts(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(data) + 1) for p in points})
    bounds = [0, *marks, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=300, deadline=None)
@given(streams(), st.lists(st.integers(0, 10_000), max_size=30))
def test_any_chunking_gives_the_same_events(
    stream: tuple[bytes, list[ServerSentEvent]], points: list[int]
) -> None:
    data, expected = stream
    parser = SSEParser()
    events = [event for chunk in _cuts(data, points) for event in parser.feed(chunk)]
    assert [(e.event, e.data) for e in events] == [(e.event, e.data) for e in expected]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_garbage_never_crashes_and_stays_bounded(chunks: list[bytes]) -> None:
    parser = SSEParser(max_event_bytes=1024)
    try:
        for chunk in chunks:
            for event in parser.feed(chunk):
                assert isinstance(event.data, str)
                assert len(event.data.encode()) <= 1024 * 3  # U+FFFD may triple a byte
    except HomeMindInvalidResponseError:
        pass  # the one error the parser may raise: an event over the limit


def test_an_oversized_event_is_refused() -> None:
    parser = SSEParser(max_event_bytes=64)
    with pytest.raises(HomeMindInvalidResponseError):
        parser.feed(b"data: " + b"x" * 100)
