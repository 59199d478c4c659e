"""Automations by voice, behind a confirmation gate (tools of Home Mind's LLM API).

"Turn the porch light on at sunset": Claude calls `ProposeAutomation`, which validates the
config with HA's own automation schema and keeps it as a pending proposal; Claude says it
in words and asks. Only `ConfirmAutomationProposal` writes, through HA's automation editor
(compat.AutomationEditor), and only when

- a proposal with that id is pending for this conversation and has not expired,
- the user's message right after the proposal says yes (confirmation.py),
- the same admin user asked for it.

Proposals live in memory only (hass.data, one per conversation): an HA restart forgets
them, so a "yes" after a restart creates nothing. The automations Home Mind makes carry an
id starting with `home_mind_`; changing or removing any other automation needs the user
to name it in the turn that asks for it. Every entity an automation names must be exposed
to Assist, as for HA's own tools.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal, cast

import voluptuous as vol
from homeassistant.components import conversation
from homeassistant.components.homeassistant.exposed_entities import async_should_expose
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import llm
from homeassistant.util import dt as dt_util
from homeassistant.util.hass_dict import HassKey
from homeassistant.util.json import JsonObjectType, JsonValueType

from . import compat
from .confirmation import is_confirmation
from .const import DOMAIN
from .errors import async_spoken_error

AUTOMATION_ID_PREFIX: Final = "home_mind_"
PROPOSAL_TTL: Final = timedelta(minutes=10)
MAX_ITEMS: Final = 20

API_PROMPT: Final = (
    "To create, change or remove a Home Assistant automation, first call "
    "ProposeAutomation, ProposeAutomationChange or ProposeAutomationRemoval; describe the "
    "proposal to the user in plain words and ask whether to go ahead. Call "
    "ConfirmAutomationProposal only after the user has answered yes, in their next message. "
    "ListAutomations shows the automations you made. Times the user calls their own "
    '("my evening") come from what you remember about the household.'
)

type Action = Literal["create", "update", "delete"]

_PROPOSALS: HassKey[PendingProposals] = HassKey(f"{DOMAIN}_automation_proposals")
_EDITOR: HassKey[compat.AutomationEditor] = HassKey(f"{DOMAIN}_automation_editor")
# Targets that reach entities without naming them (and so past the exposure check).
_INDIRECT_TARGETS: Final = ("device_id", "area_id", "floor_id", "label_id")
_MODES: Final = ("single", "restart", "queued", "parallel")


@dataclass(frozen=True, slots=True)
class Proposal:
    """What the user is asked to confirm, exactly as it will be written."""

    id: str
    action: Action
    automation_id: str
    config: dict[str, Any] | None  # None: remove the automation
    alias: str
    user_id: str
    user_turn: int  # user messages in the chat log when it was proposed
    expires: datetime


class PendingProposals:
    """At most one proposal per conversation, in memory only."""

    def __init__(self) -> None:
        self._by_conversation: dict[str, Proposal] = {}

    def put(self, conversation_id: str, proposal: Proposal) -> None:
        """Keep `proposal`, replacing the conversation's earlier one; drop expired ones."""
        now = dt_util.utcnow()
        self._by_conversation = {
            key: value for key, value in self._by_conversation.items() if value.expires > now
        }
        self._by_conversation[conversation_id] = proposal

    def get(self, conversation_id: str, proposal_id: str) -> Proposal | None:
        """The pending proposal with that id, unless it expired."""
        proposal = self._by_conversation.get(conversation_id)
        if proposal is None or proposal.id != proposal_id:
            return None
        if proposal.expires <= dt_util.utcnow():
            del self._by_conversation[conversation_id]
            return None
        return proposal

    def discard(self, conversation_id: str) -> None:
        """Forget the conversation's proposal (it was carried out)."""
        self._by_conversation.pop(conversation_id, None)


def pending_proposals(hass: HomeAssistant) -> PendingProposals:
    """This HA run's proposals (a new, empty set after every start)."""
    if (proposals := hass.data.get(_PROPOSALS)) is None:
        proposals = hass.data[_PROPOSALS] = PendingProposals()
    return proposals


def _editor(hass: HomeAssistant) -> compat.AutomationEditor:
    if "automation" not in hass.config.components:
        raise HomeAssistantError("Automations are not set up in this Home Assistant")
    if (editor := hass.data.get(_EDITOR)) is None:
        if (found := compat.automation_editor()) is None:
            raise HomeAssistantError("This Home Assistant has no automation editor we know")
        editor = hass.data[_EDITOR] = found
    return editor


@dataclass(frozen=True, slots=True)
class _Turn:
    """Who asks, in which conversation, and what they said last."""

    user_id: str
    conversation_id: str
    user_turn: int
    words: str
    language: str | None


async def _async_turn(hass: HomeAssistant, llm_context: llm.LLMContext) -> _Turn:
    """The admin user's conversation turn, or the sentence they hear instead."""
    user_id = llm_context.context.user_id if llm_context.context else None
    user = await hass.auth.async_get_user(user_id) if user_id else None
    if user is None or not user.is_admin:
        raise await async_spoken_error(hass, llm_context.language, "automation_admin_only")
    chat_log = compat.current_chat_log()
    if chat_log is None:
        raise HomeAssistantError("Automations can only be changed in a conversation turn")
    said = [item for item in chat_log.content if isinstance(item, conversation.UserContent)]
    return _Turn(
        user_id=user.id,
        conversation_id=chat_log.conversation_id,
        user_turn=len(said),
        words=said[-1].content if said else "",
        language=llm_context.language,
    )


_CONFIG_FIELDS: Final[dict[vol.Marker, Any]] = {
    vol.Required("alias"): cv.string,
    vol.Optional("description"): cv.string,
    vol.Required("triggers"): vol.All([dict], vol.Length(min=1, max=MAX_ITEMS)),
    vol.Optional("conditions"): vol.All([dict], vol.Length(max=MAX_ITEMS)),
    vol.Required("actions"): vol.All([dict], vol.Length(min=1, max=MAX_ITEMS)),
    vol.Optional("mode"): vol.In(_MODES),
}
_AUTOMATION_FIELD: Final[dict[vol.Marker, Any]] = {
    vol.Required("automation"): cv.string,
}


def _config(args: Mapping[str, Any]) -> dict[str, Any]:
    """The automation as HA's editor stores it (its key order), without empty parts."""
    config: dict[str, Any] = {}
    for key in ("alias", "description", "triggers", "conditions", "actions", "mode"):
        if args.get(key) not in (None, "", []):
            config[key] = args[key]
    return config


def _values(node: Any, key: str) -> Iterator[Any]:
    """Every value stored under `key` anywhere in a nested config."""
    if isinstance(node, Mapping):
        for name, value in node.items():
            if name == key:
                yield value
            yield from _values(value, key)
    elif isinstance(node, list):
        for item in node:
            yield from _values(item, key)


def _check_exposure(hass: HomeAssistant, config: Mapping[str, Any]) -> None:
    """Refuse entities not exposed to Assist and targets that bypass the entity check."""
    for key in _INDIRECT_TARGETS:
        if any(True for _ in _values(config, key)):
            raise HomeAssistantError(f"Name the entities with entity_id instead of {key}")
    for value in _values(config, "entity_id"):
        for entity_id in cv.ensure_list(value):
            if not isinstance(entity_id, str) or (
                hass.states.get(entity_id) is None
                or not async_should_expose(hass, "conversation", entity_id)
            ):
                raise HomeAssistantError(f"{entity_id} is not an exposed entity")


async def _async_validate(
    hass: HomeAssistant, editor: compat.AutomationEditor, key: str, config: dict[str, Any]
) -> None:
    _check_exposure(hass, config)
    await editor.async_validate(hass, key, config)


def _entity_id(hass: HomeAssistant, automation_id: str) -> str | None:
    return er.async_get(hass).async_get_entity_id("automation", "automation", automation_id)


def _is_ours(config: Mapping[str, Any]) -> bool:
    return str(config.get("id", "")).startswith(AUTOMATION_ID_PREFIX)


def _named_in(words: str, config: Mapping[str, Any], entity_id: str | None) -> bool:
    """Whether the user's own words name this automation (its alias or entity)."""
    spoken = " ".join(words.casefold().split())
    names = [str(config.get("alias", ""))]
    if entity_id:
        names += [entity_id, entity_id.split(".", 1)[1].replace("_", " ")]
    return any(name.strip() and " ".join(name.casefold().split()) in spoken for name in names)


async def _async_target(
    hass: HomeAssistant, editor: compat.AutomationEditor, name: str, turn: _Turn
) -> dict[str, Any]:
    """The automation `name` (entity id, alias or id) that this turn may change."""
    wanted = name.strip().casefold()
    for config in await editor.async_read(hass):
        automation_id = str(config.get("id", ""))
        entity_id = _entity_id(hass, automation_id) if automation_id else None
        candidates = {automation_id, str(config.get("alias", "")), entity_id or ""}
        if wanted not in {candidate.strip().casefold() for candidate in candidates if candidate}:
            continue
        if not _is_ours(config) and not _named_in(turn.words, config, entity_id):
            raise await async_spoken_error(hass, turn.language, "automation_not_ours")
        return config
    raise await async_spoken_error(hass, turn.language, "automation_not_found")


def _propose(
    hass: HomeAssistant,
    turn: _Turn,
    *,
    action: Action,
    automation_id: str,
    config: dict[str, Any] | None,
    alias: str,
) -> JsonObjectType:
    proposal = Proposal(
        id=secrets.token_hex(4),
        action=action,
        automation_id=automation_id,
        config=config,
        alias=alias,
        user_id=turn.user_id,
        user_turn=turn.user_turn,
        expires=dt_util.utcnow() + PROPOSAL_TTL,
    )
    pending_proposals(hass).put(turn.conversation_id, proposal)
    return {
        "proposal_id": proposal.id,
        "action": action,
        "alias": alias,
        "automation": cast(JsonValueType, config),
        "next_step": (
            "Nothing is changed yet. Tell the user in plain words what this will do and ask "
            "whether to go ahead; call ConfirmAutomationProposal with this proposal_id only "
            "after their next message says yes."
        ),
    }


class ListAutomationsTool(llm.Tool):
    """The automations Home Mind made, or one the user names."""

    name = "ListAutomations"
    description = (
        "The Home Assistant automations you created for this household (id, entity, "
        "alias, whether it is on, its triggers/conditions/actions). With `name`, also an "
        "automation of that name that someone else made."
    )
    integration = DOMAIN
    parameters = vol.Schema({vol.Optional("name"): cv.string})

    async def async_call(
        self, hass: HomeAssistant, tool_input: llm.ToolInput, llm_context: llm.LLMContext
    ) -> JsonObjectType:
        """Read automations.yaml through HA's editor."""
        await _async_turn(hass, llm_context)
        args = self.parameters(tool_input.tool_args)
        name = str(args.get("name", "")).strip().casefold()
        found: list[JsonValueType] = []
        for config in await _editor(hass).async_read(hass):
            ours = _is_ours(config)
            if not ours and (not name or str(config.get("alias", "")).casefold() != name):
                continue
            entity_id = _entity_id(hass, str(config.get("id", "")))
            state = hass.states.get(entity_id) if entity_id else None
            found.append(
                {
                    "entity_id": entity_id,
                    "made_by_home_mind": ours,
                    "state": state.state if state else None,
                    "config": cast(JsonValueType, config),
                }
            )
        return {"automations": found}


class ProposeAutomationTool(llm.Tool):
    """A new automation, validated and kept for the user's yes."""

    name = "ProposeAutomation"
    description = (
        "Propose a new Home Assistant automation (HA's automation config: `triggers`, "
        "optional `conditions`, `actions`, e.g. {'trigger': 'sun', 'event': 'sunset'} and "
        "{'action': 'light.turn_on', 'target': {'entity_id': 'light.porch'}}). Nothing is "
        "created until the user confirms."
    )
    integration = DOMAIN
    parameters = vol.Schema(_CONFIG_FIELDS)

    async def async_call(
        self, hass: HomeAssistant, tool_input: llm.ToolInput, llm_context: llm.LLMContext
    ) -> JsonObjectType:
        """Validate with HA's schema; keep the proposal."""
        turn = await _async_turn(hass, llm_context)
        config = _config(self.parameters(tool_input.tool_args))
        automation_id = f"{AUTOMATION_ID_PREFIX}{secrets.token_hex(8)}"
        await _async_validate(hass, _editor(hass), automation_id, config)
        return _propose(
            hass,
            turn,
            action="create",
            automation_id=automation_id,
            config=config,
            alias=config["alias"],
        )


class ProposeAutomationChangeTool(llm.Tool):
    """A replacement config for an existing automation."""

    name = "ProposeAutomationChange"
    description = (
        "Propose changing an automation: `automation` is its entity id or alias, the other "
        "fields its complete new config (start from ListAutomations). Nothing changes until "
        "the user confirms."
    )
    integration = DOMAIN
    parameters = vol.Schema({**_AUTOMATION_FIELD, **_CONFIG_FIELDS})

    async def async_call(
        self, hass: HomeAssistant, tool_input: llm.ToolInput, llm_context: llm.LLMContext
    ) -> JsonObjectType:
        """Find the automation, validate the new config, keep the proposal."""
        turn = await _async_turn(hass, llm_context)
        args = self.parameters(tool_input.tool_args)
        editor = _editor(hass)
        current = await _async_target(hass, editor, args["automation"], turn)
        config = _config(args)
        await _async_validate(hass, editor, str(current["id"]), config)
        return _propose(
            hass,
            turn,
            action="update",
            automation_id=str(current["id"]),
            config=config,
            alias=config["alias"],
        )


class ProposeAutomationRemovalTool(llm.Tool):
    """Removing an automation, kept for the user's yes."""

    name = "ProposeAutomationRemoval"
    description = (
        "Propose deleting an automation (`automation`: its entity id or alias). Nothing is "
        "deleted until the user confirms."
    )
    integration = DOMAIN
    parameters = vol.Schema(_AUTOMATION_FIELD)

    async def async_call(
        self, hass: HomeAssistant, tool_input: llm.ToolInput, llm_context: llm.LLMContext
    ) -> JsonObjectType:
        """Find the automation; keep the proposal."""
        turn = await _async_turn(hass, llm_context)
        args = self.parameters(tool_input.tool_args)
        current = await _async_target(hass, _editor(hass), args["automation"], turn)
        alias = str(current.get("alias", current["id"]))
        return _propose(
            hass, turn, action="delete", automation_id=str(current["id"]), config=None, alias=alias
        )


class ConfirmAutomationProposalTool(llm.Tool):
    """Carry out a pending proposal, once the user said yes."""

    name = "ConfirmAutomationProposal"
    description = (
        "Carry out the pending automation proposal `proposal_id`. Only call it after the "
        "user answered yes to that proposal, in the message after it."
    )
    integration = DOMAIN
    parameters = vol.Schema({vol.Required("proposal_id"): cv.string})

    async def async_call(
        self, hass: HomeAssistant, tool_input: llm.ToolInput, llm_context: llm.LLMContext
    ) -> JsonObjectType:
        """Check the gate, then write through HA's editor."""
        turn = await _async_turn(hass, llm_context)
        args = self.parameters(tool_input.tool_args)
        proposals = pending_proposals(hass)
        proposal = proposals.get(turn.conversation_id, args["proposal_id"])
        if proposal is None or proposal.user_id != turn.user_id:
            raise await async_spoken_error(hass, turn.language, "automation_nothing_to_confirm")
        # The yes must be the user's very next message, in their own words.
        if turn.user_turn != proposal.user_turn + 1 or not is_confirmation(
            turn.words, turn.language
        ):
            raise await async_spoken_error(hass, turn.language, "automation_not_confirmed")
        editor = _editor(hass)
        if proposal.config is not None:
            # Entities or HA itself may have changed since the proposal: check again.
            await _async_validate(hass, editor, proposal.automation_id, proposal.config)
        proposals.discard(turn.conversation_id)
        await editor.async_write(hass, proposal.automation_id, proposal.config)
        return {
            "done": {"create": "created", "update": "changed", "delete": "removed"}[
                proposal.action
            ],
            "alias": proposal.alias,
            "entity_id": _entity_id(hass, proposal.automation_id),
        }


def automation_tools() -> list[llm.Tool]:
    """The tools of this module, for Home Mind's LLM API."""
    return [
        ListAutomationsTool(),
        ProposeAutomationTool(),
        ProposeAutomationChangeTool(),
        ProposeAutomationRemovalTool(),
        ConfirmAutomationProposalTool(),
    ]
