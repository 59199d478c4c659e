"""Chat wire models: `POST /api/chat` and `POST /api/chat/stream`."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from .base import RequestModel, ResponseModel

StopReason = Literal["end_turn", "tool_use", "max_tokens"]

# Bounds that keep a single request reasonable; the server also limits the body size.
MAX_MESSAGE_CHARS = 32_000
MAX_MESSAGES = 200
MAX_TOOLS = 128

# Claude's rule for tool names and tool call ids, the one definition of it: the request
# models below enforce it, and the integration maps Home Assistant's other names onto it
# (custom_components/home_mind/tool_names.py).
TOOL_NAME_CHARS: Final = "A-Za-z0-9_-"
MAX_TOOL_NAME_LENGTH: Final = 128
TOOL_NAME_PATTERN: Final = rf"^[{TOOL_NAME_CHARS}]{{1,{MAX_TOOL_NAME_LENGTH}}}$"


class ToolCall(RequestModel):
    """A call of one of HA's tools, chosen by the model and executed by HA."""

    id: str = Field(pattern=TOOL_NAME_PATTERN)
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    arguments: dict[str, Any] = Field(default_factory=dict)


# Images a task may send along (`mode: "task"`): the formats Claude reads, each at most
# Claude's own limit once base64-encoded (5 MB); the integration refuses larger ones first.
ImageMediaType = Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
IMAGE_MEDIA_TYPES: Final = ("image/jpeg", "image/png", "image/gif", "image/webp")
MAX_ATTACHMENT_BYTES: Final = 3_750_000
MAX_ATTACHMENTS: Final = 8


class ImageAttachment(RequestModel):
    """One image of a task (a camera snapshot, a picture), base64 in `data`."""

    media_type: ImageMediaType
    data: str = Field(min_length=4, max_length=(MAX_ATTACHMENT_BYTES + 2) // 3 * 4)

    @field_validator("data")
    @classmethod
    def _base64(cls, value: str) -> str:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as err:
            raise ValueError("data must be base64") from err
        return value


class UserMessage(RequestModel):
    role: Literal["user"] = "user"
    content: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    # Only in task mode (the server refuses them in a chat). None, not [], when there are
    # none: bodies are sent without None fields, so older servers never see the field.
    attachments: list[ImageAttachment] | None = Field(default=None, max_length=MAX_ATTACHMENTS)


class AssistantMessage(RequestModel):
    role: Literal["assistant"] = "assistant"
    content: str = Field(default="", max_length=MAX_MESSAGE_CHARS * 4)
    tool_calls: list[ToolCall] = Field(default_factory=list)


class ToolResultMessage(RequestModel):
    role: Literal["tool_result"] = "tool_result"
    tool_call_id: str = Field(min_length=1, max_length=128)
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    result: Any = None


ChatMessage = Annotated[
    UserMessage | AssistantMessage | ToolResultMessage, Field(discriminator="role")
]


class Speaker(RequestModel):
    """The person behind the turn (HA user id and, when known, their name)."""

    id: str = Field(min_length=1, max_length=128)
    name: str | None = Field(default=None, max_length=200)


class ToolSpec(RequestModel):
    """One of HA's LLM tools: name, description and JSON schema of its arguments."""

    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str = Field(default="", max_length=8_000)
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class TaskSpec(RequestModel):
    """What an AI Task asks for: its name and, for structured output, a JSON schema."""

    name: str = Field(min_length=1, max_length=200)
    # The JSON schema (type object) the answer must follow; the answer is `ChatResponse.data`.
    structure: dict[str, Any] | None = None

    @field_validator("structure")
    @classmethod
    def _object_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and value.get("type", "object") != "object":
            raise ValueError("structure must be a JSON schema of type 'object'")
        return value


ChatMode = Literal["chat", "task"]


class ChatRequest(RequestModel):
    """The body of both chat endpoints: one `message`, or the whole `messages` so far.

    `mode: "task"` is an AI Task (Home Assistant's `ai_task.generate_data`): no voice or
    conversation rules, no memory tools, HA tools only when the request lists them, images
    allowed in user messages, and with `task.structure` the answer comes back as `data`.
    """

    message: str | None = Field(default=None, min_length=1, max_length=MAX_MESSAGE_CHARS)
    messages: list[ChatMessage] | None = Field(default=None, min_length=1, max_length=MAX_MESSAGES)
    conversation_id: str | None = Field(default=None, max_length=128)
    language: str | None = Field(default=None, max_length=35)
    is_voice: bool = False
    speaker: Speaker | None = None
    device_id: str | None = Field(default=None, max_length=128)
    tools: list[ToolSpec] = Field(default_factory=list, max_length=MAX_TOOLS)
    home_prompt: str | None = Field(default=None, max_length=200_000)
    instructions: str | None = Field(default=None, max_length=20_000)
    # The home's IANA time zone: the server states the local time in its per-turn prompt
    # block, so HA's own (ever-changing) time line can stay out of the cached prompt.
    time_zone: str | None = Field(default=None, max_length=64)
    # None is a chat, as on servers before task mode (None fields are not sent).
    mode: ChatMode | None = None
    task: TaskSpec | None = None

    @field_validator("time_zone")
    @classmethod
    def _known_time_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown time zone {value!r}") from err
        return value

    @model_validator(mode="after")
    def _exactly_one_input(self) -> ChatRequest:
        if (self.message is None) == (self.messages is None):
            raise ValueError("give exactly one of 'message' or 'messages'")
        if self.mode != "task":
            if self.task is not None:
                raise ValueError("'task' needs mode 'task'")
            if self.messages and any(
                isinstance(m, UserMessage) and m.attachments for m in self.messages
            ):
                raise ValueError("attachments need mode 'task'")
        elif self.is_voice:
            raise ValueError("a task is never a voice turn")
        return self

    def conversation(self) -> list[UserMessage | AssistantMessage | ToolResultMessage]:
        """The conversation in its neutral form, whichever input field was used."""
        if self.messages is not None:
            return list(self.messages)
        assert self.message is not None
        return [UserMessage(content=self.message)]


class Usage(ResponseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


class Notice(ResponseModel):
    """Something the user should hear about besides the answer (e.g. usage at 80 %)."""

    code: str
    message: str
    level: Literal["info", "warning"] = "info"


class ResponseToolCall(ResponseModel):
    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ChatResponse(ResponseModel):
    conversation_id: str
    reply: str = ""
    tool_calls: list[ResponseToolCall] = Field(default_factory=list)
    stop_reason: StopReason = "end_turn"
    usage: Usage = Field(default_factory=Usage)
    notices: list[Notice] = Field(default_factory=list)
    # Task mode with `task.structure`: the answer as an object of that schema.
    data: dict[str, Any] | None = None


# --- streaming events (`text/event-stream`, the SSE `event:` name is the `type`) ---


class TextDeltaEvent(ResponseModel):
    type: Literal["text_delta"] = "text_delta"
    text: str


class ToolCallEvent(ResponseModel):
    type: Literal["tool_call"] = "tool_call"
    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class DoneEvent(ResponseModel):
    type: Literal["done"] = "done"
    response: ChatResponse


class ErrorEvent(ResponseModel):
    type: Literal["error"] = "error"
    code: str
    detail: str = ""


StreamEvent = TextDeltaEvent | ToolCallEvent | DoneEvent | ErrorEvent


def encode_event(event: StreamEvent) -> bytes:
    """One server-sent event: `event: <type>` and one line of JSON data.

    `done` carries the same object as the non-streaming answer, unwrapped.
    """
    if isinstance(event, DoneEvent):
        data = event.response.model_dump_json()
    else:
        data = event.model_dump_json(exclude={"type"})
    return f"event: {event.type}\ndata: {data}\n\n".encode()


def decode_event(name: str, data: str) -> StreamEvent | None:
    """The typed event for an SSE `event:` name and its `data:` payload.

    None for an event name this version does not know (a newer server may send more);
    raises `ValueError` (pydantic's `ValidationError` included) for a malformed event.
    """
    if name == "text_delta":
        return TextDeltaEvent.model_validate_json(data)
    if name == "tool_call":
        return ToolCallEvent.model_validate_json(data)
    if name == "done":
        return DoneEvent(response=ChatResponse.model_validate_json(data))
    if name == "error":
        return ErrorEvent.model_validate_json(data)
    return None
