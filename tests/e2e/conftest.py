"""The real Home Mind server (SQLite in tmp_path) and the fake Claude, both on 127.0.0.1.

Both run inside the test's event loop; the installation token is minted by the server's
own accounts code, exactly as the dashboard does it.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from homeassistant.components.homeassistant.exposed_entities import async_expose_entity
from homeassistant.const import CONF_LLM_HASS_API, CONF_TOKEN, CONF_URL
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import llm
from homeassistant.setup import async_setup_component
from pydantic import SecretStr
from pytest_homeassistant_custom_component.common import MockConfigEntry

import custom_components.home_mind  # noqa: F401  # before the harness's custom_components
from cloud_server.accounts import installations, service
from cloud_server.app import create_app
from cloud_server.db.engine import DB_SESSIONMAKER
from cloud_server.memory.extraction import DECISIONS_TOOL
from cloud_server.server_secrets import SECRETS_FILE
from cloud_server.settings import Settings
from custom_components.home_mind.const import CONF_OFFLINE_FALLBACK, DOMAIN
from tests.fakes.claude import FakeClaude, RecordedRequest, Responder, Turn, text, tool_use
from tests.lights import setup_lights

from .secrets_scan import SecretsScan

SERVER_KEY = "sk-ant-test-fake"
OWN_KEY = "sk-ant-own-fake"


@dataclass
class Cloud:
    """The running server and one household (a user with one installation)."""

    app: web.Application
    runner: web.AppRunner
    base_url: str
    user_id: str = ""
    installation_id: str = ""
    token: str = ""
    scan: SecretsScan | None = None
    server_url: str = ""  # the server itself; `base_url` is the recording relay before it

    async def mint(self, name: str = "Cottage", api_key: str | None = None) -> None:
        """A user and an installation token, through the server's own accounts code."""
        async with self.app[DB_SESSIONMAKER].begin() as session:
            # No password: hashing would start the server's argon2 threads inside the test.
            user = await service.create_user(session, "e2e@example.test", None, "E2E")
            installation, token = await installations.create_installation(session, user.id, name)
        self.user_id, self.installation_id, self.token = user.id, installation.id, token
        if self.scan is not None:
            self.scan.secret(token, "an installation token")
            self.scan.secret(api_key, "an installation's Anthropic key")
        if api_key is not None:
            async with self.app[DB_SESSIONMAKER].begin() as session:
                from cloud_server.accounts.app_keys import SERVER_SECRETS

                await installations.set_api_key(
                    session, self.app[SERVER_SECRETS].encryption, user.id, installation.id, api_key
                )

    async def revoke(self) -> None:
        """Delete the installation, as the dashboard's delete button does."""
        async with self.app[DB_SESSIONMAKER].begin() as session:
            assert await installations.revoke_installation(
                session, self.user_id, self.installation_id
            )


@pytest.fixture(autouse=True)
def secrets_scan() -> Iterator[SecretsScan]:
    """Every e2e test: no secret it used in a log line, a response to HA or a database
    (tests/e2e/secrets_scan.py). Set up first, so it reads everything at the very end."""
    scan = SecretsScan()
    scan.secret(SERVER_KEY, "the server's Anthropic key")
    scan.secret(OWN_KEY, "an installation's Anthropic key")
    scan.start()
    try:
        yield scan
    finally:
        scan.stop()
    found = scan.findings()
    if found:
        pytest.fail("Secrets leaked: " + "; ".join(sorted(set(found))), pytrace=False)


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Every test may load custom integrations."""


@pytest.fixture
async def claude(socket_enabled: None) -> AsyncGenerator[FakeClaude]:
    async with FakeClaude() as fake:
        yield fake


class ClaudeScript:
    """What the fake Claude answers to chat calls, in order.

    The server's background memory extraction also calls Claude (without streaming, at
    a moment of its own choosing); it gets an empty answer, so it never takes a turn
    meant for the conversation. A turn may be a function of the request it answers
    (to repeat an id that only the request carries).
    """

    def __init__(self, fake: FakeClaude) -> None:
        self.fake = fake
        self.turns: deque[Turn | Responder] = deque()
        self.default: Turn = text("Okay.")
        fake.responder = self._respond

    def __call__(self, *turns: Turn | Responder) -> None:
        self.turns.extend(turns)

    def _respond(self, record: RecordedRequest) -> Turn:
        if not record.stream:
            return tool_use(DECISIONS_TOOL, {"decisions": []})
        turn = self.turns.popleft() if self.turns else self.default
        # A responder (e.g. `structured(...)`) shapes its answer from the request.
        return turn(record) if callable(turn) else turn

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [request for request in self.fake.requests if request.stream]


@pytest.fixture
def script(claude: FakeClaude) -> ClaudeScript:
    return ClaudeScript(claude)


class Relay:
    """A TCP relay in front of the server: dropping it is the server going away."""

    def __init__(self, target_port: int, record: Callable[[bytes], None] | None = None) -> None:
        self.target_port = target_port
        self.record = record  # every byte the server sends back (the secrets scan)
        self.base_url = ""
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connect, "127.0.0.1", 0)
        self.base_url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()  # nothing listens behind: the client sees the line drop
            return
        self._writers += [writer, up_writer]
        await asyncio.gather(
            self._pipe(reader, up_writer),
            self._pipe(up_reader, writer, self.record),
            return_exceptions=True,
        )

    @staticmethod
    async def _pipe(
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        record: Callable[[bytes], None] | None = None,
    ) -> None:
        try:
            while data := await reader.read(65536):
                if record is not None:
                    record(data)
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    def drop(self) -> None:
        """Every connection dies at once, as when the server's host goes down."""
        for writer in self._writers:
            writer.transport.abort()

    async def close(self) -> None:
        self.drop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def relay_to(
    secrets_scan: SecretsScan,
) -> AsyncGenerator[Callable[[str], Awaitable[Relay]]]:
    relays: list[Relay] = []

    async def start(base_url: str) -> Relay:
        relay = Relay(int(base_url.rsplit(":", 1)[1]), secrets_scan.sent_to_ha.append)
        await relay.start()
        relays.append(relay)
        return relay

    yield start
    for relay in relays:
        await relay.close()


@pytest.fixture
def server_settings(tmp_path: Path, claude: FakeClaude) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'homemind.db'}",
        mode="self-hosted",
        encryption_key=None,
        jwt_secret=None,
        redis_url=None,
        stripe_secret_key=None,
        smtp_host=None,
        anthropic_base_url=claude.base_url,
        anthropic_api_key=SecretStr(SERVER_KEY),
        # One model call per chat request, so the fake's script is the conversation.
        memory_extraction=False,
    )


StartCloud = Callable[..., Awaitable[Cloud]]


@pytest.fixture
async def start_cloud(
    server_settings: Settings, secrets_scan: SecretsScan
) -> AsyncGenerator[StartCloud]:
    """`await start_cloud(**settings_updates)`: the real server on 127.0.0.1:0.

    HA reaches it through a relay that hands every byte it answers to the secrets scan.
    """
    runners: list[web.AppRunner] = []
    relays: list[Relay] = []

    async def start(**updates: Any) -> Cloud:
        settings = server_settings.model_copy(update=updates)
        app = create_app(settings)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        generated = settings.data_dir / SECRETS_FILE
        if generated.is_file():
            for name, value in json.loads(generated.read_text()).items():
                secrets_scan.secret(value, f"the server's {name}")
        if settings.effective_database_url.startswith("sqlite"):
            secrets_scan.database(Path(settings.effective_database_url.split(":///", 1)[1]))
        relay = Relay(runner.addresses[0][1], secrets_scan.sent_to_ha.append)
        await relay.start()
        relays.append(relay)
        return Cloud(
            app=app,
            runner=runner,
            base_url=relay.base_url,
            scan=secrets_scan,
            server_url=f"http://127.0.0.1:{runner.addresses[0][1]}",
        )

    yield start
    for relay in relays:
        await relay.close()
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def cloud(start_cloud: StartCloud) -> Cloud:
    """A self-hosted server with the server's own Anthropic key and one installation."""
    server = await start_cloud()
    await server.mint()
    return server


@pytest.fixture
async def home(hass: HomeAssistant) -> None:
    """A home with lights (tests/lights.py): the kitchen exposed to Assist, the others not."""
    assert await async_setup_component(hass, "homeassistant", {})
    assert await async_setup_component(hass, "intent", {})
    await setup_lights(hass)
    for entity_id in hass.states.async_entity_ids("light"):
        async_expose_entity(hass, "conversation", entity_id, entity_id == "light.kitchen_lights")


SetupAgent = Callable[..., Awaitable[str]]


@pytest.fixture
def setup_agent(hass: HomeAssistant, home: None) -> SetupAgent:
    """`await setup_agent(cloud)` → the agent's entity id, HA connected to that server."""

    async def setup(
        server: Cloud, base_url: str | None = None, *, offline_fallback: bool = True
    ) -> str:
        entry = MockConfigEntry(
            domain=DOMAIN,
            title="Cottage",
            unique_id=server.installation_id,
            data={CONF_URL: base_url or server.base_url, CONF_TOKEN: server.token},
            options={
                CONF_LLM_HASS_API: [llm.LLM_API_ASSIST],
                CONF_OFFLINE_FALLBACK: offline_fallback,
            },
        )
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        entity_id = er.async_get(hass).async_get_entity_id("conversation", DOMAIN, entry.entry_id)
        assert entity_id is not None
        return entity_id

    return setup


@pytest.fixture
async def agent_id(cloud: Cloud, setup_agent: SetupAgent, script: ClaudeScript) -> str:
    return await setup_agent(cloud)
