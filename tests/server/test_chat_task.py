"""AI Tasks on the chat endpoints (`mode: "task"`): real server, real SDK, fake Claude."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from cloud_server.app import create_app
from cloud_server.billing.models import UsageRecord
from cloud_server.chat.hooks import MEMORY_PROVIDER
from cloud_server.db.engine import DB_SESSIONMAKER
from cloud_server.prompts import PERSONA, VOICE_STYLE
from cloud_server.settings import Settings
from homemind_client.models import ChatRequest, UserMessage
from tests.fakes.claude import FakeClaude, structured, text, tool_use
from tests.server.chat_helpers import FAKE_SERVER_KEY, DictMemory, read_sse

# The smallest valid PNG: a 1x1 transparent pixel.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
CHARACTERS = {
    "type": "object",
    "properties": {"characters": {"type": "array", "items": {"type": "string"}}},
    "required": ["characters"],
}
HASS_TURN_ON = {
    "name": "HassTurnOn",
    "description": "Turns on a device or entity",
    "parameters": {"type": "object", "properties": {"name": {"type": "string"}}},
}


class TaskEnv:
    def __init__(self, client: TestClient[Any, Any], headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers

    async def post(
        self, body: dict[str, Any], status: int = 200, path: str = "/api/chat"
    ) -> dict[str, Any]:
        response = await self.client.post(path, json=body, headers=self.headers)
        if path.endswith("/stream") and status == 200:
            events = await read_sse(response)
            assert events[-1].name == "done", events
            return dict(events[-1].data)
        payload: dict[str, Any] = await response.json(content_type=None)
        assert response.status == status, payload
        return payload

    async def usage_rows(self) -> list[UsageRecord]:
        async with self.client.app[DB_SESSIONMAKER]() as session:
            return list((await session.execute(select(UsageRecord))).scalars())


@pytest.fixture
async def fake() -> AsyncIterator[FakeClaude]:
    async with FakeClaude() as claude:
        yield claude


@pytest.fixture
async def memory() -> DictMemory:
    facts = DictMemory()
    facts.add("Ana is our daughter and she likes dinosaurs")
    return facts


@pytest.fixture
async def env(
    aiohttp_client: Any,
    server_settings: Settings,
    fake: FakeClaude,
    memory: DictMemory,
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
    auth_headers: Callable[[str], dict[str, str]],
) -> TaskEnv:
    settings = server_settings.model_copy(
        update={
            "anthropic_base_url": fake.base_url,
            "anthropic_api_key": SecretStr(FAKE_SERVER_KEY),
        }
    )
    app = create_app(settings)
    app[MEMORY_PROVIDER] = memory
    client: TestClient[Any, Any] = await aiohttp_client(app)
    _, token = await create_installation(client=client)
    return TaskEnv(client, auth_headers(token))


def task(instructions: str, **extra: Any) -> dict[str, Any]:
    return {
        "mode": "task",
        "task": {"name": "Bedtime story"},
        "messages": [{"role": "user", "content": instructions}],
        **extra,
    }


async def test_a_task_has_the_memory_but_no_voice_rules_and_no_memory_tools(
    env: TaskEnv, fake: FakeClaude, memory: DictMemory
) -> None:
    fake.script(text("Once upon a time a little dinosaur..."))

    answer = await env.post(task("Write a story for Ana about dinosaurs"))

    assert answer["reply"] == "Once upon a time a little dinosaur..."
    assert answer["data"] is None
    sent = fake.last_request
    assert "Ana is our daughter" in sent.system_text  # the household's memory
    assert 'task named "Bedtime story"' in sent.system_text
    assert PERSONA not in sent.system_text
    assert VOICE_STYLE not in sent.system_text
    assert sent.tools == []  # no HA tools asked for, and never the memory tools
    assert memory.finished_turns == []  # a task is not learned from


async def test_a_task_is_billed_like_a_message(env: TaskEnv, fake: FakeClaude) -> None:
    fake.script(text("Done.", input_tokens=300, output_tokens=20))

    await env.post(task("Summarise the day"))

    (row,) = await env.usage_rows()
    assert (row.counts_as_message, row.completed, row.input_tokens) == (True, True, 300)


async def test_a_structured_task_answers_with_data(env: TaskEnv, fake: FakeClaude) -> None:
    fake.script(structured({"characters": ["Mario", "Luigi"]}))
    body = task("Name two plumbers")
    body["task"]["structure"] = CHARACTERS

    answer = await env.post(body, path="/api/chat/stream")

    assert answer["data"] == {"characters": ["Mario", "Luigi"]}
    assert answer["stop_reason"] == "end_turn"
    assert answer["tool_calls"] == []  # the result tool never reaches Home Assistant
    sent = fake.last_request
    (result_tool,) = sent.tools
    assert result_tool["input_schema"] == CHARACTERS
    assert sent.tool_choice == {"type": "tool", "name": result_tool["name"]}


async def test_a_structured_task_may_use_the_home_tools_it_asked_for(
    env: TaskEnv, fake: FakeClaude
) -> None:
    fake.script(tool_use("HassTurnOn", {"name": "porch light"}))
    body = task("Turn on the porch light, then report", tools=[HASS_TURN_ON])
    body["task"]["structure"] = {"type": "object", "properties": {"ok": {"type": "boolean"}}}

    first = await env.post(body)

    assert [call["name"] for call in first["tool_calls"]] == ["HassTurnOn"]
    assert first["stop_reason"] == "tool_use"
    assert fake.last_request.tool_choice == {"type": "any"}
    assert {tool["name"] for tool in fake.last_request.tools} >= {"HassTurnOn"}

    (call,) = first["tool_calls"]
    fake.script(structured({"ok": True}, tool="homemind_task_result"))
    body["messages"] += [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool_result", "tool_call_id": call["id"], "name": call["name"], "result": {}},
    ]
    second = await env.post(body)
    assert second["data"] == {"ok": True}


async def test_images_reach_claude_as_image_blocks_before_the_text(
    env: TaskEnv, fake: FakeClaude
) -> None:
    fake.script(text("A cat on the doormat."))
    image = {"media_type": "image/png", "data": base64.b64encode(PNG).decode()}
    body = task("Who is at the door?")
    body["messages"][0]["attachments"] = [image]

    answer = await env.post(body)

    assert answer["reply"] == "A cat on the doormat."
    assert fake.last_request.images == [("image/png", PNG)]
    content = fake.last_request.messages[0]["content"]
    assert [block["type"] for block in content] == ["image", "text"]


async def test_an_image_that_is_not_what_it_claims_is_refused_by_claude(
    env: TaskEnv, fake: FakeClaude
) -> None:
    body = task("Who is at the door?")
    body["messages"][0]["attachments"] = [
        {"media_type": "image/jpeg", "data": base64.b64encode(PNG).decode()}
    ]

    problem = await env.post(body, status=502)

    assert problem["code"] == "upstream_rejected"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"mode": "chat"}, "task"),  # a task spec in a chat
        ({"is_voice": True}, "voice"),
        ({"task": {"name": "x", "structure": {"type": "array"}}}, "structure"),
    ],
)
async def test_task_fields_are_checked(
    env: TaskEnv, fake: FakeClaude, change: dict[str, Any], field: str
) -> None:
    body = task("Anything") | change

    problem = await env.post(body, status=422)

    assert problem["code"] == "validation_error"
    assert field in str(problem)
    assert fake.requests == []


async def test_attachments_are_refused_in_a_chat(env: TaskEnv, fake: FakeClaude) -> None:
    image = {"media_type": "image/png", "data": base64.b64encode(PNG).decode()}
    body = {"messages": [{"role": "user", "content": "look", "attachments": [image]}]}

    problem = await env.post(body, status=422)

    assert "attachments need mode 'task'" in str(problem)
    assert fake.requests == []


async def test_attachment_data_must_be_base64(env: TaskEnv, fake: FakeClaude) -> None:
    body = task("look")
    body["messages"][0]["attachments"] = [{"media_type": "image/png", "data": "not base64!"}]

    problem = await env.post(body, status=422)

    assert problem["code"] == "validation_error"
    assert fake.requests == []


def test_a_chat_body_carries_none_of_the_task_fields() -> None:
    """Older servers refuse unknown fields: a plain chat must not send the new ones."""
    chat = ChatRequest(messages=[UserMessage(content="hi")])

    body = json.loads(chat.model_dump_json(exclude_none=True))  # as the client sends it

    assert "mode" not in body and "task" not in body
    assert body["messages"] == [{"role": "user", "content": "hi"}]
