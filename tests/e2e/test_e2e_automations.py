"""Automations by voice through every real layer, behind the confirmation gate.

HA (with its automation integration and a real automations.yaml in a config folder of
the test's own) → home_mind's LLM API tools → homemind_client → cloud_server → fake
Claude, which plays the model's part: it proposes, and it calls the confirmation tool
(sometimes when it should not, to show the gate holds).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from homeassistant.components import conversation
from homeassistant.components.homeassistant.exposed_entities import async_expose_entity
from homeassistant.const import CONF_LLM_HASS_API, CONF_TOKEN, CONF_URL
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.loader import DATA_CUSTOM_COMPONENTS
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    MockUser,
    async_test_home_assistant,
)

from custom_components.home_mind.const import DOMAIN
from tests.fakes.claude import RecordedRequest, Turn, text, tool_use
from tests.lights import setup_lights

from .conftest import ClaudeScript, Cloud, SetupAgent

EVENING = "Anna's evening starts at 19:30."
KITCHEN_AT_EVENING = {
    "alias": "Kitchen lights in the evening",
    "triggers": [{"trigger": "time", "at": "19:30:00"}],
    "actions": [{"action": "light.turn_on", "target": {"entity_id": "light.kitchen_lights"}}],
}
KITCHEN_AT_SUNSET = {
    "alias": "Kitchen lights at sunset",
    "triggers": [{"trigger": "sun", "event": "sunset"}],
    "actions": [{"action": "light.turn_on", "target": {"entity_id": "light.kitchen_lights"}}],
}
COFFEE = {
    "id": "1700000000001",
    "alias": "Morning coffee",
    "triggers": [{"trigger": "time", "at": "07:00:00"}],
    "actions": [{"action": "light.turn_on", "target": {"entity_id": "light.kitchen_lights"}}],
}


@pytest.fixture
def expected_lingering_timers() -> bool:
    """The time and sun triggers of the automations wait on timers HA cancels at stop."""
    return True


def _config_dir(path: Path, automations: list[dict[str, Any]]) -> Path:
    """A config folder as HA's onboarding writes it: automations.yaml included."""
    path.mkdir(exist_ok=True)
    (path / "configuration.yaml").write_text("automation: !include automations.yaml\n")
    (path / "automations.yaml").write_text(yaml.safe_dump(automations))
    return path


def _automations(config_dir: Path) -> list[dict[str, Any]]:
    return list(yaml.safe_load((config_dir / "automations.yaml").read_text()) or [])


def _tool_results(request: RecordedRequest) -> list[dict[str, Any]]:
    """The tool results the request carries, oldest first, as JSON objects."""
    found = []
    for message in request.messages:
        if not isinstance(message["content"], list):
            continue
        for block in message["content"]:
            if block["type"] == "tool_result":
                content = block["content"]
                raw = content if isinstance(content, str) else content[0]["text"]
                found.append(dict(json.loads(raw)))
    return found


def _confirm(request: RecordedRequest) -> Turn:
    """Claude calls the confirmation tool with the newest proposal id it was given."""
    ids = [result["proposal_id"] for result in _tool_results(request) if "proposal_id" in result]
    return tool_use("ConfirmAutomationProposal", {"proposal_id": ids[-1] if ids else "none"})


async def _automation_home(hass: HomeAssistant, config_dir: Path) -> None:
    hass.config.config_dir = str(config_dir)
    assert await async_setup_component(hass, "automation", {})
    # What HA does at start: read configuration.yaml, which includes automations.yaml.
    await hass.services.async_call("automation", "reload", blocking=True)
    await hass.async_block_till_done()


@pytest.fixture
async def ha_dir(hass: HomeAssistant, tmp_path: Path) -> Path:
    """HA's config folder, with one automation the user made in the UI."""
    config_dir = _config_dir(tmp_path / "ha", [COFFEE])
    await _automation_home(hass, config_dir)
    return config_dir


type Say = Callable[..., Any]


@pytest.fixture
async def say(
    hass: HomeAssistant,
    cloud: Cloud,
    setup_agent: SetupAgent,
    ha_dir: Path,
    hass_admin_user: MockUser,
) -> Say:
    """`await say("...", conversation_id)` as the admin, to the agent with Home Mind's API."""
    agent_id = await setup_agent(cloud)
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    # HA 2025.4 gives an agent one LLM API: ours alone.
    hass.config_entries.async_update_entry(entry, options={CONF_LLM_HASS_API: [DOMAIN]})
    await hass.async_block_till_done()

    async def speak(
        sentence: str, conversation_id: str | None = None, *, user: MockUser | None = None
    ) -> conversation.ConversationResult:
        context = Context(user_id=(user or hass_admin_user).id)
        return await conversation.async_converse(
            hass, sentence, conversation_id, context, agent_id=agent_id, language="en"
        )

    return speak


def _speech(result: conversation.ConversationResult) -> str:
    return str(result.response.speech["plain"]["speech"])


async def test_yes_creates_exactly_the_proposal_with_the_remembered_evening(
    hass: HomeAssistant, say: Say, script: ClaudeScript, ha_dir: Path
) -> None:
    stored = await hass.services.async_call(
        DOMAIN, "remember", {"content": EVENING}, blocking=True, return_response=True
    )
    assert stored is not None
    script(
        tool_use("ProposeAutomation", KITCHEN_AT_EVENING),
        text("I'll turn on the kitchen lights every day at 19:30, your evening. Shall I?"),
    )

    first = await say("Turn on the kitchen lights in my evening")

    # The remembered evening was in the prompt the proposal was made from.
    assert EVENING in script.chat_requests[0].system_text
    assert {"ProposeAutomation", "ConfirmAutomationProposal"} <= {
        tool["name"] for tool in script.chat_requests[0].tools
    }
    (proposal,) = _tool_results(script.chat_requests[1])
    assert proposal["automation"] == KITCHEN_AT_EVENING
    assert _speech(first).endswith("Shall I?")
    # Proposed, not created: the file holds only the user's own automation.
    assert _automations(ha_dir) == [COFFEE]
    assert hass.states.async_entity_ids("automation") == ["automation.morning_coffee"]

    script(_confirm, text("Done: the kitchen lights will come on at 19:30."))
    await say("Yes", first.conversation_id)

    created = [item for item in _automations(ha_dir) if item["id"] != COFFEE["id"]]
    assert created == [{"id": created[0]["id"], **KITCHEN_AT_EVENING}]
    assert created[0]["id"].startswith("home_mind_")
    done = _tool_results(script.chat_requests[-1])[-1]
    assert done["done"] == "created"
    state = hass.states.get(done["entity_id"])
    assert state is not None
    assert state.state == "on"
    assert state.attributes["friendly_name"] == KITCHEN_AT_EVENING["alias"]


async def test_without_a_yes_nothing_is_created(
    hass: HomeAssistant, say: Say, script: ClaudeScript, ha_dir: Path
) -> None:
    # Claude proposes and confirms in the same turn: the user has not answered yet.
    script(tool_use("ProposeAutomation", KITCHEN_AT_SUNSET), _confirm, text("Shall I?"))
    first = await say("Turn on the kitchen lights at sunset")
    refused = _tool_results(script.chat_requests[-1])[-1]
    assert refused["error_text"] == (
        "I only change automations after you say yes to what I proposed."
    )

    # The user says no; a model that confirms anyway is refused again.
    script(_confirm, text("Okay, I won't."))
    await say("No, leave it", first.conversation_id)
    assert "error_text" in _tool_results(script.chat_requests[-1])[-1]

    # A made-up proposal id does nothing either.
    script(tool_use("ConfirmAutomationProposal", {"proposal_id": "0000"}), text("Hm."))
    await say("Yes", first.conversation_id)
    assert "error_text" in _tool_results(script.chat_requests[-1])[-1]

    assert _automations(ha_dir) == [COFFEE]
    assert hass.states.async_entity_ids("automation") == ["automation.morning_coffee"]


async def test_change_then_remove_each_after_a_yes(
    hass: HomeAssistant, say: Say, script: ClaudeScript, ha_dir: Path
) -> None:
    script(tool_use("ProposeAutomation", KITCHEN_AT_SUNSET), text("Shall I?"))
    first = await say("Turn on the kitchen lights at sunset")
    script(_confirm, text("Done."))
    await say("Yes please", first.conversation_id)
    (ours,) = [item for item in _automations(ha_dir) if item["id"].startswith("home_mind_")]

    later = {
        **KITCHEN_AT_SUNSET,
        "triggers": [{"trigger": "sun", "event": "sunset", "offset": "00:30:00"}],
    }
    script(
        tool_use("ListAutomations", {}),
        tool_use("ProposeAutomationChange", {"automation": later["alias"], **later}),
        text("I'll move it to 30 minutes after sunset. Okay?"),
    )
    second = await say("Make it 30 minutes later")
    listed = _tool_results(script.chat_requests[-2])[-1]["automations"]
    # Only what Home Mind made is listed: not the user's morning coffee.
    assert [item["config"]["id"] for item in listed] == [ours["id"]]
    assert _automations(ha_dir) == [COFFEE, ours]  # not yet

    script(_confirm, text("Moved."))
    await say("Yes, do it", second.conversation_id)
    assert _automations(ha_dir) == [COFFEE, {"id": ours["id"], **later}]

    script(
        tool_use("ProposeAutomationRemoval", {"automation": later["alias"]}),
        text("Delete 'Kitchen lights at sunset'?"),
    )
    third = await say("Delete the sunset automation")
    assert len(_automations(ha_dir)) == 2
    script(_confirm, text("Deleted."))
    await say("Yes", third.conversation_id)

    assert _automations(ha_dir) == [COFFEE]
    await hass.async_block_till_done()
    assert er.async_get(hass).async_get_entity_id("automation", "automation", ours["id"]) is None


async def test_the_users_own_automation_only_when_named(
    hass: HomeAssistant, say: Say, script: ClaudeScript, ha_dir: Path
) -> None:
    script(
        tool_use("ProposeAutomationRemoval", {"automation": "Morning coffee"}),
        text("I can't."),
    )
    first = await say("Delete my oldest automation")
    refused = _tool_results(script.chat_requests[-1])[-1]
    assert refused["error_text"] == (
        "Home Mind did not make that automation. Say its name if you want me to change it."
    )

    script(
        tool_use("ProposeAutomationRemoval", {"automation": "Morning coffee"}),
        text("Delete 'Morning coffee'?"),
    )
    await say("Delete the morning coffee automation", first.conversation_id)
    assert _automations(ha_dir) == [COFFEE]
    script(_confirm, text("Deleted."))
    await say("Yes", first.conversation_id)

    assert _automations(ha_dir) == []


async def test_what_ha_would_refuse_is_never_proposed(
    hass: HomeAssistant, say: Say, script: ClaudeScript, ha_dir: Path
) -> None:
    broken = {**KITCHEN_AT_SUNSET, "triggers": [{"trigger": "sun", "event": "noon"}]}
    script(tool_use("ProposeAutomation", broken), text("That did not work."))
    await say("Turn on the kitchen lights at noon")

    refused = _tool_results(script.chat_requests[-1])[-1]
    assert "proposal_id" not in refused
    assert refused["error_text"].startswith("Home Assistant refuses this automation")


async def test_unexposed_entities_are_refused(
    hass: HomeAssistant, say: Say, script: ClaudeScript, ha_dir: Path
) -> None:
    bed = {
        **KITCHEN_AT_SUNSET,
        "actions": [{"action": "light.turn_on", "target": {"entity_id": "light.bed_light"}}],
    }
    script(tool_use("ProposeAutomation", bed), text("I can't see that light."))
    await say("Turn on the bed light at sunset")

    refused = _tool_results(script.chat_requests[-1])[-1]
    assert "proposal_id" not in refused
    assert "light.bed_light is not an exposed entity" in refused["error_text"]


async def test_a_non_admin_hears_why_in_their_language(
    hass: HomeAssistant,
    say: Say,
    script: ClaudeScript,
    ha_dir: Path,
    hass_read_only_user: MockUser,
) -> None:
    assert not hass_read_only_user.is_admin
    script(tool_use("ProposeAutomation", KITCHEN_AT_SUNSET), text("…"))
    agent_id = er.async_get(hass).async_get_entity_id(
        "conversation", DOMAIN, hass.config_entries.async_entries(DOMAIN)[0].entry_id
    )

    await conversation.async_converse(
        hass,
        "Schalte das Küchenlicht bei Sonnenuntergang ein",
        None,
        Context(user_id=hass_read_only_user.id),
        agent_id=agent_id,
        language="de",
    )

    refused = _tool_results(script.chat_requests[-1])[-1]
    assert refused["error_text"] == (
        "Nur ein Home-Assistant-Administrator kann Automationen anlegen, ändern oder löschen."
    )
    assert _automations(ha_dir) == [COFFEE]


@pytest.fixture
async def restarted(tmp_path: Path, cloud: Cloud) -> AsyncGenerator[HomeAssistant]:
    """A second Home Assistant on the same config folder: HA after a restart."""
    async with async_test_home_assistant(config_dir=str(tmp_path / "ha")) as hass:
        hass.data.pop(DATA_CUSTOM_COMPONENTS)
        assert await async_setup_component(hass, "homeassistant", {})
        assert await async_setup_component(hass, "intent", {})
        await setup_lights(hass)
        async_expose_entity(hass, "conversation", "light.kitchen_lights", True)
        await _automation_home(hass, tmp_path / "ha")
        entry = MockConfigEntry(
            domain=DOMAIN,
            unique_id=cloud.installation_id,
            data={CONF_URL: cloud.base_url, CONF_TOKEN: cloud.token},
            options={CONF_LLM_HASS_API: [DOMAIN]},
        )
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        yield hass
        await hass.async_stop(force=True)


async def test_a_restart_between_proposal_and_yes_creates_nothing(
    hass: HomeAssistant,
    say: Say,
    script: ClaudeScript,
    ha_dir: Path,
    restarted: HomeAssistant,
) -> None:
    script(tool_use("ProposeAutomation", KITCHEN_AT_SUNSET), text("Shall I?"))
    first = await say("Turn on the kitchen lights at sunset")
    (proposal,) = _tool_results(script.chat_requests[-1])

    # HA restarted: the same conversation id, the same proposal id, a new HA run.
    admin = await restarted.auth.async_create_user("Admin", group_ids=["system-admin"])
    agent_id = er.async_get(restarted).async_get_entity_id(
        "conversation", DOMAIN, restarted.config_entries.async_entries(DOMAIN)[0].entry_id
    )
    assert agent_id is not None
    script(
        tool_use("ConfirmAutomationProposal", {"proposal_id": proposal["proposal_id"]}),
        text("Hm, I lost that."),
    )
    await conversation.async_converse(
        restarted, "Yes", first.conversation_id, Context(user_id=admin.id), agent_id=agent_id
    )

    refused = _tool_results(script.chat_requests[-1])[-1]
    assert refused["error_text"] == (
        "There is no automation change waiting for your confirmation any more. Please ask again."
    )
    assert _automations(ha_dir) == [COFFEE]
    assert restarted.states.async_entity_ids("automation") == ["automation.morning_coffee"]
