"""One build for Home Assistant 2025.4 through 2026.11.

Every difference between HA releases that this integration touches is decided here, by
feature detection at call time (never by version strings), so both branches of each shim
can be exercised against fakes. See docs/ha-compat.md section 1.3.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

from homeassistant.components import conversation
from homeassistant.config_entries import ConfigEntry, ConfigFlow, ConfigFlowResult
from homeassistant.const import Platform
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import intent, llm

# HA's date/time sentence as of 2025.4-2026.11, for a release that has neither constant.
_DATE_TIME_FALLBACK = (
    'Current time is {{ now().strftime("%H:%M:%S") }}. '
    'Today\'s date is {{ now().strftime("%Y-%m-%d") }}.\n'
)

# Jinja expressions, statements and comments: the parts of a template that vary by render.
_JINJA_PART = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


def date_time_prompt() -> str:
    """HA's template of the "Current time is ..." sentence it puts in the system prompt.

    `llm.DATE_TIME_PROMPT` on HA 2025.11+, `llm.BASE_PROMPT` before (renamed, no alias).
    """
    for name in ("DATE_TIME_PROMPT", "BASE_PROMPT"):
        value = getattr(llm, name, None)
        if isinstance(value, str) and value.strip():
            return value
    return _DATE_TIME_FALLBACK


def default_instructions_prompt() -> str | None:
    """HA's default instructions, which it adds when the agent gives no prompt of its own."""
    value = getattr(llm, "DEFAULT_INSTRUCTIONS_PROMPT", None)
    return value if isinstance(value, str) and value.strip() else None


def rendered_template_pattern(template: str) -> re.Pattern[str] | None:
    """A regex matching any render of `template` as one part of HA's system prompt.

    The template's fixed words must appear as they are (any whitespace between them);
    each Jinja expression may render to anything on the same line. HA strips each
    rendered part and joins the parts with newlines, so a match starts at a line start
    and ends at a line end. None when the template has no fixed words to anchor on.
    """
    tokens: list[str] = []
    kinds: list[str] = []  # "word", "space" or "var", one per token
    for index, literal in enumerate(_JINJA_PART.split(template)):
        if index:
            tokens.append(r"[^\n]*?")
            kinds.append("var")
        for chunk in re.split(r"(\s+)", literal):
            if chunk:
                tokens.append(r"\s+" if chunk.isspace() else re.escape(chunk))
                kinds.append("space" if chunk.isspace() else "word")
    if "word" not in kinds:
        return None
    # HA strips each rendered part: whitespace at either end is not part of the match.
    while kinds[0] == "space":
        tokens.pop(0)
        kinds.pop(0)
    while kinds[-1] == "space":
        tokens.pop()
        kinds.pop()
    return re.compile(r"^" + "".join(tokens) + r"[ \t]*(?=\n|\Z)", re.MULTILINE)


def stable_system_prompt(prompt: str) -> str:
    """HA's system prompt without its clock and without its default instructions.

    HA puts the current time in the prompt (first on 2025.4, after the API prompt from
    2025.5), which would change the cached part of our prompt every turn; the server
    states the time in its per-turn part instead. HA's default instructions ("a voice
    assistant ... plain text") contradict our own persona and style rules. Everything else
    HA says (the LLM API's prompt with the exposed entities, the extra system prompt) stays.
    """
    for template in (date_time_prompt(), default_instructions_prompt()):
        pattern = rendered_template_pattern(template) if template else None
        match = pattern.search(prompt) if pattern else None
        if match is None:
            continue
        before = prompt[: match.start()].rstrip("\n")
        after = prompt[match.end() :].lstrip("\n")
        # Drop the removed part's joining newline too, so no blank part is left behind.
        prompt = f"{before}\n{after}" if before and after else before or after
    return prompt.strip()


def supports_multiple_llm_apis() -> bool:
    """Whether several LLM APIs can be combined (HA 2025.5+, `llm.MergedAPI`)."""
    return hasattr(llm, "MergedAPI")


async def provide_llm_data(
    chat_log: conversation.ChatLog,
    user_input: conversation.ConversationInput,
    domain: str,
    api_ids: Sequence[str],
    prompt: str | None,
) -> None:
    """Let HA build the system prompt and the tools of the chosen LLM APIs.

    HA 2025.7+ has `ChatLog.async_provide_llm_data` with an `LLMContext` built by
    `ConversationInput.as_llm_context`; older releases have `async_update_llm_data`, which
    builds the context itself (we never construct `LLMContext`: its fields keep changing).
    Raises `conversation.ConverseError` when HA cannot prepare the API or the prompt.
    """
    provide: Callable[..., Awaitable[None]] | None = getattr(
        chat_log, "async_provide_llm_data", None
    )
    if provide is not None:
        as_llm_context: Callable[[str], Any] = getattr(user_input, "as_llm_context")  # noqa: B009
        await provide(
            as_llm_context(domain),
            list(api_ids) or None,
            prompt,
            user_input.extra_system_prompt,
        )
        return

    api: str | list[str] | None = None
    if api_ids:
        # 2025.4 accepts one API id only; 2025.5 and 2025.6 accept a list.
        api = list(api_ids) if supports_multiple_llm_apis() else api_ids[0]
    update: Callable[..., Awaitable[None]] = chat_log.async_update_llm_data
    await update(domain, user_input, api, prompt)


def _schema_converter() -> Callable[..., Any]:
    """HA's voluptuous-to-JSON-schema converter of the running release.

    HA 2026.9 replaced voluptuous by probatio and stopped installing voluptuous_openapi;
    both are HA's own requirements, so neither belongs in our manifest.
    """
    try:
        from probatio import to_openapi  # HA 2026.9+
    except ImportError:
        from voluptuous_openapi import convert  # HA up to 2026.8

        return cast(Callable[..., Any], convert)
    return cast(Callable[..., Any], to_openapi)


def tool_parameters_schema(
    schema: Any, custom_serializer: Callable[[Any], Any] | None
) -> dict[str, Any]:
    """The JSON schema of an LLM tool's parameters.

    `custom_serializer` is the API instance's own (HA's selector serializer was private
    until 2025.8, so it is never imported directly).
    """
    converted = _schema_converter()(schema, custom_serializer=custom_serializer)
    return dict(converted) if isinstance(converted, Mapping) else {}


def tool_result_data(content: conversation.ToolResultContent) -> Any:
    """The data of a tool result: `.result.data` on 2026.10+, `.tool_result` before."""
    result = getattr(content, "result", None)
    if result is not None:
        return getattr(result, "data", result)
    return content.tool_result


def satellite_id(user_input: conversation.ConversationInput) -> str | None:
    """The Assist satellite behind the turn (a `ConversationInput` field since 2025.10)."""
    value = getattr(user_input, "satellite_id", None)
    return value if isinstance(value, str) and value else None


def result_from_chat_log(
    user_input: conversation.ConversationInput, chat_log: conversation.ChatLog
) -> conversation.ConversationResult:
    """The turn's result from the chat log.

    HA 2025.8+ has `conversation.async_get_result_from_chat_log` (it also keeps the intent
    response of a device action); before that the answer is built as 2025.4 core did.
    """
    helper: Callable[..., conversation.ConversationResult] | None = getattr(
        conversation, "async_get_result_from_chat_log", None
    )
    if helper is not None:
        return helper(user_input, chat_log)

    response = intent.IntentResponse(language=user_input.language)
    last = chat_log.content[-1]
    speech = last.content if isinstance(last, conversation.AssistantContent) else None
    response.async_set_speech(speech or "")
    return conversation.ConversationResult(
        response=response,
        conversation_id=chat_log.conversation_id,
        continue_conversation=chat_log.continue_conversation,
    )


def update_entry_and_abort(
    flow: ConfigFlow, entry: ConfigEntry[Any], data_updates: Mapping[str, Any]
) -> ConfigFlowResult:
    """Store new entry data at the end of a reauth or reconfigure flow.

    With an update listener (ours reloads the entry) HA 2025.11+ wants the non-reloading
    `async_update_and_abort`; 2025.4 only has `async_update_reload_and_abort`.
    """
    update_only: Callable[..., ConfigFlowResult] | None = getattr(
        flow, "async_update_and_abort", None
    )
    if update_only is not None and entry.update_listeners:
        return update_only(entry, data_updates=data_updates)
    return flow.async_update_reload_and_abort(entry, data_updates=data_updates)


def local_agent_id() -> str:
    """HA's built-in agent (`conversation.HOME_ASSISTANT_AGENT`, the same id 2025.4-2026.11)."""
    value = getattr(conversation, "HOME_ASSISTANT_AGENT", None)
    return value if isinstance(value, str) and value else "conversation.home_assistant"


def converse_satellite_kwargs(user_input: conversation.ConversationInput) -> dict[str, Any]:
    """`satellite_id=` for `conversation.async_converse` where it exists (HA 2025.10+)."""
    satellite = satellite_id(user_input)
    if satellite is None:
        return {}
    if "satellite_id" not in inspect.signature(conversation.async_converse).parameters:
        return {}
    return {"satellite_id": satellite}


def ai_task_platforms() -> list[Platform]:
    """`[Platform.AI_TASK]` where HA's AI Task has structured output and attachments.

    `ai_task` arrived in 2025.7; `GenDataTask.structure`, `attachments` and
    `AITaskEntityFeature.SUPPORT_ATTACHMENTS` in 2025.8, which is what ours needs. On older
    releases the platform is simply not set up (and our `ai_task.py` never imported).
    """
    platform = getattr(Platform, "AI_TASK", None)
    if platform is None:
        return []
    try:
        from homeassistant.components.ai_task import (  # type: ignore[attr-defined,unused-ignore]
            AITaskEntityFeature,
        )
    except ImportError:
        return []
    if not hasattr(AITaskEntityFeature, "SUPPORT_ATTACHMENTS"):
        return []
    return [cast(Platform, platform)]


def selector_serializer() -> Callable[[Any], Any] | None:
    """HA's selector-to-JSON-schema serializer: public from 2025.8, private before."""
    for name in ("selector_serializer", "_selector_serializer"):
        value = getattr(llm, name, None)
        if callable(value):
            return cast(Callable[[Any], Any], value)
    return None


def current_chat_log() -> conversation.ChatLog | None:
    """The chat log of the turn whose tool is running (None outside a conversation turn).

    HA sets `conversation.chat_log.current_chat_log` (a context variable, 2025.4-2026.11)
    while an agent handles a turn; tool calls run inside that context.
    """
    try:
        from homeassistant.components.conversation.chat_log import (
            current_chat_log as variable,
        )
    except ImportError:
        return None
    chat_log = variable.get()
    return chat_log if isinstance(chat_log, conversation.ChatLog) else None


class AutomationEditor:
    """HA's own automation editor: what `/api/config/automation/config/<id>` runs.

    The config component's `EditAutomationConfigView` reads and writes `automations.yaml`
    (the file the UI editor owns), `async_validate_config_item` is the validator that view
    uses, and the write is followed by what the view's hook does: `automation.reload` of
    that id, or removing the entity of a deleted one. We keep our own instance of the view
    class (never registered as a route); its lock orders our own writes.
    """

    def __init__(self, view: Any, validator: Callable[..., Awaitable[Any]]) -> None:
        self._view = view
        self._validator = validator

    async def async_validate(self, hass: Any, key: str, config: dict[str, Any]) -> None:
        """Raise `HomeAssistantError`, saying why, when HA would refuse the config."""
        try:
            await self._validator(hass, key, config)
        except _schema_errors() as err:
            raise HomeAssistantError(f"Home Assistant refuses this automation: {err}") from err

    async def async_read(self, hass: Any) -> list[dict[str, Any]]:
        """Every automation of `automations.yaml` (copies)."""
        async with self._view.mutation_lock:
            current = await self._view.read_config(hass)
        return [dict(item) for item in current if isinstance(item, Mapping)]

    async def async_write(self, hass: Any, key: str, config: dict[str, Any] | None) -> None:
        """Create or replace (`config`) or delete (None) the automation `key`, then reload."""
        from homeassistant.helpers import entity_registry as er

        async with self._view.mutation_lock:
            current = await self._view.read_config(hass)
            if config is None:
                if self._view._get_value(hass, current, key) is None:
                    return
                self._view._delete_value(hass, current, key)
            else:
                self._view._write_value(hass, current, key, config)
            path = hass.config.path(self._view.path)
            await hass.async_add_executor_job(_write_yaml, path, current)
        if config is not None:
            await hass.services.async_call("automation", "reload", {"id": key}, blocking=True)
            return
        registry = er.async_get(hass)
        if entity_id := registry.async_get_entity_id("automation", "automation", key):
            registry.async_remove(entity_id)


def _schema_errors() -> tuple[type[Exception], ...]:
    """HA's schema errors: `probatio.Invalid` from 2026.9, `vol.Invalid` before."""
    errors: list[type[Exception]] = []
    for module, name in (("probatio", "Invalid"), ("voluptuous", "Invalid")):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def automation_editor() -> AutomationEditor | None:
    """HA's automation editor where this release has the one we know (2025.4-2026.11)."""
    try:
        from homeassistant.components.automation.config import async_validate_config_item
        from homeassistant.components.config.automation import EditAutomationConfigView
        from homeassistant.config import AUTOMATION_CONFIG_PATH
    except ImportError:
        return None
    needed = ("read_config", "_get_value", "_write_value", "_delete_value")
    if not all(hasattr(EditAutomationConfigView, name) for name in needed):
        return None
    view = EditAutomationConfigView(
        "automation",
        "config",
        AUTOMATION_CONFIG_PATH,
        str,
        data_validator=async_validate_config_item,
    )
    return AutomationEditor(view, async_validate_config_item)


def _write_yaml(path: str, data: list[dict[str, Any]]) -> None:
    """Write the file as the config view does: dump first, then replace atomically."""
    from homeassistant.util.file import write_utf8_file_atomic
    from homeassistant.util.yaml import dump

    write_utf8_file_atomic(path, dump(data))
