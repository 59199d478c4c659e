"""The stream's text deltas are written without building the wire model: the bytes must be
exactly what `encode_event` makes, for any text Claude may send."""

from __future__ import annotations

import pytest

from cloud_server.chat.routes import text_delta_bytes
from homemind_client.models import TextDeltaEvent, decode_event, encode_event

TEXTS = [
    "",
    "Hello",
    ' quotes " and \\ backslashes',
    "new\nline\r\ttab\b\f",
    "".join(chr(c) for c in range(0x20)) + "\x7f",
    "Grüße, ça va? 18 °C — ok",
    "emoji 🏠💡 and CJK 温度",
    "line\u2028separator\u2029paragraph",
]


@pytest.mark.parametrize("text", TEXTS)
def test_a_text_delta_is_encoded_exactly_as_the_wire_model_does(text: str) -> None:
    assert text_delta_bytes(text) == encode_event(TextDeltaEvent(text=text))
    body = text_delta_bytes(text).decode()
    name, data = body.removesuffix("\n\n").split("\n", 1)
    assert decode_event(name.removeprefix("event: "), data.removeprefix("data: ")) == (
        TextDeltaEvent(text=text)
    )
