"""Offline fallback against the fake Home Mind server: HA's own agent answers the turn."""

from __future__ import annotations

from datetime import timedelta

import pytest
from homeassistant.components import conversation
from homeassistant.const import STATE_OFF, STATE_ON
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import chat_session, intent
from homeassistant.util import dt as dt_util

from custom_components.home_mind.fallback import CloudBackoff
from homemind_client.models import ErrorCode, TextDeltaEvent

from .fake_homemind import Disconnect, FakeHomeMind, Problem, Stall, answer
from .spoken import CANNOT_CONNECT_EN, SPOKEN_EN

OFFLINE_EN = "Home Mind is offline, so Home Assistant answered by itself."


def speech(result: conversation.ConversationResult) -> str:
    return result.response.speech["plain"]["speech"]


@pytest.mark.parametrize(
    "failure",
    [
        Problem(ErrorCode.INTERNAL_ERROR, status=500),
        Problem(ErrorCode.UPSTREAM_UNAVAILABLE, status=503),
    ],
    ids=["500", "claude-down"],
)
async def test_server_error_hands_the_turn_to_ha(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str, failure: Problem
) -> None:
    fake_homemind.default_script = failure

    result = await conversation.async_converse(
        hass, "turn on the kitchen lights", None, Context(), agent_id=agent_id
    )

    assert hass.states.get("light.kitchen_lights").state == STATE_ON
    assert result.response.response_type == intent.IntentResponseType.ACTION_DONE
    assert speech(result).startswith(OFFLINE_EN + " ")
    assert len(speech(result)) > len(OFFLINE_EN) + 1  # HA's own confirmation follows


async def test_server_gone_hands_the_turn_to_ha_and_says_so_once(
    hass: HomeAssistant,
    fake_homemind: FakeHomeMind,
    agent_id: str,
) -> None:
    await fake_homemind.close()

    with chat_session.async_get_chat_session(hass) as session:
        conversation_id = session.conversation_id
    first = await conversation.async_converse(
        hass, "turn on the kitchen lights", conversation_id, Context(), agent_id=agent_id
    )
    second = await conversation.async_converse(
        hass, "turn off the kitchen lights", first.conversation_id, Context(), agent_id=agent_id
    )

    assert first.conversation_id == second.conversation_id
    assert speech(first).startswith(OFFLINE_EN)
    assert hass.states.get("light.kitchen_lights").state == STATE_OFF
    # Said once per conversation: the second answer is HA's confirmation alone.
    assert OFFLINE_EN not in speech(second)
    assert speech(second)
    # The unexposed bed light stays out of reach for HA's agent too.
    refused = await conversation.async_converse(
        hass, "turn on the bed light", first.conversation_id, Context(), agent_id=agent_id
    )
    assert hass.states.get("light.bed_light").state == STATE_OFF
    assert refused.response.response_type == intent.IntentResponseType.ERROR


async def test_a_new_conversation_hears_the_notice_again(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str
) -> None:
    await fake_homemind.close()

    first = await conversation.async_converse(
        hass, "turn on the kitchen lights", None, Context(), agent_id=agent_id
    )
    other = await conversation.async_converse(
        hass, "turn off the kitchen lights", None, Context(), agent_id=agent_id
    )

    assert first.conversation_id != other.conversation_id
    assert speech(first).startswith(OFFLINE_EN)
    assert speech(other).startswith(OFFLINE_EN)


async def test_the_cloud_is_tried_again_after_the_backoff(
    hass: HomeAssistant,
    fake_homemind: FakeHomeMind,
    agent_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_homemind.script(Problem(ErrorCode.INTERNAL_ERROR, status=500))
    fake_homemind.default_script = answer("Hello from the cloud.")

    failed = await conversation.async_converse(
        hass, "turn on the kitchen lights", None, Context(), agent_id=agent_id
    )
    asked = len(fake_homemind.chat_requests)
    # Within the back-off the cloud is not asked at all: no second wait for a dead server.
    during = await conversation.async_converse(
        hass, "turn off the kitchen lights", failed.conversation_id, Context(), agent_id=agent_id
    )
    assert len(fake_homemind.chat_requests) == asked
    assert hass.states.get("light.kitchen_lights").state == STATE_OFF
    assert speech(during)

    # The back-off's clock, 11 s on (HA's freezer would also stop the event loop's timers).
    later = dt_util.utcnow() + timedelta(seconds=11)
    monkeypatch.setattr("custom_components.home_mind.fallback.utcnow", lambda: later)
    after = await conversation.async_converse(
        hass, "Hi", failed.conversation_id, Context(), agent_id=agent_id
    )

    assert speech(after) == "Hello from the cloud."
    assert len(fake_homemind.chat_requests) == asked + 1
    # The cloud saw what HA's agent did while it was away.
    history = fake_homemind.chat_requests[-1]["messages"]
    assert [m["role"] for m in history] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert history[1]["content"].startswith(OFFLINE_EN)


async def test_a_timeout_before_the_first_event_falls_back(
    hass: HomeAssistant,
    fake_homemind: FakeHomeMind,
    home: None,
    mock_config_entry: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("custom_components.home_mind.FIRST_EVENT_TIMEOUT", 0.3)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)  # type: ignore[attr-defined]
    await hass.async_block_till_done()
    fake_homemind.script(Stall([]))

    result = await conversation.async_converse(
        hass, "turn on the kitchen lights", None, Context(), agent_id="conversation.test_home"
    )

    assert speech(result).startswith(OFFLINE_EN)
    assert hass.states.get("light.kitchen_lights").state == STATE_ON


async def test_no_fallback_once_the_answer_has_started(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str
) -> None:
    """Half an answer was heard (or a tool ran): HA's agent must not redo or contradict it."""
    fake_homemind.script(Disconnect([TextDeltaEvent(text="Turning on the")]))

    result = await conversation.async_converse(
        hass, "turn on the kitchen lights", None, Context(), agent_id=agent_id
    )

    assert speech(result) == CANNOT_CONNECT_EN
    assert hass.states.get("light.kitchen_lights").state == STATE_OFF


@pytest.mark.parametrize(
    "code", [ErrorCode.USAGE_LIMIT_REACHED, ErrorCode.INVALID_TOKEN, ErrorCode.RATE_LIMITED]
)
async def test_refusals_are_spoken_not_papered_over(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str, code: ErrorCode
) -> None:
    fake_homemind.default_script = Problem(code)

    result = await conversation.async_converse(
        hass, "turn on the kitchen lights", None, Context(), agent_id=agent_id
    )

    assert speech(result) == SPOKEN_EN[code]
    assert hass.states.get("light.kitchen_lights").state == STATE_OFF


@pytest.mark.parametrize("offline_fallback", [False])
async def test_option_off_speaks_the_error(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str
) -> None:
    await fake_homemind.close()

    result = await conversation.async_converse(
        hass, "turn on the kitchen lights", None, Context(), agent_id=agent_id
    )

    assert speech(result) == CANNOT_CONNECT_EN
    assert hass.states.get("light.kitchen_lights").state == STATE_OFF


async def test_notice_in_the_users_language(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str
) -> None:
    await fake_homemind.close()

    result = await conversation.async_converse(
        hass, "schalte das Küchenlicht ein", None, Context(), language="de", agent_id=agent_id
    )

    assert speech(result).startswith(
        "Home Mind ist offline, deshalb hat Home Assistant selbst geantwortet."
    )


def test_backoff_grows_and_resets() -> None:
    backoff = CloudBackoff()
    assert backoff.cloud_allowed()
    delays = [backoff.record_failure().total_seconds() for _ in range(6)]
    assert delays == [10, 20, 40, 80, 120, 120]
    assert not backoff.cloud_allowed()
    assert backoff.record_success() is True
    assert backoff.cloud_allowed()
    assert backoff.record_success() is False
