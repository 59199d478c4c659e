"""The LLM-tool shapes of the running Home Assistant, for tests that run on 2025.4 and 2026.x."""

from __future__ import annotations

import inspect
from contextlib import AbstractContextManager
from typing import Any

from homeassistant.components import conversation
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import chat_session as ha_chat_session
from homeassistant.helpers import llm
from homeassistant.helpers.chat_session import ChatSession


def intent_tool_name(intent_type: str) -> str:
    """The Assist API's name of an intent tool.

    HA 2026.x namespaces every API's tools (`llm.NamespacedTool`: `intent__HassTurnOn`);
    2025.4 names them by intent type alone.
    """
    return f"intent__{intent_type}" if hasattr(llm, "NamespacedTool") else intent_type


TURN_ON = intent_tool_name("HassTurnOn")


def tool_result(data: dict[str, Any]) -> Any:
    """What a test tool returns: `llm.ToolResult` where HA has it (2026.x), else the dict."""
    result_type = getattr(llm, "ToolResult", None)
    return result_type(data=data) if result_type is not None else data


def tool_result_content(
    agent_id: str, tool_call_id: str, tool_name: str, data: dict[str, Any]
) -> conversation.ToolResultContent:
    """A chat log's tool result: `result=ToolResult` on 2026.x, `tool_result=` before."""
    fields = conversation.ToolResultContent.__dataclass_fields__
    payload: dict[str, Any] = (
        {"result": tool_result(data)} if "result" in fields else {"tool_result": data}
    )
    return conversation.ToolResultContent(
        agent_id=agent_id, tool_call_id=tool_call_id, tool_name=tool_name, **payload
    )


def chat_session(hass: HomeAssistant) -> AbstractContextManager[ChatSession]:
    """A new chat session; HA 2026.11 wants the turn's `context=` as well."""
    parameters = inspect.signature(ha_chat_session.async_get_chat_session).parameters
    extra: dict[str, Any] = {"context": Context()} if "context" in parameters else {}
    return ha_chat_session.async_get_chat_session(hass, **extra)
