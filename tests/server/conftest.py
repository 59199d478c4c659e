"""Shared fixtures of the server tests: settings, databases, the app, users, installations.

Everything goes through the real code (the app factory, the service functions, the
HTTP API); only the network edges are faked (SMTP on 127.0.0.1).

- `server_settings`: Settings on SQLite in the test's tmp folder.
- `db_url`: parametrised over SQLite and PostgreSQL; `engine_settings` uses it.
- `make_app(settings=None)`: a started aiohttp `TestClient` over `create_app`.
- `create_user(...)` → (user_id, access_token); `create_installation(...)` →
  (installation_id, token); `auth_headers(token)` → the Authorization header.
- `smtp_server`: a real SMTP server (aiosmtpd) on 127.0.0.1:0 collecting messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cloud_server.accounts import installations as inst
from cloud_server.accounts import service
from cloud_server.accounts.app_keys import SERVER_SECRETS
from cloud_server.app import create_app
from cloud_server.db.base import utcnow
from cloud_server.db.engine import DB_SESSIONMAKER
from cloud_server.db.models import User
from cloud_server.settings import Settings
from tests.pg_database import (
    PG_ADMIN_URL,
    UNREACHABLE,
    create_database,
    drop_database,
    new_database_name,
    pg_url,
)

DEFAULT_PASSWORD = "correct horse battery staple"

MakeApp = Callable[..., Awaitable[TestClient[Any, Any]]]


def create_pg_database() -> str:
    """A new, empty, uniquely named PostgreSQL database; returns its name."""
    name = new_database_name()
    asyncio.run(create_database(name))
    return name


def drop_pg_database(name: str) -> None:
    asyncio.run(drop_database(name))


@contextlib.contextmanager
def _own_pg_database() -> Iterator[str]:
    """A new PostgreSQL database's URL, dropped afterwards; skips when none answers."""
    try:
        name = create_pg_database()
    except UNREACHABLE as err:
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {err}")
    try:
        yield pg_url(name)
    finally:
        drop_pg_database(name)


@pytest.fixture(scope="session")
def pg_session_url() -> Iterator[str]:
    """URL of a PostgreSQL database made for this test session and dropped after it.

    Skips (saying why) when no PostgreSQL answers on 127.0.0.1:5432.
    """
    with _own_pg_database() as url:
        yield url


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """URL of a PostgreSQL database of its own for one test (e.g. migration tests)."""
    with _own_pg_database() as url:
        yield url


@pytest.fixture
def server_settings(tmp_path: Path) -> Settings:
    """Self-hosted Settings: data folder = tmp_path, SQLite there, secrets generated there.

    Explicit values win over the environment, so a developer's variables do not leak in.
    """
    return Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'homemind.db'}",
        mode="self-hosted",
        encryption_key=None,
        jwt_secret=None,
        auto_migrate=True,
        smtp_host=None,
        redis_url=None,
        stripe_secret_key=None,
        public_url="http://homemind.test",
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL, once for SQLite (a file in tmp_path) and once for PostgreSQL
    (the session's database: tests must not assume empty tables there)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'homemind.db'}"
    url: str = request.getfixturevalue("pg_session_url")
    return url


@pytest.fixture
def engine_settings(server_settings: Settings, db_url: str) -> Settings:
    """`server_settings` on the `db_url` database (so a test runs on both engines)."""
    return server_settings.model_copy(update={"database_url": db_url})


@dataclass
class _Apps:
    clients: list[TestClient[Any, Any]] = field(default_factory=list)


@pytest.fixture
def _apps() -> _Apps:
    return _Apps()


@pytest.fixture
def make_app(aiohttp_client: Any, server_settings: Settings, _apps: _Apps) -> MakeApp:
    """`await make_app(settings=None)` → a started `TestClient` over `create_app(settings)`.

    The database is migrated on start, as in production. Default: `server_settings`.
    The last app made is the one `create_user` / `create_installation` use by default.
    """

    async def make(settings: Settings | None = None) -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = await aiohttp_client(create_app(settings or server_settings))
        _apps.clients.append(client)
        return client

    return make


async def _current_client(make_app: MakeApp, apps: _Apps, client: Any) -> TestClient[Any, Any]:
    if client is not None:
        return client  # type: ignore[no-any-return]
    if apps.clients:
        return apps.clients[-1]
    return await make_app()


@pytest.fixture
def create_user(make_app: MakeApp, _apps: _Apps) -> Callable[..., Awaitable[tuple[str, str]]]:
    """`await create_user(email=None, password=None, name=None, client=None)`
    → (user_id, access_token).

    Registers through the accounts service of the app (`client`, else the last app
    made, else a new one with `server_settings`) and opens a session, as a login does.
    Email defaults to a unique address; password to a valid passphrase
    (`DEFAULT_PASSWORD`).
    """

    async def create(
        email: str | None = None,
        password: str | None = None,
        name: str | None = None,
        client: TestClient[Any, Any] | None = None,
    ) -> tuple[str, str]:
        app = (await _current_client(make_app, _apps, client)).app
        async with app[DB_SESSIONMAKER].begin() as session:
            user = await service.create_user(
                session,
                email or f"user-{secrets.token_hex(5)}@example.test",
                password or DEFAULT_PASSWORD,
                name,
            )
            tokens = await service.start_session(session, app[SERVER_SECRETS].jwt, user)
        return user.id, tokens.access_token

    return create


@pytest.fixture
def create_installation(
    make_app: MakeApp,
    _apps: _Apps,
    create_user: Callable[..., Awaitable[tuple[str, str]]],
) -> Callable[..., Awaitable[tuple[str, str]]]:
    """`await create_installation(user_id=None, name="Home", api_key=None, client=None)`
    → (installation_id, token).

    Creates the installation through the accounts service (a new user when
    `user_id` is None) and, with `api_key`, stores that key encrypted as
    `PUT /api/installations/{id}/key` does.
    """

    async def create(
        user_id: str | None = None,
        name: str = "Home",
        api_key: str | None = None,
        client: TestClient[Any, Any] | None = None,
    ) -> tuple[str, str]:
        test_client = await _current_client(make_app, _apps, client)
        app = test_client.app
        if user_id is None:
            user_id, _ = await create_user(client=test_client)
        async with app[DB_SESSIONMAKER].begin() as session:
            installation, token = await inst.create_installation(session, user_id, name)
            if api_key is not None:
                await inst.set_api_key(
                    session, app[SERVER_SECRETS].encryption, user_id, installation.id, api_key
                )
        return installation.id, token

    return create


async def add_user_row(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    """A bare user row (what memory facts belong to), without the account service; its id."""
    user_id = secrets.token_hex(16)
    async with sessionmaker() as session, session.begin():
        email = f"{user_id}@example.test"
        session.add(
            User(
                id=user_id,
                email=email,
                email_normalized=email,
                password_hash="x",
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )
    return user_id


@pytest.fixture
def auth_headers() -> Callable[[str], dict[str, str]]:
    """`auth_headers(token)` → `{"Authorization": "Bearer <token>"}` (JWT or installation)."""

    def headers(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    return headers


@dataclass
class SmtpCapture:
    """A running SMTP server: where it listens and what it received."""

    host: str
    port: int
    messages: list[Message] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for(self, count: int = 1, within: float = 10) -> list[Message]:
        """The first `count` messages, waiting for them to arrive (fails after `within` seconds)."""
        async with asyncio.timeout(within):
            while len(self.messages) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.messages[:count]


class _Handler:
    def __init__(self, capture: SmtpCapture) -> None:
        self.capture = capture

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.capture.messages.append(message_from_bytes(envelope.content))
        self.capture.arrived.set()
        return "250 Message accepted for delivery"


@pytest.fixture
async def smtp_server() -> AsyncIterator[SmtpCapture]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 with an ephemeral port; collects mail.

    Point settings at it with `smtp_host=cap.host, smtp_port=cap.port, smtp_starttls=False`.
    """
    capture = SmtpCapture(host="127.0.0.1", port=0)
    handler = _Handler(capture)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="homemind.test"), "127.0.0.1", 0
    )
    capture.port = server.sockets[0].getsockname()[1]
    try:
        yield capture
    finally:
        server.close()
        await server.wait_closed()
