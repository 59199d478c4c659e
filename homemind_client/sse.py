"""An incremental parser of `text/event-stream` (the WHATWG server-sent events format).

Fed raw byte chunks as they arrive, it returns the events completed by each chunk, so a
stream is never buffered whole. Lines may end in `\\n`, `\\r\\n` or `\\r` (even with the
`\\r` and `\\n` in different chunks); several `data:` lines join with `\\n`; comments
(`:`) and unknown fields are skipped; an event without data is not dispatched.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import HomeMindInvalidResponseError

# A `done` event carries the whole reply; anything beyond this is not our protocol.
DEFAULT_MAX_EVENT_BYTES = 4 * 1024 * 1024

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event: its name (`message` when none was given) and its data."""

    event: str
    data: str
    id: str | None = None


class SSEParser:
    """Feed bytes with `feed()`; collect `ServerSentEvent`s as they complete."""

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max_event_bytes = max_event_bytes
        self._buffer = bytearray()
        self._skip_lf = False  # the previous chunk ended in `\r`: a leading `\n` belongs to it
        self._at_start = True
        self._event = ""
        self._data: list[str] = []
        self._data_size = 0
        self._last_id: str | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """The events completed by `chunk` (possibly none)."""
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        self._buffer += chunk
        if self._at_start:
            if len(self._buffer) < len(_BOM) and _BOM.startswith(bytes(self._buffer)):
                return []  # might still become a BOM
            self._at_start = False
            if self._buffer.startswith(_BOM):
                del self._buffer[: len(_BOM)]

        events: list[ServerSentEvent] = []
        buffer = self._buffer
        start = 0
        length = len(buffer)
        while start < length:
            lf = buffer.find(b"\n", start)
            cr = buffer.find(b"\r", start, lf if lf != -1 else length)
            if cr != -1:
                end = cr
                if cr + 1 < length:
                    next_start = cr + 2 if buffer[cr + 1] == 0x0A else cr + 1
                else:
                    next_start = cr + 1
                    self._skip_lf = True
            elif lf != -1:
                end = lf
                next_start = lf + 1
            else:
                break
            event = self._line(bytes(buffer[start:end]))
            if event is not None:
                events.append(event)
            start = next_start
        del buffer[:start]
        if len(buffer) + self._data_size > self._max_event_bytes:
            raise HomeMindInvalidResponseError("A server-sent event is too large.")
        return events

    def _line(self, raw: bytes) -> ServerSentEvent | None:
        if not raw:
            return self._dispatch()
        if raw[:1] == b":":
            return None  # comment (keep-alive)
        # As browsers do: invalid UTF-8 becomes U+FFFD (then, in JSON, a decoding error).
        line = raw.decode("utf-8", errors="replace")
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
            self._data_size += len(raw)
            if self._data_size > self._max_event_bytes:
                raise HomeMindInvalidResponseError("A server-sent event is too large.")
        elif field == "event":
            self._event = value
        elif field == "id" and "\0" not in value:
            self._last_id = value
        # `retry` and unknown fields: nothing for us to do.
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = ServerSentEvent(
            event=self._event or "message", data="\n".join(self._data), id=self._last_id
        )
        self._event = ""
        self._data = []
        self._data_size = 0
        return event


__all__ = ["DEFAULT_MAX_EVENT_BYTES", "SSEParser", "ServerSentEvent"]
