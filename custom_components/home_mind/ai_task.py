"""Home Mind's AI Task entity: `ai_task.generate_data` answered by the cloud, with memory.

Set up only where HA's AI Task has structured output and attachments (2025.8+,
`compat.ai_task_platforms`); on older releases this module is never imported.

A task goes to the cloud in task mode (`ChatRequest.mode = "task"`): no voice or
conversation rules, the household's memory in the prompt, HA's tools only when the task
brought an LLM API. Images (camera snapshots, pictures) travel as base64, each at most
`MAX_ATTACHMENT_BYTES`. With a structure the cloud answers `data`, which is checked here
against the task's own schema before anyone gets it.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import voluptuous as vol
from homeassistant.components import (  # type: ignore[attr-defined,unused-ignore]
    ai_task,
    conversation,
)
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import llm
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from homemind_client.errors import HomeMindError
from homemind_client.models import (
    ChatRequest,
    ChatResponse,
    ImageAttachment,
    TaskSpec,
    UserMessage,
    ValidationError,
)
from homemind_client.models.chat import MAX_ATTACHMENT_BYTES, ImageMediaType

from . import HomeMindConfigEntry, compat
from .const import DOMAIN, LOGGER, MAX_TOOL_ITERATIONS, TOTAL_TIMEOUT
from .conversation import chat_messages, home_time_zone, tool_specs
from .entity import installation_device_info
from .errors import async_localized_message, needs_reauth, translation_key_for
from .tool_names import ToolNames

PARALLEL_UPDATES = 0

# Names HA (and cameras) give that Claude knows under another.
_MEDIA_TYPE_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}


async def async_setup_entry(
    hass: HomeAssistant,
    entry: HomeMindConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the AI Task entity of this installation."""
    async_add_entities([HomeMindTaskEntity(entry)])


async def async_task_error(
    hass: HomeAssistant, key: str, **placeholders: str
) -> HomeAssistantError:
    """A translated error in the home's language, its placeholders filled in."""
    message = await async_localized_message(hass, hass.config.language, key)
    for name, value in placeholders.items():
        message = message.replace("{" + name + "}", value)
    return HomeAssistantError(
        message,
        translation_domain=DOMAIN,
        translation_key=key,
        translation_placeholders=placeholders or None,
    )


def _read_image(path: Path) -> bytes:
    return path.read_bytes()


# The first bytes of each image format Claude reads (WebP: "RIFF", size, "WEBP").
_SIGNATURES: tuple[tuple[bytes, ImageMediaType], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniffed_media_type(raw: bytes) -> ImageMediaType | None:
    """The image format the bytes really are (cameras do not always say it right)."""
    for signature, media_type in _SIGNATURES:
        if raw.startswith(signature):
            return media_type
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "image/webp"
    return None


async def async_image_attachments(
    hass: HomeAssistant, attachments: list[Any] | None
) -> list[ImageAttachment]:
    """HA's resolved attachments as images for Claude; a clear error for what cannot go.

    The type sent is the one the bytes have: Claude refuses an image whose declared type
    is not its real one, and some cameras label every snapshot `image/jpeg`.
    """
    images: list[ImageAttachment] = []
    for attachment in attachments or ():
        name = Path(str(attachment.media_content_id)).name or str(attachment.media_content_id)
        declared = _MEDIA_TYPE_ALIASES.get(attachment.mime_type, attachment.mime_type)
        path = Path(attachment.path)
        size = (await hass.async_add_executor_job(path.stat)).st_size
        if size > MAX_ATTACHMENT_BYTES:
            raise await async_task_error(
                hass,
                "task_attachment_too_large",
                name=name,
                size=f"{size / 1_000_000:.1f}",
                limit=f"{MAX_ATTACHMENT_BYTES / 1_000_000:.1f}",
            )
        raw = await hass.async_add_executor_job(_read_image, path)
        media_type = sniffed_media_type(raw)
        if media_type is None:
            raise await async_task_error(
                hass, "task_attachment_unsupported", name=name, mime_type=str(declared)
            )
        data = base64.b64encode(raw).decode()
        images.append(ImageAttachment(media_type=media_type, data=data))
    return images


def structure_schema(structure: vol.Schema | None, api: llm.APIInstance | None) -> Any:
    """The JSON schema of the task's structure (selectors included), or None."""
    if structure is None:
        return None
    serializer = api.custom_serializer if api is not None else compat.selector_serializer()
    schema = compat.tool_parameters_schema(structure, serializer)
    schema.setdefault("type", "object")
    return schema


class HomeMindTaskEntity(ai_task.AITaskEntity):  # type: ignore[misc,unused-ignore]
    """Generates data for automations and scripts; one per Home Mind installation."""

    _attr_has_entity_name = True
    _attr_translation_key = "ai_task"
    _attr_supported_features = (
        ai_task.AITaskEntityFeature.GENERATE_DATA | ai_task.AITaskEntityFeature.SUPPORT_ATTACHMENTS
    )

    def __init__(self, entry: HomeMindConfigEntry) -> None:
        """Set up the task entity of a config entry."""
        self.entry = entry
        self._attr_unique_id = f"{entry.entry_id}_ai_task"
        self._attr_device_info = installation_device_info(
            entry.entry_id, entry.runtime_data.installation
        )

    async def _async_generate_data(self, task: Any, chat_log: conversation.ChatLog) -> Any:
        """Ask the cloud (running HA's tools when the task gave some), then check the answer."""
        api = chat_log.llm_api
        names = ToolNames.for_tools(tool.name for tool in (api.tools if api else ()))
        schema = structure_schema(task.structure, api)
        images = await async_image_attachments(self.hass, task.attachments)
        base: dict[str, Any] = {
            "mode": "task",
            "task": TaskSpec(name=task.name, structure=schema),
            "conversation_id": chat_log.conversation_id,
            "language": self.hass.config.language,
            "tools": tool_specs(api, names) if api else [],
            "home_prompt": self._home_prompt(chat_log),
            "time_zone": home_time_zone(self.hass),
        }
        try:
            response = await self._async_run(chat_log, base, names, images)
        except HomeMindError as err:
            key = translation_key_for(err)
            LOGGER.warning("Home Mind could not run the task (%s, %s)", err.code or key, err.status)
            if needs_reauth(err):
                self.entry.async_start_reauth(self.hass)
            raise await async_task_error(self.hass, key) from err
        except ValidationError as err:
            LOGGER.warning("Could not build a Home Mind task request: %s", err)
            raise await async_task_error(self.hass, "validation_error") from err

        if task.structure is None:
            return ai_task.GenDataTaskResult(
                conversation_id=chat_log.conversation_id, data=response.reply
            )
        return ai_task.GenDataTaskResult(
            conversation_id=chat_log.conversation_id,
            data=await self._async_checked(task.structure, response),
        )

    async def _async_run(
        self,
        chat_log: conversation.ChatLog,
        base: dict[str, Any],
        names: ToolNames,
        images: list[ImageAttachment],
    ) -> ChatResponse:
        """The task's round trips: each answer goes into the chat log, HA runs its tools."""
        client = self.entry.runtime_data.client
        for _iteration in range(MAX_TOOL_ITERATIONS):
            messages = chat_messages(chat_log.content, names)
            request = ChatRequest(messages=_with_images(messages, images), **base)
            response = await client.task(request, timeout=TOTAL_TIMEOUT)
            tool_calls = [
                llm.ToolInput(
                    tool_name=names.to_ha(call.name), tool_args=call.arguments, id=call.id
                )
                for call in response.tool_calls
                if chat_log.llm_api is not None
            ]
            text = response.reply or (
                json.dumps(response.data, ensure_ascii=False) if response.data is not None else None
            )
            content = conversation.AssistantContent(
                agent_id=self.entity_id, content=text, tool_calls=tool_calls or None
            )
            async for _result in chat_log.async_add_assistant_content(content):
                pass
            if not tool_calls:
                return response
        raise await async_task_error(self.hass, "tool_loop_limit")

    async def _async_checked(self, structure: vol.Schema, response: ChatResponse) -> Any:
        """The answer validated by the task's own schema, or a clear error."""
        if response.data is None:
            LOGGER.warning("Home Mind answered a structured task without data")
            raise await async_task_error(self.hass, "task_no_structured_answer")
        try:
            return structure(response.data)
        except vol.Invalid as err:
            LOGGER.warning("Home Mind's answer does not fit the task's structure: %s", err)
            raise await async_task_error(
                self.hass, "task_structure_mismatch", error=str(err)
            ) from err

    @staticmethod
    def _home_prompt(chat_log: conversation.ChatLog) -> str | None:
        first = chat_log.content[0] if chat_log.content else None
        if not isinstance(first, conversation.SystemContent):
            return None
        return compat.stable_system_prompt(first.content) or None


def _with_images(messages: list[Any], images: list[ImageAttachment]) -> list[Any]:
    """The task's images on its instructions (the first user message of the chat log)."""
    if not images:
        return messages
    for index, message in enumerate(messages):
        if isinstance(message, UserMessage):
            with_images = UserMessage(content=message.content, attachments=images)
            return [*messages[:index], with_images, *messages[index + 1 :]]
    return messages
