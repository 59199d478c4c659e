"""A real `homemind-server serve` child process on 127.0.0.1, its stderr kept in a file."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # An empty value removes the variable (so a developer's own settings stay out).
        merged = {**os.environ, **env, "HOMEMIND_HOST": "127.0.0.1"}
        self.env = {name: value for name, value in merged.items() if value != ""}
        self.env["HOMEMIND_PORT"] = str(self.port)
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cloud_server", "serve", env=self.env, stdout=log, stderr=log
        )
        log.close()
        async with aiohttp.ClientSession() as session:
            # Up to a minute: the machine running the tests may be busy.
            for _ in range(600):
                if self.process.returncode is not None:
                    raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
                try:
                    async with session.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("server did not start")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def wait(self) -> int:
        assert self.process is not None
        async with asyncio.timeout(30):
            return await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    def logs(self) -> str:
        return self.log_path.read_text()
