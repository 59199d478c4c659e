"""Load: N concurrent streaming chats through HAProxy and two server instances.

    .venv/bin/python bench/load.py [--concurrency 200] [--duration 60] [--quick]

Processes (all on 127.0.0.1, random ports):

* fake Claude in a child process (bench/chat_latency.py's `--role=fake`): a fixed time to
  the first token, then one word every `--token-delay` seconds; memory extractions (the
  non-streaming calls) are answered at once;
* the hosted deployment of tests/server/cluster.py: two `homemind-server serve` processes
  on one PostgreSQL database and one Redis (a database and key prefix of this run's own)
  behind HAProxy running deploy/haproxy/haproxy.cfg, production settings (JSON logs,
  memory recall and after-turn extraction on, the chat limits raised so none refuses while
  the limiter and its Redis calls still run);
* this process: `concurrency` workers, each a household (an account with one installation),
  looping `HomeMindClient.chat_stream` turns through the balancer (starts spread over one
  turn).

Two phases of `--duration` seconds each, same concurrency and pacing: (a) the anthropic SDK
streaming from the fake directly (the baseline), then (b) client -> HAProxy -> server -> fake.
A turn counts in a phase when it starts inside the phase's window (after `--warmup`
seconds of unmeasured load). "Added" figures are differences of percentiles
(p99(b) - p99(a)). Server CPU per turn is the user+system CPU time of both server
processes (from /proc) over the window divided by the turns completed in it; RSS of each
server is sampled every `--rss-every` seconds. Timings are printed, never asserted; the
machine may be shared, so CPU time is the steadier figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo root importable first
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import Child, cpu_seconds, environment, ms, percentile, table
from bench.chat_latency import (
    FAKE_KEY,
    MESSAGE,
    Sample,
    Series,
    answer_text,
    guarded,
    make_client_turn,
    make_sdk_turn,
    next_message,
)

PACKAGES = ("aiohttp", "anthropic", "SQLAlchemy", "asyncpg", "redis", "prometheus-client")
PASSWORD = "a long bench passphrase"
LIMITS_RAISED = {
    "HOMEMIND_CHAT_RATE_PER_MINUTE": "100000",
    "HOMEMIND_CHAT_BURST": "1000",
    "HOMEMIND_CHAT_USER_RATE_PER_MINUTE": "1000000",
    "HOMEMIND_CHAT_USER_BURST": "10000",
}


def rss_mb(pid: int | None) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


@dataclass
class Phase:
    """What one phase measured."""

    name: str
    series: Series = field(default_factory=Series)
    seconds: float = 0.0
    cpu_ms: dict[str, float] = field(default_factory=dict)  # process -> CPU ms in the window
    rss: list[tuple[float, list[float]]] = field(default_factory=list)
    # Each server's /metrics once a second: gauge name -> samples per server.
    gauges: dict[str, list[list[float]]] = field(default_factory=dict)
    counted: list[dict[str, float]] = field(default_factory=list)  # per server, the window's
    notes: list[str] = field(default_factory=list)

    @property
    def turns(self) -> int:
        return len(self.series.samples)


# What a server is doing while the phase runs, read from its /metrics (the gauges it has).
WATCHED = {
    "streams": 'homemind_chat_streams_in_flight{stream="true"}',
    "db in use": "homemind_db_pool_connections_in_use",
}
# Counters read at the window's start and end (their difference is the window's).
COUNTED = {
    "checkouts": "homemind_db_pool_checkouts_total",
    "wait": "homemind_db_pool_wait_seconds_total",
    "held": "homemind_db_pool_held_seconds_total",
}


async def scrape(session: Any, url: str) -> dict[str, float]:
    async with session.get(url) as response:
        text = await response.text()
    values: dict[str, float] = {}
    for line in text.splitlines():
        for key, wanted in (WATCHED | COUNTED).items():
            if line.startswith(wanted + " "):
                values[key] = float(line.split()[-1])
    return values


async def run_phase(
    name: str,
    make_turn: Callable[[int], Callable[[], Awaitable[Sample | str]]],
    cfg: argparse.Namespace,
    pids: dict[str, int | None],
    rss_pids: dict[str, int | None],
    watch: tuple[Any, list[str]] | None = None,
) -> Phase:
    phase = Phase(name)
    turn_time = cfg.ttft + (cfg.tokens - 1) * cfg.token_delay
    loop = asyncio.get_running_loop()
    started = loop.time()
    window = (started + cfg.warmup + turn_time, started + cfg.warmup + turn_time + cfg.duration)
    stop = asyncio.Event()

    async def worker(i: int) -> None:
        turn = make_turn(i)
        await asyncio.sleep(turn_time * i / cfg.concurrency)
        while not stop.is_set():
            begun = loop.time()
            outcome = await guarded(turn)
            if window[0] <= begun < window[1]:
                phase.series.add(outcome)

    async def sampler() -> None:
        await asyncio.sleep(window[0] - loop.time())
        before = {key: cpu_seconds(pid) for key, pid in pids.items()}
        before["bench"] = cpu_seconds()
        t0 = loop.time()
        while loop.time() < window[1]:
            phase.rss.append((loop.time() - t0, [rss_mb(pid) for pid in rss_pids.values()]))
            await asyncio.sleep(min(cfg.rss_every, max(0.0, window[1] - loop.time())))
        after = {key: cpu_seconds(pid) for key, pid in pids.items()}
        after["bench"] = cpu_seconds()  # this process: the load generator
        phase.seconds = loop.time() - t0
        phase.cpu_ms = {key: (after[key] - before[key]) * 1000 for key in after}
        phase.rss.append((phase.seconds, [rss_mb(pid) for pid in rss_pids.values()]))
        stop.set()

    async def watcher() -> None:
        if watch is None:
            return
        session, urls = watch
        phase.gauges = {key: [[] for _ in urls] for key in WATCHED}
        first: list[dict[str, float]] = [{} for _ in urls]
        last: list[dict[str, float]] = [{} for _ in urls]
        await asyncio.sleep(window[0] - loop.time())
        while not stop.is_set():
            for i, url in enumerate(urls):
                try:
                    values = await scrape(session, url)
                except Exception:
                    continue
                for key in WATCHED:
                    if key in values:
                        phase.gauges[key][i].append(values[key])
                first[i] = first[i] or values
                last[i] = values
            await asyncio.sleep(1.0)
        phase.counted = [
            {key: last[i].get(key, 0.0) - first[i].get(key, 0.0) for key in COUNTED}
            for i in range(len(urls))
        ]

    await asyncio.gather(sampler(), watcher(), *(worker(i) for i in range(cfg.concurrency)))
    log(f"{name}: {phase.turns} turns in {phase.seconds:.1f} s")
    return phase


async def measure(cfg: argparse.Namespace, fake: Child, work_dir: Path) -> list[Phase]:
    import aiohttp
    import anthropic

    from homemind_client.client import HomeMindClient
    from tests.server.cluster import Cluster

    expected = answer_text(cfg.tokens)
    fake_url = fake.ready["url"]
    loop = asyncio.get_running_loop()
    phases: list[Phase] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        # (a) the SDK alone, one client per worker as each home has its own.
        if "a" in cfg.paths:
            sdk = await loop.run_in_executor(
                None,
                lambda: anthropic.AsyncAnthropic(
                    base_url=fake_url, api_key=FAKE_KEY, max_retries=0
                ),
            )
            phases.append(
                await run_phase(
                    "(a) SDK -> fake Claude",
                    lambda _i: make_sdk_turn(
                        sdk, next_message(cfg.message, repeat=cfg.repeat), expected
                    ),
                    cfg,
                    {"fake": fake.pid},
                    {},
                )
            )
            await sdk.close()
        if "b" not in cfg.paths:
            return phases
        env = {
            **LIMITS_RAISED,
            "HOMEMIND_MEMORY_EXTRACTION": "true" if cfg.extraction else "false",
            "HOMEMIND_EMBEDDER": cfg.embedder,
            "HOMEMIND_LOG_LEVEL": "INFO",
            **dict(item.split("=", 1) for item in cfg.server_env),
        }
        async with Cluster(work_dir, fake_url, env) as cluster:
            tokens = await installations(session, cluster.url, cfg.concurrency)
            if cfg.facts:
                began = time.perf_counter()
                await seed_facts(session, cluster.url, tokens, cfg.facts)
                log(
                    f"seeded {cfg.facts} facts x {len(tokens)} households in "
                    f"{time.perf_counter() - began:.1f} s"
                )
            clients = [HomeMindClient(session, cluster.url, token) for token in tokens]
            assert cluster.balancer is not None and cluster.balancer.process is not None
            servers = {
                f"server-{i + 1}": server.process.pid if server.process else None
                for i, server in enumerate(cluster.servers)
            }
            pids = {**servers, "haproxy": cluster.balancer.process.pid, "fake": fake.pid}
            phases.append(
                await run_phase(
                    "(b) client -> HAProxy -> 2 servers",
                    lambda i: make_client_turn(
                        clients[i],
                        next_message(f"{cfg.message} [{i}]", repeat=cfg.repeat),
                        expected,
                    ),
                    cfg,
                    pids,
                    servers,
                    (session, [cluster.metrics_url(i) for i in range(len(cluster.servers))]),
                )
            )
            # The balancer's view: health-check state changes, and what it answered itself.
            lines = cluster.balancer.logs().splitlines()
            phases[-1].notes = [
                line.strip()[:160] for line in lines if line.startswith("Server homemind/")
            ]
            own = sum(1 for line in lines if "homemind/<NOSRV>" in line)
            phases[-1].notes.append(f"requests HAProxy answered itself (no server up): {own}")
            phases[-1].notes.extend(haproxy_waits(lines))
    return phases


# What a household has told Home Mind over a few weeks (each home gets these, seeded
# through the installation API, so each turn's recall and extraction search real facts).
HOUSEHOLD_FACTS = (
    "The cat is called Miso and is not allowed in the bedroom.",
    "We like the bedroom at eighteen degrees at night.",
    "The bins go out on Monday evening.",
    "Anna starts work at seven and leaves the house at half past six.",
    "The heating in the living room is the Tado thermostat.",
    "Leo is allergic to peanuts.",
    "The garden lights should be off after eleven.",
    "Grandma visits every second Sunday.",
    "The dishwasher runs best on the eco programme at night.",
    "We are vegetarian on weekdays.",
    "The car charger is in the garage and the car is a Renault Zoe.",
    "The Wi-Fi router is in the hallway cupboard.",
    "Tom works from home on Wednesdays and Fridays.",
    "The plants on the balcony need water twice a week in summer.",
    "The dog Bruno gets fed at eight and at six.",
    "Our electricity is cheapest between one and five in the morning.",
    "The front door lock is a Nuki and it locks itself at midnight.",
    "The kids go to bed at half past eight on school nights.",
    "The guest room radiator is usually off.",
    "We prefer warm white light in the evening.",
    "The washing machine is in the basement.",
    "Anna's birthday is on the fourteenth of March.",
    "The recycling collection is every other Thursday.",
    "The boiler service is due in October.",
    "Tom likes the news summary with his morning coffee.",
)


async def seed_facts(session: Any, url: str, tokens: list[str], facts: int) -> None:
    """`facts` facts for each household, through the balancer (one embedding each)."""
    chosen = [HOUSEHOLD_FACTS[i % len(HOUSEHOLD_FACTS)] for i in range(facts)]
    if facts > len(HOUSEHOLD_FACTS):
        chosen = [f"{fact} (note {i})" for i, fact in enumerate(chosen)]

    async def household(token: str) -> None:
        for content in chosen:
            async with session.post(
                f"{url}/api/installation/memory",
                json={"content": content},
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                assert response.status in (200, 201), await response.text()

    for start in range(0, len(tokens), 20):
        await asyncio.gather(*(household(t) for t in tokens[start : start + 20]))


async def installations(session: Any, url: str, count: int) -> list[str]:
    """One account per home, each with one installation, registered through the balancer.

    Each registration says it comes from an address of its own (X-Forwarded-For, which
    the servers believe from HAProxy): registration is throttled per address, and these
    are different households.
    """

    async def household(i: int) -> str:
        body = {"email": f"home-{i}-{time.time_ns()}@example.test", "password": PASSWORD}
        forwarded = {"X-Forwarded-For": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"}
        async with session.post(
            f"{url}/api/auth/register", json=body, headers=forwarded
        ) as response:
            assert response.status == 201, await response.text()
            access = (await response.json())["access_token"]
        async with session.post(
            f"{url}/api/installations",
            json={"name": f"Home {i}"},
            headers={"Authorization": f"Bearer {access}"},
        ) as response:
            assert response.status == 201, await response.text()
            token: str = (await response.json())["token"]
        return token

    tokens: list[str] = []
    for start in range(0, count, 10):  # password hashing is slow: a few at a time
        tokens += await asyncio.gather(
            *(household(i) for i in range(start, min(count, start + 10)))
        )
    return tokens


# httplog: "... backend/server TR/Tw/Tc/Tr/Ta status ... act/fe/be/srv/retries sq/bq ..."
_HTTPLOG = re.compile(
    r" homemind/(?P<server>\S+) -?\d+/(?P<tw>-?\d+)/-?\d+/-?\d+/(?P<ta>\+?-?\d+) "
    r"(?P<status>\d{3}) .* \d+/\d+/\d+/(?P<srv_conn>\d+)/(?P<retries>\+?\d+) "
    r"(?P<sq>\d+)/(?P<bq>\d+) .*\"POST /api/chat/stream"
)


def haproxy_waits(lines: list[str]) -> list[str]:
    """Chat streams as HAProxy logged them: time queued for a server slot, by status."""
    waits: dict[str, list[float]] = {}
    busiest: dict[str, int] = {}
    peers: set[str] = set()  # the client's address and port: one per TCP connection
    for line in lines:
        found = _HTTPLOG.search(line)
        if found is None:
            continue
        peers.add(line.split(" [", 1)[0].rsplit(" ", 1)[-1])
        key = f"{found['server']} {found['status']}"
        waits.setdefault(key, []).append(max(0, int(found["tw"])) / 1000)
        busiest[found["server"]] = max(busiest.get(found["server"], 0), int(found["srv_conn"]))
    out = []
    for key, values in sorted(waits.items()):
        out.append(
            f"chat streams {key}: {len(values)}, queued p50 {ms(percentile(values, 50))} ms, "
            f"p99 {ms(percentile(values, 99))} ms"
        )
    out.extend(f"most streams at once on {name}: {n}" for name, n in sorted(busiest.items()))
    streams = sum(len(v) for v in waits.values())
    out.append(f"client connections for {streams} chat streams: {len(peers)} (keep-alive reuse)")
    return out


def log(message: str) -> None:
    print(f"  [{message}]", file=sys.stderr, flush=True)


def report(cfg: argparse.Namespace, phases: list[Phase]) -> str:
    out: list[str] = []
    rows = []
    for phase in phases:
        s = phase.series
        f, e = s.firsts(), s.ends()
        rows.append(
            [
                phase.name,
                str(phase.turns),
                f"{phase.turns / phase.seconds:.1f}" if phase.seconds else "-",
                str(sum(s.errors.values())),
                *(ms(percentile(values, p)) for values in (f, e) for p in (50, 99)),
            ]
        )
    out.append(f"Latency at {cfg.concurrency} concurrent streams, ms")
    out.append(
        table(
            ["path", "turns", "turns/s", "errors", "first p50", "first p99", "end p50", "end p99"],
            rows,
        )
    )
    by_name = {p.name[:3]: p for p in phases}
    if "(a)" in by_name and "(b)" in by_name:
        a, b = by_name["(a)"].series, by_name["(b)"].series
        deltas = [
            percentile(mine, p) - percentile(theirs, p)
            for mine, theirs in ((b.firsts(), a.firsts()), (b.ends(), a.ends()))
            for p in (50, 99)
        ]
        out.append("")
        out.append("Added by the deployment over (a), ms (difference of percentiles)")
        out.append(
            table(
                ["path", "first p50", "first p99", "end p50", "end p99"],
                [[by_name["(b)"].name, *(f"{x * 1000:+.1f}" for x in deltas)]],
            )
        )
    for phase in phases:
        if phase.turns and phase.cpu_ms:
            out.append("")
            out.append(f"CPU per completed turn, ms ({phase.name})")
            servers = [k for k in phase.cpu_ms if k.startswith("server")]
            cells = [f"{phase.cpu_ms[k] / phase.turns:.1f}" for k in phase.cpu_ms]
            total = sum(phase.cpu_ms[k] for k in servers) / phase.turns
            headers = [*phase.cpu_ms, *(["servers together"] if servers else [])]
            out.append(table(headers, [[*cells, *([f"{total:.1f}"] if servers else [])]]))
        if phase.rss and phase.rss[0][1]:
            out.append("")
            out.append(f"Server RSS over the window, MB ({phase.name})")
            names = [f"server-{i + 1}" for i in range(len(phase.rss[0][1]))]
            out.append(
                table(
                    ["t, s", *names],
                    [[f"{t:.0f}", *(f"{x:.0f}" for x in values)] for t, values in phase.rss],
                )
            )
        if phase.gauges:
            out.append("")
            out.append(f"Server gauges sampled each second, mean / max ({phase.name})")
            names = [f"server-{i + 1}" for i in range(len(next(iter(phase.gauges.values()))))]
            out.append(
                table(
                    ["gauge", *names],
                    [
                        [
                            key,
                            *(
                                f"{sum(v) / len(v):.1f} / {max(v):.0f}" if v else "-"
                                for v in per_server
                            ),
                        ]
                        for key, per_server in phase.gauges.items()
                    ],
                )
            )
        if phase.counted and phase.turns:
            out.append("")
            out.append(f"Database pool over the window ({phase.name})")
            rows = []
            for i, c in enumerate(phase.counted):
                n = c["checkouts"] or float("nan")
                rows.append(
                    [
                        f"server-{i + 1}",
                        f"{c['checkouts']:.0f}",
                        f"{c['checkouts'] / phase.turns * len(phase.counted):.1f}",
                        f"{c['wait'] / n * 1000:.1f}",
                        f"{c['held'] / n * 1000:.1f}",
                    ]
                )
            out.append(
                table(
                    ["server", "checkouts", "per turn", "wait ms (mean)", "held ms (mean)"],
                    rows,
                )
            )
    for phase in phases:
        if phase.notes:
            out.append("")
            out.append(f"HAProxy ({phase.name}):")
            out.extend(f"  {note}" for note in phase.notes)
    errors = {p.name: dict(p.series.errors) for p in phases if p.series.errors}
    if errors:
        out.append("")
        out.append(f"Errors: {errors}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds a phase")
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds first")
    parser.add_argument("--quick", action="store_true", help="20 concurrent, 10 s phases")
    parser.add_argument("--ttft", type=float, default=0.3, help="fake time to first token, s")
    parser.add_argument("--token-delay", type=float, default=0.02, help="s between tokens")
    parser.add_argument("--tokens", type=int, default=40, help="tokens (words) per answer")
    parser.add_argument("--rss-every", type=float, default=10.0, help="s between RSS samples")
    parser.add_argument("--paths", default="ab", help="which phases to run (subset of ab)")
    parser.add_argument("--message", default=MESSAGE)
    parser.add_argument(
        "--facts", type=int, default=25, help="facts each household has remembered (0: none)"
    )
    parser.add_argument(
        "--repeat-message",
        dest="repeat",
        action="store_true",
        help="the same message every turn (default: numbered, so no turn is a cache hit)",
    )
    parser.add_argument(
        "--extraction",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after-turn memory extraction (production default: on)",
    )
    parser.add_argument(
        "--embedder",
        default="multilingual",
        help="HOMEMIND_EMBEDDER (multilingual: the production default, minilm, none)",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for both servers, e.g. HOMEMIND_DB_POOL_SIZE=30 (repeatable)",
    )
    parser.add_argument(
        "--maxconn", type=int, help="HOMEMIND_SERVER_MAXCONN for HAProxy (its default: 100)"
    )
    cfg = parser.parse_args(argv)
    if cfg.quick:
        cfg.concurrency, cfg.duration, cfg.warmup = 20, 10.0, 2.0
    if cfg.maxconn is not None:
        os.environ["HOMEMIND_SERVER_MAXCONN"] = str(cfg.maxconn)  # HAProxy reads it

    print(f"Home Mind load benchmark: {cfg.concurrency} concurrent streaming chats")
    print(environment(PACKAGES))
    print(
        f"fake Claude: first token after {cfg.ttft * 1000:.0f} ms, then {cfg.tokens - 1} more "
        f"{cfg.token_delay * 1000:.0f} ms apart; phases of {cfg.duration:.0f} s after "
        f"{cfg.warmup:.0f} s warm-up; extraction {'on' if cfg.extraction else 'off'}, "
        f"embedder {cfg.embedder}; {cfg.facts} facts a household; "
        + ("the same message every turn" if cfg.repeat else "a new (numbered) message every turn")
    )
    if cfg.server_env or cfg.maxconn is not None:
        print(f"servers: {' '.join(cfg.server_env) or '-'}; HAProxy maxconn {cfg.maxconn}")
    print("processes: fake Claude | HAProxy | 2 x homemind-server (PostgreSQL, Redis) | bench")
    print(flush=True)
    chat_latency = Path(__file__).resolve().parent / "chat_latency.py"
    with tempfile.TemporaryDirectory(prefix="homemind-load-") as tmp_name:
        tmp = Path(tmp_name)
        fake = Child(
            [
                sys.executable,
                str(chat_latency),
                "--role=fake",
                f"--ttft={cfg.ttft}",
                f"--token-delay={cfg.token_delay}",
                f"--tokens={cfg.tokens}",
            ],
            tmp / "fake.log",
            env=os.environ,
        )
        try:
            fake.start()
            phases = asyncio.run(measure(cfg, fake, tmp / "cluster"))
        finally:
            fake.stop()
    print(report(cfg, phases))
    if fake.final:
        print("Fake Claude saw: " + ", ".join(f"{k} {v}" for k, v in sorted(fake.final.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
