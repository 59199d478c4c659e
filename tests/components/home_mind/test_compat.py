"""Both branches of every compat shim: the running HA 2025.4 and fakes of newer HA APIs."""

from __future__ import annotations

import dataclasses
import sys
import types
from dataclasses import dataclass
from typing import Any

import pytest
import voluptuous as vol
from freezegun.api import FrozenDateTimeFactory
from homeassistant.components import conversation
from homeassistant.config_entries import ConfigFlowResult
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import intent, llm, template

from custom_components.home_mind import compat


def _user_input(text: str = "hi", **extra: Any) -> conversation.ConversationInput:
    """A typed turn of the running HA (2026.x adds the required `satellite_id`)."""
    fields = {field.name for field in dataclasses.fields(conversation.ConversationInput)}
    if "satellite_id" in fields:
        extra.setdefault("satellite_id", None)
    return conversation.ConversationInput(
        text=text,
        context=Context(),
        conversation_id=None,
        device_id=None,
        language="en",
        agent_id="conversation.test_home",
        **extra,
    )


class _NewChatLog:
    """HA 2025.7+: `async_provide_llm_data(llm_context, apis, prompt, extra)`."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def async_provide_llm_data(self, *args: Any) -> None:
        self.calls.append(args)


class _NewInput:
    """HA 2025.7+ `ConversationInput` with `as_llm_context`."""

    extra_system_prompt = "extra"

    def as_llm_context(self, domain: str) -> str:
        return f"llm-context-for-{domain}"


class _OldChatLog:
    """HA 2025.4-2025.6: `async_update_llm_data(domain, user_input, api, prompt)`."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def async_update_llm_data(self, *args: Any) -> None:
        self.calls.append(args)


async def test_provide_llm_data_on_new_ha() -> None:
    chat_log, user_input = _NewChatLog(), _NewInput()

    await compat.provide_llm_data(chat_log, user_input, "home_mind", ["assist", "other"], None)  # type: ignore[arg-type]
    await compat.provide_llm_data(chat_log, user_input, "home_mind", [], "prompt")  # type: ignore[arg-type]

    assert chat_log.calls == [
        ("llm-context-for-home_mind", ["assist", "other"], None, "extra"),
        ("llm-context-for-home_mind", None, "prompt", "extra"),
    ]


async def test_provide_llm_data_on_ha_2025_4_takes_one_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chat_log, user_input = _OldChatLog(), _user_input()
    monkeypatch.delattr(llm, "MergedAPI", raising=False)

    await compat.provide_llm_data(chat_log, user_input, "home_mind", ["assist", "other"], None)  # type: ignore[arg-type]
    await compat.provide_llm_data(chat_log, user_input, "home_mind", [], None)  # type: ignore[arg-type]

    assert chat_log.calls == [
        ("home_mind", user_input, "assist", None),
        ("home_mind", user_input, None, None),
    ]


async def test_provide_llm_data_on_ha_2025_5_passes_the_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(llm, "MergedAPI", object, raising=False)
    chat_log, user_input = _OldChatLog(), _user_input()

    await compat.provide_llm_data(chat_log, user_input, "home_mind", ["assist", "other"], None)  # type: ignore[arg-type]

    assert chat_log.calls == [("home_mind", user_input, ["assist", "other"], None)]


def test_tool_schema_with_voluptuous_openapi(monkeypatch: pytest.MonkeyPatch) -> None:
    """HA up to 2026.8: no probatio, so voluptuous_openapi, with the API's own serializer."""
    calls: list[tuple[Any, Any]] = []

    def convert(schema: Any, *, custom_serializer: Any = None) -> dict[str, Any]:
        calls.append((schema, custom_serializer))
        return {"type": "object", "properties": {"where": {"type": "string"}}}

    def serializer(value: Any) -> Any:
        return value

    monkeypatch.setitem(sys.modules, "probatio", None)  # import probatio -> ImportError
    monkeypatch.setitem(sys.modules, "voluptuous_openapi", types.SimpleNamespace(convert=convert))
    schema = vol.Schema({vol.Required("where"): str})

    result = compat.tool_parameters_schema(schema, serializer)

    assert result == {"type": "object", "properties": {"where": {"type": "string"}}}
    assert calls == [(schema, serializer)]


def test_tool_schema_with_the_running_has_converter() -> None:
    """Whichever converter this HA ships turns a tool schema into a JSON object schema."""
    schema = vol.Schema({vol.Required("where"): str, vol.Optional("count"): int})

    result = compat.tool_parameters_schema(schema, None)

    assert result["type"] == "object"
    assert set(result["properties"]) == {"where", "count"}
    assert result["required"] == ["where"]


def test_tool_schema_with_probatio(monkeypatch: pytest.MonkeyPatch) -> None:
    """HA 2026.9+: probatio's `to_openapi` replaces voluptuous_openapi."""
    calls: list[tuple[Any, Any]] = []

    def to_openapi(schema: Any, *, custom_serializer: Any = None) -> dict[str, Any]:
        calls.append((schema, custom_serializer))
        return {"type": "object", "properties": {"from": {"type": "string"}}}

    monkeypatch.setitem(sys.modules, "probatio", types.SimpleNamespace(to_openapi=to_openapi))
    schema = vol.Schema({})

    result = compat.tool_parameters_schema(schema, None)

    assert result == {"type": "object", "properties": {"from": {"type": "string"}}}
    assert calls == [(schema, None)]


def test_tool_schema_that_is_not_an_object(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        sys.modules, "probatio", types.SimpleNamespace(to_openapi=lambda *a, **k: None)
    )

    assert compat.tool_parameters_schema(vol.Schema({}), None) == {}


def test_tool_result_data_on_ha_2025_4() -> None:
    # HA 2025.4-2026.9: `ToolResultContent(..., tool_result={...})`, no `result`.
    content = types.SimpleNamespace(agent_id="a", tool_call_id="c", tool_result={"ok": True})

    assert compat.tool_result_data(content) == {"ok": True}  # type: ignore[arg-type]


def test_tool_result_data_on_ha_2026_10() -> None:
    @dataclass
    class ToolResult:
        data: dict[str, Any]
        error: bool = False

    content = types.SimpleNamespace(result=ToolResult(data={"ok": 1}))

    assert compat.tool_result_data(content) == {"ok": 1}  # type: ignore[arg-type]


def test_satellite_id_both_ways() -> None:
    # HA 2025.4: the field does not exist.
    assert compat.satellite_id(_user_input()) is None
    # HA 2025.10+: a field of ConversationInput.
    newer = types.SimpleNamespace(satellite_id="assist_satellite.kitchen")
    assert compat.satellite_id(newer) == "assist_satellite.kitchen"  # type: ignore[arg-type]
    assert compat.satellite_id(types.SimpleNamespace(satellite_id=None)) is None  # type: ignore[arg-type]


async def test_satellite_id_means_voice(hass: HomeAssistant) -> None:
    from custom_components.home_mind.conversation import is_voice_turn

    newer = types.SimpleNamespace(satellite_id="assist_satellite.kitchen", device_id=None)

    assert is_voice_turn(hass, newer) is True  # type: ignore[arg-type]
    assert is_voice_turn(hass, _user_input()) is False


async def test_result_from_chat_log_on_ha_2025_4(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(conversation, "async_get_result_from_chat_log", raising=False)
    chat_log = conversation.ChatLog(hass, "conv-1")
    chat_log.async_add_user_content(conversation.UserContent(content="hi"))
    chat_log.async_add_assistant_content_without_tools(
        conversation.AssistantContent(agent_id="a", content="Shall I?")
    )

    result = compat.result_from_chat_log(_user_input(), chat_log)

    assert result.response.speech["plain"]["speech"] == "Shall I?"
    assert result.conversation_id == "conv-1"
    assert result.continue_conversation is True


async def test_result_from_chat_log_without_answer(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(conversation, "async_get_result_from_chat_log", raising=False)
    chat_log = conversation.ChatLog(hass, "conv-1")
    chat_log.async_add_user_content(conversation.UserContent(content="hi"))

    result = compat.result_from_chat_log(_user_input(), chat_log)

    assert result.response.speech["plain"]["speech"] == ""


async def test_result_from_chat_log_on_ha_2025_8(
    hass: HomeAssistant, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = conversation.ConversationResult(response=intent.IntentResponse(language="en"))
    calls: list[tuple[Any, Any]] = []

    def helper(user_input: Any, chat_log: Any) -> conversation.ConversationResult:
        calls.append((user_input, chat_log))
        return expected

    monkeypatch.setattr(conversation, "async_get_result_from_chat_log", helper, raising=False)
    chat_log = conversation.ChatLog(hass, "conv-1")
    user_input = _user_input()

    assert compat.result_from_chat_log(user_input, chat_log) is expected
    assert calls == [(user_input, chat_log)]


class _Entry:
    def __init__(self, listeners: list[Any]) -> None:
        self.update_listeners = listeners


class _OldFlow:
    """HA 2025.4: only `async_update_reload_and_abort`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, Any]] = []

    def async_update_reload_and_abort(self, entry: Any, *, data_updates: Any) -> ConfigFlowResult:
        self.calls.append(("reload", entry, data_updates))
        return {"type": "abort"}  # type: ignore[typeddict-item]


class _NewFlow(_OldFlow):
    """HA 2025.11+: also `async_update_and_abort` (no reload of its own)."""

    def async_update_and_abort(self, entry: Any, *, data_updates: Any) -> ConfigFlowResult:
        self.calls.append(("update", entry, data_updates))
        return {"type": "abort"}  # type: ignore[typeddict-item]


@pytest.mark.parametrize(
    ("flow_type", "listeners", "expected"),
    [
        (_OldFlow, [object()], "reload"),
        (_NewFlow, [object()], "update"),
        # Without a listener nothing else would reload the entry.
        (_NewFlow, [], "reload"),
    ],
)
def test_update_entry_and_abort(
    flow_type: type[_OldFlow], listeners: list[Any], expected: str
) -> None:
    flow, entry = flow_type(), _Entry(listeners)

    compat.update_entry_and_abort(flow, entry, {"token": "t"})  # type: ignore[arg-type]

    assert flow.calls == [(expected, entry, {"token": "t"})]


def test_multiple_llm_apis_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(llm, "MergedAPI", raising=False)
    assert compat.supports_multiple_llm_apis() is False
    monkeypatch.setattr(llm, "MergedAPI", object, raising=False)
    assert compat.supports_multiple_llm_apis() is True


# The system prompt HA builds, as each release lays it out (see docs/ha-compat.md 1.1 and 1.2).
API_PROMPT = (
    "When controlling Home Assistant always call the intent tools.\n"
    "Static Context:\n- names: Kitchen Lights\n  domain: light"
)
EXTRA = "The guest room is called the blue room."
NEW_DEFAULTS = """You are a voice assistant for Home Assistant.
Answer questions about the world truthfully.
Respond simply and to the point in plain text.
"""
OLD_DATE_TIME = (
    'Current time is {{ now().strftime("%H:%M:%S") }}. '
    'Today\'s date is {{ now().strftime("%Y-%m-%d") }}.\n'
)
OLD_DEFAULTS = (
    "You are a voice assistant for Home Assistant.\n"
    "Answer questions about the world truthfully.\n"
    "Answer in plain text. Keep it simple and to the point.\n"
)
NEW_DATE_TIME = "Current time is {{ now().strftime('%H:%M') }}. Today's date is {{ now().day }}.\n"


def _render(hass: HomeAssistant, text: str) -> str:
    """A prompt part rendered the way HA's chat log renders it."""
    return str(template.Template(text, hass).async_render({}, parse_result=False))


def _prompt_of_ha_2025_4(hass: HomeAssistant) -> str:
    """`async_update_llm_data`: clock and default instructions in one template, then the rest."""
    first = _render(hass, OLD_DATE_TIME + OLD_DEFAULTS)
    return "\n".join([first, API_PROMPT, EXTRA])


def _prompt_of_ha_2025_11(hass: HomeAssistant) -> str:
    """`async_provide_llm_data`: instructions, API prompt, clock, extra prompt."""
    parts = [NEW_DEFAULTS, API_PROMPT, _render(hass, NEW_DATE_TIME), EXTRA]
    return "\n".join(_render(hass, part) for part in parts)


def _as_ha_2025_4(monkeypatch: pytest.MonkeyPatch) -> None:
    """HA 2025.4's constants: the clock in `BASE_PROMPT`, no `DATE_TIME_PROMPT`."""
    monkeypatch.setattr(llm, "BASE_PROMPT", OLD_DATE_TIME, raising=False)
    monkeypatch.delattr(llm, "DATE_TIME_PROMPT", raising=False)
    monkeypatch.setattr(llm, "DEFAULT_INSTRUCTIONS_PROMPT", OLD_DEFAULTS, raising=False)


def test_date_time_prompt_of_the_running_ha() -> None:
    assert "Current time is" in compat.date_time_prompt()


def test_date_time_prompt_on_ha_2025_4(monkeypatch: pytest.MonkeyPatch) -> None:
    _as_ha_2025_4(monkeypatch)
    assert compat.date_time_prompt() == OLD_DATE_TIME


def test_date_time_prompt_on_ha_2025_11(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(llm, "BASE_PROMPT", raising=False)
    monkeypatch.setattr(llm, "DATE_TIME_PROMPT", NEW_DATE_TIME, raising=False)
    assert compat.date_time_prompt() == NEW_DATE_TIME


def test_date_time_prompt_without_either_constant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(llm, "BASE_PROMPT", raising=False)
    monkeypatch.delattr(llm, "DATE_TIME_PROMPT", raising=False)
    template_text = compat.date_time_prompt()
    assert template_text.startswith("Current time is {{")


def test_default_instructions_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    _as_ha_2025_4(monkeypatch)
    assert compat.default_instructions_prompt() == OLD_DEFAULTS
    monkeypatch.delattr(llm, "DEFAULT_INSTRUCTIONS_PROMPT")
    assert compat.default_instructions_prompt() is None


async def test_stable_prompt_on_ha_2025_4(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as_ha_2025_4(monkeypatch)
    freezer.move_to("2025-04-01 09:15:07+00:00")
    morning = _prompt_of_ha_2025_4(hass)
    freezer.move_to("2025-04-02 21:40:59+00:00")
    evening = _prompt_of_ha_2025_4(hass)
    assert morning != evening
    assert "Current time is" in morning

    assert compat.stable_system_prompt(morning) == f"{API_PROMPT}\n{EXTRA}"
    assert compat.stable_system_prompt(evening) == f"{API_PROMPT}\n{EXTRA}"


async def test_stable_prompt_on_ha_2025_11(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(llm, "BASE_PROMPT", raising=False)
    monkeypatch.setattr(llm, "DATE_TIME_PROMPT", NEW_DATE_TIME, raising=False)
    monkeypatch.setattr(llm, "DEFAULT_INSTRUCTIONS_PROMPT", NEW_DEFAULTS)
    freezer.move_to("2025-11-05 07:00:00+00:00")
    first = _prompt_of_ha_2025_11(hass)
    freezer.move_to("2025-11-06 18:30:00+00:00")
    second = _prompt_of_ha_2025_11(hass)
    assert first != second

    assert compat.stable_system_prompt(first) == f"{API_PROMPT}\n{EXTRA}"
    assert compat.stable_system_prompt(second) == f"{API_PROMPT}\n{EXTRA}"


async def test_stable_prompt_keeps_a_prompt_without_clock(hass: HomeAssistant) -> None:
    # HA 2025.11+ leaves the clock out when a GetDateTime tool exists; no defaults either
    # when the HA release stops adding them.
    assert compat.stable_system_prompt(f"{API_PROMPT}\n{EXTRA}") == f"{API_PROMPT}\n{EXTRA}"
    assert compat.stable_system_prompt("") == ""


def test_stable_prompt_keeps_other_mentions_of_the_words() -> None:
    # Only HA's own parts go: a line that merely quotes the words is the user's text.
    extra = "Never say 'Current time is 5. Today's date is 6.' to guests."
    assert compat.stable_system_prompt(f"{API_PROMPT}\n{extra}") == f"{API_PROMPT}\n{extra}"


def test_rendered_template_pattern() -> None:
    pattern = compat.rendered_template_pattern("Hello {{ name }}, it is {{ when }}.\n")
    assert pattern is not None
    assert pattern.search("intro\nHello Ann, it is 9:00.\nmore")
    assert pattern.search("Hello   Bob,\tit is noon.")
    assert not pattern.search("Hello Ann, it is 9:00. And more on this line")
    assert compat.rendered_template_pattern("{{ only }} {{ variables }}") is None


def test_local_agent_id_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    assert compat.local_agent_id() == "conversation.home_assistant"
    monkeypatch.delattr(conversation, "HOME_ASSISTANT_AGENT")
    assert compat.local_agent_id() == "conversation.home_assistant"


def test_converse_satellite_kwargs_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    """`satellite_id=` only where `async_converse` takes it (HA 2025.10+)."""

    class Turn:
        satellite_id = "assist_satellite.kitchen"

    turn: Any = Turn()

    async def older_converse(hass: Any, text: str, *, language: str | None = None) -> None:
        """Stands in for the signature before 2025.10 (no satellite_id)."""

    monkeypatch.setattr(conversation, "async_converse", older_converse)
    assert compat.converse_satellite_kwargs(turn) == {}

    async def newer_converse(hass: Any, text: str, *, satellite_id: str | None = None) -> None:
        """Stands in for the 2025.10+ signature."""

    monkeypatch.setattr(conversation, "async_converse", newer_converse)
    assert compat.converse_satellite_kwargs(turn) == {"satellite_id": "assist_satellite.kitchen"}
    turn.satellite_id = None
    assert compat.converse_satellite_kwargs(turn) == {}
