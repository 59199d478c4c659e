"""`POST /api/chat` and `POST /api/chat/stream` end to end: real server, real SDK, fake Claude."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from cloud_server.app import create_app
from cloud_server.chat.hooks import CHAT_GATE, MEMORY_PROVIDER
from cloud_server.settings import Settings
from tests.fakes.claude import (
    FakeClaude,
    cut,
    error,
    hang,
    stream_error,
    text,
    tool_use,
    tool_uses,
)
from tests.server.chat_helpers import (
    FAKE_OWN_KEY,
    FAKE_SERVER_KEY,
    DictMemory,
    NoMemory,
    RecordingGate,
    next_sse,
    read_sse,
)

HASS_TURN_ON = {
    "name": "HassTurnOn",
    "description": "Turns on a device or entity",
    "parameters": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "area": {"type": "string"}},
    },
}


@dataclass
class ChatEnv:
    client: TestClient[Any, Any]
    fake: FakeClaude
    headers: dict[str, str]
    settings: Settings

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        return await self.client.post(path, json=body, headers=self.headers)

    async def chat(self, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
        response = await self.post("/api/chat", body)
        payload: dict[str, Any] = await response.json(content_type=None)
        assert response.status == status, payload
        return payload


MakeEnv = Callable[..., Awaitable[ChatEnv]]


@pytest.fixture
async def fake() -> AsyncIterator[FakeClaude]:
    async with FakeClaude() as claude:
        yield claude


@pytest.fixture
def chat_env(
    aiohttp_client: Any,
    server_settings: Settings,
    fake: FakeClaude,
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
    auth_headers: Callable[[str], dict[str, str]],
) -> MakeEnv:
    """`await chat_env(gate=, memory=, own_key=, server_key=, **settings)` → a running server."""

    async def make(
        *,
        gate: Any = None,
        memory: Any = None,
        own_key: str | None = None,
        server_key: str | None = FAKE_SERVER_KEY,
        **overrides: Any,
    ) -> ChatEnv:
        settings = server_settings.model_copy(
            update={
                "anthropic_base_url": fake.base_url,
                "anthropic_api_key": SecretStr(server_key) if server_key else None,
                **overrides,
            }
        )
        app = create_app(settings)
        if gate is not None:
            app[CHAT_GATE] = gate
        # Always the test's own memory provider: the app's real one would ask the fake
        # Claude for extraction after each turn and take scripted answers.
        app[MEMORY_PROVIDER] = memory if memory is not None else NoMemory()
        client: TestClient[Any, Any] = await aiohttp_client(app)
        _, token = await create_installation(api_key=own_key, client=client)
        return ChatEnv(client, fake, auth_headers(token), settings)

    return make


# --------------------------------------------------------------------------- answers


async def test_stream_sends_text_as_several_deltas_then_done(
    chat_env: MakeEnv, fake: FakeClaude
) -> None:
    env = await chat_env()
    # Tokens further apart than the flush interval (50 ms) each go out as they come.
    fake.token_delay = 0.08
    fake.script(text("Hello there, the kitchen is warm today."))

    response = await env.post("/api/chat/stream", {"message": "hi"})

    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    # The API is never cached (cloud_server/http_security.py), streams included.
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert "Content-Encoding" not in response.headers
    events = await read_sse(response)
    names = [e.name for e in events]
    assert names[-1] == "done"
    assert names.count("text_delta") >= 3
    assert set(names[:-1]) == {"text_delta"}
    streamed = "".join(e.data["text"] for e in events if e.name == "text_delta")
    done = events[-1].data
    assert streamed == done["reply"] == "Hello there, the kitchen is warm today."
    assert done["stop_reason"] == "end_turn"
    assert done["tool_calls"] == []
    assert done["conversation_id"]
    assert done["usage"]["input_tokens"] == 25
    assert done["usage"]["output_tokens"] > 0
    assert fake.last_request.stream is True
    assert fake.last_request.api_key == FAKE_SERVER_KEY


async def test_a_fast_answer_comes_in_a_few_deltas_the_first_at_once(
    chat_env: MakeEnv, fake: FakeClaude
) -> None:
    env = await chat_env()
    reply = " ".join(f"word{i}" for i in range(40)) + "."
    fake.script(text(reply))  # every token at once

    events = await read_sse(await env.post("/api/chat/stream", {"message": "hi"}))

    deltas = [e.data["text"] for e in events if e.name == "text_delta"]
    assert deltas[0] == "word0 "  # nothing waits for the first
    assert len(deltas) < 10  # not one write per token
    assert "".join(deltas) == events[-1].data["reply"] == reply


async def test_a_flush_interval_of_zero_sends_every_delta_as_claude_made_it(
    chat_env: MakeEnv, fake: FakeClaude
) -> None:
    env = await chat_env(stream_flush_interval=0)
    fake.script(text("Hello there, the kitchen is warm today."))

    events = await read_sse(await env.post("/api/chat/stream", {"message": "hi"}))

    deltas = [e.data["text"] for e in events if e.name == "text_delta"]
    assert deltas == ["Hello ", "there, ", "the ", "kitchen ", "is ", "warm ", "today."]


async def test_waiting_text_goes_out_when_its_interval_ends_though_claude_pauses(
    chat_env: MakeEnv, fake: FakeClaude
) -> None:
    env = await chat_env()
    fake.script(text("One two three four."))
    fake.pauses = {2: 1.0}  # "three" comes a second after "two"

    response = await env.post("/api/chat/stream", {"message": "hi"})
    first, second, third = [await next_sse(response) for _ in range(3)]

    assert first.data == {"text": "One "}
    # "two " waited for the interval, not for the next token a second later.
    assert second.data == {"text": "two "}
    # After the pause "three " is due at once; "four." follows it too soon and goes with done.
    assert third.data == {"text": "three "}
    rest = await read_sse(response)
    assert [e.name for e in rest] == ["text_delta", "done"]
    assert rest[0].data == {"text": "four."}


async def test_plain_chat_answers_and_echoes_conversation_id(
    chat_env: MakeEnv, fake: FakeClaude
) -> None:
    env = await chat_env()
    fake.script(text("It is sunny."))

    answer = await env.chat({"message": "Weather?", "conversation_id": "conv-42"})

    assert answer["reply"] == "It is sunny."
    assert answer["conversation_id"] == "conv-42"
    assert answer["stop_reason"] == "end_turn"
    assert answer["usage"]["input_tokens"] == 25
    assert fake.last_request.messages == [
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]}
    ]
    assert fake.last_request.model == env.settings.model


async def test_installation_key_is_used_before_the_server_key(
    chat_env: MakeEnv, fake: FakeClaude
) -> None:
    env = await chat_env(own_key=FAKE_OWN_KEY)
    fake.script(text("Hi."))

    await env.chat({"message": "hi"})

    assert fake.last_request.api_key == FAKE_OWN_KEY


async def test_tool_use_round_trip(chat_env: MakeEnv, fake: FakeClaude) -> None:
    env = await chat_env()
    fake.script(tool_use("HassTurnOn", {"name": "kitchen light"}))
    first = {"message": "Turn on the kitchen light", "tools": [HASS_TURN_ON]}

    response = await env.post("/api/chat/stream", first)
    events = await read_sse(response)

    assert [e.name for e in events] == ["tool_call", "done"]
    call = events[0].data
    assert call["name"] == "HassTurnOn"
    assert call["arguments"] == {"name": "kitchen light"}
    done = events[1].data
    assert done["stop_reason"] == "tool_use"
    assert done["tool_calls"] == [call]
    sent_tool = fake.last_request.tools[0]
    assert sent_tool["name"] == "HassTurnOn"
    assert sent_tool["input_schema"]["type"] == "object"
    assert "name" in sent_tool["input_schema"]["properties"]

    fake.script(text("The kitchen light is on."))
    second = {
        "conversation_id": done["conversation_id"],
        "tools": [HASS_TURN_ON],
        "messages": [
            {"role": "user", "content": "Turn on the kitchen light"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {
                "role": "tool_result",
                "tool_call_id": call["id"],
                "name": "HassTurnOn",
                "result": {"success": True, "targets": ["light.kitchen"]},
            },
        ],
    }
    answer = await env.chat(second)

    assert answer["reply"] == "The kitchen light is on."
    assert answer["stop_reason"] == "end_turn"
    messages = fake.last_request.messages
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"] == [
        {"type": "tool_use", "id": call["id"], "name": "HassTurnOn", "input": call["arguments"]}
    ]
    result_block = messages[2]["content"][0]
    assert result_block["type"] == "tool_result"
    assert result_block["tool_use_id"] == call["id"]
    assert '"light.kitchen"' in result_block["content"]


async def test_consecutive_tool_results_become_one_user_message(
    chat_env: MakeEnv, fake: FakeClaude
) -> None:
    env = await chat_env()
    fake.script(text("Both are on."))
    calls = [
        {"id": "toolu_a1", "name": "HassTurnOn", "arguments": {"name": "lamp"}},
        {"id": "toolu_b2", "name": "HassTurnOn", "arguments": {"name": "fan"}},
    ]
    body = {
        "tools": [HASS_TURN_ON],
        "messages": [
            {"role": "user", "content": "Lamp and fan on"},
            {"role": "assistant", "content": "", "tool_calls": calls},
            {
                "role": "tool_result",
                "tool_call_id": "toolu_a1",
                "name": "HassTurnOn",
                "result": {"success": True},
            },
            {
                "role": "tool_result",
                "tool_call_id": "toolu_b2",
                "name": "HassTurnOn",
                "result": {"error": "HomeAssistantError", "error_text": "unavailable"},
            },
        ],
    }

    answer = await env.chat(body)

    assert answer["reply"] == "Both are on."
    last = fake.last_request.messages[-1]
    assert last["role"] == "user"
    assert [b["tool_use_id"] for b in last["content"]] == ["toolu_a1", "toolu_b2"]
    assert last["content"][1].get("is_error") is True


async def test_invented_tool_name_goes_to_home_assistant(
    chat_env: MakeEnv, fake: FakeClaude
) -> None:
    env = await chat_env()
    fake.script(tool_use("HassMakeCoffee", {"strength": "strong"}))

    answer = await env.chat({"message": "Coffee!", "tools": [HASS_TURN_ON]})

    assert answer["stop_reason"] == "tool_use"
    assert [c["name"] for c in answer["tool_calls"]] == ["HassMakeCoffee"]


# --------------------------------------------------------------------------- prompt


async def test_system_prompt_has_a_stable_cached_block_and_a_dynamic_block(
    chat_env: MakeEnv, fake: FakeClaude
) -> None:
    memory = DictMemory()
    memory.add("Anna takes her coffee black", speaker_id="user-anna")
    memory.add("The dog is called Rex")
    env = await chat_env(memory=memory)
    fake.script(text("Sure."), text("Rex is fine."))
    common = {
        "conversation_id": "c1",
        "home_prompt": "HOME-PROMPT: exposed entities are light.kitchen",
        "instructions": "USER-INSTRUCTIONS: call me Anna",
        "speaker": {"id": "user-anna", "name": "Anna"},
    }

    await env.chat({**common, "message": "Make coffee the usual way"})
    first = fake.last_request.body["system"]
    await env.chat(
        {
            **common,
            "messages": [
                {"role": "user", "content": "Make coffee the usual way"},
                {"role": "assistant", "content": "Sure."},
                {"role": "user", "content": "How is the dog?"},
            ],
        }
    )
    second = fake.last_request.body["system"]

    assert first[0]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in first[1]
    assert first[0] == second[0]  # byte-identical from turn to turn
    stable = first[0]["text"]
    assert "Home Mind" in stable
    assert (
        stable.index("Home Mind") < stable.index("HOME-PROMPT") < stable.index("USER-INSTRUCTIONS")
    )
    assert first[1] != second[1]
    assert "coffee black" in first[1]["text"] and "Rex" not in first[1]["text"]
    assert "Rex" in second[1]["text"]
    assert "UTC" in first[1]["text"]
    assert "Anna" in first[1]["text"]


async def test_the_homes_local_time_is_in_the_dynamic_block(
    chat_env: MakeEnv, fake: FakeClaude
) -> None:
    env = await chat_env()
    before = datetime.now(UTC)
    await env.chat({"message": "What time is it?", "time_zone": "Asia/Kathmandu"})
    after = datetime.now(UTC)

    stable, dynamic = (block["text"] for block in fake.last_request.body["system"])
    # Kathmandu is UTC+05:45: a zone whose local clock no UTC-based guess would produce.
    expected = {
        moment.astimezone(ZoneInfo("Asia/Kathmandu")).strftime("%Y-%m-%d %H:%M")
        for moment in (before, after)
    }
    assert any(value in dynamic for value in expected)
    assert "Asia/Kathmandu" in dynamic
    assert "UTC" not in dynamic
    assert "Asia/Kathmandu" not in stable


async def test_an_unknown_time_zone_is_a_validation_error(chat_env: MakeEnv) -> None:
    env = await chat_env()
    body = await env.chat({"message": "hi", "time_zone": "Mars/Olympus_Mons"}, status=422)
    assert body["code"] == "validation_error"


async def test_language_and_voice_reach_claude(chat_env: MakeEnv, fake: FakeClaude) -> None:
    env = await chat_env(max_tokens=900, voice_max_tokens=150)
    fake.script(text("Das Licht ist an."), text("Licht ist an."))

    await env.chat({"message": "Licht an", "language": "de-DE"})
    typed = fake.last_request
    await env.chat({"message": "Licht an", "language": "de-DE", "is_voice": True})
    spoken = fake.last_request

    assert "de-DE" in typed.system_text and "de-DE" in spoken.system_text
    assert typed.max_tokens == 900
    assert spoken.max_tokens == 150
    assert "spoken" in spoken.system_text and "no Markdown" in spoken.system_text
    assert "no Markdown" not in typed.system_text


# --------------------------------------------------------------------------- server tools


async def test_server_tool_runs_inside_the_request(chat_env: MakeEnv, fake: FakeClaude) -> None:
    memory = DictMemory()
    gate = RecordingGate()
    env = await chat_env(memory=memory, gate=gate)
    fake.script(
        tool_use("remember", {"content": "coffee is black"}, text="Got it."),
        text("I will remember that."),
    )

    response = await env.post(
        "/api/chat/stream",
        {
            "message": "Remember: my coffee is black",
            "tools": [HASS_TURN_ON],
            "speaker": {"id": "user-anna"},
        },
    )
    events = await read_sse(response)

    assert "tool_call" not in [e.name for e in events]
    done = events[-1].data
    assert done["stop_reason"] == "end_turn"
    assert done["tool_calls"] == []
    assert done["reply"] == "Got it.\n\nI will remember that."
    assert "".join(e.data["text"] for e in events if e.name == "text_delta") == done["reply"]
    assert [f.content for f in memory.facts.values()] == ["coffee is black"]
    assert memory.facts["f1"].speaker_id == "user-anna"
    # Claude got both tool lists, then the server tool's result in the same request.
    assert {t["name"] for t in fake.requests[0].tools} == {"HassTurnOn", "remember"}
    followup = fake.requests[1].messages
    assert followup[1]["role"] == "assistant"
    tool_block = followup[1]["content"][-1]
    assert tool_block["type"] == "tool_use" and tool_block["name"] == "remember"
    assert followup[2]["content"][0]["tool_use_id"] == tool_block["id"]
    assert memory.finished_turns == [done["reply"]]
    # Usage is summed over both model calls, recorded once.
    assert done["usage"]["input_tokens"] == 50
    outcome = await gate.wait_recorded()
    assert len(gate.outcomes) == 1
    assert outcome.model_calls == 2 and outcome.completed and outcome.counts_as_message
    assert outcome.usage.input_tokens == 50

    # The next turn recalls the stored fact into the dynamic system block.
    fake.script(text("Black."))
    await env.chat({"message": "How do I take my coffee?"})
    assert "coffee is black" in fake.last_request.body["system"][1]["text"]


async def test_mixed_server_and_ha_tool_calls(chat_env: MakeEnv, fake: FakeClaude) -> None:
    memory = DictMemory()
    env = await chat_env(memory=memory)
    fake.script(
        tool_uses([("remember", {"content": "likes warm light"}), ("HassTurnOn", {"name": "lamp"})])
    )

    answer = await env.chat({"message": "Lamp on, I like warm light", "tools": [HASS_TURN_ON]})

    assert answer["stop_reason"] == "tool_use"
    assert [c["name"] for c in answer["tool_calls"]] == ["HassTurnOn"]
    assert [f.content for f in memory.facts.values()] == ["likes warm light"]
    assert len(fake.requests) == 1
    assert memory.finished_turns == []  # the user's turn is not over yet


async def test_model_call_limit(chat_env: MakeEnv, fake: FakeClaude) -> None:
    memory = DictMemory()
    env = await chat_env(memory=memory, max_model_calls=2)
    fake.script(
        tool_use("remember", {"content": "one"}),
        # The last allowed call goes out with tool_choice none: Claude can only answer text.
        text("Remembered one."),
        text("never asked"),
    )

    answer = await env.chat({"message": "remember things"})

    assert len(fake.requests) == 2
    assert answer["stop_reason"] == "end_turn"
    assert "tool_choice" not in fake.requests[0].body
    assert fake.requests[1].body["tool_choice"] == {"type": "none"}
    assert fake.pending_turns == 1


# --------------------------------------------------------------------------- upstream errors


async def test_rate_limited_once_then_success_retries(chat_env: MakeEnv, fake: FakeClaude) -> None:
    env = await chat_env()
    fake.script(error(429), text("Fine."))

    answer = await env.chat({"message": "hi"})

    assert answer["reply"] == "Fine."
    assert len(fake.requests) == 2


async def test_overloaded_twice_is_503_with_retry_after(
    chat_env: MakeEnv, fake: FakeClaude
) -> None:
    gate = RecordingGate()
    env = await chat_env(gate=gate)
    fake.script(error(529), error(529))

    response = await env.post("/api/chat", {"message": "hi"})

    assert response.status == 503
    assert response.content_type == "application/problem+json"
    problem = await response.json(content_type=None)
    assert problem["code"] == "upstream_unavailable"
    assert int(response.headers["Retry-After"]) >= 1
    assert len(fake.requests) == 2
    outcome = await gate.wait_recorded()
    assert outcome.error_code == "upstream_unavailable" and not outcome.completed


async def test_long_retry_after_is_passed_on_without_retrying(
    chat_env: MakeEnv, fake: FakeClaude
) -> None:
    env = await chat_env()
    fake.script(error(429, retry_after=30))

    response = await env.post("/api/chat/stream", {"message": "hi"})

    assert response.status == 503
    assert response.headers["Retry-After"] == "30"
    assert (await response.json(content_type=None))["code"] == "upstream_unavailable"
    assert len(fake.requests) == 1


async def test_rejected_own_key_is_502(chat_env: MakeEnv, fake: FakeClaude) -> None:
    env = await chat_env(own_key=FAKE_OWN_KEY)
    fake.script(error(401))

    problem = await env.chat({"message": "hi"}, status=502)

    assert problem["code"] == "upstream_rejected_key"
    assert len(fake.requests) == 1


async def test_rejected_server_key_is_503_and_logged(
    chat_env: MakeEnv, fake: FakeClaude, caplog: pytest.LogCaptureFixture
) -> None:
    env = await chat_env()
    fake.script(error(401))

    problem = await env.chat({"message": "hi"}, status=503)

    assert problem["code"] == "upstream_unavailable"
    assert any(
        r.levelname == "ERROR" and "ANTHROPIC_API_KEY" in r.getMessage() for r in caplog.records
    )
    assert FAKE_SERVER_KEY not in caplog.text


async def test_invalid_request_is_502_upstream_rejected(
    chat_env: MakeEnv, fake: FakeClaude
) -> None:
    env = await chat_env()
    fake.script(error(400, message="messages.0: secret details"))

    problem = await env.chat({"message": "hi"}, status=502)

    assert problem["code"] == "upstream_rejected"
    assert "secret details" not in problem["detail"]


async def test_no_key_at_all_is_409(chat_env: MakeEnv, fake: FakeClaude) -> None:
    env = await chat_env(server_key=None)

    problem = await env.chat({"message": "hi"}, status=409)

    assert problem["code"] == "no_api_key"
    assert fake.requests == []


async def test_stream_cut_midway_ends_with_error_event(chat_env: MakeEnv, fake: FakeClaude) -> None:
    gate = RecordingGate()
    env = await chat_env(gate=gate)
    fake.script(cut(after_events=8))

    response = await env.post("/api/chat/stream", {"message": "tell me a story"})
    events = await read_sse(response)

    assert response.status == 200
    assert events[0].name == "text_delta"
    assert events[-1].name == "error"
    assert events[-1].data["code"] == "upstream_unavailable"
    assert "done" not in [e.name for e in events]
    assert len(fake.requests) == 1  # text was already sent: no retry
    outcome = await gate.wait_recorded()
    assert outcome.error_code == "upstream_unavailable"


@pytest.mark.parametrize(
    ("status", "code"), [(529, "upstream_unavailable"), (400, "upstream_rejected")]
)
async def test_an_error_event_mid_answer_ends_the_stream_with_its_code(
    chat_env: MakeEnv, fake: FakeClaude, status: int, code: str
) -> None:
    gate = RecordingGate()
    env = await chat_env(gate=gate)
    fake.script(stream_error(5, status))

    response = await env.post("/api/chat/stream", {"message": "tell me a story"})
    events = await read_sse(response)

    assert events[0].name == "text_delta"
    assert events[-1].name == "error" and events[-1].data["code"] == code
    assert len(fake.requests) == 1  # text was already sent: no retry
    outcome = await gate.wait_recorded()
    assert outcome.error_code == code and outcome.usage.input_tokens > 0


async def test_cut_before_any_text_is_retried(chat_env: MakeEnv, fake: FakeClaude) -> None:
    env = await chat_env()
    fake.script(cut(after_events=1), text("Recovered."))

    response = await env.post("/api/chat/stream", {"message": "hi"})
    events = await read_sse(response)

    assert events[-1].name == "done"
    assert events[-1].data["reply"] == "Recovered."
    assert len(fake.requests) == 2


async def test_first_token_timeout_is_503(chat_env: MakeEnv, fake: FakeClaude) -> None:
    env = await chat_env(first_token_timeout=0.3)
    fake.script(hang())

    response = await env.post("/api/chat/stream", {"message": "hi"})

    assert response.status == 503
    assert (await response.json(content_type=None))["code"] == "upstream_unavailable"
    assert len(fake.requests) == 1


async def test_answer_timeout_after_text_ends_with_error_event(
    chat_env: MakeEnv, fake: FakeClaude
) -> None:
    env = await chat_env(response_timeout=0.5)
    fake.token_delay = 0.1
    fake.script(text(" ".join(["word"] * 40)))

    response = await env.post("/api/chat/stream", {"message": "talk"})
    events = await read_sse(response)

    assert events[0].name == "text_delta"
    assert events[-1].name == "error"
    assert events[-1].data["code"] == "upstream_unavailable"


async def test_client_disconnect_mid_stream_records_once(
    chat_env: MakeEnv, fake: FakeClaude
) -> None:
    gate = RecordingGate()
    env = await chat_env(gate=gate)
    fake.token_delay = 0.05
    fake.script(text(" ".join(["word"] * 200)))

    response = await env.post("/api/chat/stream", {"message": "talk a lot"})
    # The first delta arrives while Claude is still talking (were the server buffering,
    # the answer would be complete by now and the outcome below would say so).
    first = await next_sse(response)
    assert first.name == "text_delta"
    response.close()  # the client goes away

    outcome = await gate.wait_recorded(seconds=10)
    assert len(gate.outcomes) == 1
    assert outcome.completed is False
    assert outcome.error_code == "client_disconnected"
    assert outcome.counts_as_message is True
    assert outcome.model_calls == 1


async def test_record_is_called_once_on_success(chat_env: MakeEnv, fake: FakeClaude) -> None:
    gate = RecordingGate()
    env = await chat_env(gate=gate)
    fake.script(text("Hi."))

    await env.chat({"message": "hi"})

    outcome = await gate.wait_recorded()
    assert len(gate.outcomes) == 1
    assert outcome.completed and outcome.error_code is None
    assert outcome.request_id
    assert outcome.usage.input_tokens == 25


async def test_follow_up_of_an_issued_tool_call_is_not_a_new_message(
    chat_env: MakeEnv, fake: FakeClaude
) -> None:
    gate = RecordingGate()
    env = await chat_env(gate=gate)
    fake.script(tool_use("HassTurnOn", {"name": "lamp"}), text("Done."))
    first = await env.chat({"message": "Lamp on", "tools": [HASS_TURN_ON]})
    assert (await gate.wait_recorded()).counts_as_message is True
    call = first["tool_calls"][0]
    # Claude's own id, then when it was issued and the server's signature.
    assert re.fullmatch(r"toolu_[A-Za-z0-9_-]+_[0-9a-z]+_[A-Za-z0-9_-]{22}", call["id"])

    gate.recorded.clear()
    await env.chat(
        {
            "conversation_id": first["conversation_id"],
            "tools": [HASS_TURN_ON],
            "messages": [
                {"role": "user", "content": "Lamp on"},
                {"role": "assistant", "tool_calls": [call]},
                {
                    "role": "tool_result",
                    "tool_call_id": call["id"],
                    "name": "HassTurnOn",
                    "result": {"success": True},
                },
            ],
        }
    )

    outcome = await gate.wait_recorded()
    assert outcome.counts_as_message is False


async def test_follow_up_of_a_made_up_tool_call_counts_as_a_message(
    chat_env: MakeEnv, fake: FakeClaude
) -> None:
    # The server keeps no per-turn state; the signed id is what proves a follow-up.
    gate = RecordingGate()
    env = await chat_env(gate=gate)
    fake.script(text("Here is a poem."))

    await env.chat(
        {
            "tools": [HASS_TURN_ON],
            "messages": [
                {"role": "user", "content": "Write me a poem"},
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "toolu_x", "name": "HassTurnOn", "arguments": {}}],
                },
                {
                    "role": "tool_result",
                    "tool_call_id": "toolu_x",
                    "name": "HassTurnOn",
                    "result": {"success": True},
                },
            ],
        }
    )

    outcome = await gate.wait_recorded()
    assert outcome.counts_as_message is True


@pytest.mark.parametrize(
    ("claude_stop", "our_stop"),
    [("max_tokens", "max_tokens"), ("refusal", "end_turn"), ("stop_sequence", "end_turn")],
)
async def test_stop_reasons_are_mapped(
    chat_env: MakeEnv, fake: FakeClaude, claude_stop: str, our_stop: str
) -> None:
    env = await chat_env()
    fake.script(text("Part of an answer", stop_reason=claude_stop))

    answer = await env.chat({"message": "hi"})

    assert answer["stop_reason"] == our_stop
    assert answer["reply"] == "Part of an answer"


async def test_one_info_line_per_request_without_content_or_keys(
    chat_env: MakeEnv, fake: FakeClaude, caplog: pytest.LogCaptureFixture
) -> None:
    env = await chat_env(own_key=FAKE_OWN_KEY)
    fake.script(text("The secret answer is blue."))
    caplog.set_level("INFO")

    await env.chat({"message": "Tell me the private thing", "home_prompt": "PRIVATE-HOME"})

    lines = [r.getMessage() for r in caplog.records if r.name == "cloud_server.chat.routes"]
    assert len(lines) == 1
    assert "calls=1" in lines[0] and "in=25" in lines[0] and "request_id=" in lines[0]
    for secret in ("private thing", "PRIVATE-HOME", "blue", FAKE_OWN_KEY, FAKE_SERVER_KEY):
        assert secret not in caplog.text


async def test_ha_tool_with_a_server_tool_name_is_not_sent_twice(
    chat_env: MakeEnv, fake: FakeClaude
) -> None:
    env = await chat_env(memory=DictMemory())
    fake.script(text("Hi."))
    clash = {"name": "remember", "description": "HA's own", "parameters": {"type": "object"}}

    await env.chat({"message": "hi", "tools": [HASS_TURN_ON, clash]})

    names = [t["name"] for t in fake.last_request.tools]
    assert sorted(names) == ["HassTurnOn", "remember"]
    remember = next(t for t in fake.last_request.tools if t["name"] == "remember")
    assert remember["description"] != "HA's own"


async def test_retry_after_a_cut_does_not_repeat_the_partial_answer(
    chat_env: MakeEnv, fake: FakeClaude
) -> None:
    env = await chat_env()
    fake.script(cut(after_events=8), text("Recovered."))

    answer = await env.chat({"message": "hi"})  # nothing sent yet: one retry is allowed

    assert answer["reply"] == "Recovered."
    assert len(fake.requests) == 2


async def test_first_token_timeout_after_text_ends_with_error_event(
    chat_env: MakeEnv, fake: FakeClaude
) -> None:
    memory = DictMemory()
    env = await chat_env(memory=memory, first_token_timeout=0.3)
    fake.script(tool_use("remember", {"content": "tea"}, text="One moment."), hang())

    response = await env.post("/api/chat/stream", {"message": "remember tea"})
    events = await read_sse(response)

    assert response.status == 200
    assert {e.name for e in events[:-1]} == {"text_delta"}
    assert "".join(e.data["text"] for e in events[:-1]) == "One moment."
    assert events[-1].name == "error"
    assert events[-1].data["code"] == "upstream_unavailable"
    assert len(fake.requests) == 2  # no retry once text was sent


async def test_top_level_schema_combinators_are_dropped_for_claude(
    chat_env: MakeEnv, fake: FakeClaude
) -> None:
    env = await chat_env()
    tool = {
        "name": "HassLightSet",
        "description": "Sets brightness or color",
        "parameters": {
            "type": "object",
            "properties": {"brightness": {"type": "integer"}, "color": {"type": "string"}},
            "anyOf": [{"required": ["brightness"]}, {"required": ["color"]}],
        },
    }

    await env.chat({"message": "Dim the lights", "tools": [tool]})

    sent = fake.last_request.tools[0]["input_schema"]
    assert "anyOf" not in sent
    assert set(sent["properties"]) == {"brightness", "color"}
