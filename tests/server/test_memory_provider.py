"""The memory provider in the chat: recall into the prompt, server tools, after-turn extraction.

Claude is the fake Messages API on 127.0.0.1; everything else is the real app."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from cloud_server.accounts.principal import InstallationPrincipal
from cloud_server.chat.hooks import ChatAccess
from cloud_server.memory.backend import MemoryBackend
from cloud_server.memory.extraction import DECISIONS_TOOL
from cloud_server.memory.provider import MemoryService
from cloud_server.memory.setup import MEMORY_BACKEND, MEMORY_SERVICE
from cloud_server.settings import Settings
from homemind_client.models import ChatRequest
from tests.fakes.claude import FakeClaude, RecordedRequest, error, text, tool_use

KEY = "sk-ant-test-fake"


@dataclass
class Env:
    client: TestClient[Any, Any]
    fake: FakeClaude
    user_id: str
    headers: dict[str, str]

    @property
    def backend(self) -> MemoryBackend:
        return self.client.app[MEMORY_BACKEND]

    @property
    def service(self) -> MemoryService:
        return self.client.app[MEMORY_SERVICE]

    def principal(self) -> InstallationPrincipal:
        return InstallationPrincipal("inst", self.user_id, "Home", True)


@pytest.fixture
async def fake() -> AsyncIterator[FakeClaude]:
    async with FakeClaude() as claude:
        yield claude


@pytest.fixture
async def env(
    fake: FakeClaude,
    make_app: Callable[..., Awaitable[TestClient[Any, Any]]],
    server_settings: Settings,
    create_user: Callable[..., Awaitable[tuple[str, str]]],
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
    auth_headers: Callable[[str], dict[str, str]],
) -> Env:
    settings = server_settings.model_copy(
        update={"anthropic_base_url": fake.base_url, "anthropic_api_key": SecretStr(KEY)}
    )
    client = await make_app(settings)
    user_id, _ = await create_user(client=client)
    _, token = await create_installation(user_id=user_id, client=client)
    return Env(client, fake, user_id, auth_headers(token))


def extraction_answer(*decisions: dict[str, Any]) -> Any:
    return tool_use(DECISIONS_TOOL, {"decisions": list(decisions)})


def offered_facts(request: RecordedRequest) -> list[str]:
    """The contents of the facts an extraction request offers to change (its JSON list)."""
    facts = json.loads(request.messages[0]["content"].splitlines()[1])  # EXTRACTION_PROMPT
    return [fact["content"] for fact in facts]


async def test_a_fact_told_in_one_chat_is_in_the_prompt_of_the_next(env: Env) -> None:
    env.fake.script(
        tool_use("memory_remember", {"content": "The user's daughter is called Ana"}),
        text("Nice to know Ana!"),
        extraction_answer(),  # after-turn extraction: nothing more to add
    )
    first = await env.client.post(
        "/api/chat", json={"message": "My daughter is called Ana"}, headers=env.headers
    )
    assert first.status == 200, await first.text()
    await env.service.drain()
    facts = await env.backend.list(env.user_id)
    assert [f.content for f in facts] == ["The user's daughter is called Ana"]
    assert facts[0].source == "tool"

    env.fake.reset()
    env.fake.script(text("Her name is Ana."), extraction_answer())
    second = await env.client.post(
        "/api/chat", json={"message": "What's my daughter's name?"}, headers=env.headers
    )
    assert second.status == 200
    # The recalled fact carries its id, so Claude can update or forget exactly that one.
    assert (
        f"- [{facts[0].id}] The user's daughter is called Ana" in env.fake.requests[0].system_text
    )
    # Claude sees the server tools with descriptions that say when to use them.
    names = {t["name"]: t for t in env.fake.requests[0].tools}
    assert {"memory_remember", "memory_update", "memory_forget"} <= set(names)
    assert "lasting" in names["memory_remember"]["description"]
    assert "[id]" in names["memory_update"]["description"]
    assert "[id]" in names["memory_forget"]["description"]


async def test_claude_forgets_exactly_the_fact_whose_id_it_was_shown(env: Env) -> None:
    garage = (await env.backend.add(env.user_id, "The garage door code is 4321")).record
    other = (await env.backend.add(env.user_id, "The garage bin goes out on Tuesday")).record
    env.fake.script(text("Noted."), extraction_answer())
    await env.client.post("/api/chat", json={"message": "What's the code?"}, headers=env.headers)
    shown = env.fake.requests[0].system_text
    assert f"- [{garage.id}] The garage door code is 4321" in shown
    await env.service.drain()

    env.fake.reset()
    env.fake.script(
        tool_use("memory_forget", {"id": garage.id}), text("Forgotten."), extraction_answer()
    )
    response = await env.client.post(
        "/api/chat", json={"message": "Forget the garage code"}, headers=env.headers
    )
    assert response.status == 200, await response.text()
    await env.service.drain()
    assert [f.id for f in await env.backend.list(env.user_id)] == [other.id]


async def test_update_tool_replaces_and_the_old_value_is_never_recalled(env: Env) -> None:
    await env.backend.add(env.user_id, "Ana likes the bedroom at 19 degrees", speaker_id="ana")
    chat = ChatRequest(message="Actually make it 20", speaker={"id": "ana"})
    result = await env.service.run_tool(
        env.principal(),
        chat,
        "memory_update",
        {"old": "bedroom 19 degrees", "content": "Ana likes the bedroom at 20 degrees"},
    )
    assert result["updated"] is True
    recalled = await env.service.recall(env.principal(), chat, "make the bedroom comfortable")
    assert [f.content for f in recalled] == ["Ana likes the bedroom at 20 degrees"]


async def test_forget_tool_by_query_and_by_id(env: Env) -> None:
    garage = (await env.backend.add(env.user_id, "The garage door code is 4321")).record
    await env.backend.add(env.user_id, "The garage freezer holds the ice cream")
    await env.backend.add(env.user_id, "Ana likes tea")
    chat = ChatRequest(message="forget it")
    by_query = await env.service.run_tool(
        env.principal(), chat, "memory_forget", {"query": "what I told you about the garage"}
    )
    assert sorted(by_query["forgotten"]) == [
        "The garage door code is 4321",
        "The garage freezer holds the ice cream",
    ]
    tea = (await env.backend.search(env.user_id, "tea"))[0]
    by_id = await env.service.run_tool(env.principal(), chat, "memory_forget", {"id": tea.id})
    assert by_id["forgotten"] == ["Ana likes tea"]
    assert await env.backend.count(env.user_id, include_superseded=True) == 0
    assert garage.id  # deleted above
    nothing = await env.service.run_tool(env.principal(), chat, "memory_forget", {"query": "boat"})
    assert nothing["forgotten"] == []


@pytest.mark.parametrize(
    "content",
    [
        "The kitchen light is on",
        "Turn on the kitchen light",
        "It's 21 degrees now",
        "light.a: on, light.b: off",
    ],
)
async def test_remember_tool_refuses_transient_things(env: Env, content: str) -> None:
    result = await env.service.run_tool(
        env.principal(), ChatRequest(message="x"), "memory_remember", {"content": content}
    )
    assert result["stored"] is False
    assert await env.backend.count(env.user_id) == 0


async def test_speaker_scope_keeps_preferences_apart(env: Env) -> None:
    ana = ChatRequest(message="I love pop music", speaker={"id": "ana"})
    dad = ChatRequest(message="what music do I like", speaker={"id": "dad"})
    await env.service.run_tool(
        env.principal(),
        ana,
        "memory_remember",
        {"content": "Ana loves pop music", "scope": "speaker"},
    )
    assert await env.service.recall(env.principal(), dad, "what music do I like") == []
    assert [f.content for f in await env.service.recall(env.principal(), ana, "music")] == [
        "Ana loves pop music"
    ]


async def test_recall_keeps_to_the_budget_and_prefers_the_relevant(env: Env) -> None:
    for n in range(120):
        await env.backend.add(env.user_id, f"Shelf {n} in the basement holds box number {n}")
    await env.backend.add(env.user_id, "My daughter is called Ana")
    chat = ChatRequest(message="what is my daughter's name")
    facts = await env.service.recall(env.principal(), chat, "what is my daughter's name")
    assert facts[0].content == "My daughter is called Ana"
    assert sum(len(f.content) + 16 for f in facts) <= env.service.budget_tokens * 4
    # Few facts: all of them, the relevant first.
    small = env.service
    await env.backend.delete_all(env.user_id)
    await env.backend.add(env.user_id, "The dog is called Rex")
    await env.backend.add(env.user_id, "My daughter is called Ana")
    facts = await small.recall(env.principal(), chat, "what is my daughter's name")
    assert [f.content for f in facts] == ["My daughter is called Ana", "The dog is called Rex"]


async def test_recall_gives_every_fact_of_a_household_of_many_short_ones(env: Env) -> None:
    # 150 tiny facts fit the 800-token budget together: all of them, the relevant first.
    for n in range(149):
        await env.backend.add(env.user_id, f"K{n}")
    await env.backend.add(env.user_id, "Ana")
    chat = ChatRequest(message="Ana")
    facts = await env.service.recall(env.principal(), chat, "Ana")
    assert len(facts) == 150
    assert facts[0].content == "Ana"
    # One more tiny fact and they cannot all fit: only the ranked ones.
    await env.backend.add(env.user_id, "K149")
    for n in range(150, 160):
        await env.backend.add(env.user_id, f"K{n}")
    facts = await env.service.recall(env.principal(), chat, "Ana")
    assert [f.content for f in facts] == ["Ana"]


async def test_recalls_are_counted_for_ranking(env: Env) -> None:
    ana = (await env.backend.add(env.user_id, "My daughter is called Ana")).record
    bins = (await env.backend.add(env.user_id, "The bins go out on Monday")).record
    chat = ChatRequest(message="what is my daughter's name")
    for _ in range(3):
        await env.service.recall(env.principal(), chat, "what is my daughter's name")
    await env.service.drain()  # writes the counts still pending
    assert (await env.backend.get(env.user_id, ana.id)).use_count == 3
    # Listed because everything fits, not found by the search: not counted.
    assert (await env.backend.get(env.user_id, bins.id)).use_count == 0


async def test_extraction_decisions_are_applied(env: Env) -> None:
    old = (await env.backend.add(env.user_id, "The bins go out on Monday")).record
    doomed = (await env.backend.add(env.user_id, "The bins are green")).record
    env.fake.script(
        extraction_answer(
            {"action": "add", "content": "Ana is allergic to peanuts", "category": "person"},
            {"action": "update", "id": old.id, "content": "The bins go out on Tuesday"},
            {"action": "delete", "id": doomed.id},
            {"action": "add", "content": "The kitchen light is on"},  # filtered out
            {"action": "delete", "id": "not-a-candidate"},
        )
    )
    chat = ChatRequest(
        message=(
            "The bins go out on Tuesday now, forget that the bins are green; "
            "Ana is allergic to peanuts"
        )
    )
    applied = await env.service.extract(env.principal(), chat, "Got it.", KEY)
    assert len(applied) == 3
    active = sorted(f.content for f in await env.backend.list(env.user_id))
    assert active == ["Ana is allergic to peanuts", "The bins go out on Tuesday"]
    request = env.fake.last_request
    assert request.model == env.service.settings.extraction_model and request.api_key == KEY
    assert old.id in request.messages[0]["content"]  # the nearest facts were offered


async def test_extraction_offers_the_facts_in_the_speakers_scope_only(env: Env) -> None:
    ana = ChatRequest(message="I love pop music and jazz", speaker={"id": "ana"})
    dad = ChatRequest(message="I love pop music and rock", speaker={"id": "dad"})
    await env.service.run_tool(
        env.principal(),
        ana,
        "memory_remember",
        {"content": "Ana loves pop music", "scope": "speaker"},
    )
    # Dad's turn: Ana's own fact is out of his scope, so nothing is offered to change.
    env.fake.script(
        extraction_answer({"action": "add", "content": "Dad loves rock music", "scope": "speaker"})
    )
    assert len(await env.service.extract(env.principal(), dad, "Noted.", KEY)) == 1
    assert "Ana loves pop music" not in env.fake.last_request.messages[0]["content"]
    # Ana's turn: the household has no fact, her own one is a candidate.
    env.fake.script(extraction_answer())
    await env.service.extract(env.principal(), ana, "Noted.", KEY)
    offered = env.fake.last_request.messages[0]["content"]
    assert "Ana loves pop music" in offered and "Dad loves rock music" not in offered


async def test_the_extraction_is_shown_the_facts_the_answer_was_given(env: Env) -> None:
    # Twelve short household facts fit the prompt together: the answer is given all of
    # them, and so is the extraction (a search would have offered the nearest ten).
    household = [f"Plant {n} on the windowsill gets water on day {n}" for n in range(12)]
    for content in household:
        await env.backend.add(env.user_id, content)
    await env.backend.note_speaker(env.user_id, "ana", "Ana")
    await env.backend.add(env.user_id, "Ana loves jazz", speaker_id="ana")
    await env.backend.add(env.user_id, "Dad loves rock music", speaker_id="dad")
    env.fake.script(text("Ana loves jazz."), extraction_answer())
    chat = {"message": "What music does Ana like?", "speaker": {"id": "dad", "name": "Dad"}}
    response = await env.client.post("/api/chat", json=chat, headers=env.headers)
    assert response.status == 200, await response.text()
    await env.service.drain()
    answered, extraction = env.fake.requests
    assert "Ana loves jazz" in answered.system_text  # Dad named Ana: her fact helps him
    offered = offered_facts(extraction)
    assert all(content in offered for content in household)
    assert "Dad loves rock music" in offered
    # Ana's own fact is hers to change, not Dad's.
    assert "Ana loves jazz" not in offered


async def test_after_a_memory_tool_the_extraction_sees_the_memory_as_it_is_now(env: Env) -> None:
    await env.backend.add(env.user_id, "The bins go out on Monday")
    env.fake.script(
        tool_use("memory_remember", {"content": "The recycling goes out on Thursday"}),
        text("Noted."),
        extraction_answer(),
    )
    chat = {"message": "Remember the recycling goes out on Thursday, the bins on Monday"}
    response = await env.client.post("/api/chat", json=chat, headers=env.headers)
    assert response.status == 200, await response.text()
    await env.service.drain()
    # The fact the tool stored after the recall is offered, so it is not added twice.
    offered = offered_facts(env.fake.requests[-1])
    assert "The recycling goes out on Thursday" in offered
    assert "The bins go out on Monday" in offered


@pytest.mark.parametrize(
    "answer",
    [
        error(500),
        error(401),
        tool_use(DECISIONS_TOOL, {"decisions": "all"}),
        tool_use(DECISIONS_TOOL, {}),
    ],
)
async def test_extraction_failure_loses_nothing(env: Env, answer: Any) -> None:
    await env.backend.add(env.user_id, "My daughter is called Ana")
    env.fake.script(answer)
    chat = ChatRequest(message="My daughter is called Ana and she is six")
    assert await env.service.extract(env.principal(), chat, "Nice!", KEY) == []
    assert [f.content for f in await env.backend.list(env.user_id)] == ["My daughter is called Ana"]


async def test_after_turn_runs_in_the_background_and_is_drained(env: Env) -> None:
    env.fake.script(extraction_answer({"action": "add", "content": "The cat is called Tom"}))
    env.service.after_turn(
        env.principal(),
        ChatRequest(message="Our cat is called Tom"),
        "Hi Tom!",
        ChatAccess(api_key=KEY, key_source="server"),
    )
    await env.service.drain()
    assert [f.content for f in await env.backend.list(env.user_id)] == ["The cat is called Tom"]
    # After shutdown began, no new extraction starts.
    env.service.after_turn(
        env.principal(),
        ChatRequest(message="Our dog is called Rex"),
        "Hi Rex!",
        ChatAccess(api_key=KEY, key_source="server"),
    )
    await env.service.drain()
    assert await env.backend.count(env.user_id) == 1


@pytest.mark.parametrize("extraction", [True, False])
async def test_extraction_switch_decides_whether_a_chat_is_mined_for_facts(
    fake: FakeClaude,
    make_app: Callable[..., Awaitable[TestClient[Any, Any]]],
    server_settings: Settings,
    create_user: Callable[..., Awaitable[tuple[str, str]]],
    create_installation: Callable[..., Awaitable[tuple[str, str]]],
    auth_headers: Callable[[str], dict[str, str]],
    extraction: bool,
) -> None:
    settings = server_settings.model_copy(
        update={
            "anthropic_base_url": fake.base_url,
            "anthropic_api_key": SecretStr(KEY),
            "memory_extraction": extraction,
        }
    )
    client = await make_app(settings)
    user_id, _ = await create_user(client=client)
    _, token = await create_installation(user_id=user_id, client=client)
    # Claude answers without a memory tool; only the extraction could store the fact.
    fake.script(
        text("Nice to meet Tom!"),
        extraction_answer({"action": "add", "content": "The cat is called Tom"}),
    )
    response = await client.post(
        "/api/chat", json={"message": "Our cat is called Tom"}, headers=auth_headers(token)
    )
    assert response.status == 200, await response.text()
    await client.app[MEMORY_SERVICE].drain()
    facts = [f.content for f in await client.app[MEMORY_BACKEND].list(user_id)]
    if extraction:
        assert facts == ["The cat is called Tom"]
        assert [r.model for r in fake.requests][-1] == settings.extraction_model
    else:
        # HOMEMIND_MEMORY_EXTRACTION=false: no extraction call is made, nothing is stored.
        assert facts == []
        assert len(fake.requests) == 1
