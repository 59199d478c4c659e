"""The AI Task entity (HA 2025.8+) against the scripted Home Mind server.

On HA 2025.4 these tests skip, and one test checks the integration sets up without an
AI Task platform and without logging an error.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest
import voluptuous as vol
from homeassistant.components.camera import Camera
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import llm, selector
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    setup_test_component_platform,
)

from custom_components.home_mind.compat import ai_task_platforms
from custom_components.home_mind.const import DOMAIN
from homemind_client.models import ChatResponse, DoneEvent, ErrorCode
from homemind_client.models.chat import MAX_ATTACHMENT_BYTES

from .fake_homemind import FakeHomeMind, Problem, tool_call

HAS_AI_TASK = bool(ai_task_platforms())
needs_ai_task = pytest.mark.skipif(not HAS_AI_TASK, reason="HA has no AI Task (before 2025.8)")

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def done(reply: str = "", data: dict[str, Any] | None = None) -> list[Any]:
    return [DoneEvent(response=ChatResponse(conversation_id="conv", reply=reply, data=data))]


class Doorbell(Camera):
    """A camera whose snapshot is whatever the test sets."""

    _attr_name = "Front door"

    def __init__(self, content: bytes, content_type: str = "image/png") -> None:
        super().__init__()
        self._content = content
        self.content_type = content_type

    async def async_camera_image(
        self, width: int | None = None, height: int | None = None
    ) -> bytes | None:
        return self._content


@pytest.fixture
def task_entity(hass: HomeAssistant, init_integration: MockConfigEntry) -> str:
    entity_id = er.async_get(hass).async_get_entity_id(
        "ai_task", DOMAIN, f"{init_integration.entry_id}_ai_task"
    )
    assert entity_id is not None
    return entity_id


async def generate(hass: HomeAssistant, entity_id: str, **kwargs: Any) -> Any:
    from homeassistant.components import ai_task

    return await ai_task.async_generate_data(
        hass, task_name="Test task", entity_id=entity_id, **kwargs
    )


async def add_doorbell(hass: HomeAssistant, camera: Doorbell) -> None:
    setup_test_component_platform(hass, "camera", [camera])
    assert await async_setup_component(hass, "camera", {"camera": {"platform": "test"}})
    await hass.async_block_till_done()


@pytest.mark.skipif(HAS_AI_TASK, reason="checks the HA releases without AI Task")
async def test_without_ai_task_the_integration_sets_up_quietly(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, home: None, caplog: Any
) -> None:
    caplog.set_level(logging.WARNING)

    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()

    assert hass.states.async_entity_ids("ai_task") == []
    assert hass.states.async_entity_ids("conversation")  # the agent is there
    # HA's and ours (asyncio's slow-callback notes on a loaded machine are not about us).
    logged = [
        record.getMessage()
        for record in caplog.records
        if record.levelno >= logging.WARNING
        and record.name.startswith(("homeassistant", "custom_components"))
        # HA's standing note about every custom integration, logged on its first load.
        and "has not been tested by Home Assistant" not in record.getMessage()
    ]
    assert logged == []


@needs_ai_task
async def test_a_task_answers_with_text_in_task_mode(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, task_entity: str
) -> None:
    fake_homemind.script(done("The garage door is open, close it before bed!"))

    result = await generate(hass, task_entity, instructions="Write a short notification")

    assert result.data == "The garage door is open, close it before bed!"
    (body,) = fake_homemind.chat_requests
    assert body["mode"] == "task"
    assert body["task"] == {"name": "Test task"}  # no structure: a text answer
    assert body["is_voice"] is False
    # The entry enables Assist, but a task gets HA's tools only when it asks for them.
    assert body["tools"] == []
    assert body["messages"] == [{"role": "user", "content": "Write a short notification"}]
    assert body["language"] == hass.config.language
    assert hass.states.get(task_entity) is not None


@needs_ai_task
async def test_a_structured_task_sends_the_schema_and_checks_the_answer(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, task_entity: str
) -> None:
    structure = vol.Schema(
        {vol.Required("characters"): selector.selector({"text": {"multiple": True}})}
    )
    fake_homemind.script(done(data={"characters": ["Mario", "Luigi"]}))

    result = await generate(
        hass, task_entity, instructions="Two plumbers, please", structure=structure
    )

    assert result.data == {"characters": ["Mario", "Luigi"]}
    schema = fake_homemind.chat_requests[0]["task"]["structure"]
    assert schema["type"] == "object"
    assert schema["required"] == ["characters"]
    assert schema["properties"]["characters"]["type"] == "array"


@needs_ai_task
async def test_an_answer_that_does_not_fit_the_structure_is_a_clear_error(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, task_entity: str
) -> None:
    structure = vol.Schema({vol.Required("count"): int})
    fake_homemind.script(done(data={"count": "many"}))

    with pytest.raises(HomeAssistantError) as caught:
        await generate(hass, task_entity, instructions="Count", structure=structure)

    assert caught.value.translation_key == "task_structure_mismatch"
    assert str(caught.value).startswith("Home Mind's answer does not fit the requested structure")
    assert "count" in str(caught.value)


@needs_ai_task
async def test_a_structured_task_without_data_is_a_clear_error(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, task_entity: str
) -> None:
    fake_homemind.script(done("Here you go: Mario and Luigi."))

    with pytest.raises(HomeAssistantError) as caught:
        await generate(
            hass, task_entity, instructions="x", structure=vol.Schema({vol.Required("a"): str})
        )

    assert caught.value.translation_key == "task_no_structured_answer"


@needs_ai_task
async def test_a_camera_snapshot_goes_along_as_an_image(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, task_entity: str
) -> None:
    await add_doorbell(hass, Doorbell(PNG))
    fake_homemind.script(done("A parcel on the doormat."))

    result = await generate(
        hass,
        task_entity,
        instructions="What is at the door?",
        attachments=[{"media_content_id": "media-source://camera/camera.front_door"}],
    )

    assert result.data == "A parcel on the doormat."
    (message,) = fake_homemind.chat_requests[0]["messages"]
    assert message["attachments"] == [
        {"media_type": "image/png", "data": base64.b64encode(PNG).decode()}
    ]


@needs_ai_task
async def test_an_image_above_the_cap_is_refused_before_sending(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, task_entity: str
) -> None:
    await add_doorbell(hass, Doorbell(PNG + b"\0" * MAX_ATTACHMENT_BYTES))

    with pytest.raises(HomeAssistantError) as caught:
        await generate(
            hass,
            task_entity,
            instructions="What is at the door?",
            attachments=[{"media_content_id": "media-source://camera/camera.front_door"}],
        )

    assert caught.value.translation_key == "task_attachment_too_large"
    assert "front_door" in str(caught.value)
    assert "3.8 MB" in str(caught.value)
    assert fake_homemind.chat_requests == []


@needs_ai_task
async def test_an_attachment_that_is_no_image_is_refused(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, task_entity: str
) -> None:
    await add_doorbell(hass, Doorbell(b"BM fake bitmap", content_type="image/bmp"))

    with pytest.raises(HomeAssistantError) as caught:
        await generate(
            hass,
            task_entity,
            instructions="What is at the door?",
            attachments=[{"media_content_id": "media-source://camera/camera.front_door"}],
        )

    assert caught.value.translation_key == "task_attachment_unsupported"
    assert "image/bmp" in str(caught.value)
    assert fake_homemind.chat_requests == []


@needs_ai_task
async def test_a_refusal_of_the_cloud_is_a_translated_error(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, task_entity: str
) -> None:
    fake_homemind.script(Problem(ErrorCode.USAGE_LIMIT_REACHED))

    with pytest.raises(HomeAssistantError) as caught:
        await generate(hass, task_entity, instructions="Anything")

    assert caught.value.translation_key == "usage_limit_reached"
    assert str(caught.value) == (
        "You have used all the messages of your Home Mind plan for this month."
    )


class GarageTool(llm.Tool):
    """A tool of a test LLM API: reports the garage door and records that it ran."""

    name = "GetGarageDoor"
    description = "Whether the garage door is open."
    parameters = vol.Schema({})

    def __init__(self, calls: list[dict[str, Any]]) -> None:
        self.calls = calls

    async def async_call(
        self, hass: HomeAssistant, tool_input: llm.ToolInput, llm_context: llm.LLMContext
    ) -> Any:
        self.calls.append(tool_input.tool_args)
        result = {"open": True}
        wrap = getattr(llm, "ToolResult", None)
        return wrap(data=result) if wrap is not None else result


class GarageAPI(llm.API):
    def __init__(self, hass: HomeAssistant, calls: list[dict[str, Any]]) -> None:
        super().__init__(hass=hass, id="garage_test", name="Garage")
        self.calls = calls

    async def async_get_api_instance(self, llm_context: llm.LLMContext) -> llm.APIInstance:
        return llm.APIInstance(
            api=self, api_prompt="", llm_context=llm_context, tools=[GarageTool(self.calls)]
        )


@needs_ai_task
async def test_a_task_that_brings_an_llm_api_gets_its_tools_run_by_ha(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, task_entity: str
) -> None:
    calls: list[dict[str, Any]] = []
    api = GarageAPI(hass, calls)
    llm.async_register_api(hass, api)
    fake_homemind.script(tool_call("call-1", "GetGarageDoor", {}), done("The garage is open."))

    result = await generate(hass, task_entity, instructions="Is the garage open?", llm_api=api)

    assert result.data == "The garage is open."
    assert calls == [{}]  # HA ran the tool
    first, second = fake_homemind.chat_requests
    assert [tool["name"] for tool in first["tools"]] == ["GetGarageDoor"]
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "tool_result"]
    assert second["messages"][-1]["tool_call_id"] == "call-1"
    assert second["messages"][-1]["result"] == {"open": True}


@needs_ai_task
async def test_a_snapshot_labelled_wrongly_goes_with_its_real_type(
    hass: HomeAssistant, fake_homemind: FakeHomeMind, task_entity: str
) -> None:
    await add_doorbell(hass, Doorbell(PNG, content_type="image/jpeg"))
    fake_homemind.script(done("Nobody."))

    await generate(
        hass,
        task_entity,
        instructions="What is at the door?",
        attachments=[{"media_content_id": "media-source://camera/camera.front_door"}],
    )

    (message,) = fake_homemind.chat_requests[0]["messages"]
    assert [image["media_type"] for image in message["attachments"]] == ["image/png"]
