"""Follow-up questions through the real server: a question back keeps the turn open."""

from __future__ import annotations

from homeassistant.components import conversation
from homeassistant.core import Context, HomeAssistant

from tests.fakes.claude import text

from .conftest import ClaudeScript


async def test_question_back_then_answer(
    hass: HomeAssistant, script: ClaudeScript, agent_id: str
) -> None:
    script(text("Which light, the kitchen or the ceiling?"), text("Done, the kitchen it is."))

    asked = await conversation.async_converse(
        hass, "turn on the light", None, Context(), agent_id=agent_id
    )
    done = await conversation.async_converse(
        hass, "the kitchen", asked.conversation_id, Context(), agent_id=agent_id
    )

    assert asked.continue_conversation is True
    assert done.continue_conversation is False
    # The follow-up is the same conversation: Claude sees its own question.
    assert script.chat_requests[1].messages[-2]["role"] == "assistant"
