"""The hosted deployment on 127.0.0.1: real server processes on one PostgreSQL database and
one Redis, behind HAProxy running deploy/haproxy/haproxy.cfg (the file docker-compose.yml
mounts), each on a random free port.

Used by tests/server/test_two_instances.py and bench/load.py. Each cluster gets a
PostgreSQL database and a Redis key prefix of its own (both removed afterwards); the
schema is migrated once before the instances start, as compose's `migrate` service does.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import aiohttp
import asyncpg
import redis.asyncio as aioredis

from tests.pg_database import (
    PG_ADMIN_URL,
    create_database,
    drop_database,
    new_database_name,
    pg_url,
)
from tests.server.server_process import ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
HAPROXY_CFG = ROOT / "deploy/haproxy/haproxy.cfg"
SHARED_REDIS_URL = os.environ.get("HOMEMIND_TEST_REDIS", "redis://127.0.0.1:6379/0")
ENCRYPTION_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
JWT_SECRET = "jwt-secret-for-the-two-instance-tests-32-bytes"
SERVER_KEY = "sk-ant-fake-cluster-server"


def haproxy_binary() -> str | None:
    """Debian's haproxy (/usr/sbin may be off a non-root PATH)."""
    found = shutil.which("haproxy")
    if found:
        return found
    return "/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None


async def postgres_reachable() -> bool:
    try:
        connection = await asyncpg.connect(PG_ADMIN_URL, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await connection.close()
    return True


async def wait_port(port: int, seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            return


@dataclass
class HAProxy:
    """`haproxy -db -f deploy/haproxy/haproxy.cfg` with the addresses in its environment."""

    servers: list[str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        binary = haproxy_binary()
        if binary is None:
            raise RuntimeError("haproxy is not installed (Debian: apt-get install haproxy)")
        env = {**os.environ, "HOMEMIND_LB_BIND": f"127.0.0.1:{self.port}"}
        for i, address in enumerate(self.servers, start=1):
            env[f"HOMEMIND_SERVER_{i}"] = address
        log = self.log_path.open("ab")
        # -db: foreground, logs (stdout in the config) and alerts go to the file.
        self.process = await asyncio.create_subprocess_exec(
            binary, "-db", "-f", str(HAPROXY_CFG), env=env, stdout=log, stderr=log
        )
        log.close()
        await wait_port(self.port)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def server_down(self, name: str) -> bool:
        """HAProxy's health check has taken `name` (server-1, server-2) out."""
        return re.search(rf"Server homemind/{name} is DOWN", self.logs()) is not None

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()


@dataclass
class Cluster:
    """`instances` hosted servers + HAProxy; `async with Cluster(...) as cluster`."""

    work_dir: Path
    claude_url: str
    env: Mapping[str, str] = field(default_factory=dict)
    redis_url: str = SHARED_REDIS_URL
    instances: int = 2
    database: str = field(default_factory=lambda: new_database_name("homemind_cluster"))
    redis_prefix: str = field(default_factory=lambda: f"homemind-cluster-{secrets.token_hex(5)}:")
    servers: list[ServerProcess] = field(default_factory=list)
    balancer: HAProxy | None = None

    @property
    def database_url(self) -> str:
        return pg_url(self.database)

    @property
    def url(self) -> str:
        assert self.balancer is not None
        return self.balancer.url

    def server_env(self, index: int) -> dict[str, str]:
        data_dir = self.work_dir / f"server-{index}"
        data_dir.mkdir(parents=True, exist_ok=True)
        return {
            "HOMEMIND_MODE": "hosted",
            "HOMEMIND_PUBLIC_URL": "http://homemind.test",
            "HOMEMIND_DATA_DIR": str(data_dir),
            "HOMEMIND_AUTO_MIGRATE": "false",  # migrated once before, as in compose
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "HOMEMIND_REDIS_PREFIX": self.redis_prefix,
            "ENCRYPTION_KEY": ENCRYPTION_KEY,
            "JWT_SECRET": JWT_SECRET,
            "ANTHROPIC_API_KEY": SERVER_KEY,
            "ANTHROPIC_BASE_URL": self.claude_url,
            "HOMEMIND_TRUSTED_PROXIES": "127.0.0.1/32",
            "HOMEMIND_METRICS_PORT": str(free_port()),
            "HOMEMIND_EMBEDDER": "none",
            "HOMEMIND_MEMORY_EXTRACTION": "false",
            "STRIPE_SECRET_KEY": "",
            "SMTP_HOST": "",
            "SHODH_URL": "",
            **self.env,
        }

    def metrics_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.servers[index].env['HOMEMIND_METRICS_PORT']}/metrics"

    async def migrate(self) -> None:
        env = {**os.environ, **self.server_env(0)}
        env = {k: v for k, v in env.items() if v != ""}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cloud_server",
            "migrate",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"migrate failed: {out.decode()[-2000:]}")

    async def __aenter__(self) -> Cluster:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        await create_database(self.database)
        try:
            await self.migrate()
            self.servers = [
                ServerProcess(self.server_env(i), self.work_dir / f"server-{i + 1}.log")
                for i in range(self.instances)
            ]
            await asyncio.gather(*(server.start() for server in self.servers))
            self.balancer = HAProxy(
                [f"127.0.0.1:{server.port}" for server in self.servers],
                self.work_dir / "haproxy.log",
            )
            await self.balancer.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self.balancer is not None:
            await self.balancer.stop()
        await asyncio.gather(*(server.stop() for server in self.servers))
        await drop_database(self.database)
        await self.forget_redis_keys()

    async def forget_redis_keys(self) -> None:
        client = aioredis.Redis.from_url(self.redis_url, socket_connect_timeout=1)
        try:
            keys = [key async for key in client.scan_iter(match=f"{self.redis_prefix}*")]
            if keys:
                await client.delete(*keys)
        except (OSError, aioredis.RedisError):
            pass  # a test stopped its own Redis: nothing to clean there
        finally:
            await client.aclose()

    async def usage_request_ids(self) -> list[str]:
        """The request id of every usage row (one per chat request the servers recorded)."""
        connection = await asyncpg.connect(self.database_url, timeout=5)
        try:
            rows = await connection.fetch("SELECT request_id FROM usage_records")
        finally:
            await connection.close()
        return [row["request_id"] for row in rows]

    async def metric(self, index: int, name: str, labels: str = "") -> float:
        """One sample of instance `index`'s /metrics (0 when absent)."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.metrics_url(index)) as response,
        ):
            text = await response.text()
        wanted = f"{name}{{{labels}}}" if labels else name
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.split()[-1])
        return 0.0
