"""The Home Mind conversation agent.

HA owns the conversation (`ChatLog`), the system prompt and the tools; the Home Mind cloud
owns the model and the memory. Each model round trip sends the whole conversation in the
neutral wire form; text streams into the chat log as it arrives and HA itself executes the
tool calls (on exposed entities only), then the results go back in the next round trip.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from homeassistant.components import conversation
from homeassistant.const import CONF_LLM_HASS_API, MATCH_ALL
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, TemplateError
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import llm, template
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from homemind_client.errors import HomeMindError
from homemind_client.models import (
    AssistantMessage,
    ChatRequest,
    DoneEvent,
    Notice,
    Speaker,
    TextDeltaEvent,
    ToolCall,
    ToolCallEvent,
    ToolResultMessage,
    ToolSpec,
    UserMessage,
    ValidationError,
)
from homemind_client.models.chat import MAX_MESSAGES, MAX_TOOLS

from . import HomeMindConfigEntry, compat
from .const import (
    CONF_INSTRUCTIONS,
    CONF_OFFLINE_FALLBACK,
    DEFAULT_OFFLINE_FALLBACK,
    DOMAIN,
    LOGGER,
    MAX_TOOL_ITERATIONS,
    NO_LLM_API,
    TOTAL_TIMEOUT,
)
from .entity import installation_device_info
from .errors import (
    async_localized_message,
    async_spoken_error,
    needs_reauth,
    translation_key_for,
)
from .fallback import CloudBackoff, async_answer_locally, is_offline_error
from .follow_up import asks_back
from .tool_names import ToolNames

# Requests go to a cloud service that scales on its own: no limit on parallel turns.
PARALLEL_UPDATES = 0

_MAX_TOOL_DESCRIPTION = 8_000

# Server notices we speak in the user's language (`exceptions.notice_<code>` strings).
NOTICE_CODES = frozenset(
    {"usage_warning", "usage_allowance_reached", "usage_over_allowance", "payment_failed"}
)

type WireMessage = UserMessage | AssistantMessage | ToolResultMessage


async def async_setup_entry(
    hass: HomeAssistant,
    entry: HomeMindConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the conversation agent of this installation."""
    async_add_entities([HomeMindConversationEntity(entry)])


def llm_api_ids(options: Mapping[str, Any]) -> list[str]:
    """The LLM APIs the user enabled (stored as a list; a single id on older entries)."""
    value = options.get(CONF_LLM_HASS_API)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    return [api_id for api_id in value if isinstance(api_id, str) and api_id != NO_LLM_API]


def chat_messages(
    contents: Iterable[conversation.Content], names: ToolNames | None = None
) -> list[WireMessage]:
    """The chat log in the neutral wire form (HA's system prompt travels separately).

    Tool names are the wire names of `names`, as in the request's `tools`.
    """
    names = names or ToolNames()
    messages: list[WireMessage] = []
    for content in contents:
        if isinstance(content, conversation.UserContent):
            if content.content:
                messages.append(UserMessage(content=content.content))
        elif isinstance(content, conversation.AssistantContent):
            tool_calls = [
                ToolCall(id=call.id, name=names.to_wire(call.tool_name), arguments=call.tool_args)
                for call in content.tool_calls or ()
                # Provider-executed tools (2025.9+) never reach us; skip them if present.
                if not getattr(call, "external", False)
            ]
            if content.content or tool_calls:
                messages.append(
                    AssistantMessage(content=content.content or "", tool_calls=tool_calls)
                )
        elif isinstance(content, conversation.ToolResultContent):
            messages.append(
                ToolResultMessage(
                    tool_call_id=content.tool_call_id,
                    name=names.to_wire(content.tool_name),
                    result=compat.tool_result_data(content),
                )
            )
    return _trim_history(messages)


def _trim_history(messages: list[WireMessage]) -> list[WireMessage]:
    """Keep the newest messages the server accepts, starting at a user message."""
    if len(messages) <= MAX_MESSAGES:
        return messages
    kept = messages[-MAX_MESSAGES:]
    for index, message in enumerate(kept):
        if isinstance(message, UserMessage):
            return kept[index:]
    return kept[-1:]


def tool_specs(api: llm.APIInstance, names: ToolNames | None = None) -> list[ToolSpec]:
    """The schemas of HA's tools for this turn, under their wire names; they run in HA."""
    names = names or ToolNames.for_tools(tool.name for tool in api.tools)
    tools = api.tools
    if len(tools) > MAX_TOOLS:
        LOGGER.warning(
            "%d LLM tools are available but Home Mind accepts %d; expose fewer scripts",
            len(tools),
            MAX_TOOLS,
        )
        tools = tools[:MAX_TOOLS]
    return [
        ToolSpec(
            name=names.to_wire(tool.name),
            description=(tool.description or "")[:_MAX_TOOL_DESCRIPTION],
            parameters=compat.tool_parameters_schema(tool.parameters, api.custom_serializer),
        )
        for tool in tools
    ]


def is_voice_turn(hass: HomeAssistant, user_input: conversation.ConversationInput) -> bool:
    """Whether the turn came from a voice device, so the answer should be spoken text.

    The rule: a satellite id (HA 2025.10+) means voice. Otherwise the turn needs a
    `device_id` whose device has an `assist_satellite` entity, or the Assist pipeline
    selector (`select` with a `-pipeline` unique id) that every voice device integration
    (ESPHome, Wyoming, VoIP) adds through `assist_pipeline`. Typed chat in the UI has no
    device and is never voice. A phone's voice input without a device stays "typed".
    """
    if compat.satellite_id(user_input):
        return True
    if not user_input.device_id:
        return False
    registry = er.async_get(hass)
    for entity in er.async_entries_for_device(registry, user_input.device_id):
        if entity.domain == "assist_satellite":
            return True
        if entity.domain == "select" and entity.unique_id.endswith("-pipeline"):
            return True
    return False


def home_time_zone(hass: HomeAssistant) -> str | None:
    """The home's IANA time zone, for the local time in the server's per-turn prompt."""
    name = hass.config.time_zone
    try:
        # HA loaded this zone at startup, so the lookup is served from zoneinfo's cache.
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # The request model refuses unknown zones; the server then falls back to UTC.
        return None
    return name


async def async_speaker(hass: HomeAssistant, user_id: str | None) -> Speaker | None:
    """The HA user behind the turn, named after their person entity when there is one."""
    if not user_id:
        return None
    for state in hass.states.async_all("person"):
        if state.attributes.get("user_id") == user_id:
            return Speaker(id=user_id, name=state.name)
    user = await hass.auth.async_get_user(user_id)
    return Speaker(id=user_id, name=user.name if user is not None else None)


@dataclass(slots=True)
class _TurnProgress:
    """Whether the cloud sent anything this turn (then HA's own agent must not redo it)."""

    answered: bool = False
    # Claude's text of the current model round trip (the last one is the turn's answer).
    answer: str = ""


class HomeMindConversationEntity(conversation.ConversationEntity):
    """The agent: one per Home Mind installation."""

    _attr_has_entity_name = True
    _attr_name = None
    _attr_translation_key = "agent"  # the icon in icons.json
    # Inert on HA 2025.4/2025.5 (deltas still drive the pipeline's live text); from 2025.6
    # it lets the voice pipeline start speaking before the answer is complete.
    _attr_supports_streaming = True

    def __init__(self, entry: HomeMindConfigEntry) -> None:
        """Set up the agent of a config entry."""
        self.entry = entry
        self._attr_unique_id = entry.entry_id
        self._offline_fallback = bool(
            entry.options.get(CONF_OFFLINE_FALLBACK, DEFAULT_OFFLINE_FALLBACK)
        )
        self._backoff = CloudBackoff()
        self._attr_device_info = installation_device_info(
            entry.entry_id, entry.runtime_data.installation
        )
        if llm_api_ids(entry.options):
            # Tells the pipeline this agent controls devices (affects local-intent filtering).
            self._attr_supported_features = conversation.ConversationEntityFeature.CONTROL

    @property
    def supported_languages(self) -> Literal["*"]:
        """Claude answers in any language."""
        return MATCH_ALL

    async def _async_handle_message(
        self,
        user_input: conversation.ConversationInput,
        chat_log: conversation.ChatLog,
    ) -> conversation.ConversationResult:
        """Answer one turn, running HA's tools until the model is done."""
        try:
            await compat.provide_llm_data(
                chat_log, user_input, DOMAIN, llm_api_ids(self.entry.options), None
            )
        except conversation.ConverseError as err:
            return err.as_conversation_result()
        if self._offline_fallback and not self._backoff.cloud_allowed():
            # The cloud failed moments ago: answer at once instead of waiting again.
            return await async_answer_locally(self.hass, user_input, chat_log, self.entity_id)

        context_user_id = user_input.context.user_id if user_input.context else None
        speaker = await async_speaker(self.hass, context_user_id)
        # Names Claude accepts for HA's tools (HA 2025.5-2025.7 puts dots in some).
        names = ToolNames.for_tools(
            tool.name for tool in (chat_log.llm_api.tools if chat_log.llm_api else ())
        )
        base = {
            "conversation_id": chat_log.conversation_id,
            "language": user_input.language,
            "is_voice": is_voice_turn(self.hass, user_input),
            "speaker": speaker,
            "device_id": user_input.device_id,
            "tools": tool_specs(chat_log.llm_api, names) if chat_log.llm_api else [],
            "home_prompt": self._home_prompt(chat_log),
            "instructions": self._instructions(speaker),
            "time_zone": home_time_zone(self.hass),
        }

        progress = _TurnProgress()
        try:
            for _iteration in range(MAX_TOOL_ITERATIONS):
                request = ChatRequest(messages=chat_messages(chat_log.content, names), **base)
                deltas = self._async_deltas(chat_log, request, names, user_input.language, progress)
                async for _content in chat_log.async_add_delta_content_stream(
                    self.entity_id, deltas
                ):
                    pass
                if not chat_log.unresponded_tool_results:
                    break
            else:
                raise await async_spoken_error(self.hass, user_input.language, "tool_loop_limit")
        except HomeMindError as err:
            if self._offline_fallback and is_offline_error(err) and not progress.answered:
                # Nothing of the answer was heard or done yet: HA's own agent takes over.
                delay = self._backoff.record_failure()
                LOGGER.warning(
                    "Home Mind is unreachable (%s); HA's own agent answers, next try in %s s",
                    err.code or type(err).__name__,
                    int(delay.total_seconds()),
                )
                return await async_answer_locally(self.hass, user_input, chat_log, self.entity_id)
            raise await self._async_spoken_client_error(user_input, err) from err
        except ValidationError as err:
            # The conversation does not fit the wire limits; say so instead of crashing.
            LOGGER.warning("Could not build a Home Mind request: %s", err)
            raise await async_spoken_error(
                self.hass, user_input.language, "validation_error"
            ) from err

        if self._backoff.record_success():
            LOGGER.info("Home Mind is reachable again")
        result = compat.result_from_chat_log(user_input, chat_log)
        # Decided on Claude's answer, not on notices spoken after it (follow_up.py).
        result.continue_conversation = asks_back(progress.answer, user_input.language)
        return result

    async def _async_deltas(
        self,
        chat_log: conversation.ChatLog,
        request: ChatRequest,
        names: ToolNames,
        language: str | None,
        progress: _TurnProgress,
    ) -> AsyncGenerator[conversation.AssistantContentDeltaDict]:
        """The cloud's stream as chat-log deltas (text and tool calls, nothing else)."""
        yield {"role": "assistant"}
        client = self.entry.runtime_data.client
        wrote_text = False
        progress.answer = ""
        async for event in client.chat_stream(request, total_timeout=TOTAL_TIMEOUT):
            progress.answered = True
            if isinstance(event, TextDeltaEvent):
                if event.text:
                    wrote_text = True
                    progress.answer += event.text
                    yield {"content": event.text}
            elif isinstance(event, ToolCallEvent):
                if chat_log.llm_api is None:
                    # HA would refuse the call; no tools were offered, so nothing is lost.
                    LOGGER.warning("Ignoring call of %s: no LLM API is enabled", event.name)
                    continue
                yield {
                    "tool_calls": [
                        # HA's own name, so HA finds and runs the tool.
                        llm.ToolInput(
                            tool_name=names.to_ha(event.name),
                            tool_args=event.arguments,
                            id=event.id,
                        )
                    ]
                }
            elif isinstance(event, DoneEvent) and event.response.stop_reason != "tool_use":
                # Things the user should hear besides the answer (e.g. usage almost used up),
                # each at most once per conversation: the server repeats some every turn.
                said = [
                    content.content
                    for content in chat_log.content
                    if isinstance(content, conversation.AssistantContent) and content.content
                ]
                for notice in event.response.notices:
                    message = await self._async_notice_text(notice, language)
                    if any(message in earlier for earlier in said):
                        continue
                    yield {"content": f" {message}" if wrote_text else message}
                    wrote_text = True

    async def _async_notice_text(self, notice: Notice, language: str | None) -> str:
        """A notice in the user's language; the server's (English) text for unknown codes."""
        if notice.code not in NOTICE_CODES:
            return notice.message
        return await async_localized_message(self.hass, language, f"notice_{notice.code}")

    async def _async_spoken_client_error(
        self, user_input: conversation.ConversationInput, err: HomeMindError
    ) -> HomeAssistantError:
        key = translation_key_for(err)
        LOGGER.warning(
            "Home Mind could not answer (%s, status %s, request %s)",
            err.code or key,
            err.status,
            err.request_id,
        )
        if needs_reauth(err):
            self.entry.async_start_reauth(self.hass)
        return await async_spoken_error(self.hass, user_input.language, key)

    @staticmethod
    def _home_prompt(chat_log: conversation.ChatLog) -> str | None:
        """What HA says about the home: its system prompt minus the clock and its defaults.

        The server caches the prompt up to and including this text, so it must stay the
        same from turn to turn; the local time reaches the model through `time_zone`.
        """
        # HA keeps its system prompt in the first content of every chat log.
        first = chat_log.content[0]
        if not isinstance(first, conversation.SystemContent):
            return None
        return compat.stable_system_prompt(first.content) or None

    def _instructions(self, speaker: Speaker | None) -> str | None:
        """The user's own instructions, a template rendered for this turn."""
        raw = self.entry.options.get(CONF_INSTRUCTIONS)
        if not isinstance(raw, str) or not raw.strip():
            return None
        try:
            rendered = template.Template(raw, self.hass).async_render(
                {
                    "ha_name": self.hass.config.location_name,
                    "user_name": speaker.name if speaker else None,
                },
                parse_result=False,
            )
        except TemplateError as err:
            # A broken template should not silence the assistant: send the text as is.
            LOGGER.warning("Could not render the Home Mind instructions: %s", err)
            rendered = raw
        return str(rendered).strip() or None
