"""Load budget (docs/security-checklist.md row 32): an authenticated JSON endpoint at 50
concurrent clients on loopback.

    .venv/bin/python bench/load_budget.py [--seconds 30] [--concurrency 50] [--quick]

The real server (`homemind-server serve`, self-hosted, SQLite in a temp folder, WARNING
logs) runs in a child process; this process is the load: `--concurrency` workers, each
sending `GET /api/installation` (installation token) and `GET /api/auth/me` (access JWT)
back to back over keep-alive connections for `--seconds`. Printed, never asserted: the
count, the 5xx and other non-200 answers, the latency percentiles per endpoint, the
throughput, and the server's CPU time per request (the figure that does not depend on what
else the machine is doing). The budget: p99 < 150 ms and no 5xx at 50 concurrent for 30 s
on 2 cores; tests/server/test_load_budget.py holds the "no 5xx" and limiter parts in
`make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import cpu_seconds, environment, ms, percentile, table
from tests.server.server_process import ServerProcess

PASSWORD = "a long passphrase for the load budget"


async def _sign_up(session: aiohttp.ClientSession, url: str) -> tuple[str, str]:
    body = {"email": "load@example.test", "password": PASSWORD}
    async with session.post(f"{url}/api/auth/register", json=body) as response:
        access = (await response.json())["access_token"]
    async with session.post(
        f"{url}/api/installations",
        json={"name": "Load"},
        headers={"Authorization": f"Bearer {access}"},
    ) as response:
        token = (await response.json())["token"]
    return access, token


async def main(seconds: float, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        proc = ServerProcess(
            {
                "HOMEMIND_MODE": "self-hosted",
                "HOMEMIND_DATA_DIR": tmp,
                "DATABASE_URL": f"sqlite:///{tmp}/homemind.db",
                "HOMEMIND_LOG_LEVEL": "WARNING",
                "REDIS_URL": "",
                "STRIPE_SECRET_KEY": "",
                "ANTHROPIC_API_KEY": "",
                "HOMEMIND_EMBEDDER": "none",
            },
            Path(tmp) / "server.log",
        )
        await proc.start()
        assert proc.process is not None
        try:
            connector = aiohttp.TCPConnector(limit=concurrency)
            async with aiohttp.ClientSession(connector=connector) as session:
                access, token = await _sign_up(session, proc.url)
                calls = [("/api/installation", token), ("/api/auth/me", access)]
                latencies: dict[str, list[float]] = defaultdict(list)
                statuses: Counter[int] = Counter()
                cpu_before = cpu_seconds(proc.process.pid)
                started = time.monotonic()
                end = started + seconds

                async def worker(n: int) -> None:
                    i = n
                    while time.monotonic() < end:
                        path, bearer = calls[i % len(calls)]
                        i += 1
                        t0 = time.perf_counter()
                        async with session.get(
                            proc.url + path, headers={"Authorization": f"Bearer {bearer}"}
                        ) as response:
                            await response.read()
                        latencies[path].append(time.perf_counter() - t0)
                        statuses[response.status] += 1

                await asyncio.gather(*(worker(n) for n in range(concurrency)))
                elapsed = time.monotonic() - started
                cpu = cpu_seconds(proc.process.pid) - cpu_before
        finally:
            await proc.stop()
    total = sum(statuses.values())
    print(environment(["aiohttp", "sqlalchemy", "aiosqlite"]))
    print(f"\n{concurrency} concurrent clients for {elapsed:.1f} s, {total} requests")
    rows = []
    for path, values in sorted(latencies.items()):
        rows.append(
            [
                path,
                str(len(values)),
                ms(percentile(values, 50)),
                ms(percentile(values, 90)),
                ms(percentile(values, 99)),
                ms(max(values)),
            ]
        )
    print(table(["endpoint", "n", "p50 ms", "p90 ms", "p99 ms", "max ms"], rows))
    five_xx = sum(n for status, n in statuses.items() if status >= 500)
    print(f"\nstatuses: {dict(sorted(statuses.items()))}  5xx: {five_xx}")
    print(f"throughput: {total / elapsed:.0f} req/s")
    print(f"server CPU: {cpu:.2f} s, {cpu / max(total, 1) * 1000:.2f} ms per request")
    print("budget: p99 < 150 ms and 0 5xx at 50 concurrent for 30 s on 2 cores")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="5 seconds")
    args = parser.parse_args()
    asyncio.run(main(5.0 if args.quick else args.seconds, args.concurrency))
