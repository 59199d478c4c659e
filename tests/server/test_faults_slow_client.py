"""Fault: a client that opens a chat stream and never reads it.

The server must not hold the request (and its buffers) forever: the turn ends at the
server's own deadline (`response_timeout`, shortened here), the stream is closed before the
whole answer went out, and the usage row is written exactly once. What the client does not
read waits in the kernel's socket buffers, not in the server's memory.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select

from cloud_server.billing.models import UsageRecord
from cloud_server.db.engine import DB_SESSIONMAKER
from cloud_server.settings import Settings
from tests.fakes.claude import FakeClaude, text

LONG_ANSWER = "word " * 400_000  # ~2 MB of deltas: far more than socket buffers hold


async def _usage(app: Any) -> list[UsageRecord]:
    async with app[DB_SESSIONMAKER]() as session:
        return list((await session.execute(select(UsageRecord))).scalars())


async def test_a_client_that_never_reads_is_dropped_and_counted_once(
    make_app: Any,
    server_settings: Settings,
    create_installation: Any,
) -> None:
    async with FakeClaude() as claude:
        claude.script(text(LONG_ANSWER))
        client = await make_app(
            server_settings.model_copy(
                update={
                    "anthropic_base_url": claude.base_url,
                    "anthropic_api_key": SecretStr("sk-ant-slow-" + "s" * 30),
                    "memory_extraction": False,
                    "response_timeout": 3.0,
                }
            )
        )
        _, token = await create_installation(client=client)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, (client.host, client.port))
        body = b'{"message": "Tell me everything."}'
        request = (
            b"POST /api/chat/stream HTTP/1.1\r\nHost: test\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n"
            b"Content-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        await loop.sock_sendall(sock, request)
        try:
            # Never read. The server gives up on its own and records the turn once.
            rows: list[UsageRecord] = []
            async with asyncio.timeout(60):
                while not rows:
                    await asyncio.sleep(0.2)
                    rows = await _usage(client.app)
            await asyncio.sleep(0.5)
            rows = await _usage(client.app)
            assert len(rows) == 1
            assert rows[0].completed is False
            # And the stream was dropped: reading now ends (EOF) well before the whole answer.
            received = 0
            async with asyncio.timeout(60):
                while chunk := await loop.sock_recv(sock, 65536):
                    received += len(chunk)
            assert received < len(LONG_ANSWER)
        finally:
            sock.close()
