"""Memory through every real layer: told once, in Claude's prompt in a later conversation,
gone after forgetting. HA's Assist and actions → home_mind → client → cloud_server → fake
Claude (which records each prompt it receives)."""

from __future__ import annotations

from typing import Any

import pytest
from homeassistant.components import conversation
from homeassistant.core import Context, HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from homeassistant.setup import async_setup_component

from custom_components.home_mind.const import DOMAIN
from tests.fakes.claude import text, tool_use

from .conftest import ClaudeScript, Cloud, SetupAgent

DAUGHTER = "The user's daughter is called Ana."
BINS = "The bins go out on Tuesday evening."
JAZZ = "Ana likes jazz in the morning."


async def ask(hass: HomeAssistant, agent_id: str, sentence: str) -> conversation.ConversationResult:
    """A new conversation each time (no conversation id): nothing carries over but memory."""
    return await conversation.async_converse(hass, sentence, None, Context(), agent_id=agent_id)


async def action(hass: HomeAssistant, service: str, data: dict[str, Any]) -> dict[str, Any]:
    response = await hass.services.async_call(
        DOMAIN, service, data, blocking=True, return_response=True
    )
    assert response is not None
    return dict(response)


async def test_fact_told_once_is_recalled_later_and_gone_after_forgetting(
    hass: HomeAssistant, script: ClaudeScript, agent_id: str
) -> None:
    # Conversation 1: the model stores the fact with the server's memory tool.
    script(
        tool_use("memory_remember", {"content": DAUGHTER, "category": "person"}, id="toolu_mem"),
        text("Nice to meet Ana! I'll remember that."),
    )
    first = await ask(hass, agent_id, "My daughter is called Ana.")
    assert DAUGHTER not in script.chat_requests[0].system_text
    assert first.response.speech["plain"]["speech"] == "Nice to meet Ana! I'll remember that."
    # The memory tool ran inside the server: Claude got its result in the same request.
    tool_result = script.chat_requests[-1].messages[-1]["content"][0]
    assert tool_result["type"] == "tool_result"
    assert tool_result["tool_use_id"] == "toolu_mem"

    # An automation stores another fact with the action.
    stored = await action(hass, "remember", {"content": BINS, "category": "routine"})
    assert stored["memory"]["content"] == BINS

    # Conversation 2, a new conversation id: both facts are in the prompt Claude gets.
    script(text("Her name is Ana."))
    second = await ask(hass, agent_id, "What's my daughter's name?")
    assert second.conversation_id != first.conversation_id
    prompt = script.chat_requests[-1].system_text
    assert DAUGHTER in prompt
    assert BINS in prompt
    # Nothing of conversation 1 travels as history: only memory carries the fact.
    assert len(script.chat_requests[-1].messages) == 1

    # The action forgets the bins; the model forgets the daughter with its tool.
    forgotten = await action(hass, "forget", {"query": "bins Tuesday"})
    assert [item["content"] for item in forgotten["forgotten"]] == [BINS]
    script(text("Ana again."))
    await ask(hass, agent_id, "Who is Ana?")
    prompt = script.chat_requests[-1].system_text
    assert DAUGHTER in prompt
    assert BINS not in prompt

    script(
        tool_use("memory_forget", {"query": "daughter called Ana"}, id="toolu_forget"),
        text("I've forgotten it."),
    )
    await ask(hass, agent_id, "Forget what I told you about my daughter.")

    script(text("I don't know."))
    await ask(hass, agent_id, "What's my daughter's name?")
    prompt = script.chat_requests[-1].system_text
    assert DAUGHTER not in prompt
    assert BINS not in prompt

    # Forgetting what is no longer there is a clear, translated refusal.
    with pytest.raises(ServiceValidationError) as caught:
        await action(hass, "forget", {"query": "bins Tuesday"})
    assert caught.value.translation_key == "nothing_to_forget"


async def test_a_persons_fact_reaches_only_their_conversations(
    hass: HomeAssistant,
    cloud: Cloud,
    setup_agent: SetupAgent,
    script: ClaudeScript,
) -> None:
    agent_id = await setup_agent(cloud)
    ana = await hass.auth.async_create_user("Ana")
    dad = await hass.auth.async_create_user("Dad")
    assert await async_setup_component(
        hass,
        "person",
        {
            "person": [
                {"id": "ana", "name": "Ana", "user_id": ana.id},
                {"id": "dad", "name": "Dad", "user_id": dad.id},
            ]
        },
    )

    stored = await action(hass, "remember", {"content": JAZZ, "person": "person.ana"})
    assert stored["memory"]["speaker_id"] == ana.id

    script(text("Jazz it is."), text("Some music."))
    await conversation.async_converse(
        hass, "Play something", None, Context(user_id=ana.id), agent_id=agent_id
    )
    assert JAZZ in script.chat_requests[-1].system_text
    await conversation.async_converse(
        hass, "Play something", None, Context(user_id=dad.id), agent_id=agent_id
    )
    assert JAZZ not in script.chat_requests[-1].system_text


LATE_SHIFTS = "I work late shifts on Fridays."


async def test_a_persons_fact_reaches_a_turn_that_names_them(
    hass: HomeAssistant,
    cloud: Cloud,
    setup_agent: SetupAgent,
    script: ClaudeScript,
) -> None:
    """HA sends the speaker and their person's name; a later turn at a satellite (nobody
    known to speak) that names Petra sees her own fact, and one that does not, does not."""
    agent_id = await setup_agent(cloud)
    petra = await hass.auth.async_create_user("petra")
    assert await async_setup_component(
        hass, "person", {"person": [{"id": "petra", "name": "Petra", "user_id": petra.id}]}
    )
    stored = await action(hass, "remember", {"content": LATE_SHIFTS, "person": "person.petra"})
    assert stored["memory"]["speaker_id"] == petra.id

    script(text("Good morning, Petra."), text("Probably not."), text("I can't say."))
    await conversation.async_converse(
        hass, "Good morning", None, Context(user_id=petra.id), agent_id=agent_id
    )
    await ask(hass, agent_id, "Will Petra be home for dinner on Friday?")
    prompt = script.chat_requests[-1].system_text
    assert f"{LATE_SHIFTS} (said by Petra, about themselves)" in prompt
    await ask(hass, agent_id, "Does anyone work late shifts on Fridays?")
    assert LATE_SHIFTS not in script.chat_requests[-1].system_text
