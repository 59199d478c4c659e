"""A TCP proxy on 127.0.0.1 that a fault test cuts and restores (PostgreSQL, Redis, ...).

The shared PostgreSQL and Redis servers stay up for everyone else: the server under test
talks to them only through this proxy, and `cut()` is that dependency going away (every
open connection reset, new ones reset at once); `restore()` brings it back on the same
port, as a restarted server would come back on its address.

`database_behind_proxy()`: a PostgreSQL database of the test's own reached only through
such a proxy (the fault tests' set-up; tests/pg_database.py makes and drops the database).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy.engine.url import make_url

from tests.pg_database import PG_ADMIN_URL, UNREACHABLE, new_database_name, own_database, pg_url


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.up = True
        self.connections = 0  # accepted while up (how many the client opened)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def cut(self) -> None:
        """The dependency is gone: reset every connection; new ones are reset on arrival."""
        self.up = False
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()

    def restore(self) -> None:
        self.up = True

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(writer)
            return
        self.connections += 1
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(
                _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
            )
        finally:
            self._writers -= {writer, up_writer}


@dataclass(frozen=True)
class ProxiedDatabase:
    proxy: FaultProxy
    url: str  # through the proxy: what the server under test is given
    name: str


@contextlib.asynccontextmanager
async def database_behind_proxy(prefix: str) -> AsyncIterator[ProxiedDatabase]:
    """A new database on the shared PostgreSQL behind a FaultProxy; skips when none answers.

    The proxy is closed (every connection reset) before the database is dropped."""
    name = new_database_name(prefix)
    admin = make_url(PG_ADMIN_URL)
    async with contextlib.AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(own_database(name))
        except UNREACHABLE as err:
            pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {err}")
        proxy = await FaultProxy(admin.host or "127.0.0.1", admin.port or 5432).start()
        stack.push_async_callback(proxy.close)
        yield ProxiedDatabase(proxy, pg_url(name, port=proxy.port), name)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a crashed peer's kernel would answer."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
