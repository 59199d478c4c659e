"""Follow-up questions: `continue_conversation` when Claude's answer asks back."""

from __future__ import annotations

import pytest
from homeassistant.components import conversation
from homeassistant.core import Context, HomeAssistant

from custom_components.home_mind.follow_up import asks_back
from homemind_client.models import ChatResponse, DoneEvent, Notice, TextDeltaEvent

from .fake_homemind import FakeHomeMind, answer, tool_call


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Which room, the kitchen or the bedroom?", True),
        ("Soll ich das Licht dimmen? ", True),
        ("¿Quieres que apague la luz?", True),
        ("要我关灯吗\uff1f", True),  # full-width: HA 2025.4's own check misses it
        ('Did you mean "the kitchen?"', True),
        ("The kitchen light is on.", False),
        ("I turned it on; anything else", False),
    ],
)
async def test_a_question_keeps_the_microphone_open(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str, reply: str, expected: bool
) -> None:
    fake_homemind.script(answer(reply))

    result = await conversation.async_converse(hass, "light", None, Context(), agent_id=agent_id)

    assert result.continue_conversation is expected


async def test_a_notice_after_the_question_does_not_close_it(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str
) -> None:
    over = Notice(code="usage_over_allowance", message="You are past your plan's messages.")
    fake_homemind.script(
        [
            TextDeltaEvent(text="Which room?"),
            DoneEvent(response=ChatResponse(conversation_id="c", reply="x", notices=[over])),
        ]
    )

    result = await conversation.async_converse(hass, "light", None, Context(), agent_id=agent_id)

    speech = result.response.speech["plain"]["speech"]
    assert speech.startswith("Which room? ")
    assert not speech.endswith("?")
    assert result.continue_conversation is True


async def test_only_the_final_answer_counts(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str
) -> None:
    """A question Claude asks itself before a tool call is not a question to the user."""
    fake_homemind.script(
        tool_call("call_1", "HassTurnOn", {"name": "Kitchen Lights"}, text="Kitchen? "),
        answer("The kitchen light is on."),
    )

    result = await conversation.async_converse(
        hass, "turn on the kitchen", None, Context(), agent_id=agent_id
    )

    assert result.continue_conversation is False


def test_greek_question_mark() -> None:
    assert asks_back("Να σβήσω το φως;", "el")
    assert asks_back("Να σβήσω το φως\u037e", "el-GR")
    assert not asks_back("Done; bye", "en")
