"""The neutral conversation of the API, checked and mapped to Anthropic's Messages format.

Checks (each failure is a 422 `validation_error` with a specific detail):
- the conversation starts with a user message and ends with a user message or tool results;
- every `tool_result` answers a tool call of the assistant message right before its results;
- every tool call of an assistant message is answered right after it (except for the last message,
  which cannot be last anyway);
- no two assistant messages in a row; tool call ids unique; ids and names in the form Claude
  accepts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from homemind_client.models import (
    AssistantMessage,
    ChatRequest,
    ErrorCode,
    ToolResultMessage,
    ToolSpec,
    UserMessage,
)

from ..errors import ApiError

Message = UserMessage | AssistantMessage | ToolResultMessage


def invalid(detail: str) -> ApiError:
    return ApiError(ErrorCode.VALIDATION_ERROR, detail)


def validate_conversation(conversation: Sequence[Message]) -> None:
    """Raise a 422 `validation_error` naming the first problem, or return."""
    if not conversation:
        raise invalid("The conversation is empty.")
    if not isinstance(conversation[0], UserMessage):
        raise invalid("The conversation must start with a user message (messages[0]).")
    last = conversation[-1]
    if isinstance(last, AssistantMessage):
        raise invalid(
            "The conversation must end with a user message or tool results, "
            "not an assistant message."
        )

    seen_ids: set[str] = set()
    pending: dict[str, str] = {}  # tool calls of the previous assistant message still unanswered
    answered: set[str] = set()
    prev: Message | None = None
    for index, message in enumerate(conversation):
        where = f"messages[{index}]"
        if isinstance(message, ToolResultMessage):
            _check_tool_result(where, message, prev, pending, answered)
        else:
            if pending:
                missing = ", ".join(sorted(pending))
                raise invalid(
                    f"{where}: tool call(s) {missing} of the previous assistant message "
                    "have no tool_result."
                )
            answered = set()
            if isinstance(message, AssistantMessage):
                if isinstance(prev, AssistantMessage):
                    raise invalid(f"{where}: two assistant messages in a row.")
                _check_tool_calls(where, message, seen_ids, pending)
        prev = message
    # The last message is a user message or a result; a result group must be complete.
    if pending:
        missing = ", ".join(sorted(pending))
        raise invalid(f"Tool call(s) {missing} of the last assistant message have no tool_result.")


def _check_tool_result(
    where: str,
    message: ToolResultMessage,
    prev: Message | None,
    pending: dict[str, str],
    answered: set[str],
) -> None:
    """One result answers one pending call of the assistant message just before."""
    if not isinstance(prev, AssistantMessage | ToolResultMessage) or (
        isinstance(prev, AssistantMessage) and not prev.tool_calls
    ):
        raise invalid(f"{where}: a tool_result must follow an assistant message with tool_calls.")
    if message.tool_call_id in answered:
        raise invalid(f"{where}: tool call {message.tool_call_id!r} is answered twice.")
    if message.tool_call_id not in pending:
        raise invalid(
            f"{where}: tool_result {message.tool_call_id!r} does not answer a tool call "
            "of the preceding assistant message."
        )
    del pending[message.tool_call_id]
    answered.add(message.tool_call_id)


def _check_tool_calls(
    where: str, message: AssistantMessage, seen_ids: set[str], pending: dict[str, str]
) -> None:
    """Each call's id is unique in the conversation.

    Ids and names follow TOOL_NAME_PATTERN: the wire model checked them.
    """
    for call in message.tool_calls:
        if call.id in seen_ids:
            raise invalid(f"{where}: tool call id {call.id!r} is used twice.")
        seen_ids.add(call.id)
        pending[call.id] = call.name


def validate_tools(tools: Sequence[ToolSpec]) -> None:
    names: set[str] = set()
    for index, tool in enumerate(tools):
        if tool.name in names:
            raise invalid(f"tools[{index}]: tool {tool.name!r} is listed twice.")
        names.add(tool.name)
        schema_type = tool.parameters.get("type", "object")
        if schema_type != "object":
            raise invalid(f"tools[{index}]: parameters must be a JSON schema of type 'object'.")


def last_user_text(conversation: Sequence[Message]) -> str:
    """The latest thing the person said (the memory query)."""
    for message in reversed(conversation):
        if isinstance(message, UserMessage):
            return message.content
    return ""


def answered_call_ids(conversation: Sequence[Message]) -> list[str]:
    """The ids of the tool calls the trailing tool results answer (empty: the user spoke last)."""
    ids: list[str] = []
    for message in reversed(conversation):
        if not isinstance(message, ToolResultMessage):
            break
        ids.append(message.tool_call_id)
    return ids


def counts_as_message(
    conversation: Sequence[Message],
    is_our_follow_up: Callable[[list[str], str], bool] | None = None,
) -> bool:
    """Whether the request is a new user message (billing counts one per user turn).

    The person speaking last is a message. Tool results are a free follow-up only when
    `is_our_follow_up(call ids, user text)` confirms the calls were issued by this server
    for this turn (see `tool_ids`); without a checker, tool results are a follow-up.
    """
    if not conversation:
        return False
    if isinstance(conversation[-1], UserMessage):
        return True
    if is_our_follow_up is None:
        return False
    return not is_our_follow_up(answered_call_ids(conversation), last_user_text(conversation))


def _result_text(result: Any) -> str:
    if isinstance(result, str):
        return result
    return json.dumps(result, ensure_ascii=False, separators=(",", ":"), default=str)


def to_anthropic_messages(conversation: Sequence[Message]) -> list[dict[str, Any]]:
    """Neutral messages to Anthropic's: consecutive tool results become one user message."""
    out: list[dict[str, Any]] = []
    for message in conversation:
        if isinstance(message, UserMessage):
            # A task's images come before its text, as Claude reads them best.
            blocks: list[dict[str, Any]] = [
                {
                    "type": "image",
                    "source": {
                        "type": "base64",
                        "media_type": image.media_type,
                        "data": image.data,
                    },
                }
                for image in message.attachments or ()
            ]
            blocks.append({"type": "text", "text": message.content})
            if out and out[-1]["role"] == "user":
                # Two user turns in a row (e.g. an unanswered earlier question): one message.
                out[-1]["content"].extend(blocks)
            else:
                out.append({"role": "user", "content": blocks})
        elif isinstance(message, AssistantMessage):
            content: list[dict[str, Any]] = []
            if message.content.strip():
                content.append({"type": "text", "text": message.content})
            content.extend(
                {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
                for call in message.tool_calls
            )
            if content:  # an empty answer of an earlier turn carries nothing Claude needs
                out.append({"role": "assistant", "content": content})
        else:
            is_error = isinstance(message.result, dict) and "error" in message.result
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": _result_text(message.result),
            }
            if is_error:
                block["is_error"] = True
            if out and out[-1]["role"] == "user" and out[-1]["content"][0]["type"] == "tool_result":
                out[-1]["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
    return out


# Claude refuses these at the top level of `input_schema`; HA's converter emits them for
# tools whose arguments are "one of" several shapes. The properties stay and still guide the model.
_TOP_LEVEL_COMBINATORS = ("oneOf", "anyOf", "allOf")


def to_anthropic_tool(tool: ToolSpec) -> dict[str, Any]:
    schema = {k: v for k, v in tool.parameters.items() if k not in _TOP_LEVEL_COMBINATORS}
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    spec: dict[str, Any] = {"name": tool.name, "input_schema": schema}
    if tool.description:
        spec["description"] = tool.description
    return spec


def conversation_of(chat: ChatRequest) -> list[Message]:
    conversation = chat.conversation()
    validate_conversation(conversation)
    validate_tools(chat.tools)
    return conversation
