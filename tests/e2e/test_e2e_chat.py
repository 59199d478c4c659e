"""Through every real layer: HA's Assist → home_mind → client → cloud_server → fake Claude."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import voluptuous as vol
from homeassistant.components import conversation
from homeassistant.config_entries import SOURCE_REAUTH
from homeassistant.const import CONF_LLM_HASS_API, STATE_OFF, STATE_ON
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import intent, llm
from pydantic import SecretStr
from pytest_homeassistant_custom_component.common import MockConfigEntry
from sqlalchemy import delete

from cloud_server.billing.setup import BILLING_GATE
from cloud_server.db.engine import DB_SESSIONMAKER
from cloud_server.db.models import Installation
from custom_components.home_mind.const import DOMAIN, FIRST_EVENT_TIMEOUT, IDLE_TIMEOUT
from tests.components.home_mind.spoken import CANNOT_CONNECT_EN, SPOKEN_EN
from tests.fakes.claude import FakeClaude, error, hang, text, tool_use
from tests.ha_tools import TURN_ON, tool_result
from tests.ha_tools import chat_session as new_chat_session

from .conftest import OWN_KEY, ClaudeScript, Cloud, Relay, SetupAgent, StartCloud


def speech(result: conversation.ConversationResult) -> str:
    return result.response.speech["plain"]["speech"]


def entry(hass: HomeAssistant) -> MockConfigEntry:
    (config_entry,) = hass.config_entries.async_entries(DOMAIN)
    return config_entry  # type: ignore[return-value]


async def test_answer_streams_into_the_chat_log(
    hass: HomeAssistant, script: ClaudeScript, agent_id: str
) -> None:
    script(text("Good evening! The house is quiet tonight."))
    deltas: list[dict[str, Any]] = []

    with (
        new_chat_session(hass) as session,
        conversation.async_get_chat_log(
            hass, session, chat_log_delta_listener=lambda _log, delta: deltas.append(delta)
        ) as chat_log,
    ):
        result = await conversation.async_converse(
            hass, "Good evening", session.conversation_id, Context(), agent_id=agent_id
        )

    assert speech(result) == "Good evening! The house is quiet tonight."
    pieces = [d["content"] for d in deltas if d.get("content")]
    assert len(pieces) > 1
    assert "".join(pieces) == "Good evening! The house is quiet tonight."
    assert chat_log.content[-1].content == "Good evening! The house is quiet tonight."
    assert script.chat_requests[0].messages[-1]["role"] == "user"


async def test_kitchen_light_is_turned_on_by_ha(
    hass: HomeAssistant, script: ClaudeScript, agent_id: str
) -> None:
    script(
        tool_use(TURN_ON, {"name": "Kitchen Lights"}, id="toolu_kitchen"),
        text("The kitchen light is on."),
    )

    result = await conversation.async_converse(
        hass, "Turn on the kitchen light", None, Context(), agent_id=agent_id
    )

    assert speech(result) == "The kitchen light is on."
    assert hass.states.get("light.kitchen_lights").state == STATE_ON
    first, second = script.chat_requests
    assert TURN_ON in {tool["name"] for tool in first.tools}
    assert "Kitchen Lights" in first.system_text
    assert "Bed Light" not in first.system_text
    result_block = second.messages[-1]["content"][0]
    assert result_block["type"] == "tool_result"
    # Claude's id, signed by the server (so the follow-up is provably not a new message).
    call_block = second.messages[-2]["content"][-1]
    assert call_block["type"] == "tool_use"
    assert call_block["id"].startswith("toolu_kitchen_")
    assert result_block["tool_use_id"] == call_block["id"]
    assert "light.kitchen_lights" in str(result_block["content"])


async def test_non_exposed_light_is_untouched(
    hass: HomeAssistant, script: ClaudeScript, agent_id: str
) -> None:
    script(
        tool_use(TURN_ON, {"name": "Bed Light"}, id="toolu_bed"),
        text("I can't reach that light."),
    )

    result = await conversation.async_converse(
        hass, "Turn on the bed light", None, Context(), agent_id=agent_id
    )

    assert speech(result) == "I can't reach that light."
    assert hass.states.get("light.bed_light").state == STATE_OFF
    # The tool exists (so HA ran it) and HA refused the unexposed light.
    assert TURN_ON in {tool["name"] for tool in script.chat_requests[0].tools}
    result_block = script.chat_requests[1].messages[-1]["content"][0]
    assert result_block["tool_use_id"].startswith("toolu_bed_")
    assert "error" in str(result_block["content"]).lower()


async def test_multi_turn_conversation_keeps_its_history(
    hass: HomeAssistant, script: ClaudeScript, agent_id: str
) -> None:
    script(text("Nice to meet you, Sam."), text("You are Sam."))

    first = await conversation.async_converse(hass, "I am Sam", None, Context(), agent_id=agent_id)
    second = await conversation.async_converse(
        hass, "Who am I?", first.conversation_id, Context(), agent_id=agent_id
    )

    assert speech(second) == "You are Sam."
    messages = script.chat_requests[1].messages
    texts = [
        (m["role"], m["content"] if isinstance(m["content"], str) else m["content"][0]["text"])
        for m in messages
    ]
    assert texts == [
        ("user", "I am Sam"),
        ("assistant", "Nice to meet you, Sam."),
        ("user", "Who am I?"),
    ]


def _satellite(hass: HomeAssistant) -> str:
    source = MockConfigEntry(domain="esphome")
    source.add_to_hass(hass)
    device = dr.async_get(hass).async_get_or_create(
        config_entry_id=source.entry_id, identifiers={("esphome", "kitchen-satellite")}
    )
    er.async_get(hass).async_get_or_create(
        "assist_satellite", "esphome", "kitchen-satellite", device_id=device.id, config_entry=source
    )
    return device.id


async def test_language_and_voice_mode_reach_claude(
    hass: HomeAssistant, script: ClaudeScript, agent_id: str
) -> None:
    script(text("Guten Abend."), text("Guten Abend! Wie kann ich helfen?"))

    await conversation.async_converse(
        hass,
        "Guten Abend",
        None,
        Context(),
        language="de",
        agent_id=agent_id,
        device_id=_satellite(hass),
    )
    await conversation.async_converse(
        hass, "Guten Abend", None, Context(), language="de-CH", agent_id=agent_id
    )

    voice, typed = script.chat_requests
    assert "BCP-47 tag de," in voice.system_text
    assert "spoken aloud" in voice.system_text
    assert "BCP-47 tag de-CH," in typed.system_text
    assert "spoken aloud" not in typed.system_text
    # Spoken answers are kept short.
    assert voice.max_tokens is not None and typed.max_tokens is not None
    assert voice.max_tokens < typed.max_tokens


async def test_speaker_reaches_the_server(
    hass: HomeAssistant, script: ClaudeScript, agent_id: str
) -> None:
    user = await hass.auth.async_create_user("Maria")
    script(text("Hi Maria."))

    result = await conversation.async_converse(
        hass, "Hi", None, Context(user_id=user.id), agent_id=agent_id
    )

    assert speech(result) == "Hi Maria."
    assert "Maria" in script.chat_requests[0].system_text


# --- errors, each spoken ------------------------------------------------------------


async def test_revoked_installation_is_spoken_and_starts_reauth(
    hass: HomeAssistant, cloud: Cloud, agent_id: str
) -> None:
    await cloud.revoke()

    result = await conversation.async_converse(hass, "Hi", None, Context(), agent_id=agent_id)
    await hass.async_block_till_done()

    assert result.response.response_type == intent.IntentResponseType.ERROR
    assert speech(result) == SPOKEN_EN["installation_revoked"]
    assert len(list(entry(hass).async_get_active_flows(hass, {SOURCE_REAUTH}))) == 1


async def test_unknown_token_is_spoken_and_starts_reauth(
    hass: HomeAssistant, cloud: Cloud, agent_id: str
) -> None:
    # The server no longer knows the token at all (its installation row is gone).
    async with cloud.app[DB_SESSIONMAKER].begin() as session:
        await session.execute(delete(Installation).where(Installation.id == cloud.installation_id))

    result = await conversation.async_converse(hass, "Hi", None, Context(), agent_id=agent_id)
    await hass.async_block_till_done()

    assert speech(result) == SPOKEN_EN["invalid_token"]
    assert len(list(entry(hass).async_get_active_flows(hass, {SOURCE_REAUTH}))) == 1


async def test_no_api_key_is_spoken(
    hass: HomeAssistant, start_cloud: StartCloud, setup_agent: SetupAgent, script: ClaudeScript
) -> None:
    cloud = await start_cloud(anthropic_api_key=None)
    await cloud.mint()
    agent_id = await setup_agent(cloud)

    result = await conversation.async_converse(hass, "Hi", None, Context(), agent_id=agent_id)

    assert speech(result) == SPOKEN_EN["no_api_key"]
    assert script.chat_requests == []


async def test_claude_unavailable_is_spoken(
    hass: HomeAssistant, script: ClaudeScript, cloud: Cloud, setup_agent: SetupAgent
) -> None:
    # With the offline fallback off the error itself is spoken (tests/e2e/test_e2e_fallback.py).
    agent_id = await setup_agent(cloud, offline_fallback=False)
    script.default = error(529)

    result = await conversation.async_converse(hass, "Hi", None, Context(), agent_id=agent_id)

    assert speech(result) == SPOKEN_EN["upstream_unavailable"]


async def test_rejected_own_key_is_spoken(
    hass: HomeAssistant, start_cloud: StartCloud, setup_agent: SetupAgent, script: ClaudeScript
) -> None:
    cloud = await start_cloud(anthropic_api_key=None)
    await cloud.mint(api_key=OWN_KEY)
    agent_id = await setup_agent(cloud)
    script.default = error(401)

    result = await conversation.async_converse(hass, "Hi", None, Context(), agent_id=agent_id)

    assert speech(result) == SPOKEN_EN["upstream_rejected_key"]
    assert script.chat_requests[0].api_key == OWN_KEY
    # Not our token's fault: no reauth of the integration.
    assert not list(entry(hass).async_get_active_flows(hass, {SOURCE_REAUTH}))


class _DottedAPI(llm.API):
    """Tool names as HA 2025.5-2025.7 namespaced them (`api.tool`), which Claude refuses."""

    def __init__(self, hass: HomeAssistant, id: str, name: str) -> None:
        super().__init__(hass=hass, id=id, name=name)
        self.added: list[str] = []

    async def async_get_api_instance(self, llm_context: llm.LLMContext) -> llm.APIInstance:
        return llm.APIInstance(
            api=self, api_prompt="", llm_context=llm_context, tools=[_DottedTool(self.added)]
        )


class _DottedTool(llm.Tool):
    name = "shopping.add_item"
    description = "Add to the shopping list"
    parameters = vol.Schema({vol.Required("item"): str})

    def __init__(self, added: list[str]) -> None:
        self.added = added

    async def async_call(
        self, hass: HomeAssistant, tool_input: llm.ToolInput, llm_context: llm.LLMContext
    ) -> dict[str, Any]:
        self.added.append(tool_input.tool_args["item"])
        return tool_result({"added": tool_input.tool_args["item"]})


async def test_dotted_tool_names_reach_claude_and_run_in_ha(
    hass: HomeAssistant, script: ClaudeScript, agent_id: str
) -> None:
    api = _DottedAPI(hass=hass, id="dotted", name="Dotted")
    unregister = llm.async_register_api(hass, api)
    config_entry = entry(hass)
    hass.config_entries.async_update_entry(config_entry, options={CONF_LLM_HASS_API: ["dotted"]})
    await hass.async_block_till_done()
    script(
        tool_use("shopping_add_item", {"item": "milk"}, id="toolu_milk"),
        text("Milk is on the list."),
    )

    result = await conversation.async_converse(hass, "Add milk", None, Context(), agent_id=agent_id)
    unregister()

    assert speech(result) == "Milk is on the list."
    # HA ran its own dotted tool, although Claude only ever saw the safe name.
    assert api.added == ["milk"]
    first, second = script.chat_requests
    # Besides the server's own memory tools, HA's one tool under its safe name.
    names = {tool["name"] for tool in first.tools}
    assert {name for name in names if not name.startswith("memory_")} == {"shopping_add_item"}
    call_block = second.messages[-2]["content"][-1]
    assert call_block["type"] == "tool_use"
    assert call_block["name"] == "shopping_add_item"
    assert "milk" in str(second.messages[-1]["content"])


async def test_billing_errors_are_spoken(
    hass: HomeAssistant,
    start_cloud: StartCloud,
    setup_agent: SetupAgent,
    script: ClaudeScript,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A hosted server with billing: the sign-up trial allows 1 message, refuses past 2.
    monkeypatch.setenv("HOMEMIND_MANAGED_ALLOWANCE", "1")
    cloud = await start_cloud(
        stripe_secret_key=SecretStr("sk_test_fake"), stripe_webhook_secret=SecretStr("whsec_fake")
    )
    await cloud.mint()
    agent_id = await setup_agent(cloud)
    script(text("One."), text("Two."))

    first = await conversation.async_converse(hass, "One", None, Context(), agent_id=agent_id)
    second = await conversation.async_converse(hass, "Two", None, Context(), agent_id=agent_id)
    third = await conversation.async_converse(hass, "Three", None, Context(), agent_id=agent_id)
    # Fifteen days later the trial is over.
    gate = cloud.app[BILLING_GATE]
    gate.clock = lambda: datetime.now(UTC) + timedelta(days=15)
    gate.cache.invalidate()
    later = await conversation.async_converse(hass, "Hi", None, Context(), agent_id=agent_id)

    # The server's usage notices are spoken after the answer, in the integration's words.
    assert speech(first).startswith("One. ")
    assert "You have used all messages included in your Home Mind plan" in speech(first)
    assert speech(second) == (
        "Two. You are past the messages included in your Home Mind plan this period."
    )
    assert speech(third) == SPOKEN_EN["usage_limit_reached"]
    assert speech(later) == SPOKEN_EN["subscription_required"]


async def test_server_going_away_mid_stream_is_spoken_in_time(
    hass: HomeAssistant,
    cloud: Cloud,
    claude: FakeClaude,
    script: ClaudeScript,
    setup_agent: SetupAgent,
    relay_to: Any,
) -> None:
    relay: Relay = await relay_to(cloud.base_url)
    agent_id = await setup_agent(cloud, relay.base_url)
    # Claude starts answering, then takes its time with the rest.
    claude.token_delay = 30
    script(text("The weather today is sunny and warm, with a light breeze later on."))
    first_text = asyncio.Event()

    def listener(_log: conversation.ChatLog, delta: dict[str, Any]) -> None:
        if delta.get("content"):
            first_text.set()

    async def converse() -> conversation.ConversationResult:
        with (
            new_chat_session(hass) as session,
            conversation.async_get_chat_log(hass, session, chat_log_delta_listener=listener),
        ):
            return await conversation.async_converse(
                hass, "Weather?", session.conversation_id, Context(), agent_id=agent_id
            )

    turn = hass.async_create_task(converse())
    await first_text.wait()
    relay.drop()
    # The person hears an error well before the agent's own stream timeout.
    async with asyncio.timeout(IDLE_TIMEOUT):
        result = await turn

    assert speech(result) == CANNOT_CONNECT_EN


async def test_claude_never_answering_is_spoken(
    hass: HomeAssistant,
    start_cloud: StartCloud,
    setup_agent: SetupAgent,
    script: ClaudeScript,
) -> None:
    # The server's own first-token limit, shortened from its voice-friendly default.
    cloud = await start_cloud(first_token_timeout=0.5)
    await cloud.mint()
    agent_id = await setup_agent(cloud, offline_fallback=False)
    script.default = hang()

    async with asyncio.timeout(FIRST_EVENT_TIMEOUT):
        result = await conversation.async_converse(hass, "Hi", None, Context(), agent_id=agent_id)

    assert speech(result) == SPOKEN_EN["upstream_unavailable"]
