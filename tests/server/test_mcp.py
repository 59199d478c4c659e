"""The MCP server at /mcp, driven by the `mcp` SDK's own streamable-HTTP client.

The real server listens on 127.0.0.1 (SQLite in tmp_path) and answers chat from the fake
Claude; tokens are minted by the accounts code with the scopes under test.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client
from mcp.types import CallToolResult, TextContent

from cloud_server.accounts import installations, service
from cloud_server.accounts.scopes import InstallationScope
from cloud_server.app import create_app
from cloud_server.db.engine import DB_SESSIONMAKER
from cloud_server.settings import Settings
from tests.fakes.claude import FakeClaude, RecordedRequest, Turn, text
from tests.server.chat_helpers import on_fake_claude

EVENING = "Anna's evening starts at 19:30."


@dataclass
class Server:
    app: web.Application
    url: str
    user_id: str = ""

    async def token(
        self, scopes: list[InstallationScope] | None = None, name: str = "Claude Desktop"
    ) -> tuple[str, str]:
        """A new installation of the household and its token: (installation id, token)."""
        async with self.app[DB_SESSIONMAKER].begin() as session:
            if not self.user_id:
                user = await service.create_user(session, "mcp@example.test", None, "MCP")
                self.user_id = user.id
            installation, token = await installations.create_installation(
                session, self.user_id, name, scopes=scopes
            )
        return installation.id, token

    async def revoke(self, installation_id: str) -> None:
        async with self.app[DB_SESSIONMAKER].begin() as session:
            assert await installations.revoke_installation(session, self.user_id, installation_id)


@pytest.fixture
async def claude() -> AsyncIterator[FakeClaude]:
    async with FakeClaude() as fake:
        yield fake


StartServer = Callable[..., Awaitable[Server]]


@pytest.fixture
async def start_server(server_settings: Settings, claude: FakeClaude) -> AsyncIterator[StartServer]:
    runners: list[web.AppRunner] = []

    async def start(**updates: Any) -> Server:
        settings = on_fake_claude(server_settings, claude).model_copy(
            update={"memory_extraction": False, **updates}
        )
        app = create_app(settings)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return Server(app=app, url=f"http://127.0.0.1:{runner.addresses[0][1]}/mcp")

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def server(start_server: StartServer) -> Server:
    return await start_server()


@contextlib.asynccontextmanager
async def mcp_session(url: str, token: str) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        streamablehttp_client(url, headers=headers) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def _data(result: CallToolResult) -> dict[str, Any]:
    assert not result.isError, result.content
    (content,) = result.content
    assert isinstance(content, TextContent)
    return dict(json.loads(content.text))


def _error(result: CallToolResult) -> str:
    assert result.isError
    (content,) = result.content
    assert isinstance(content, TextContent)
    return content.text


def _http_status(error: BaseException) -> int | None:
    """The HTTP status inside what the SDK's client raised (its task group wraps it)."""
    if isinstance(error, httpx.HTTPStatusError):
        return error.response.status_code
    for inner in getattr(error, "exceptions", ()):
        if (status := _http_status(inner)) is not None:
            return status
    return None


async def test_memory_tools_remember_search_forget(server: Server) -> None:
    _, token = await server.token()
    async with mcp_session(server.url, token) as session:
        listed = await session.list_tools()
        assert {tool.name for tool in listed.tools} == {
            "memory_search",
            "memory_remember",
            "memory_forget",
            "chat",
        }

        stored = _data(await session.call_tool("memory_remember", {"content": EVENING}))
        assert stored["created"] is True
        found = _data(
            await session.call_tool("memory_search", {"query": "When is Anna's evening?"})
        )
        assert [item["content"] for item in found["memories"]] == [EVENING]

        gone = _data(await session.call_tool("memory_forget", {"query": "Anna's evening"}))
        assert [item["content"] for item in gone["forgotten"]] == [EVENING]
        after = _data(await session.call_tool("memory_search", {"query": "Anna's evening"}))
        assert after["memories"] == []
        missing = _error(await session.call_tool("memory_forget", {"query": "Anna's evening"}))
        assert "Nothing remembered matches that" in missing


async def test_home_assistant_sees_what_claude_desktop_remembered(
    server: Server, claude: FakeClaude
) -> None:
    """Two installations of one household (HA's and Claude Desktop's) share one memory."""
    _, desktop = await server.token(["mcp", "memory:read", "memory:write"])
    _, home = await server.token(name="Home Assistant")
    async with mcp_session(server.url, desktop) as session:
        _data(await session.call_tool("memory_remember", {"content": EVENING}))

    claude.responder = lambda request: text("At 19:30.")
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            server.url.removesuffix("/mcp") + "/api/chat",
            json={"message": "When does my evening start?"},
            headers={"Authorization": f"Bearer {home}"},
        ) as response,
    ):
        assert response.status == 200
        assert (await response.json())["reply"] == "At 19:30."
    (chat,) = [request for request in claude.requests if request.path.endswith("/messages")]
    assert EVENING in chat.system_text


async def test_chat_answers_from_claude_with_the_shared_memory(
    server: Server, claude: FakeClaude
) -> None:
    _, token = await server.token()
    chats: list[RecordedRequest] = []

    def respond(request: RecordedRequest) -> Turn:
        chats.append(request)
        return text("Your evening starts at 19:30.")

    claude.responder = respond
    async with mcp_session(server.url, token) as session:
        _data(await session.call_tool("memory_remember", {"content": EVENING}))
        answer = _data(await session.call_tool("chat", {"message": "When does my evening start?"}))
        unknown = await session.call_tool("chat", {"message": "hi", "conversation_id": "c1"})

    assert answer["reply"] == "Your evening starts at 19:30."
    assert EVENING in chats[0].system_text
    assert chats[0].messages[-1]["content"][0]["text"] == "When does my evening start?"
    # The input schema is enforced: a field the tool does not take is refused, not ignored.
    assert unknown.isError
    assert len(chats) == 1
    # No Home Assistant tools from an MCP client: Claude gets only the server's own.
    assert all(tool["name"].startswith("memory_") for tool in chats[0].tools)


async def test_a_revoked_or_unknown_token_is_refused(server: Server) -> None:
    installation_id, token = await server.token()
    async with mcp_session(server.url, token) as session:
        await session.list_tools()
    await server.revoke(installation_id)

    with pytest.raises(BaseException) as refused:
        async with mcp_session(server.url, token):
            pass
    assert _http_status(refused.value) == 401
    with pytest.raises(BaseException) as unknown:
        async with mcp_session(server.url, "hm_inst_not-a-real-token"):
            pass
    assert _http_status(unknown.value) == 401

    async with (
        aiohttp.ClientSession() as http,
        http.post(server.url, json={}, headers={"Authorization": f"Bearer {token}"}) as response,
    ):
        assert response.status == 401
        assert (await response.json())["code"] == "installation_revoked"


async def test_scopes_limit_the_endpoint_and_each_tool(server: Server) -> None:
    _, read_only = await server.token(["mcp", "memory:read"])
    async with mcp_session(server.url, read_only) as session:
        listed = await session.list_tools()
        assert [tool.name for tool in listed.tools] == ["memory_search"]
        refused = _error(await session.call_tool("memory_remember", {"content": EVENING}))
        assert "forbidden" in refused
        assert "'memory:write' scope" in refused
        assert _data(await session.call_tool("memory_search", {"query": "evening"})) == {
            "memories": []
        }

    _, no_mcp = await server.token(["chat", "memory:read", "memory:write"])
    with pytest.raises(BaseException) as outside:
        async with mcp_session(server.url, no_mcp):
            pass
    assert _http_status(outside.value) == 403


async def test_chat_scope_is_checked_on_the_chat_api_too(server: Server) -> None:
    _, memory_only = await server.token(["mcp", "memory:read"])
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            server.url.removesuffix("/mcp") + "/api/chat",
            json={"message": "hi"},
            headers={"Authorization": f"Bearer {memory_only}"},
        ) as response,
    ):
        assert response.status == 403
        assert (await response.json())["code"] == "forbidden"


async def test_rate_limits_apply_like_chat(start_server: StartServer) -> None:
    # Three requests at once, then about one a minute: initialize, its notification and
    # the tool list use the burst; the next call is refused.
    server = await start_server(chat_rate_per_minute=1.0, chat_burst=3)
    _, token = await server.token()

    with pytest.raises(BaseException) as limited:
        async with mcp_session(server.url, token) as session:
            await session.list_tools()
            await session.call_tool("memory_search", {"query": "evening"})
    assert _http_status(limited.value) == 429
