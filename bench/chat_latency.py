"""Chat latency: what Home Mind adds between Claude and Home Assistant.

    .venv/bin/python bench/chat_latency.py [--quick]

Three processes, so that no measured party shares an event loop with a party it talks to:

* fake Claude (tests/fakes/claude.py) in a child process on 127.0.0.1: a fixed time to the
  first token, then one token (word) every `--token-delay` seconds;
* the real `cloud_server` (`create_app(Settings())`, served by aiohttp as `homemind-server
  serve` does: no access log, INFO log lines to stderr, SQLite in a temp data folder) in a
  second child process, pointed at the fake with `ANTHROPIC_BASE_URL`;
* this process: the load generator and a real Home Assistant core (the HA test harness's
  `async_test_home_assistant`, on HA's own event-loop policy) with `home_mind` set up
  against that server, the Assist LLM API enabled and a few exposed entities.

Paths, measured side by side in one run (at concurrency 1 they are interleaved turn by
turn, rotating the order, so drift and noise hit all three alike):

(a) the anthropic SDK streaming from the fake directly (the floor);
(b) `HomeMindClient.chat_stream` → cloud_server → SDK → fake;
(c) `conversation.async_converse` → home_mind agent → HomeMindClient → cloud_server → fake.
    The first delta is the first chat-log delta with text, seen by a
    `chat_log_delta_listener` attached exactly as HA's Assist pipeline attaches it (it
    fires synchronously when the ChatLog receives the delta, i.e. when HA could start
    showing or speaking it); the end is `async_converse` returning the final result.

Memory extraction: the server schedules a background (non-streaming) Claude call after each
answered turn and has no switch to turn it off. It stays on, as in production; the fake
answers those calls at once with an empty decisions tool call (and counts them), and at
concurrency 1 a short think time between turns lets each extraction finish before the
next turn starts. At concurrency 50 extractions overlap other turns, as in production.

Pacing: 2 ms between tokens at concurrency 1 (so 200 interleaved turns per path fit the time
budget; each hop's per-delta work is far below it) and 10 ms (a realistic rate) at
concurrency 50, where the token rate sets the load. At concurrency 50 the workers' starts
are spread over one turn (steady state); the "burst" rows start all 50 at once. CPU per turn
of each process and the TCP connections the server accepted are printed too.

This process's full garbage collections are timed per measured phase and printed: HA core
lives here, and one full collection (tens to a couple of hundred ms) delays every turn in
flight, which shows in (c)'s p99 at c=50 and is not the server's doing.

Timings are printed, never asserted. "Added" figures are differences of percentiles
(p99(b) - p99(a)), not percentiles of per-turn differences.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import itertools
import json
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo root importable first
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import Child, cpu_seconds, environment, ms, percentile, table

FAKE_KEY = "sk-ant-test-fake"
MODEL = "claude-haiku-5-5"
MESSAGE = "What temperature should the bedroom be at tonight for good sleep?"
EXTRACTION_MARK = "You maintain the long-term memory"
ANSWER = (
    "Most people sleep best with the bedroom between seventeen and nineteen degrees, so "
    "eighteen is a good target tonight. I can lower the thermostat at ten and warm the room "
    "back up to twenty one degrees half an hour before you usually wake up, if you like."
)
TARGET_FIRST_P50 = 0.015
TARGET_FIRST_P99 = 0.040
HOME = (
    ("light.kitchen", "off", "Kitchen light"),
    ("light.bedroom", "on", "Bedroom light"),
    ("climate.bedroom", "heat", "Bedroom thermostat"),
    ("sensor.bedroom_temperature", "19.5", "Bedroom temperature"),
    ("switch.coffee_machine", "off", "Coffee machine"),
)
PACKAGES = ("homeassistant", "aiohttp", "anthropic", "httpx2", "pydantic", "SQLAlchemy")


def answer_text(tokens: int) -> str:
    """`tokens` words (the fake streams one word per token)."""
    base = ANSWER.split()
    words = [base[i % len(base)] for i in range(tokens)]
    return " ".join(words)


def stdin_closed() -> Awaitable[str]:
    """Completes when the parent closes our stdin (or dies)."""
    return asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


# --------------------------------------------------------------------------- child: fake


async def serve_fake(ttft: float, token_delay: float, tokens: int) -> None:
    from cloud_server.memory.extraction import DECISIONS_TOOL
    from tests.fakes.claude import FakeClaude, text, tool_use

    class BenchClaude(FakeClaude):
        async def _complete(self, request: Any, turn: Any, model: str) -> Any:
            # Non-streaming calls are memory extractions here: answer them at once, so a
            # background call never holds the server or a connection while turns are timed.
            # (The base class reads the delays before its first await.)
            saved = self.time_to_first_token, self.token_delay
            self.time_to_first_token = self.token_delay = 0.0
            try:
                return await super()._complete(request, turn, model)
            finally:
                self.time_to_first_token, self.token_delay = saved

    fake = BenchClaude(time_to_first_token=ttft, token_delay=token_delay)
    stats: Counter[str] = Counter()
    reply = text(answer_text(tokens))
    nothing = tool_use(DECISIONS_TOOL, {"decisions": []})

    def respond(record: Any) -> Any:
        fake.requests.clear()  # nothing reads them; keep memory flat
        if record.stream:
            stats["chat_streams"] += 1
            return reply
        stats["extractions" if EXTRACTION_MARK in record.system_text else "other"] += 1
        return nothing

    fake.responder = respond
    await fake.start()
    print(json.dumps({"url": fake.base_url}), flush=True)
    loop = asyncio.get_running_loop()
    # One JSON command per line (`{"token_delay": s}`), answered with one line; EOF: stop.
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        command = json.loads(line)
        if "token_delay" in command:
            fake.token_delay = float(command["token_delay"])
        print(json.dumps({"ok": True}), flush=True)
    await fake.close()
    print(json.dumps(dict(stats)), flush=True)


# --------------------------------------------------------------------------- child: server


async def serve_server() -> None:
    from aiohttp import web

    from cloud_server.accounts import installations, service
    from cloud_server.app import create_app
    from cloud_server.db.engine import DB_SESSIONMAKER
    from cloud_server.lifecycle import freeze_start_up_objects
    from cloud_server.observability.logs import configure_logging
    from cloud_server.server_secrets import load_server_secrets
    from cloud_server.settings import Settings

    settings = Settings()  # from the environment, as `homemind-server serve`
    configure_logging(settings.log_level, settings.effective_log_format)
    load_server_secrets(settings)
    app = create_app(settings)
    peers: set[Any] = set()
    requests = Counter[str]()

    @web.middleware
    async def count_connections(request: web.Request, handler: Any) -> web.StreamResponse:
        # Reused keep-alive connections keep their peer address; a new one gets a new port.
        if request.transport is not None:
            peers.add(request.transport.get_extra_info("peername"))
        requests[request.path] += 1
        response: web.StreamResponse = await handler(request)
        return response

    app.middlewares.append(count_connections)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=10)
    await runner.setup()
    freeze_start_up_objects()  # as `serve` does (cloud_server/lifecycle.py)
    await web.TCPSite(runner, settings.host, settings.port).start()
    port = runner.addresses[0][1]
    # An installation token minted through our own accounts code (as the CLI does).
    async with app[DB_SESSIONMAKER].begin() as session:
        owner = await service.local_owner(session)
        installation, token = await installations.create_installation(
            session, owner.id, "Bench home"
        )
    ready = {"url": f"http://{settings.host}:{port}", "token": token, "id": installation.id}
    print(json.dumps(ready), flush=True)
    await stdin_closed()
    await runner.cleanup()
    print(json.dumps({"connections": len(peers), "requests": dict(requests)}), flush=True)


# --------------------------------------------------------------------------- measuring


@dataclass
class Sample:
    first: float  # seconds from the call to the first text delta
    end: float  # seconds from the call to the complete answer


@dataclass
class Series:
    samples: list[Sample] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def add(self, result: Sample | str) -> None:
        if isinstance(result, Sample):
            self.samples.append(result)
        else:
            self.errors[result] += 1

    def firsts(self) -> list[float]:
        return [s.first for s in self.samples]

    def ends(self) -> list[float]:
        return [s.end for s in self.samples]


Turn = Callable[[], Awaitable[Sample | str]]


def next_message(base: str, *, repeat: bool) -> Callable[[], str]:
    """Each turn's message: `base` numbered, so every turn asks something new and no cache
    (the server's query-embedding LRU, cloud_server/memory/embedder.py) answers it; with
    `repeat`, `base` every time (a household repeating a command)."""
    numbers = itertools.count(1)
    if repeat:
        return lambda: base
    return lambda: f"{base} (question {next(numbers)})"


def make_sdk_turn(sdk: Any, message: Callable[[], str], expected: str) -> Turn:
    async def turn() -> Sample | str:
        start = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        stream = await sdk.messages.create(
            model=MODEL,
            max_tokens=1024,
            messages=[{"role": "user", "content": message()}],
            stream=True,
        )
        async with stream:
            async for event in stream:
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    if first is None:
                        first = time.perf_counter() - start
                    parts.append(event.delta.text)
        end = time.perf_counter() - start
        if first is None or "".join(parts) != expected:
            return "wrong answer"
        return Sample(first, end)

    return turn


def make_client_turn(client: Any, message: Callable[[], str], expected: str) -> Turn:
    from homemind_client.models import ChatRequest, DoneEvent, TextDeltaEvent

    async def turn() -> Sample | str:
        start = time.perf_counter()
        first: float | None = None
        reply = None
        async for event in client.chat_stream(ChatRequest(message=message(), language="en")):
            if isinstance(event, TextDeltaEvent) and event.text and first is None:
                first = time.perf_counter() - start
            elif isinstance(event, DoneEvent):
                reply = event.response.reply
        end = time.perf_counter() - start
        if first is None or reply != expected:
            return "wrong answer"
        return Sample(first, end)

    return turn


def make_ha_turn(hass: Any, agent_id: str, message: Callable[[], str], expected: str) -> Turn:
    from homeassistant.components import conversation
    from homeassistant.core import Context
    from homeassistant.helpers import chat_session

    async def turn() -> Sample | str:
        start = time.perf_counter()
        first: list[float] = []

        def on_delta(_log: Any, delta: dict[str, Any]) -> None:
            if not first and delta.get("content"):
                first.append(time.perf_counter() - start)

        # A new conversation each turn, like (a) and (b): one user message, no history.
        with (
            chat_session.async_get_chat_session(hass) as session,
            conversation.async_get_chat_log(hass, session, chat_log_delta_listener=on_delta),
        ):
            result = await conversation.async_converse(
                hass,
                message(),
                session.conversation_id,
                Context(),
                language="en",
                agent_id=agent_id,
            )
        end = time.perf_counter() - start
        speech = result.response.speech.get("plain", {}).get("speech", "")
        if not first or speech != expected:
            return f"wrong answer: {speech[:60]!r}"
        return Sample(first[0], end)

    return turn


async def guarded(turn: Turn) -> Sample | str:
    try:
        return await turn()
    except Exception as err:
        return f"{type(err).__name__}: {str(err)[:60]}"


@contextlib.asynccontextmanager
async def ha_agent(config_dir: Path, url: str, token: str) -> AsyncIterator[tuple[Any, str]]:
    """A running HA core with the home_mind agent set up against the server."""
    # Our `custom_components` package first: the HA test harness ships one of its own.
    importlib.import_module("custom_components.home_mind")
    from homeassistant import loader
    from homeassistant.components.homeassistant.exposed_entities import async_expose_entity
    from homeassistant.const import CONF_LLM_HASS_API, CONF_TOKEN, CONF_URL
    from homeassistant.helpers import entity_registry as er
    from homeassistant.helpers import llm
    from homeassistant.setup import async_setup_component
    from pytest_homeassistant_custom_component.common import (
        MockConfigEntry,
        async_test_home_assistant,
    )

    from custom_components.home_mind.const import DOMAIN

    async with async_test_home_assistant(config_dir=str(config_dir)) as hass:
        try:
            hass.data.pop(loader.DATA_CUSTOM_COMPONENTS)  # what enable_custom_integrations does
            for domain in ("homeassistant", "intent"):
                assert await async_setup_component(hass, domain, {}), domain
            # A small home for the Assist API's prompt: a few exposed states.
            for entity_id, state, name in HOME:
                hass.states.async_set(entity_id, state, {"friendly_name": name})
                async_expose_entity(hass, "conversation", entity_id, True)
            await hass.async_block_till_done()
            entry = MockConfigEntry(
                domain=DOMAIN,
                title="Bench home",
                data={CONF_URL: url, CONF_TOKEN: token},
                options={CONF_LLM_HASS_API: [llm.LLM_API_ASSIST]},
            )
            entry.add_to_hass(hass)
            assert await hass.config_entries.async_setup(entry.entry_id), "home_mind setup"
            await hass.async_block_till_done()
            registry = er.async_get(hass)
            agent_id = registry.async_get_entity_id("conversation", DOMAIN, entry.entry_id)
            assert agent_id is not None
            yield hass, agent_id
        finally:
            await hass.async_stop(force=True)


@dataclass
class Config:
    quick: bool
    ttft: float
    token_delay: float  # at concurrency 1
    load_token_delay: float  # at high concurrency
    tokens: int
    samples: int  # per path at concurrency 1
    concurrency: int
    rounds: int  # turns per worker at high concurrency
    think: float  # pause between turns at concurrency 1
    warmup: int
    message: str
    repeat: bool  # the same message every turn (else numbered: no cache hit)
    paths: str  # which of "abc" to run
    burst: bool  # also measure a synchronised burst of `concurrency` turns

    @property
    def levels(self) -> list[str]:
        high = str(self.concurrency)
        return ["1", high, f"{high} burst"] if self.burst else ["1", high]


PATHS = {
    "a": "(a) SDK -> fake Claude",
    "b": "(b) client -> server",
    "c": "(c) HA agent -> server",
}


@dataclass
class Cpu:
    """CPU milliseconds per turn of each process during one high-concurrency phase."""

    fake: float
    server: float
    bench: float


async def measure(
    cfg: Config,
    server: dict[str, Any],
    fake: Child,
    server_pid: int | None,
    tmp: Path,
    pauses: GcPauses,
) -> tuple[dict[tuple[str, str], Series], dict[str, Cpu]]:
    import aiohttp
    import anthropic

    from homemind_client.client import HomeMindClient

    loop = asyncio.get_running_loop()
    expected = answer_text(cfg.tokens)
    fake_url = fake.ready["url"]
    # Building an SDK client loads CA certificates: off the loop, as HA's own code does.
    sdk = await loop.run_in_executor(
        None, lambda: anthropic.AsyncAnthropic(base_url=fake_url, api_key=FAKE_KEY, max_retries=0)
    )
    results: dict[tuple[str, str], Series] = {}
    cpu: dict[str, Cpu] = {}
    home = (
        ha_agent(tmp / "ha", server["url"], server["token"])
        if "c" in cfg.paths
        else contextlib.nullcontext((None, ""))
    )
    # No cap on client connections (aiohttp's default is 100): each worker keeps its own.
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session, home as (hass, agent_id):
        client = HomeMindClient(session, server["url"], server["token"])
        # One numbering for every path: (b) and (c) share the server and its query cache.
        message = next_message(cfg.message, repeat=cfg.repeat)
        every = {
            "a": make_sdk_turn(sdk, message, expected),
            "b": make_client_turn(client, message, expected),
            "c": make_ha_turn(hass, agent_id, message, expected),
        }
        turns = {key: turn for key, turn in every.items() if key in cfg.paths}
        names = list(turns)

        async def pacing(delay: float) -> None:
            await loop.run_in_executor(None, fake.command, {"token_delay": delay})

        # Warm-up: connections, caches, lazy imports. Not measured.
        await pacing(cfg.token_delay)
        for key in names:
            for _ in range(cfg.warmup):
                if isinstance(outcome := await guarded(turns[key]), str):
                    raise RuntimeError(f"warm-up of {PATHS[key]} failed: {outcome}")
        await asyncio.sleep(0.5)

        # Concurrency 1, interleaved: a, b, c, then b, c, a, ...
        started = time.perf_counter()
        pauses.phase = "all paths, c=1"
        before = cpu_seconds(fake.pid), cpu_seconds(server_pid), cpu_seconds()
        for key in names:
            results[key, "1"] = Series()
        for i in range(cfg.samples):
            for key in names[i % len(names) :] + names[: i % len(names)]:
                results[key, "1"].add(await guarded(turns[key]))
                await asyncio.sleep(cfg.think)
        after = cpu_seconds(fake.pid), cpu_seconds(server_pid), cpu_seconds()
        pauses.phase = None
        # Server CPU per turn that went through it; fake and bench per turn of any path.
        through = max(1, cfg.samples * len([k for k in names if k != "a"]))
        every_turn = max(1, cfg.samples * len(names))
        cpu["1"] = Cpu(
            (after[0] - before[0]) * 1000 / every_turn,
            (after[1] - before[1]) * 1000 / through,
            (after[2] - before[2]) * 1000 / every_turn,
        )
        log(f"concurrency 1: {time.perf_counter() - started:.1f} s")

        await pacing(cfg.load_token_delay)
        high = str(cfg.concurrency)
        turn_time = cfg.ttft + (cfg.tokens - 1) * cfg.load_token_delay
        for key in names:
            started = time.perf_counter()

            async def worker(key: str, series: Series | None, delay: float, rounds: int) -> None:
                await asyncio.sleep(delay)
                for _ in range(rounds):
                    outcome = await guarded(turns[key])
                    if series is not None:
                        series.add(outcome)

            # An unmeasured burst opens the connections (and warms the pools).
            await asyncio.gather(*(worker(key, None, 0, 1) for _ in range(cfg.concurrency)))
            await asyncio.sleep(0.5)
            # Steady state: workers start spread over one turn's time, then loop.
            series = results[key, high] = Series()
            pauses.phase = f"{PATHS[key]}, c={high} steady"
            before = cpu_seconds(fake.pid), cpu_seconds(server_pid), cpu_seconds()
            await asyncio.gather(
                *(
                    worker(key, series, turn_time * i / cfg.concurrency, cfg.rounds)
                    for i in range(cfg.concurrency)
                )
            )
            await asyncio.sleep(0.3)  # let this path's extractions finish (counted)
            after = cpu_seconds(fake.pid), cpu_seconds(server_pid), cpu_seconds()
            pauses.phase = None
            n = max(1, cfg.concurrency * cfg.rounds)
            cpu[key] = Cpu(*((x - y) * 1000 / n for x, y in zip(after, before, strict=True)))
            if cfg.burst:
                # All turns at once: what a synchronised spike of requests costs.
                series = results[key, f"{high} burst"] = Series()
                pauses.phase = f"{PATHS[key]}, c={high} burst"
                await asyncio.gather(*(worker(key, series, 0, 1) for _ in range(cfg.concurrency)))
                pauses.phase = None
                await asyncio.sleep(0.3)
            log(f"concurrency {high} {PATHS[key]}: {time.perf_counter() - started:.1f} s")
    return results, cpu


class GcPauses:
    """This process's full (generation 2) garbage collections, timed, by measured phase.

    HA core and the load generator share this process: a full collection stops both for
    up to a couple of hundred ms, and any turn in flight (mostly (c), whose HA side runs
    here) is that much later. Printed so such a pause is not mistaken for the server's."""

    def __init__(self) -> None:
        self.phase: str | None = None
        self.seen: dict[str, list[float]] = {}
        self._started = 0.0

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, stage: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if stage == "start":
            self._started = time.perf_counter()
        elif self.phase is not None:
            self.seen.setdefault(self.phase, []).append(time.perf_counter() - self._started)


def log(message: str) -> None:
    print(f"  [{message}]", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- report


def report(
    cfg: Config,
    results: dict[tuple[str, str], Series],
    cpu: dict[str, Cpu],
    fake_stats: dict[str, Any],
) -> str:
    out: list[str] = []
    rows = []
    for level in cfg.levels:
        for key in cfg.paths:
            s = results[key, level]
            f, e = s.firsts(), s.ends()
            rows.append(
                [
                    PATHS[key],
                    level,
                    str(len(s.samples)),
                    str(sum(s.errors.values())),
                    *(ms(percentile(values, p)) for values in (f, e) for p in (50, 99)),
                ]
            )
    out.append("Latency, ms (first = first text delta, end = complete answer)")
    out.append(
        table(["path", "conc", "n", "errors", "first p50", "first p99", "end p50", "end p99"], rows)
    )

    added: dict[tuple[str, str], tuple[float, float]] = {}
    others = [key for key in cfg.paths if key != "a"]
    if "a" in cfg.paths and others:
        rows = []
        for level in cfg.levels:
            base = results["a", level]
            for key in others:
                s = results[key, level]
                deltas = [
                    percentile(mine, p) - percentile(theirs, p)
                    for mine, theirs in ((s.firsts(), base.firsts()), (s.ends(), base.ends()))
                    for p in (50, 99)
                ]
                added[key, level] = (deltas[0], deltas[1])
                rows.append([PATHS[key], level, *(f"{x * 1000:+.1f}" for x in deltas)])
        out.append("")
        out.append("Added over (a) at the same concurrency, ms (difference of percentiles)")
        out.append(table(["path", "conc", "first p50", "first p99", "end p50", "end p99"], rows))
        out.append("")
        out.append(
            "Target at concurrency 1: added time to first delta "
            f"<= {TARGET_FIRST_P50 * 1000:.0f} ms p50 and <= {TARGET_FIRST_P99 * 1000:.0f} ms p99"
        )
        for key in others:
            p50, p99 = added[key, "1"]
            verdict50 = "met" if p50 <= TARGET_FIRST_P50 else "NOT MET"
            verdict99 = "met" if p99 <= TARGET_FIRST_P99 else "NOT MET"
            out.append(
                f"  {PATHS[key]}: p50 {p50 * 1000:+.1f} ms {verdict50}; "
                f"p99 {p99 * 1000:+.1f} ms {verdict99}"
            )

    if cpu:
        out.append("")
        out.append("CPU per turn, ms (this process = load generator + HA core)")
        rows = []
        if "1" in cpu:
            c = cpu["1"]
            rows.append(["all paths, c=1 (server: per (b)/(c) turn)", *_cpu_cells(c)])
        rows += [
            [f"{PATHS[k]}, c={cfg.concurrency} steady", *_cpu_cells(c)]
            for k, c in cpu.items()
            if k != "1"
        ]
        out.append(table(["phase", "fake Claude", "server", "this process"], rows))

    errors = {f"{key}@{level}": dict(s.errors) for (key, level), s in results.items() if s.errors}
    if errors:
        out.append("")
        out.append(f"Errors: {json.dumps(errors)}")
    out.append("")
    out.append(
        "Fake Claude saw: "
        + ", ".join(f"{k} {v}" for k, v in sorted(fake_stats.items()))
        + " (memory extractions follow each answered (b)/(c) turn whose message has at"
        " least two content words; the fake answers them at once)"
    )
    return "\n".join(out)


def gc_report(pauses: GcPauses) -> str:
    """This process's full collections per measured phase (every turn in flight waits)."""
    if not pauses.seen:
        return "This process made no full garbage collection during the measured phases."
    rows = [
        [phase, str(len(times)), ms(max(times)), ms(sum(times))]
        for phase, times in pauses.seen.items()
    ]
    return (
        "Full garbage collections of this process (HA core + load generator) while measuring; "
        "each one delays every turn in flight here\n"
        + table(["phase", "count", "longest ms", "total ms"], rows)
    )


def _cpu_cells(cpu: Cpu) -> list[str]:
    return [f"{cpu.fake:.1f}", f"{cpu.server:.1f}", f"{cpu.bench:.1f}"]


def child_env(fake_url: str, data_dir: Path) -> dict[str, str]:
    """The server's environment: ours minus anything that would point it elsewhere."""
    drop = ("DATABASE_URL", "REDIS_URL", "SHODH_", "STRIPE_", "SMTP_", "HOMEMIND_", "ANTHROPIC_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        HOMEMIND_HOST="127.0.0.1",
        HOMEMIND_PORT="0",
        HOMEMIND_DATA_DIR=str(data_dir),
        HOMEMIND_MODE="self-hosted",
        HOMEMIND_LOG_LEVEL="INFO",
        ANTHROPIC_BASE_URL=fake_url,
        ANTHROPIC_API_KEY=FAKE_KEY,
    )
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (under ~40 s)")
    parser.add_argument("--ttft", type=float, default=0.1, help="fake time to first token, s")
    parser.add_argument(
        "--token-delay", type=float, default=0.002, help="s between tokens at concurrency 1"
    )
    parser.add_argument(
        "--load-token-delay",
        type=float,
        default=0.01,
        help="s between tokens at high concurrency",
    )
    parser.add_argument("--tokens", type=int, default=40, help="tokens (words) per answer")
    parser.add_argument("--samples", type=int, help="turns per path at concurrency 1")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, help="turns per worker at high concurrency")
    parser.add_argument("--think", type=float, default=0.02, help="pause between c=1 turns, s")
    parser.add_argument("--paths", default="abc", help="which paths to run (subset of abc)")
    parser.add_argument("--message", default=MESSAGE, help="the user's message")
    parser.add_argument(
        "--repeat-message",
        dest="repeat",
        action="store_true",
        help="the same message every turn (default: numbered, so no turn is a cache hit)",
    )
    parser.add_argument(
        "--burst",
        action=argparse.BooleanOptionalAction,
        help="also time one synchronised burst (default: on, off with --quick)",
    )
    parser.add_argument(
        "--profile-server",
        metavar="FILE",
        help="run the server under cProfile and write its pstats to FILE (inflates timings)",
    )
    parser.add_argument("--role", choices=["fake", "server"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.role == "fake":
        asyncio.run(serve_fake(args.ttft, args.token_delay, args.tokens))
        return 0
    if args.role == "server":
        from cloud_server.lifecycle import event_loop_factory

        # The event loop `homemind-server serve` runs on (uvloop where installed).
        loop_factory = event_loop_factory()
        if args.profile_server:
            import cProfile

            with cProfile.Profile() as profiler:
                asyncio.run(serve_server(), loop_factory=loop_factory)
            profiler.dump_stats(args.profile_server)
        else:
            asyncio.run(serve_server(), loop_factory=loop_factory)
        return 0

    cfg = Config(
        quick=args.quick,
        ttft=args.ttft,
        token_delay=args.token_delay,
        load_token_delay=args.load_token_delay,
        tokens=args.tokens,
        samples=args.samples or (15 if args.quick else 200),
        concurrency=args.concurrency,
        rounds=args.rounds or (1 if args.quick else 3),
        think=args.think,
        warmup=3 if args.quick else 10,
        message=args.message,
        repeat=args.repeat,
        paths="".join(key for key in PATHS if key in args.paths),
        burst=args.burst if args.burst is not None else not args.quick,
    )
    print("Home Mind chat latency benchmark" + (" (quick)" if cfg.quick else ""))
    print(environment(PACKAGES))
    print(
        f"fake Claude: first token after {cfg.ttft * 1000:.0f} ms, then {cfg.tokens - 1} more "
        f"tokens {cfg.token_delay * 1000:.0f} ms apart at c=1, "
        f"{cfg.load_token_delay * 1000:.0f} ms apart at c={cfg.concurrency}"
    )
    print(
        f"c=1: {cfg.samples} turns per path, interleaved, {cfg.think * 1000:.0f} ms think time; "
        f"c={cfg.concurrency}: {cfg.rounds} turn(s) per worker, starts spread over one turn"
        + (f"; burst: {cfg.concurrency} turns at once" if cfg.burst else "")
    )
    print(
        "messages: the same every turn (query embeddings cached)"
        if cfg.repeat
        else "messages: numbered, a new question every turn (no cached query embedding)"
    )
    from cloud_server.lifecycle import event_loop_factory

    loop = "uvloop" if event_loop_factory() is not None else "asyncio"
    print(
        f"processes: fake Claude | cloud_server (aiohttp on {loop}, SQLite, self-hosted) | "
        "load generator + HA core"
    )
    print(flush=True)

    me = [sys.executable, str(Path(__file__).resolve())]
    with tempfile.TemporaryDirectory(prefix="homemind-bench-") as tmp_name:
        tmp = Path(tmp_name)
        fake = Child(
            [
                *me,
                "--role=fake",
                f"--ttft={cfg.ttft}",
                f"--token-delay={cfg.token_delay}",
                f"--tokens={cfg.tokens}",
            ],
            tmp / "fake.log",
        )
        profile = (
            [f"--profile-server={Path(args.profile_server).resolve()}"]
            if args.profile_server
            else []
        )
        server = Child([*me, "--role=server", *profile], tmp / "server.log")
        try:
            fake_url = fake.start()["url"]
            server.env = child_env(fake_url, tmp / "server-data")
            ready = server.start()
            (tmp / "ha").mkdir()
            from homeassistant import runner

            logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
            # HA's start-up chatter (custom integration notice, optional C libraries).
            for name in ("homeassistant", "aiohttp_fast_zlib"):
                logging.getLogger(name).setLevel(logging.ERROR)
            asyncio.set_event_loop_policy(runner.HassEventLoopPolicy(False))
            started = time.perf_counter()
            with GcPauses() as pauses:
                results, cpu = asyncio.run(measure(cfg, ready, fake, server.pid, tmp, pauses))
            log(f"measured in {time.perf_counter() - started:.1f} s")
        finally:
            server.stop()
            fake.stop()
    print(report(cfg, results, cpu, fake.final))
    print()
    print(gc_report(pauses))
    if server.final:
        print(
            f"Server saw {server.final['connections']} TCP connections for "
            + ", ".join(f"{n} {path}" for path, n in server.final["requests"].items())
            + " (one connection per turn means the client's keep-alive is not reused)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
