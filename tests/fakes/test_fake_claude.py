"""The fake Claude API, driven by the real anthropic SDK (and raw HTTP where the SDK cannot)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import httpx2
import pytest

from tests.fakes import claude
from tests.fakes.claude import FakeClaude, RecordedRequest

# The SDK must parse everything the fake sends without a single warning.
pytestmark = pytest.mark.filterwarnings("error")

MODEL = "claude-sonnet-4-6"
USER: list[Any] = [{"role": "user", "content": "Hello"}]
LIGHT_TOOL: Any = {
    "name": "HassTurnOn",
    "description": "Turns on a device",
    "input_schema": {"type": "object", "properties": {"name": {"type": "string"}}},
}
HEADERS = {"x-api-key": "test-key", "anthropic-version": "2023-06-01"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeClaude]:
    async with FakeClaude() as server:
        yield server


@pytest.fixture
async def client(fake: FakeClaude) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=fake.base_url, api_key="test-key", max_retries=0
    ) as sdk:
        yield sdk


async def post_raw(
    fake: FakeClaude,
    body: object,
    headers: dict[str, str] | None = None,
    path: str = "/v1/messages",
) -> tuple[int, dict[str, str], str]:
    """A request the SDK would never send (missing headers, odd paths)."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            fake.base_url + path,
            data=json.dumps(body),
            headers={
                "content-type": "application/json",
                **(HEADERS if headers is None else headers),
            },
        ) as response,
    ):
        return response.status, dict(response.headers), await response.text()


def sse_events(raw: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for chunk in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.split("\n"))
        events.append((lines["event"], json.loads(lines["data"])))
    return events


# ----------------------------------------------------------------- streaming text


async def test_stream_text_with_messages_stream(
    fake: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(claude.text("The kitchen light is on and the door is locked."))
    deltas: list[str] = []
    async with client.messages.stream(model=MODEL, max_tokens=100, messages=USER) as stream:
        async for piece in stream.text_stream:
            deltas.append(piece)
        final = await stream.get_final_message()
    assert "".join(deltas) == "The kitchen light is on and the door is locked."
    assert len(deltas) > 3
    assert final.content[0].type == "text"
    assert final.content[0].text == "The kitchen light is on and the door is locked."
    assert final.stop_reason == "end_turn"
    assert final.model == MODEL
    assert final.id.startswith("msg_")
    assert final.usage.input_tokens == 25
    assert final.usage.output_tokens > 0


async def test_stream_text_with_create_stream_true(
    fake: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(claude.text("Good night, all lights are off.", output_tokens=9))
    stream = await client.messages.create(model=MODEL, max_tokens=100, messages=USER, stream=True)
    events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    deltas = [e.delta.text for e in events if e.type == "content_block_delta"]  # type: ignore[union-attr]
    assert len(deltas) == kinds.count("content_block_delta") > 3
    assert "".join(deltas) == "Good night, all lights are off."
    start, delta = events[0], events[-2]
    assert start.type == "message_start" and delta.type == "message_delta"
    assert start.message.content == [] and start.message.stop_reason is None
    assert start.message.usage.cache_read_input_tokens == 0
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == 9


async def test_wire_format_of_a_stream(fake: FakeClaude) -> None:
    fake.script(claude.text("Hi there", cache_read_input_tokens=7))
    status, headers, raw = await post_raw(
        fake, {"model": MODEL, "max_tokens": 10, "messages": USER, "stream": True}
    )
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    assert headers["request-id"].startswith("req_")
    events = sse_events(raw)
    assert [name for name, _ in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    message = events[0][1]["message"]
    assert message["usage"] == {
        "input_tokens": 25,
        "output_tokens": 1,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 7,
        "service_tier": "standard",
    }
    assert events[2][1]["content_block"] == {"type": "text", "text": ""}
    assert events[6][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}


# ----------------------------------------------------------------- non-streaming


async def test_non_streaming_text(fake: FakeClaude, client: anthropic.AsyncAnthropic) -> None:
    fake.script(claude.text("It is 21 degrees.", stop_reason="max_tokens", output_tokens=5))
    message = await client.messages.create(model=MODEL, max_tokens=100, messages=USER)
    assert message.content[0].type == "text"
    assert message.content[0].text == "It is 21 degrees."
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 5
    assert message.role == "assistant" and message.model == MODEL


async def test_empty_script_answers_default_text(
    fake: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    fake.default_text = "Default answer."
    first = await client.messages.create(model=MODEL, max_tokens=10, messages=USER)
    second = await client.messages.create(model=MODEL, max_tokens=10, messages=USER)
    assert first.content[0].text == second.content[0].text == "Default answer."  # type: ignore[union-attr]


# ----------------------------------------------------------------- tool use


async def test_tool_use_streamed(fake: FakeClaude, client: anthropic.AsyncAnthropic) -> None:
    args = {"name": "Kitchen light", "area": "Kitchen", "brightness": 80}
    fake.script(claude.tool_use("HassTurnOn", args, id="toolu_01fake"))
    partials: list[str] = []
    async with client.messages.stream(
        model=MODEL, max_tokens=100, messages=USER, tools=[LIGHT_TOOL]
    ) as stream:
        async for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                partials.append(event.delta.partial_json)
        final = await stream.get_final_message()
    assert len(partials) > 2
    assert json.loads("".join(partials)) == args
    assert final.stop_reason == "tool_use"
    [block] = final.content
    assert block.type == "tool_use"
    assert (block.id, block.name, block.input) == ("toolu_01fake", "HassTurnOn", args)


async def test_tool_use_not_streamed(fake: FakeClaude, client: anthropic.AsyncAnthropic) -> None:
    fake.script(claude.tool_use("HassTurnOn", {"name": "Fan"}))
    message = await client.messages.create(
        model=MODEL, max_tokens=100, messages=USER, tools=[LIGHT_TOOL]
    )
    [block] = message.content
    assert block.type == "tool_use"
    assert block.id.startswith("toolu_") and block.input == {"name": "Fan"}
    assert message.stop_reason == "tool_use"


async def test_text_then_tool_use(fake: FakeClaude, client: anthropic.AsyncAnthropic) -> None:
    fake.script(claude.tool_use("HassTurnOn", {"name": "Fan"}, text="Turning on the fan."))
    async with client.messages.stream(
        model=MODEL, max_tokens=100, messages=USER, tools=[LIGHT_TOOL]
    ) as stream:
        text = await stream.get_final_text()
        final = await stream.get_final_message()
    assert text == "Turning on the fan."
    assert [block.type for block in final.content] == ["text", "tool_use"]
    assert final.content[1].input == {"name": "Fan"}  # type: ignore[union-attr]


async def test_several_tool_uses(fake: FakeClaude, client: anthropic.AsyncAnthropic) -> None:
    calls = [("HassTurnOn", {"name": "Fan"}), ("HassTurnOff", {"name": "Lamp"}), ("GetTime", {})]
    fake.script(claude.tool_uses(calls), claude.tool_uses(calls))
    async with client.messages.stream(model=MODEL, max_tokens=100, messages=USER) as stream:
        streamed = await stream.get_final_message()
    created = await client.messages.create(model=MODEL, max_tokens=100, messages=USER)
    for message in (streamed, created):
        uses = [(b.name, b.input) for b in message.content if b.type == "tool_use"]
        assert uses == calls
        ids = {b.id for b in message.content if b.type == "tool_use"}
        assert len(ids) == 3


async def test_tool_result_round_trip(fake: FakeClaude, client: anthropic.AsyncAnthropic) -> None:
    fake.script(claude.tool_use("HassTurnOn", {"name": "Fan"}), claude.text("Done."))
    first = await client.messages.create(
        model=MODEL, max_tokens=100, messages=USER, tools=[LIGHT_TOOL]
    )
    tool_id = first.content[0].id  # type: ignore[union-attr]
    follow_up: list[Any] = [
        *USER,
        first.to_param(),
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "ok"}],
        },
    ]
    second = await client.messages.create(
        model=MODEL, max_tokens=100, messages=follow_up, tools=[LIGHT_TOOL]
    )
    assert second.content[0].text == "Done."  # type: ignore[union-attr]


# ----------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "exception", "error_type"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_errors_map_to_sdk_exceptions(
    fake: FakeClaude,
    client: anthropic.AsyncAnthropic,
    status: int,
    exception: type[anthropic.APIStatusError],
    error_type: str,
    stream: bool,
) -> None:
    fake.script(claude.error(status, message="Scripted failure"))
    with pytest.raises(exception) as caught:
        await client.messages.create(model=MODEL, max_tokens=10, messages=USER, stream=stream)
    err = caught.value
    assert err.status_code == status
    assert err.type == error_type and err.api_message == "Scripted failure"
    assert err.request_id is not None and err.request_id.startswith("req_")
    assert err.body == {
        "type": "error",
        "error": {"type": error_type, "message": "Scripted failure"},
        "request_id": err.request_id,
    }


async def test_overloaded_is_an_internal_server_error(
    fake: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(claude.error(529))
    with pytest.raises(anthropic.InternalServerError):
        await client.messages.create(model=MODEL, max_tokens=10, messages=USER)


async def test_rate_limit_carries_retry_after(
    fake: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(claude.error(429), claude.error(429, retry_after=2.5))
    for expected in ("1", "2.5"):
        with pytest.raises(anthropic.RateLimitError) as caught:
            await client.messages.create(model=MODEL, max_tokens=10, messages=USER)
        assert caught.value.response.headers["retry-after"] == expected


async def test_sdk_retries_after_overload_then_succeeds(fake: FakeClaude) -> None:
    fake.script(claude.error(529, retry_after=0.01), claude.text("Second time lucky."))
    async with anthropic.AsyncAnthropic(
        base_url=fake.base_url, api_key="test-key", max_retries=1
    ) as sdk:
        message = await sdk.messages.create(model=MODEL, max_tokens=10, messages=USER)
    assert message.content[0].text == "Second time lucky."  # type: ignore[union-attr]
    assert len(fake.requests) == 2


async def test_unknown_path_is_a_404_in_anthropic_shape(fake: FakeClaude) -> None:
    status, headers, raw = await post_raw(fake, {}, path="/v1/complete")
    assert status == 404
    body = json.loads(raw)
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    assert body["request_id"] == headers["request-id"]


# ----------------------------------------------------------------- cut and hang


async def test_cut_stream_raises_during_iteration(
    fake: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(claude.cut(5))
    received: list[str] = []
    stream = await client.messages.create(model=MODEL, max_tokens=100, messages=USER, stream=True)
    with pytest.raises((httpx2.TransportError, anthropic.APIConnectionError)):
        async for event in stream:
            received.append(event.type)
    # message_start, ping (hidden by the SDK), content_block_start, two deltas, then nothing.
    assert received == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
    ]


async def test_cut_tool_use_stream_never_completes(
    fake: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(claude.cut(4, then=claude.tool_use("HassTurnOn", {"name": "Fan"})))
    with pytest.raises((httpx2.TransportError, anthropic.APIConnectionError)):
        async with client.messages.stream(model=MODEL, max_tokens=100, messages=USER) as stream:
            await stream.get_final_message()


async def test_cut_non_streaming_drops_connection(
    fake: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(claude.cut(3), claude.text("Still alive."))
    with pytest.raises(anthropic.APIConnectionError):
        await client.messages.create(model=MODEL, max_tokens=10, messages=USER)
    message = await client.messages.create(model=MODEL, max_tokens=10, messages=USER)
    assert message.content[0].text == "Still alive."  # type: ignore[union-attr]


async def test_error_event_mid_stream(fake: FakeClaude, client: anthropic.AsyncAnthropic) -> None:
    fake.script(claude.stream_error(4), claude.stream_error(4, 500, message="Boom"))
    received: list[str] = []
    stream = await client.messages.create(model=MODEL, max_tokens=100, messages=USER, stream=True)
    with pytest.raises(anthropic.APIStatusError) as caught:
        async for event in stream:
            received.append(event.type)
    assert received == ["message_start", "content_block_start", "content_block_delta"]
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    # Not streamed, the same turn is a plain HTTP error.
    with pytest.raises(anthropic.InternalServerError) as failed:
        await client.messages.create(model=MODEL, max_tokens=100, messages=USER)
    assert failed.value.api_message == "Boom"


async def test_hang_makes_client_timeout_fire(
    fake: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(claude.hang(), claude.hang())
    with pytest.raises(anthropic.APITimeoutError):
        await client.with_options(timeout=0.3).messages.create(
            model=MODEL, max_tokens=10, messages=USER
        )
    with pytest.raises(anthropic.APITimeoutError):
        await client.with_options(timeout=0.3).messages.create(
            model=MODEL, max_tokens=10, messages=USER, stream=True
        )


async def test_close_releases_a_hung_request(fake: FakeClaude) -> None:
    fake.script(claude.hang())
    sdk = anthropic.AsyncAnthropic(base_url=fake.base_url, api_key="test-key", max_retries=0)
    call = asyncio.create_task(sdk.messages.create(model=MODEL, max_tokens=10, messages=USER))
    await fake.wait_for_requests(1)
    assert not call.done()
    await fake.close()
    with pytest.raises(anthropic.APIConnectionError):
        await call
    await sdk.close()


# ----------------------------------------------------------------- pacing


async def test_time_to_first_token_holds_back_the_first_delta(
    fake: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    fake.time_to_first_token = 60
    fake.script(claude.text("Slow to start."))
    received: list[str] = []
    stream = await client.with_options(timeout=1.0).messages.create(
        model=MODEL, max_tokens=10, messages=USER, stream=True
    )
    with pytest.raises((httpx2.TimeoutException, anthropic.APITimeoutError)):
        async for event in stream:
            received.append(event.type)
    assert received == ["message_start", "content_block_start"]


async def test_token_delay_spaces_out_the_deltas(
    fake: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    fake.token_delay = 60
    fake.script(claude.text("One word at a time."))
    received: list[str] = []
    stream = await client.with_options(timeout=1.0).messages.create(
        model=MODEL, max_tokens=10, messages=USER, stream=True
    )
    with pytest.raises((httpx2.TimeoutException, anthropic.APITimeoutError)):
        async for event in stream:
            received.append(event.type)
    assert received == ["message_start", "content_block_start", "content_block_delta"]


async def test_small_delays_still_deliver_everything(
    fake: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    fake.time_to_first_token = 0.05
    fake.token_delay = 0.01
    fake.script(claude.text("All of it arrives."), claude.text("Non-streamed too."))
    async with client.messages.stream(model=MODEL, max_tokens=10, messages=USER) as stream:
        assert await stream.get_final_text() == "All of it arrives."
    message = await client.messages.create(model=MODEL, max_tokens=10, messages=USER)
    assert message.content[0].text == "Non-streamed too."  # type: ignore[union-attr]


async def test_concurrent_streams_each_get_their_answer(
    fake: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    fake.token_delay = 0.001
    fake.responder = lambda request: claude.text(f"Answer to {request.messages[0]['content']}")

    async def ask(question: str) -> str:
        messages: Any = [{"role": "user", "content": question}]
        async with client.messages.stream(model=MODEL, max_tokens=10, messages=messages) as s:
            return await s.get_final_text()

    answers = await asyncio.gather(*(ask(f"question {i}") for i in range(5)))
    assert answers == [f"Answer to question {i}" for i in range(5)]
    assert len(fake.requests) == 5


# ----------------------------------------------------------------- requests and responders


async def test_request_is_recorded(fake: FakeClaude, client: anthropic.AsyncAnthropic) -> None:
    system: Any = [
        {"type": "text", "text": "You are Home Mind."},
        {
            "type": "text",
            "text": "The household has a cat.",
            "cache_control": {"type": "ephemeral"},
        },
    ]
    await client.messages.create(
        model=MODEL, max_tokens=321, system=system, messages=USER, tools=[LIGHT_TOOL]
    )
    request = fake.last_request
    assert (request.method, request.path) == ("POST", "/v1/messages")
    # anthropic 2.x sends the key as a bearer token; .api_key reads either header.
    assert request.api_key == "test-key"
    assert request.headers["authorization"] == "Bearer test-key"
    assert request.headers["anthropic-version"]
    assert request.system_text == "You are Home Mind.\nThe household has a cat."
    assert request.messages == USER and request.tools == [LIGHT_TOOL]
    assert (request.model, request.max_tokens, request.stream) == (MODEL, 321, False)
    assert request.body["system"] == system

    async with client.messages.stream(
        model=MODEL, max_tokens=5, system="Plain system prompt.", messages=USER
    ) as stream:
        await stream.get_final_message()
    assert fake.last_request.stream is True
    assert fake.last_request.system_text == "Plain system prompt."
    assert len(fake.requests) == 2


async def test_bearer_token_is_accepted(fake: FakeClaude) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=fake.base_url, api_key=None, auth_token="bearer-test", max_retries=0
    ) as sdk:
        await sdk.messages.create(model=MODEL, max_tokens=10, messages=USER)
    assert fake.last_request.api_key == "bearer-test"


async def test_key_allowlist(client: anthropic.AsyncAnthropic) -> None:
    async with FakeClaude(valid_api_keys={"k1"}) as strict:
        for key, ok in (("k1", True), ("test-key", False)):
            sdk = client.with_options(base_url=strict.base_url, api_key=key)
            if ok:
                await sdk.messages.create(model=MODEL, max_tokens=10, messages=USER)
            else:
                with pytest.raises(anthropic.AuthenticationError):
                    await sdk.messages.create(model=MODEL, max_tokens=10, messages=USER)
        assert [r.api_key for r in strict.requests] == ["k1", "test-key"]


async def test_responder_answers_from_the_request(
    fake: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    def echo(request: RecordedRequest) -> claude.Turn:
        return claude.text(f"You said: {request.messages[-1]['content']}")

    async def slow_echo(request: RecordedRequest) -> claude.Turn:
        await asyncio.sleep(0)
        return claude.text(f"Later: {request.messages[-1]['content']}")

    fake.script(echo, slow_echo)
    first = await client.messages.create(model=MODEL, max_tokens=10, messages=USER)
    second = await client.messages.create(model=MODEL, max_tokens=10, messages=USER)
    assert first.content[0].text == "You said: Hello"  # type: ignore[union-attr]
    assert second.content[0].text == "Later: Hello"  # type: ignore[union-attr]

    fake.responder = lambda request: claude.text(f"{len(request.messages)} message(s)")
    third = await client.messages.create(model=MODEL, max_tokens=10, messages=USER)
    assert third.content[0].text == "1 message(s)"  # type: ignore[union-attr]


async def test_reset_clears_script_and_records(
    fake: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(claude.text("First"), claude.text("Never sent"))
    await client.messages.create(model=MODEL, max_tokens=10, messages=USER)
    fake.reset()
    assert fake.requests == [] and fake.pending_turns == 0
    message = await client.messages.create(model=MODEL, max_tokens=10, messages=USER)
    assert message.content[0].text == "OK."  # type: ignore[union-attr]


async def test_wait_for_requests_times_out_with_a_count(fake: FakeClaude) -> None:
    with pytest.raises(TimeoutError, match="received 0 requests, expected 1"):
        await fake.wait_for_requests(1, timeout=0.05)


# ----------------------------------------------------------------- validation


async def test_dangling_tool_result_is_rejected_and_recorded(
    fake: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(claude.text("Kept for the next valid request."))
    messages: list[Any] = [
        *USER,
        {"role": "assistant", "content": "Sure."},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "1"}],
        },
    ]
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(model=MODEL, max_tokens=10, messages=messages)
    assert caught.value.type == "invalid_request_error"
    assert "unexpected `tool_use_id` found in `tool_result` blocks: toolu_x" in str(
        caught.value.api_message
    )
    assert fake.last_request.messages == messages
    message = await client.messages.create(model=MODEL, max_tokens=10, messages=USER)
    assert message.content[0].text == "Kept for the next valid request."  # type: ignore[union-attr]


TOOL_USE_TURN: dict[str, Any] = {
    "role": "assistant",
    "content": [{"type": "tool_use", "id": "toolu_1", "name": "HassTurnOn", "input": {}}],
}


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"messages": []}, "at least one message"),
        (
            {"messages": [{"role": "assistant", "content": "Hi"}]},
            'first message must use the "user"',
        ),
        ({"messages": [*USER, *USER]}, "roles must alternate"),
        ({"messages": [*USER, TOOL_USE_TURN, *USER]}, "`tool_use` ids were found without"),
        ({"messages": [{"role": "user", "content": ""}]}, "non-empty content"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"model": None}, "model: Field required"),
        ({"tools": [{"name": "NoSchema"}]}, "input_schema: Field required"),
        ({"tools": [{**LIGHT_TOOL, "name": "bad name"}]}, "should match pattern"),
        ({"tools": [LIGHT_TOOL, LIGHT_TOOL]}, "Tool names must be unique"),
        ({"system": [{"type": "image"}]}, "system.0.type"),
        ({"tools": [LIGHT_TOOL], "tool_choice": {"type": "some"}}, "tool_choice: Input tag"),
        ({"tools": [LIGHT_TOOL], "tool_choice": {"type": "tool"}}, "tool_choice.tool.name"),
        (
            {"tools": [LIGHT_TOOL], "tool_choice": {"type": "tool", "name": "Other"}},
            "Tool 'Other' not found",
        ),
        ({"tool_choice": {"type": "auto"}}, "only be specified while providing tools"),
    ],
)
async def test_invalid_bodies_are_rejected(
    fake: FakeClaude, changes: dict[str, Any], fragment: str
) -> None:
    body = {"model": MODEL, "max_tokens": 10, "messages": USER, **changes}
    body = {key: value for key, value in body.items() if value is not None}
    status, _, raw = await post_raw(fake, body)
    assert status == 400
    error = json.loads(raw)["error"]
    assert error["type"] == "invalid_request_error"
    assert fragment in error["message"]
    assert len(fake.requests) == 1


async def test_tool_use_followed_by_its_result_is_valid(fake: FakeClaude) -> None:
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]}
    body = {"model": MODEL, "max_tokens": 10, "messages": [*USER, TOOL_USE_TURN, result]}
    status, _, _ = await post_raw(fake, body)
    assert status == 200


@pytest.mark.parametrize(
    ("headers", "status", "error_type"),
    [
        ({"anthropic-version": "2023-06-01"}, 401, "authentication_error"),
        ({"x-api-key": "test-key"}, 400, "invalid_request_error"),
    ],
)
async def test_required_headers(
    fake: FakeClaude, headers: dict[str, str], status: int, error_type: str
) -> None:
    got, _, raw = await post_raw(
        fake, {"model": MODEL, "max_tokens": 10, "messages": USER}, headers=headers
    )
    assert got == status
    assert json.loads(raw)["error"]["type"] == error_type
    assert fake.last_request.headers.get("x-api-key") == headers.get("x-api-key")


SAVE_TOOL: Any = {
    "name": "save",
    "description": "Save a note.",
    "input_schema": {"type": "object", "properties": {"note": {"type": "string"}}},
}


async def test_forced_tool_choice_answers_with_that_tool_only(
    fake: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    # Scripted with leading text and two calls: forced, Claude sends the named call alone.
    fake.script(
        claude.tool_uses(
            [("HassTurnOn", {"name": "kitchen"}), ("save", {"note": "hi"})], text="Sure."
        )
    )
    message = await client.messages.create(
        model=MODEL,
        max_tokens=50,
        messages=USER,
        tools=[LIGHT_TOOL, SAVE_TOOL],
        tool_choice={"type": "tool", "name": "save"},
    )
    assert message.stop_reason == "tool_use"
    assert [(b.type, getattr(b, "name", None)) for b in message.content] == [("tool_use", "save")]
    assert message.content[0].input == {"note": "hi"}  # type: ignore[union-attr]


async def test_forced_tool_choice_streams_the_call(
    fake: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(claude.tool_use("save", {"note": "hi"}, text="Let me save that."))
    async with client.messages.stream(
        model=MODEL,
        max_tokens=50,
        messages=USER,
        tools=[SAVE_TOOL],
        tool_choice={"type": "any"},
    ) as stream:
        message = await stream.get_final_message()
    assert [b.type for b in message.content] == ["tool_use"]


@pytest.mark.parametrize(
    ("choice", "turn"),
    [
        ({"type": "tool", "name": "save"}, claude.text("No tool for you.")),
        ({"type": "any"}, claude.text("No tool for you.")),
        ({"type": "none"}, claude.tool_use("save", {"note": "hi"})),
    ],
)
async def test_answer_claude_could_not_give_under_tool_choice_fails_the_test(
    fake: FakeClaude, client: anthropic.AsyncAnthropic, choice: Any, turn: Any
) -> None:
    fake.script(turn)
    with pytest.raises(anthropic.InternalServerError, match="FakeClaude script"):
        await client.with_options(max_retries=0).messages.create(
            model=MODEL, max_tokens=50, messages=USER, tools=[SAVE_TOOL], tool_choice=choice
        )


async def test_disable_parallel_tool_use_keeps_the_first_call(
    fake: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(claude.tool_uses([("save", {"note": "a"}), ("save", {"note": "b"})]))
    message = await client.messages.create(
        model=MODEL,
        max_tokens=50,
        messages=USER,
        tools=[SAVE_TOOL],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
    )
    assert [b.input for b in message.content] == [{"note": "a"}]  # type: ignore[union-attr]


# 1x1 PNG; Claude checks an image's bytes against its declared media type.
PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ"
    "AAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def image_block(media_type: str = "image/png", data: str = PNG_B64) -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


async def test_an_image_block_is_read_and_recorded(
    fake: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(claude.text("A pixel."))
    content: Any = [image_block(), {"type": "text", "text": "What is this?"}]

    message = await client.messages.create(
        model=MODEL, max_tokens=10, messages=[{"role": "user", "content": content}]
    )

    assert message.content[0].text == "A pixel."  # type: ignore[union-attr]
    assert fake.last_request.images == [("image/png", base64.b64decode(PNG_B64))]


@pytest.mark.parametrize(
    ("block", "role", "fragment"),
    [
        (image_block("image/jpeg"), "user", "does not match the provided media type image/jpeg"),
        (image_block("image/bmp"), "user", "media_type: Input should be"),
        (image_block(data="not base64!"), "user", "Invalid base64"),
        (image_block(data="A" * (5 * 1024 * 1024 + 4)), "user", "image exceeds 5 MB maximum"),
        (image_block(), "assistant", "image blocks are not allowed in assistant messages"),
    ],
)
async def test_images_claude_would_refuse_are_refused(
    fake: FakeClaude,
    client: anthropic.AsyncAnthropic,
    block: dict[str, Any],
    role: str,
    fragment: str,
) -> None:
    messages: Any = [{"role": "user", "content": [block]}]
    if role == "assistant":
        messages = [*USER, {"role": "assistant", "content": [block]}, *USER]

    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(model=MODEL, max_tokens=10, messages=messages)

    assert fragment in str(caught.value)


async def test_structured_answers_with_the_forced_tool(
    fake: FakeClaude, client: anthropic.AsyncAnthropic
) -> None:
    fake.script(claude.structured({"note": "milk"}), claude.structured({"note": "eggs"}))

    forced = await client.messages.create(
        model=MODEL,
        max_tokens=50,
        messages=USER,
        tools=[LIGHT_TOOL, SAVE_TOOL],
        tool_choice={"type": "tool", "name": "save"},
    )
    with pytest.raises(anthropic.InternalServerError, match="structured"):
        await client.messages.create(model=MODEL, max_tokens=50, messages=USER, tools=[SAVE_TOOL])

    assert [(b.type, getattr(b, "name", None)) for b in forced.content] == [("tool_use", "save")]
    assert forced.content[0].input == {"note": "milk"}  # type: ignore[union-attr]
