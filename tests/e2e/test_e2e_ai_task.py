"""AI Task through every real layer (HA 2025.8+): `ai_task.generate_data` → home_mind →
client → cloud_server (task mode) → fake Claude, with the household's memory, a camera
snapshot and structured output."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from homeassistant.components.camera import Camera
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import setup_test_component_platform
from sqlalchemy import select

from cloud_server.billing.models import UsageRecord
from cloud_server.db.engine import DB_SESSIONMAKER
from cloud_server.prompts import VOICE_STYLE
from custom_components.home_mind.compat import ai_task_platforms
from custom_components.home_mind.const import DOMAIN
from tests.fakes.claude import structured, text

from .conftest import ClaudeScript, Cloud, SetupAgent

pytestmark = pytest.mark.skipif(
    not ai_task_platforms(), reason="HA has no AI Task with structure (before 2025.8)"
)

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
FACT = "Ana is our daughter; she is afraid of the dark."


class Doorbell(Camera):
    _attr_name = "Front door"

    def __init__(self) -> None:
        super().__init__()
        self.content_type = "image/png"

    async def async_camera_image(
        self, width: int | None = None, height: int | None = None
    ) -> bytes | None:
        return PNG


async def task_entity(hass: HomeAssistant, cloud: Cloud, setup_agent: SetupAgent) -> str:
    await setup_agent(cloud)
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    entity_id = er.async_get(hass).async_get_entity_id(
        "ai_task", DOMAIN, f"{entry.entry_id}_ai_task"
    )
    assert entity_id is not None
    await hass.services.async_call(DOMAIN, "remember", {"content": FACT}, blocking=True)
    return entity_id


async def generate(hass: HomeAssistant, **data: Any) -> dict[str, Any]:
    response = await hass.services.async_call(
        "ai_task", "generate_data", data, blocking=True, return_response=True
    )
    assert response is not None
    return dict(response)


async def test_a_snapshot_task_with_memory_and_a_structured_answer(
    hass: HomeAssistant, cloud: Cloud, setup_agent: SetupAgent, script: ClaudeScript
) -> None:
    entity_id = await task_entity(hass, cloud, setup_agent)
    setup_test_component_platform(hass, "camera", [Doorbell()])
    assert await async_setup_component(hass, "camera", {"camera": {"platform": "test"}})
    await hass.async_block_till_done()
    script(structured({"who": "Ana", "worried": True}))

    response = await generate(
        hass,
        task_name="Doorbell",
        entity_id=entity_id,
        instructions="Who is at the door (is our daughter Ana there)? Is she worried?",
        structure={
            "who": {"selector": {"text": {}}, "required": True},
            "worried": {"selector": {"boolean": {}}, "required": True},
        },
        attachments=[
            {
                "media_content_id": "media-source://camera/camera.front_door",
                "media_content_type": "image/png",
            }
        ],
    )

    assert response["data"] == {"who": "Ana", "worried": True}
    (sent,) = script.chat_requests
    assert FACT in sent.system_text  # the household's memory in the prompt
    assert 'task named "Doorbell"' in sent.system_text
    assert VOICE_STYLE not in sent.system_text
    assert sent.images == [("image/png", PNG)]
    (result_tool,) = sent.tools  # no HA tools: the task did not ask for any
    assert set(result_tool["input_schema"]["properties"]) == {"who", "worried"}
    async with cloud.app[DB_SESSIONMAKER]() as session:
        rows = list((await session.execute(select(UsageRecord))).scalars())
    assert [row.counts_as_message for row in rows] == [True]  # billed like a message


async def test_a_text_task_and_an_answer_that_does_not_fit(
    hass: HomeAssistant, cloud: Cloud, setup_agent: SetupAgent, script: ClaudeScript
) -> None:
    entity_id = await task_entity(hass, cloud, setup_agent)
    script(
        text("Sleep well, Ana, the night light is on."),
        structured({"count": "many"}),
    )

    story = await generate(
        hass, task_name="Good night", entity_id=entity_id, instructions="Say good night to Ana"
    )
    assert story["data"] == "Sleep well, Ana, the night light is on."

    with pytest.raises(HomeAssistantError, match="does not fit the requested structure"):
        await generate(
            hass,
            task_name="Count",
            entity_id=entity_id,
            instructions="How many lights are on?",
            structure={"count": {"selector": {"number": {}}, "required": True}},
        )
