"""The cached part of Claude's system prompt stays byte-identical while HA's clock moves on.

HA 2025.4 starts its system prompt with "Current time is HH:MM:SS. Today's date is ...";
sent as is, it would make the cached block differ every turn, so the cache would be
written every turn and never read. Real HA, real server, fake Claude.
"""

from __future__ import annotations

from typing import Any

from freezegun import freeze_time
from homeassistant.components import conversation
from homeassistant.core import Context, HomeAssistant

from tests.fakes.claude import RecordedRequest, text

from .conftest import ClaudeScript


def system_blocks(request: RecordedRequest) -> list[dict[str, Any]]:
    blocks = request.body["system"]
    assert isinstance(blocks, list)
    assert len(blocks) == 2
    return blocks


async def test_cached_prompt_is_the_same_every_turn(
    hass: HomeAssistant, script: ClaudeScript, agent_id: str
) -> None:
    script(text("Hello."), text("Good morning."), text("It is still morning."), text("Hi again."))
    # One turn on the real clock first: freezegun swaps `datetime`, and pydantic cannot
    # build the schemas the Anthropic SDK builds lazily on first use while it is swapped.
    await conversation.async_converse(hass, "Hello", None, Context(), agent_id=agent_id)

    with freeze_time("2025-04-01 15:04:05+00:00") as clock:
        first = await conversation.async_converse(
            hass, "Good morning", None, Context(), agent_id=agent_id
        )
        clock.move_to("2025-04-01 15:09:51+00:00")
        await conversation.async_converse(
            hass, "What time is it?", first.conversation_id, Context(), agent_id=agent_id
        )
        clock.move_to("2025-04-02 06:30:00+00:00")
        third = await conversation.async_converse(hass, "Hi", None, Context(), agent_id=agent_id)
    assert first.conversation_id is not None
    assert third.conversation_id not in (None, first.conversation_id)

    requests = script.chat_requests
    assert len(requests) == 4
    # The second turn really was a later turn of the first conversation.
    assert [m["role"] for m in requests[2].messages] == ["user", "assistant", "user"]
    cached = [system_blocks(request)[0] for request in requests]
    assert all(block.get("cache_control") == {"type": "ephemeral"} for block in cached)
    # Byte-identical from turn to turn and into the next conversation.
    assert len({block["text"] for block in cached}) == 1
    stable = cached[0]["text"]
    # HA's description of the home is there (the exposed light only)...
    assert "Kitchen Lights" in stable
    assert "Bed Light" not in stable
    # ...without HA's clock and without HA's default instructions.
    assert "Current time is" not in stable
    assert "Answer in plain text" not in stable
    # The time now comes from the server, in the home's zone (HA's test zone is US/Pacific).
    dynamic = system_blocks(requests[2])[1]["text"]
    assert "2025-04-01 08:09" in dynamic
    assert hass.config.time_zone in dynamic
