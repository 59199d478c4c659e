"""Dashboard pages: weight (HTML + the assets it loads) and server render time per page.

Runs the real server (self-hosted, SQLite in a temporary folder) on 127.0.0.1, fetches the
public pages, signs up through the sign-up page, creates three installations and stores 40
facts, then fetches every signed-in page N times and prints, per page: the HTML bytes, the
bytes with the stylesheet, script and icon it references, and the server time (median and
p95 of the request round trip on loopback). Budget from issue 11: under 100 KB per page with assets.
Figures are printed, never asserted.

    .venv/bin/python bench/dashboard.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import ms, percentile, table
from cloud_server.accounts import service
from cloud_server.app import create_app
from cloud_server.db.engine import DB_SESSIONMAKER
from cloud_server.memory.setup import MEMORY_BACKEND
from cloud_server.settings import Settings

PUBLIC_PAGES = ["/signin", "/signup", "/forgot", "/signin/link"]
PAGES = [
    "/installations",
    "/usage",
    "/billing",
    "/memory",
    "/account",
    "/account/delete",
]
BUDGET_BYTES = 100 * 1024
_ASSET = re.compile(r'(?:href|src)="(/static/[^"]+)"')


async def measure(
    client: TestClient, path: str, rounds: int, asset_sizes: dict[str, int]
) -> list[str]:
    times: list[float] = []
    body = b""
    for _ in range(rounds):
        started = time.perf_counter()
        response = await client.get(path, allow_redirects=False)
        body = await response.read()
        times.append(time.perf_counter() - started)
        assert response.status == 200, (path, response.status)
    assets = sorted(set(_ASSET.findall(body.decode())))
    for asset in assets:
        if asset not in asset_sizes:
            asset_sizes[asset] = len(await (await client.get(asset)).read())
    total = len(body) + sum(asset_sizes[a] for a in assets)
    return [
        path,
        f"{len(body) / 1024:.1f}",
        f"{total / 1024:.1f}",
        "yes" if total < BUDGET_BYTES else "NO",
        ms(percentile(times, 50)),
        ms(percentile(times, 95)),
    ]


async def run(rounds: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="homemind-bench-"))
    settings = Settings(
        data_dir=folder,
        database_url=f"sqlite:///{folder / 'homemind.db'}",
        public_url="http://127.0.0.1:8080",
        smtp_host=None,
        redis_url=None,
        stripe_secret_key=None,
    )
    async with TestClient(TestServer(create_app(settings))) as client:
        asset_sizes: dict[str, int] = {}
        rows = [await measure(client, path, rounds, asset_sizes) for path in PUBLIC_PAGES]
        page = await client.get("/signup")
        token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
        assert token
        csrf = token.group(1)
        await client.post(
            "/signup",
            data={
                "csrf_token": csrf,
                "email": "bench@example.test",
                "password": "bench pass phrase",
            },
        )
        for name in ("Home", "Cabin", "Office"):
            await client.post("/installations", data={"csrf_token": csrf, "name": name})
        backend = client.app[MEMORY_BACKEND]
        # A household's worth of facts (the memory page lists them).
        async with client.app[DB_SESSIONMAKER]() as db:
            user = await service.find_user_by_email(db, "bench@example.test")
        assert user is not None
        for i in range(40):
            await backend.add(
                user.id, f"Fact number {i}: someone likes the colour {i}.", source="api"
            )

        rows += [await measure(client, path, rounds, asset_sizes) for path in PAGES]
    print(f"Dashboard pages, {rounds} requests each, loopback, SQLite (budget: 100 KB with assets)")
    print(
        table(
            ["page", "HTML KB", "with assets KB", "< 100 KB", "p50 ms", "p95 ms"],
            rows,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(run(args.rounds))


if __name__ == "__main__":
    main()
