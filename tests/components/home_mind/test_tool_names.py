"""HA's tool names mapped to names Claude accepts, and back."""

from __future__ import annotations

import re

import pytest
from homeassistant.components import conversation
from homeassistant.helpers import llm

from custom_components.home_mind.conversation import chat_messages
from custom_components.home_mind.tool_names import ToolNames
from homemind_client.models import TOOL_NAME_PATTERN, AssistantMessage, ToolResultMessage

VALID = re.compile(TOOL_NAME_PATTERN)


@pytest.mark.parametrize(
    "name",
    # 2025.4 and 2025.8+ (`__` namespaces, 2026.9's domain prefixes): nothing changes.
    ["HassTurnOn", "myapi__Do_Thing", "intent__HassTurnOn", "script-1", "x" * 128],
)
def test_valid_names_are_unchanged(name: str) -> None:
    names = ToolNames.for_tools([name, "other.tool"])

    assert names.to_wire(name) == name
    assert names.to_ha(name) == name


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("myapi.Do_Thing", "myapi_Do_Thing"),
        ("assist.HassTurnOn", "assist_HassTurnOn"),
        ("Küche licht", "K_che_licht"),
        ("", "_"),
    ],
)
def test_invalid_names_are_cleaned_and_mapped_back(name: str, wire: str) -> None:
    names = ToolNames.for_tools([name, "HassTurnOn"])

    assert names.to_wire(name) == wire
    assert names.to_ha(wire) == name


def test_long_names_are_cut_to_128() -> None:
    long = "api." + "a" * 200
    names = ToolNames.for_tools([long])

    wire = names.to_wire(long)
    assert wire == ("api_" + "a" * 200)[:128]
    assert names.to_ha(wire) == long


def test_collisions_get_distinct_suffixes_whatever_the_order() -> None:
    tools = [
        "myapi.Do_Thing",
        "myapi:Do_Thing",
        "myapi_Do_Thing",
        "b." + "x" * 130,
        "b:" + "x" * 130,
    ]

    forward = ToolNames.for_tools(tools)
    backward = ToolNames.for_tools(reversed(tools))

    wires = [forward.to_wire(name) for name in tools]
    assert wires == [backward.to_wire(name) for name in tools]
    assert len(set(wires)) == len(tools)
    assert all(VALID.fullmatch(wire) for wire in wires)
    # The name that was already valid keeps it; the cleaned-up ones are told apart.
    assert wires[2] == "myapi_Do_Thing"
    assert re.fullmatch(r"myapi_Do_Thing_[0-9a-f]{6}", wires[0])
    assert re.fullmatch(r"myapi_Do_Thing_[0-9a-f]{6}", wires[1])
    assert len(wires[3]) == len(wires[4]) == 128
    assert [forward.to_ha(wire) for wire in wires] == tools


def test_cleaned_name_never_takes_a_valid_tools_name() -> None:
    names = ToolNames.for_tools(["a.b", "a_b"])

    assert names.to_wire("a_b") == "a_b"
    assert names.to_wire("a.b") != "a_b"
    assert names.to_ha(names.to_wire("a.b")) == "a.b"


def test_unknown_names_pass_and_old_history_is_cleaned() -> None:
    names = ToolNames.for_tools(["HassTurnOn"])

    # A tool the model made up reaches HA unchanged (HA answers "not found").
    assert names.to_ha("NoSuchTool") == "NoSuchTool"
    # A tool HA no longer offers may still be in the history: still a valid name.
    assert names.to_wire("gone.tool") == "gone_tool"


def test_history_carries_wire_names() -> None:
    names = ToolNames.for_tools(["myapi.Do_Thing"])
    contents: list[conversation.Content] = [
        conversation.UserContent(content="do it"),
        conversation.AssistantContent(
            agent_id="a",
            tool_calls=[
                llm.ToolInput(tool_name="myapi.Do_Thing", tool_args={"x": 1}, id="c1"),
                llm.ToolInput(tool_name="old.tool", tool_args={}, id="c2"),
            ],
        ),
        conversation.ToolResultContent(
            agent_id="a", tool_call_id="c1", tool_name="myapi.Do_Thing", tool_result={}
        ),
        conversation.ToolResultContent(
            agent_id="a", tool_call_id="c2", tool_name="old.tool", tool_result={}
        ),
    ]

    _user, call, result_1, result_2 = chat_messages(contents, names)

    assert isinstance(call, AssistantMessage)
    assert [c.name for c in call.tool_calls] == ["myapi_Do_Thing", "old_tool"]
    assert isinstance(result_1, ToolResultMessage) and result_1.name == "myapi_Do_Thing"
    assert isinstance(result_2, ToolResultMessage) and result_2.name == "old_tool"
