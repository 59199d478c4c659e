"""Bad chat input: each case is a 4xx problem+json with a stable code, and Claude is never asked."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from cloud_server.app import create_app
from cloud_server.settings import Settings
from tests.fakes.claude import FakeClaude
from tests.server.chat_helpers import FAKE_SERVER_KEY

PATHS = ["/api/chat", "/api/chat/stream"]

CALL = {"id": "toolu_1", "name": "HassTurnOn", "arguments": {"name": "lamp"}}
RESULT = {"role": "tool_result", "tool_call_id": "toolu_1", "name": "HassTurnOn", "result": {}}


@pytest.fixture
async def fake() -> AsyncIterator[FakeClaude]:
    async with FakeClaude() as claude:
        yield claude


@pytest.fixture
async def env(
    aiohttp_client: Any,
    server_settings: Settings,
    fake: FakeClaude,
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
    auth_headers: Callable[[str], dict[str, str]],
) -> tuple[TestClient[Any, Any], dict[str, str]]:
    settings = server_settings.model_copy(
        update={
            "anthropic_base_url": fake.base_url,
            "anthropic_api_key": SecretStr(FAKE_SERVER_KEY),
            "max_body_bytes": 4096,
        }
    )
    client: TestClient[Any, Any] = await aiohttp_client(create_app(settings))
    _, token = await create_installation(client=client)
    return client, auth_headers(token)


async def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    problem: dict[str, Any] = await response.json(content_type=None)
    assert problem["code"] == code
    assert problem["request_id"]
    return problem


BAD_BODIES: dict[str, Any] = {
    "unknown_field": {"message": "hi", "temperature": 2},
    "both_inputs": {"message": "hi", "messages": [{"role": "user", "content": "hi"}]},
    "neither_input": {"language": "en"},
    "empty_message": {"message": ""},
    "unknown_role": {"messages": [{"role": "system", "content": "obey"}]},
    "starts_with_assistant": {"messages": [{"role": "assistant", "content": "hi"}]},
    "ends_with_assistant": {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    },
    "result_without_call": {"messages": [{"role": "user", "content": "hi"}, RESULT]},
    "result_for_other_call": {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [CALL]},
            {**RESULT, "tool_call_id": "toolu_other"},
        ]
    },
    "unanswered_call": {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [CALL]},
            {"role": "user", "content": "and?"},
        ]
    },
    "result_answered_twice": {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [CALL]},
            RESULT,
            RESULT,
        ]
    },
    "result_for_older_call": {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [CALL]},
            RESULT,
            {"role": "assistant", "content": "done"},
            {"role": "user", "content": "again"},
            RESULT,
        ]
    },
    "bad_tool_call_id": {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{**CALL, "id": "bad id!"}]},
            {**RESULT, "tool_call_id": "bad id!"},
        ]
    },
    "bad_tool_call_name": {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{**CALL, "name": "light.turn_on"}]},
            {**RESULT, "name": "light.turn_on"},
        ]
    },
    "bad_tool_name": {"message": "hi", "tools": [{"name": "turn on!", "parameters": {}}]},
    "tool_name_too_long": {"message": "hi", "tools": [{"name": "a" * 129}]},
    "duplicate_tool": {"message": "hi", "tools": [{"name": "A"}, {"name": "A"}]},
    "tool_schema_not_object": {
        "message": "hi",
        "tools": [{"name": "A", "parameters": {"type": "string"}}],
    },
    "not_an_object": ["hi"],
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", sorted(BAD_BODIES))
async def test_bad_bodies_are_422(
    env: tuple[TestClient[Any, Any], dict[str, str]], fake: FakeClaude, path: str, case: str
) -> None:
    client, headers = env

    response = await client.post(path, json=BAD_BODIES[case], headers=headers)

    problem = await _problem(response, 422, "validation_error")
    assert problem["detail"]
    assert fake.requests == []


async def test_bad_tool_name_names_the_field(
    env: tuple[TestClient[Any, Any], dict[str, str]],
) -> None:
    client, headers = env

    response = await client.post("/api/chat", json=BAD_BODIES["bad_tool_name"], headers=headers)

    problem = await _problem(response, 422, "validation_error")
    assert ["tools", "0", "name"] in [error["loc"] for error in problem["errors"]]
    assert "turn on!" not in await response.text()  # values are never echoed


async def test_mismatched_result_detail_names_the_call(
    env: tuple[TestClient[Any, Any], dict[str, str]],
) -> None:
    client, headers = env

    response = await client.post(
        "/api/chat", json=BAD_BODIES["result_for_other_call"], headers=headers
    )

    problem = await _problem(response, 422, "validation_error")
    assert "toolu_other" in problem["detail"]


@pytest.mark.parametrize("path", PATHS)
async def test_malformed_json_is_422(
    env: tuple[TestClient[Any, Any], dict[str, str]], fake: FakeClaude, path: str
) -> None:
    client, headers = env

    response = await client.post(
        path, data=b'{"message": "hi"', headers={**headers, "Content-Type": "application/json"}
    )

    await _problem(response, 422, "validation_error")
    assert fake.requests == []


@pytest.mark.parametrize("path", PATHS)
async def test_wrong_content_type_is_415(
    env: tuple[TestClient[Any, Any], dict[str, str]], path: str
) -> None:
    client, headers = env

    response = await client.post(
        path, data=b"message=hi", headers={**headers, "Content-Type": "text/plain"}
    )

    await _problem(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("path", PATHS)
async def test_oversized_body_is_413(
    env: tuple[TestClient[Any, Any], dict[str, str]], fake: FakeClaude, path: str
) -> None:
    client, headers = env

    response = await client.post(path, json={"message": "x" * 10_000}, headers=headers)

    await _problem(response, 413, "payload_too_large")
    assert fake.requests == []


@pytest.mark.parametrize("path", PATHS)
async def test_missing_token_is_401(
    env: tuple[TestClient[Any, Any], dict[str, str]], fake: FakeClaude, path: str
) -> None:
    client, _ = env

    response = await client.post(path, json={"message": "hi"})

    await _problem(response, 401, "invalid_token")
    assert fake.requests == []
