"""The fake Claude API, driven by the real anthropic SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anthropic
import pytest

from tests.fakes import claude
from tests.fakes.claude import FakeClaude

MODEL = "claude-sonnet-4-6"
USER = [{"role": "user", "content": "Hello"}]


@pytest.fixture
async def fake() -> AsyncIterator[FakeClaude]:
    async with FakeClaude() as server:
        yield server


@pytest.fixture
async def client(fake: FakeClaude) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=fake.base_url, api_key="test-key", max_retries=0
    ) as sdk:
        yield sdk


async def test_stream_text_with_messages_stream(
    fake: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(claude.text("The kitchen light is on and the door is locked."))
    deltas: list[str] = []
    async with client.messages.stream(model=MODEL, max_tokens=100, messages=USER) as stream:
        async for piece in stream.text_stream:
            deltas.append(piece)
        final = await stream.get_final_message()
    assert "".join(deltas) == "The kitchen light is on and the door is locked."
    assert len(deltas) > 3
    assert final.content[0].type == "text"
    assert final.content[0].text == "The kitchen light is on and the door is locked."
    assert final.stop_reason == "end_turn"
    assert final.model == MODEL
    assert final.id.startswith("msg_")
    assert final.usage.input_tokens == 25
    assert final.usage.output_tokens > 0
