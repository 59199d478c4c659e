"""Claude through the official SDK: shared clients, and Claude's failures mapped to our codes.

One `httpx2` client on the SDK's aiohttp transport (its SSL context and connection pool) is
built once at start-up in an executor — building an SSL context blocks, and inside Home
Assistant's loop blocking calls raise — and is shared by one cheap `AsyncAnthropic` per
distinct API key (a small LRU cache keyed by a hash of the key; keys are never logged).
The SDK's own retries are off (`max_retries=0`): the pipeline applies our policy (one quick
retry before the first byte).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import anthropic
import httpx2
from aiohttp import web

from homemind_client.models import ErrorCode

from ..app_keys import SETTINGS
from ..errors import ApiError
from ..settings import Settings

LOGGER = logging.getLogger(__name__)

MAX_CACHED_CLIENTS = 64
# Connect quickly or not at all; reading is bounded by the pipeline's own deadlines.
CONNECT_TIMEOUT = 5.0
DEFAULT_RETRY_AFTER = 5  # seconds, when Claude gave no retry-after
# Retry quickly once; a longer wait than this is the caller's to make (with Retry-After).
QUICK_RETRY_DELAY = 0.2
MAX_QUICK_RETRY_WAIT = 1.0

# Error types Claude reports in the body (also mid-stream, where the HTTP status is 200).
_UNAVAILABLE_TYPES = {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}
_KEY_TYPES = {"authentication_error", "permission_error"}


class ClaudeClients:
    """`AsyncAnthropic` clients sharing one HTTP client, one per API key (LRU)."""

    def __init__(
        self, http_client: httpx2.AsyncClient, base_url: str | None, timeout: float
    ) -> None:
        self._http = http_client
        self._base_url = base_url
        self._timeout = timeout
        self._clients: OrderedDict[str, anthropic.AsyncAnthropic] = OrderedDict()

    @classmethod
    def build(cls, settings: Settings) -> ClaudeClients:
        """Blocking (loads CA certificates): run it in an executor."""
        timeout = settings.response_timeout + 5.0
        # The SDK's aiohttp transport: per streamed chunk it costs about half the CPU of
        # httpx's own (h11 + anyio) stack. httpx still mounts the proxies of the environment.
        http_client = anthropic.DefaultAioHttpClient(
            timeout=httpx2.Timeout(timeout, connect=CONNECT_TIMEOUT),
            follow_redirects=False,
        )
        clients = cls(http_client, settings.anthropic_base_url, timeout)
        # Warm the SDK's lazy paths (resources, platform headers) off the event loop too.
        warm = clients.get("warm-up")
        warm.messages  # noqa: B018
        warm.platform_headers()
        clients._clients.clear()
        return clients

    def get(self, api_key: str) -> anthropic.AsyncAnthropic:
        slot = hashlib.sha256(api_key.encode()).hexdigest()
        client = self._clients.get(slot)
        if client is None:
            client = anthropic.AsyncAnthropic(
                api_key=api_key,
                base_url=self._base_url,
                http_client=self._http,
                max_retries=0,
                timeout=self._timeout,
                # No OpenTelemetry spans: the server exports none (it has /metrics), and
                # building each call's span attributes cost ~7 % of the SDK's CPU per call.
                open_telemetry=False,
            )
            self._clients[slot] = client
            while len(self._clients) > MAX_CACHED_CLIENTS:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(slot)
        return client

    async def aclose(self) -> None:
        self._clients.clear()
        await self._http.aclose()


CLAUDE_CLIENTS: web.AppKey[ClaudeClients] = web.AppKey("claude_clients", ClaudeClients)


async def claude_clients_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: build the shared clients off the loop on start-up, close them on shutdown."""
    settings = app[SETTINGS]
    loop = asyncio.get_running_loop()
    app[CLAUDE_CLIENTS] = await loop.run_in_executor(None, ClaudeClients.build, settings)
    try:
        yield
    finally:
        await app[CLAUDE_CLIENTS].aclose()


@dataclass(slots=True)
class UpstreamFailure(Exception):
    """Claude failed; `error` is what our client sees, `retryable` whether one retry may help."""

    error: ApiError
    retryable: bool
    retry_wait: float | None = None  # seconds Claude asked us to wait, when it said
    kind: str = "other"  # for the upstream-errors metric

    def __str__(self) -> str:
        return self.error.code


def _retry_after_seconds(err: anthropic.APIStatusError) -> float | None:
    value = err.response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def unavailable(detail: str, retry_after: float | None = None) -> ApiError:
    seconds = DEFAULT_RETRY_AFTER if retry_after is None else max(1, math.ceil(retry_after))
    return ApiError(ErrorCode.UPSTREAM_UNAVAILABLE, detail, retry_after=seconds)


def classify(err: BaseException, key_source: Literal["installation", "server"]) -> UpstreamFailure:
    """Map an SDK or transport error to the error our client sees."""
    if isinstance(err, anthropic.APIStatusError):
        status, kind = err.status_code, err.type
        wait = _retry_after_seconds(err)
        if status in (401, 403) or kind in _KEY_TYPES:
            if key_source == "installation":
                return UpstreamFailure(
                    ApiError(
                        ErrorCode.UPSTREAM_REJECTED_KEY,
                        "Anthropic refused this installation's API key; check or replace it.",
                    ),
                    retryable=False,
                    kind="rejected_key",
                )
            LOGGER.error(
                "Anthropic refused the server's ANTHROPIC_API_KEY (status %s, %s): fix the key",
                status,
                kind,
            )
            return UpstreamFailure(
                unavailable("Claude is not available right now."),
                retryable=False,
                kind="server_key_rejected",
            )
        if status in (408, 429) or status >= 500 or kind in _UNAVAILABLE_TYPES:
            return UpstreamFailure(
                unavailable("Claude is busy or unavailable; try again shortly.", wait),
                retryable=True,
                retry_wait=wait,
                kind=_status_kind(status),
            )
        LOGGER.warning(
            "Claude refused the request: status %s, type %s, request-id %s",
            status,
            kind,
            err.request_id,
        )
        return UpstreamFailure(
            ApiError(
                ErrorCode.UPSTREAM_REJECTED,
                f"Claude refused the request ({kind or status}).",
            ),
            retryable=False,
            kind="rejected",
        )
    if isinstance(err, anthropic.APIConnectionError | httpx2.TransportError | IncompleteStream):
        LOGGER.warning("Claude connection failed: %s", type(err).__name__)
        return UpstreamFailure(
            unavailable("Claude could not be reached; try again shortly."),
            retryable=True,
            kind="incomplete_stream" if isinstance(err, IncompleteStream) else "connection",
        )
    LOGGER.error("Unexpected error talking to Claude: %s", type(err).__name__)
    return UpstreamFailure(
        unavailable("Claude could not be reached; try again shortly."), retryable=False
    )


def _status_kind(status: int) -> str:
    if status == 529:
        return "overloaded"
    if status == 429:
        return "rate_limited"
    if status == 408:
        return "timeout"
    return "server_error"


async def upstream_events(response: httpx2.Response) -> AsyncIterator[dict[str, Any]]:
    """The JSON payloads of a Messages stream, as the SDK's own stream reads them.

    The SDK's SSE decoder splits the events; `ping` and unnamed events are skipped, and an
    `error` event raises the SDK's `APIStatusError` (its `type` read from the body), as the
    SDK's typed stream does. Payloads stay plain dicts: building the SDK's typed event
    objects cost more CPU per turn than everything else the server does.
    """
    async for sse in anthropic.AsyncStream.raw_events(response):
        name = sse.event
        if name is None or name == "ping":
            continue
        if name == "error":
            body: object = sse.data
            try:
                body = json.loads(sse.data)
                message = f"{body}"
            except ValueError:
                message = sse.data or f"Error code: {response.status_code}"
            raise anthropic.APIStatusError(message, response=response, body=body)
        if not sse.data:
            continue
        event = json.loads(sse.data)
        if isinstance(event, dict):
            yield event


class IncompleteStream(Exception):
    """Claude's stream ended without `message_stop`."""
