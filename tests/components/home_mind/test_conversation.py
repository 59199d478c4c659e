"""The agent against the fake Home Mind server: streaming, tools, request fields, errors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest
import voluptuous as vol
from freezegun.api import FrozenDateTimeFactory
from homeassistant.components import conversation
from homeassistant.config_entries import SOURCE_REAUTH
from homeassistant.const import CONF_LLM_HASS_API, STATE_OFF, STATE_ON
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import intent, llm
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.home_mind.const import CONF_INSTRUCTIONS, MAX_TOOL_ITERATIONS
from homemind_client.models import (
    TOOL_NAME_PATTERN,
    ChatResponse,
    DoneEvent,
    ErrorCode,
    Notice,
    TextDeltaEvent,
)
from tests.ha_tools import TURN_ON, tool_result
from tests.ha_tools import chat_session as new_chat_session

from .conftest import AddPerson
from .fake_homemind import (
    Disconnect,
    FakeHomeMind,
    Problem,
    Stall,
    answer,
    error_event,
    tool_call,
)
from .spoken import CANNOT_CONNECT_EN, SPOKEN_EN, TIMEOUT_EN, UNKNOWN_EN


def speech(result: conversation.ConversationResult) -> str:
    return result.response.speech["plain"]["speech"]


async def test_streamed_answer_is_spoken_and_kept(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str
) -> None:
    fake_homemind.script(answer("Hello", " there", ", how can I help?"))
    deltas: list[dict[str, Any]] = []

    with (
        new_chat_session(hass) as session,
        conversation.async_get_chat_log(
            hass, session, chat_log_delta_listener=lambda _log, delta: deltas.append(delta)
        ) as chat_log,
    ):
        result = await conversation.async_converse(
            hass, "hi", session.conversation_id, Context(), agent_id=agent_id
        )

    assert result.response.response_type == intent.IntentResponseType.ACTION_DONE
    assert speech(result) == "Hello there, how can I help?"
    assert result.continue_conversation is True
    # The text reached the chat log piece by piece, as it streamed in.
    assert [d["content"] for d in deltas if d.get("content")] == [
        "Hello",
        " there",
        ", how can I help?",
    ]
    last = chat_log.content[-1]
    assert isinstance(last, conversation.AssistantContent)
    assert last.content == "Hello there, how can I help?"
    assert last.agent_id == agent_id


async def test_home_prompt_stays_the_same_between_turns(
    hass: HomeAssistant,
    fake_homemind: FakeHomeMind,
    agent_id: str,
    freezer: FrozenDateTimeFactory,
) -> None:
    fake_homemind.script(answer("Hi."), answer("Still here."))
    freezer.move_to("2025-04-01 08:00:01+00:00")
    first_result = await conversation.async_converse(
        hass,
        "hi",
        None,
        Context(),
        agent_id=agent_id,
        extra_system_prompt="The guest room is called the blue room.",
    )
    freezer.move_to("2025-04-01 08:03:59+00:00")
    await conversation.async_converse(
        hass, "and now?", first_result.conversation_id, Context(), agent_id=agent_id
    )

    first, second = fake_homemind.chat_requests
    # HA's clock would make the server's cached prompt differ every turn.
    assert first["home_prompt"] == second["home_prompt"]
    assert "Current time is" not in first["home_prompt"]
    # HA's default instructions ("plain text") would contradict our own style rules.
    assert "Answer in plain text" not in first["home_prompt"]
    assert "Kitchen Lights" in first["home_prompt"]
    assert "The guest room is called the blue room." in second["home_prompt"]
    # Instead the server gets the home's zone to tell the model the local time.
    assert first["time_zone"] == second["time_zone"] == hass.config.time_zone


async def test_unknown_time_zone_is_left_out(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str
) -> None:
    # A zone this Python's tz database lacks: the turn still works, without a zone.
    hass.config.time_zone = "Mars/Olympus_Mons"
    fake_homemind.script(answer("Hi."))

    result = await conversation.async_converse(hass, "hi", None, Context(), agent_id=agent_id)

    assert speech(result) == "Hi."
    assert fake_homemind.chat_requests[0].get("time_zone") is None


async def test_turn_on_exposed_light_through_ha_tools(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str
) -> None:
    fake_homemind.script(
        tool_call("call_1", TURN_ON, {"name": "Kitchen Lights"}),
        answer("The kitchen light is on."),
    )

    result = await conversation.async_converse(
        hass, "turn on the kitchen light", None, Context(), agent_id=agent_id
    )

    assert speech(result) == "The kitchen light is on."
    assert hass.states.get("light.kitchen_lights").state == STATE_ON
    first, second = fake_homemind.chat_requests
    assert TURN_ON in {tool["name"] for tool in first["tools"]}
    # HA's prompt describes the exposed light only.
    assert "Kitchen Lights" in first["home_prompt"]
    assert "Bed Light" not in first["home_prompt"]
    assert second["messages"][0] == {"role": "user", "content": "turn on the kitchen light"}
    assert second["messages"][1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "call_1", "name": TURN_ON, "arguments": {"name": "Kitchen Lights"}}],
    }
    tool_result = second["messages"][2]
    assert tool_result["role"] == "tool_result"
    assert tool_result["tool_call_id"] == "call_1"
    assert tool_result["name"] == TURN_ON
    assert tool_result["result"]["response_type"] == "action_done"
    assert tool_result["result"]["data"]["success"][0]["id"] == "light.kitchen_lights"
    assert len(second["messages"]) == 3


async def test_non_exposed_light_stays_off(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str
) -> None:
    fake_homemind.script(
        tool_call("call_1", TURN_ON, {"name": "Bed Light"}),
        answer("I can't control that light."),
    )

    result = await conversation.async_converse(
        hass, "turn on the bed light", None, Context(), agent_id=agent_id
    )

    assert speech(result) == "I can't control that light."
    assert hass.states.get("light.bed_light").state == STATE_OFF
    first, second = fake_homemind.chat_requests
    # The tool exists (so HA ran it) and HA refused the unexposed light.
    assert TURN_ON in {tool["name"] for tool in first["tools"]}
    tool_result = second["messages"][2]
    assert tool_result["role"] == "tool_result"
    assert tool_result["name"] == TURN_ON
    assert "error" in tool_result["result"]


async def test_multi_turn_keeps_history(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str
) -> None:
    fake_homemind.script(answer("Nice to meet you, Sam."), answer("Your name is Sam."))

    first = await conversation.async_converse(
        hass, "My name is Sam", None, Context(), agent_id=agent_id
    )
    second = await conversation.async_converse(
        hass, "What is my name?", first.conversation_id, Context(), agent_id=agent_id
    )

    assert speech(second) == "Your name is Sam."
    assert second.conversation_id == first.conversation_id
    request = fake_homemind.chat_requests[1]
    assert request["conversation_id"] == first.conversation_id
    assert request["messages"] == [
        {"role": "user", "content": "My name is Sam"},
        {"role": "assistant", "content": "Nice to meet you, Sam.", "tool_calls": []},
        {"role": "user", "content": "What is my name?"},
    ]


async def test_request_carries_language_speaker_and_token(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str, add_person: AddPerson
) -> None:
    user = await add_person("anna", "Anna")
    fake_homemind.script(answer("Hallo Anna."))

    await conversation.async_converse(
        hass, "Hallo", None, Context(user_id=user.id), language="de", agent_id=agent_id
    )

    request = fake_homemind.chat_requests[0]
    assert request["language"] == "de"
    assert request["speaker"] == {"id": user.id, "name": "Anna"}
    assert request["is_voice"] is False
    assert "device_id" not in request
    assert fake_homemind.chat_headers[0]["Authorization"] == "Bearer hm_test_token_fake"


async def test_speaker_without_person_uses_user_name(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str
) -> None:
    user = await hass.auth.async_create_user("Bob")
    fake_homemind.script(answer("Hi Bob."), answer("Hi."))

    await conversation.async_converse(hass, "Hi", None, Context(user_id=user.id), agent_id=agent_id)
    await conversation.async_converse(hass, "Hi", None, Context(), agent_id=agent_id)

    assert fake_homemind.chat_requests[0]["speaker"] == {"id": user.id, "name": "Bob"}
    # A turn without a user (an automation, a satellite) has no speaker.
    assert "speaker" not in fake_homemind.chat_requests[1]


def _voice_device(hass: HomeAssistant, domain: str, unique_id: str) -> str:
    """A device whose integration registered one entity of `domain`."""
    source = MockConfigEntry(domain="esphome")
    source.add_to_hass(hass)
    device = dr.async_get(hass).async_get_or_create(
        config_entry_id=source.entry_id, identifiers={("esphome", unique_id)}
    )
    er.async_get(hass).async_get_or_create(
        domain, "esphome", unique_id, device_id=device.id, config_entry=source
    )
    return device.id


@pytest.mark.parametrize(
    ("domain", "unique_id", "is_voice"),
    [
        ("assist_satellite", "sat-1-assist_satellite", True),
        # Voice devices before assist_satellite: the Assist pipeline selector.
        ("select", "aa:bb:cc-pipeline", True),
        ("switch", "plain-switch", False),
    ],
)
async def test_voice_turn_detection(
    hass: HomeAssistant,
    fake_homemind: FakeHomeMind,
    agent_id: str,
    domain: str,
    unique_id: str,
    is_voice: bool,
) -> None:
    device_id = _voice_device(hass, domain, unique_id)
    fake_homemind.script(answer("It is sunny."))

    await conversation.async_converse(
        hass, "How is the weather?", None, Context(), agent_id=agent_id, device_id=device_id
    )

    request = fake_homemind.chat_requests[0]
    assert request["device_id"] == device_id
    assert request["is_voice"] is is_voice


async def test_instructions_are_rendered_and_sent(
    hass: HomeAssistant,
    fake_homemind: FakeHomeMind,
    agent_id: str,
    init_integration: MockConfigEntry,
) -> None:
    hass.config_entries.async_update_entry(
        init_integration,
        options={
            **init_integration.options,
            CONF_INSTRUCTIONS: "Speak like a pirate in {{ ha_name }}.",
        },
    )
    await hass.async_block_till_done()
    fake_homemind.script(answer("Arr."))

    await conversation.async_converse(hass, "Hi", None, Context(), agent_id=agent_id)

    request = fake_homemind.chat_requests[0]
    assert request["instructions"] == f"Speak like a pirate in {hass.config.location_name}."
    # The user's instructions travel on their own, not inside HA's prompt.
    assert "pirate" not in request["home_prompt"]


async def test_broken_instruction_template_is_sent_as_text(
    hass: HomeAssistant,
    fake_homemind: FakeHomeMind,
    agent_id: str,
    init_integration: MockConfigEntry,
) -> None:
    hass.config_entries.async_update_entry(
        init_integration,
        options={**init_integration.options, CONF_INSTRUCTIONS: "Be brief {{ oops"},
    )
    await hass.async_block_till_done()
    fake_homemind.script(answer("Ok."))

    result = await conversation.async_converse(hass, "Hi", None, Context(), agent_id=agent_id)

    assert speech(result) == "Ok."
    assert fake_homemind.chat_requests[0]["instructions"] == "Be brief {{ oops"


async def test_chat_only_sends_no_tools_and_ignores_tool_calls(
    hass: HomeAssistant,
    fake_homemind: FakeHomeMind,
    agent_id: str,
    init_integration: MockConfigEntry,
) -> None:
    hass.config_entries.async_update_entry(init_integration, options={CONF_LLM_HASS_API: []})
    await hass.async_block_till_done()
    state = hass.states.get(agent_id)
    assert not state.attributes.get("supported_features")
    fake_homemind.script(
        tool_call("call_1", TURN_ON, {"name": "Kitchen Lights"}, text="I can only chat.")
    )

    result = await conversation.async_converse(
        hass, "turn on the kitchen light", None, Context(), agent_id=agent_id
    )

    assert speech(result) == "I can only chat."
    assert fake_homemind.chat_requests[0]["tools"] == []
    assert len(fake_homemind.chat_requests) == 1
    assert hass.states.get("light.kitchen_lights").state == STATE_OFF


async def test_agent_with_llm_api_declares_control(hass: HomeAssistant, agent_id: str) -> None:
    state = hass.states.get(agent_id)
    assert state.attributes["supported_features"] == conversation.ConversationEntityFeature.CONTROL
    agent = conversation.async_get_agent(hass, agent_id)
    assert agent.supported_languages == "*"


class _ShoppingAPI(llm.API):
    """A test LLM API with one tool, to prove any API's tools are relayed."""

    async def async_get_api_instance(self, llm_context: llm.LLMContext) -> llm.APIInstance:
        return llm.APIInstance(
            api=self,
            api_prompt="You can add to the shopping list.",
            llm_context=llm_context,
            tools=[_AddItemTool()],
        )


class _AddItemTool(llm.Tool):
    name = "add_item"
    description = "Add an item to the shopping list"
    parameters = vol.Schema({vol.Required("item"): str})

    def __init__(self) -> None:
        self.added: list[str] = []

    async def async_call(
        self, hass: HomeAssistant, tool_input: llm.ToolInput, llm_context: llm.LLMContext
    ) -> dict[str, Any]:
        ADDED.append(tool_input.tool_args["item"])
        return tool_result({"added": tool_input.tool_args["item"]})


ADDED: list[str] = []


async def test_tools_of_any_llm_api_are_relayed(
    hass: HomeAssistant,
    fake_homemind: FakeHomeMind,
    agent_id: str,
    init_integration: MockConfigEntry,
) -> None:
    ADDED.clear()
    unregister = llm.async_register_api(
        hass, _ShoppingAPI(hass=hass, id="shopping", name="Shopping")
    )
    hass.config_entries.async_update_entry(
        init_integration, options={CONF_LLM_HASS_API: ["shopping"]}
    )
    await hass.async_block_till_done()
    fake_homemind.script(tool_call("c1", "add_item", {"item": "milk"}), answer("Added milk."))

    result = await conversation.async_converse(hass, "add milk", None, Context(), agent_id=agent_id)
    unregister()

    assert speech(result) == "Added milk."
    assert ADDED == ["milk"]
    first, second = fake_homemind.chat_requests
    (tool,) = first["tools"]
    assert tool["name"] == "add_item"
    assert tool["description"] == "Add an item to the shopping list"
    # HA's converter of the release (probatio on 2026.9+ also closes the object).
    parameters = {k: v for k, v in tool["parameters"].items() if k != "additionalProperties"}
    assert parameters == {
        "type": "object",
        "properties": {"item": {"type": "string"}},
        "required": ["item"],
    }
    assert "You can add to the shopping list." in first["home_prompt"]
    assert second["messages"][2]["result"] == {"added": "milk"}


@dataclass(kw_only=True)
class _NamedToolsAPI(llm.API):
    """Tools named like HA 2025.5-2025.7's namespaced ones; every other turn in reverse."""

    tool_names: list[str]
    calls: list[tuple[str, str]] = field(default_factory=list)
    instances: int = 0

    async def async_get_api_instance(self, llm_context: llm.LLMContext) -> llm.APIInstance:
        self.instances += 1
        names = self.tool_names if self.instances % 2 else self.tool_names[::-1]
        return llm.APIInstance(
            api=self,
            api_prompt="",
            llm_context=llm_context,
            tools=[_NamedTool(name, self.calls) for name in names],
        )


class _NamedTool(llm.Tool):
    def __init__(self, name: str, calls: list[tuple[str, str]]) -> None:
        self.name = name
        self.description = f"Tool {name}"
        self.parameters = vol.Schema({vol.Required("item"): str})
        self.calls = calls

    async def async_call(
        self, hass: HomeAssistant, tool_input: llm.ToolInput, llm_context: llm.LLMContext
    ) -> dict[str, Any]:
        self.calls.append((self.name, tool_input.tool_args["item"]))
        return tool_result({"done_by": self.name})


async def _use_named_tools(
    hass: HomeAssistant, entry: MockConfigEntry, tool_names: list[str]
) -> tuple[_NamedToolsAPI, Any]:
    api = _NamedToolsAPI(hass=hass, id="myapi", name="My API", tool_names=tool_names)
    unregister = llm.async_register_api(hass, api)
    hass.config_entries.async_update_entry(entry, options={CONF_LLM_HASS_API: ["myapi"]})
    await hass.async_block_till_done()
    return api, unregister


async def test_dotted_tool_names_travel_safe_and_run_the_ha_tool(
    hass: HomeAssistant,
    fake_homemind: FakeHomeMind,
    agent_id: str,
    init_integration: MockConfigEntry,
) -> None:
    api, unregister = await _use_named_tools(hass, init_integration, ["myapi.Do_Thing"])
    fake_homemind.script(
        tool_call("c1", "myapi_Do_Thing", {"item": "milk"}), answer("Done."), answer("Sure.")
    )

    first_turn = await conversation.async_converse(
        hass, "do the thing", None, Context(), agent_id=agent_id
    )
    await conversation.async_converse(
        hass, "thanks", first_turn.conversation_id, Context(), agent_id=agent_id
    )
    unregister()

    assert speech(first_turn) == "Done."
    # HA ran its own dotted tool for the model's safe name.
    assert api.calls == [("myapi.Do_Thing", "milk")]
    first, follow_up, next_turn = fake_homemind.chat_requests
    assert [tool["name"] for tool in first["tools"]] == ["myapi_Do_Thing"]
    expected_call = {"id": "c1", "name": "myapi_Do_Thing", "arguments": {"item": "milk"}}
    assert follow_up["messages"][1]["tool_calls"] == [expected_call]
    assert follow_up["messages"][2]["name"] == "myapi_Do_Thing"
    assert follow_up["messages"][2]["result"] == {"done_by": "myapi.Do_Thing"}
    # Later turns replay the history under the same safe name.
    assert next_turn["messages"][1]["tool_calls"] == [expected_call]


async def test_colliding_tool_names_stay_apart(
    hass: HomeAssistant,
    fake_homemind: FakeHomeMind,
    agent_id: str,
    init_integration: MockConfigEntry,
) -> None:
    api, unregister = await _use_named_tools(
        hass, init_integration, ["myapi.Do_Thing", "myapi:Do_Thing", "myapi_Do_Thing"]
    )
    fake_homemind.script(answer("Which one?"))
    first_turn = await conversation.async_converse(
        hass, "do the thing", None, Context(), agent_id=agent_id
    )
    wire = {tool["description"]: tool["name"] for tool in fake_homemind.chat_requests[0]["tools"]}
    colon_name = wire["Tool myapi:Do_Thing"]
    fake_homemind.script(tool_call("c1", colon_name, {"item": "eggs"}), answer("Done."))

    # The next turn lists the tools in reverse order: the names must not move.
    await conversation.async_converse(
        hass, "the colon one", first_turn.conversation_id, Context(), agent_id=agent_id
    )
    unregister()

    assert len(set(wire.values())) == 3
    assert all(re.fullmatch(TOOL_NAME_PATTERN, name) for name in wire.values())
    # A name that was already safe keeps it; the others get a short distinct suffix.
    assert wire["Tool myapi_Do_Thing"] == "myapi_Do_Thing"
    assert colon_name.startswith("myapi_Do_Thing_")
    assert wire["Tool myapi.Do_Thing"].startswith("myapi_Do_Thing_")
    second_turn_tools = fake_homemind.chat_requests[1]["tools"]
    assert fake_homemind.chat_requests[0]["tools"][0]["description"] == "Tool myapi.Do_Thing"
    assert second_turn_tools[0]["description"] == "Tool myapi_Do_Thing"
    assert {tool["description"]: tool["name"] for tool in second_turn_tools} == wire
    assert api.calls == [("myapi:Do_Thing", "eggs")]


async def test_unknown_llm_api_is_reported(
    hass: HomeAssistant,
    fake_homemind: FakeHomeMind,
    agent_id: str,
    init_integration: MockConfigEntry,
) -> None:
    hass.config_entries.async_update_entry(init_integration, options={CONF_LLM_HASS_API: ["gone"]})
    await hass.async_block_till_done()

    result = await conversation.async_converse(hass, "Hi", None, Context(), agent_id=agent_id)

    assert result.response.response_type == intent.IntentResponseType.ERROR
    assert speech(result) == "Error preparing LLM API"
    assert fake_homemind.chat_requests == []


async def test_notices_are_spoken_once_per_conversation(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str
) -> None:
    over = Notice(code="usage_over_allowance", message="You are past your plan's messages.")
    for reply in ("Done.", "Done again."):
        fake_homemind.script(
            [
                TextDeltaEvent(text=reply),
                DoneEvent(response=ChatResponse(conversation_id="c", reply=reply, notices=[over])),
            ]
        )

    first = await conversation.async_converse(hass, "Hi", None, Context(), agent_id=agent_id)
    second = await conversation.async_converse(
        hass, "Again", first.conversation_id, Context(), agent_id=agent_id
    )

    # Known codes are spoken in our own words (translated), not the server's text.
    assert speech(first) == (
        "Done. You are past the messages included in your Home Mind plan this period."
    )
    assert speech(second) == "Done again."


@pytest.mark.parametrize(
    ("language", "code", "sentence"),
    [
        (
            "de",
            "usage_warning",
            "Du hast 80 Prozent der Nachrichten deines Home-Mind-Tarifs in diesem "
            "Zeitraum verbraucht.",
        ),
        (
            "fr-CA",
            "payment_failed",
            "Votre dernier paiement pour Home Mind a échoué. Veuillez mettre à jour votre "
            "moyen de paiement pour garder votre formule.",
        ),
        (
            "es",
            "usage_allowance_reached",
            "Has usado todos los mensajes incluidos en tu plan de Home Mind en este periodo. "
            "Por ahora las respuestas continúan.",
        ),
        (
            "nl",
            "usage_over_allowance",
            "Je zit deze periode boven het aantal berichten in je Home Mind-abonnement.",
        ),
        # A code this version does not know: the server's own sentence.
        ("de", "maintenance_tonight", "Home Mind is down for maintenance at 2 am."),
    ],
)
async def test_notices_are_spoken_in_the_users_language(
    hass: HomeAssistant,
    fake_homemind: FakeHomeMind,
    agent_id: str,
    language: str,
    code: ErrorCode,
    sentence: str,
) -> None:
    notice = Notice(code=code, message="Home Mind is down for maintenance at 2 am.")
    fake_homemind.script(
        [
            TextDeltaEvent(text="OK."),
            DoneEvent(response=ChatResponse(conversation_id="c", reply="OK.", notices=[notice])),
        ]
    )

    result = await conversation.async_converse(
        hass, "Hi", None, Context(), agent_id=agent_id, language=language
    )

    assert speech(result) == f"OK. {sentence}"


async def test_tool_loop_stops_at_the_limit(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str
) -> None:
    fake_homemind.default_script = tool_call("call_x", TURN_ON, {"name": "Kitchen Lights"})

    result = await conversation.async_converse(hass, "loop", None, Context(), agent_id=agent_id)

    assert result.response.response_type == intent.IntentResponseType.ERROR
    assert speech(result) == "That took too many steps, so I stopped. Please try a simpler request."
    assert len(fake_homemind.chat_requests) == MAX_TOOL_ITERATIONS


# --- errors: every code is spoken ---------------------------------------------------


@pytest.mark.parametrize("offline_fallback", [False])  # the error itself is spoken
@pytest.mark.parametrize(("code", "sentence"), SPOKEN_EN.items())
async def test_error_codes_are_spoken(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str, code: str, sentence: str
) -> None:
    # Every attempt fails the same way (the client may retry a refused request once).
    fake_homemind.default_script = Problem(code)

    result = await conversation.async_converse(hass, "Hi", None, Context(), agent_id=agent_id)

    assert result.response.response_type == intent.IntentResponseType.ERROR
    assert speech(result) == sentence


@pytest.mark.parametrize(("code", "sentence"), SPOKEN_EN.items())
async def test_error_events_mid_stream_are_spoken(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str, code: str, sentence: str
) -> None:
    fake_homemind.script([TextDeltaEvent(text="Let me "), error_event(code)])

    result = await conversation.async_converse(hass, "Hi", None, Context(), agent_id=agent_id)

    assert result.response.response_type == intent.IntentResponseType.ERROR
    assert speech(result) == sentence


@pytest.mark.parametrize("offline_fallback", [False])  # the error itself is spoken
async def test_unknown_server_error_is_spoken(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str
) -> None:
    fake_homemind.script(Problem(ErrorCode.INTERNAL_ERROR, status=500))

    result = await conversation.async_converse(hass, "Hi", None, Context(), agent_id=agent_id)

    assert speech(result) == UNKNOWN_EN


async def test_error_is_spoken_in_the_users_language(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str
) -> None:
    fake_homemind.script(
        Problem(ErrorCode.USAGE_LIMIT_REACHED), Problem(ErrorCode.USAGE_LIMIT_REACHED)
    )

    german = await conversation.async_converse(
        hass, "Hallo", None, Context(), language="de", agent_id=agent_id
    )
    # A regional variant falls back to its base language.
    dutch = await conversation.async_converse(
        hass, "Hallo", None, Context(), language="nl-BE", agent_id=agent_id
    )

    assert speech(german) == (
        "Du hast alle Nachrichten deines Home-Mind-Tarifs für diesen Monat verbraucht."
    )
    assert speech(dutch) == (
        "Je hebt alle berichten van je Home Mind-abonnement voor deze maand gebruikt."
    )


async def test_untranslated_language_speaks_english(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str
) -> None:
    fake_homemind.script(Problem(ErrorCode.NO_API_KEY))

    result = await conversation.async_converse(
        hass, "Ciao", None, Context(), language="it", agent_id=agent_id
    )

    assert speech(result) == SPOKEN_EN["no_api_key"]


@pytest.mark.parametrize("code", [ErrorCode.INVALID_TOKEN, ErrorCode.INSTALLATION_REVOKED])
async def test_token_errors_start_reauth(
    hass: HomeAssistant,
    fake_homemind: FakeHomeMind,
    agent_id: str,
    init_integration: MockConfigEntry,
    code: ErrorCode,
) -> None:
    fake_homemind.script(Problem(code))

    await conversation.async_converse(hass, "Hi", None, Context(), agent_id=agent_id)
    await hass.async_block_till_done()

    flows = init_integration.async_get_active_flows(hass, {SOURCE_REAUTH})
    assert len(list(flows)) == 1


async def test_other_errors_do_not_start_reauth(
    hass: HomeAssistant,
    fake_homemind: FakeHomeMind,
    agent_id: str,
    init_integration: MockConfigEntry,
) -> None:
    fake_homemind.script(Problem(ErrorCode.NO_API_KEY))

    await conversation.async_converse(hass, "Hi", None, Context(), agent_id=agent_id)
    await hass.async_block_till_done()

    assert not list(init_integration.async_get_active_flows(hass, {SOURCE_REAUTH}))


async def test_server_disconnect_mid_stream_is_spoken(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str
) -> None:
    fake_homemind.script(Disconnect([TextDeltaEvent(text="The weather today is")]))

    result = await conversation.async_converse(hass, "weather?", None, Context(), agent_id=agent_id)

    assert result.response.response_type == intent.IntentResponseType.ERROR
    assert speech(result) == CANNOT_CONNECT_EN


@pytest.mark.parametrize("offline_fallback", [False])  # the error itself is spoken
async def test_server_gone_is_spoken(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str
) -> None:
    await fake_homemind.close()

    result = await conversation.async_converse(hass, "Hi", None, Context(), agent_id=agent_id)

    assert speech(result) == CANNOT_CONNECT_EN


@pytest.mark.parametrize("offline_fallback", [False])  # the error itself is spoken
@pytest.mark.parametrize(
    "script",
    [Stall([TextDeltaEvent(text="Thinking")]), Stall([])],
    ids=["silent-mid-stream", "no-first-event"],
)
async def test_silent_server_ends_in_spoken_timeout(
    hass: HomeAssistant,
    fake_homemind: FakeHomeMind,
    home: None,
    mock_config_entry: MockConfigEntry,
    monkeypatch: pytest.MonkeyPatch,
    script: Stall,
) -> None:
    # The integration's own timeouts, shortened so the test does not wait 15 s.
    monkeypatch.setattr("custom_components.home_mind.IDLE_TIMEOUT", 0.3)
    monkeypatch.setattr("custom_components.home_mind.FIRST_EVENT_TIMEOUT", 0.3)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    fake_homemind.script(script)

    result = await conversation.async_converse(
        hass, "Hi", None, Context(), agent_id="conversation.test_home"
    )

    assert speech(result) == TIMEOUT_EN


async def test_oversized_message_is_refused_with_a_sentence(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, agent_id: str
) -> None:
    result = await conversation.async_converse(
        hass, "x" * 40_000, None, Context(), agent_id=agent_id
    )

    assert speech(result) == SPOKEN_EN["validation_error"]
    assert fake_homemind.chat_requests == []
