"""The pure helpers of the agent: options, history, tools, languages."""

from __future__ import annotations

from typing import Any

import pytest
import voluptuous as vol
from homeassistant.components import conversation
from homeassistant.const import CONF_LLM_HASS_API
from homeassistant.core import HomeAssistant
from homeassistant.helpers import llm

from custom_components.home_mind.conversation import chat_messages, llm_api_ids, tool_specs
from custom_components.home_mind.errors import _language_candidates
from homemind_client.models import UserMessage
from homemind_client.models.chat import MAX_MESSAGES, MAX_TOOLS
from tests.ha_tools import tool_result


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ([llm.LLM_API_ASSIST, "other"], [llm.LLM_API_ASSIST, "other"]),
        # Entries written by a single-select form (or by hand) store one id.
        (llm.LLM_API_ASSIST, [llm.LLM_API_ASSIST]),
        ("none", []),
        (None, []),
        ({"assist": True}, []),
    ],
)
def test_llm_api_ids(stored: Any, expected: list[str]) -> None:
    assert llm_api_ids({CONF_LLM_HASS_API: stored}) == expected


def test_history_is_trimmed_to_what_the_server_accepts() -> None:
    contents: list[conversation.Content] = [conversation.SystemContent(content="prompt")]
    for turn in range(150):
        contents.append(conversation.UserContent(content=f"question {turn}"))
        contents.append(conversation.AssistantContent(agent_id="a", content=f"answer {turn}"))
    contents.append(conversation.UserContent(content="last question"))

    messages = chat_messages(contents)

    assert len(messages) <= MAX_MESSAGES
    assert isinstance(messages[0], UserMessage)
    assert messages[-1] == UserMessage(content="last question")
    assert messages[-2].content == "answer 149"


def test_history_without_a_recent_user_message_keeps_the_last_one() -> None:
    contents: list[conversation.Content] = [conversation.UserContent(content="do it all")]
    contents += [
        conversation.AssistantContent(agent_id="a", content=f"step {n}")
        for n in range(MAX_MESSAGES + 5)
    ]

    messages = chat_messages(contents)

    assert [m.content for m in messages] == [f"step {MAX_MESSAGES + 4}"]


def test_empty_contents_are_not_sent() -> None:
    contents: list[conversation.Content] = [
        conversation.UserContent(content=""),
        conversation.AssistantContent(agent_id="a", content=None),
        conversation.UserContent(content="hi"),
    ]

    assert chat_messages(contents) == [UserMessage(content="hi")]


class _Tool(llm.Tool):
    def __init__(self, number: int) -> None:
        self.name = f"tool_{number}"
        self.description = "x" * 9000
        self.parameters = vol.Schema({vol.Optional("value"): int})

    async def async_call(
        self, hass: HomeAssistant, tool_input: llm.ToolInput, llm_context: llm.LLMContext
    ) -> dict[str, Any]:
        return tool_result({})


class _API(llm.API):
    async def async_get_api_instance(self, llm_context: llm.LLMContext) -> llm.APIInstance:
        raise NotImplementedError


def test_tools_are_capped_to_the_server_limit(
    hass: HomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    instance = llm.APIInstance(
        api=_API(hass=hass, id="many", name="Many"),
        api_prompt="",
        llm_context=None,  # type: ignore[arg-type]
        tools=[_Tool(n) for n in range(MAX_TOOLS + 3)],
    )

    specs = tool_specs(instance)

    assert len(specs) == MAX_TOOLS
    assert specs[0].name == "tool_0"
    assert len(specs[0].description) == 8000
    # HA's converter of the release (voluptuous_openapi or probatio) words it its own way.
    assert specs[0].parameters["type"] == "object"
    assert specs[0].parameters["properties"] == {"value": {"type": "integer"}}
    assert not specs[0].parameters.get("required")
    assert "expose fewer scripts" in caplog.text


@pytest.mark.parametrize(
    ("language", "expected"),
    [("de", ["de"]), ("de-CH", ["de-CH", "de"]), ("pt_BR", ["pt_BR", "pt"]), (None, []), ("", [])],
)
def test_language_candidates(language: str | None, expected: list[str]) -> None:
    assert _language_candidates(language) == expected
