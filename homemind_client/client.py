"""The typed async client of the Home Mind cloud API.

Like hass-nabucasa it never imports Home Assistant and never owns the HTTP session: the
host (HA, the CLI, a test) passes its `aiohttp.ClientSession`.

Retry policy (voice: a person is waiting, so retries are few and short):

* `get_installation` (a GET, safe to repeat): up to `installation_retry.max_retries`
  retries on connection errors, timeouts, 429 and 502/503/504, with exponential backoff
  and jitter; a `Retry-After` is honoured when it fits `max_retry_after`, otherwise the
  error is raised at once (waiting longer than that helps nobody).
* `chat` and `chat_stream`: retried (at most `chat_retry.max_retries`) only when the
  server cannot have acted on the request — the TCP connection was never made
  (`ClientConnectorError`: refused, DNS), or it answered 429 or 503
  `upstream_unavailable` (refused before any model output). A connection that broke
  after the request was sent, a timeout, or any stream that has started is never
  retried: the turn may have been processed and counted.
* `remember` and `forget` (POSTs to the installation's memory): like `chat`, retried only
  when the request never reached the server (connection not made) or it answered 429;
  `forget` finding nothing raises `HomeMindNotFoundError` (code `memory_not_found`).
* `timeout` of `get_installation`/`chat`/`remember`/`forget` bounds each attempt (so a
  GET can take up to three of them plus short backoffs); a stream's `first_event_timeout`
  is one deadline for all its attempts together, and a backoff that would not fit is not
  attempted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from pydantic import BaseModel, ValidationError
from yarl import URL

from .errors import (
    HomeMindConnectionError,
    HomeMindError,
    HomeMindInvalidResponseError,
    HomeMindTimeoutError,
    error_for,
    parse_retry_after,
)
from .models import (
    ChatRequest,
    ChatResponse,
    DoneEvent,
    ErrorEvent,
    InstallationInfo,
    MemoryCreate,
    MemoryForgetRequest,
    MemoryForgetResult,
    MemoryItem,
    Problem,
    StreamEvent,
    TextDeltaEvent,
    ToolCallEvent,
    decode_event,
)
from .sse import SSEParser

__version__: Final = "0.1.0"

LOGGER = logging.getLogger(__name__)

DEFAULT_URL: Final = "http://127.0.0.1:8080"
REQUEST_ID_HEADER: Final = "X-Request-ID"

ChatStreamEvent = TextDeltaEvent | ToolCallEvent | DoneEvent
"""What `chat_stream` yields; an `error` event is raised, never yielded."""

# Worth another try of a request that is safe to repeat (a GET).
_TRANSIENT_STATUSES: Final = frozenset({429, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry; delays are `backoff * 2**n` with ±50 % jitter."""

    max_retries: int = 2
    backoff: float = 0.25
    max_backoff: float = 2.0
    max_retry_after: float = 5.0

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry number `attempt` (0-based); None: do not retry."""
        if attempt >= self.max_retries:
            return None
        if retry_after is not None and retry_after > self.max_retry_after:
            return None
        base = min(self.max_backoff, self.backoff * (2**attempt))
        # Jitter spreads out clients that failed together; not security related.
        delay: float = base * random.uniform(0.5, 1.5)  # noqa: S311
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay


class _Retry(Exception):
    """Internal: this attempt failed in a way that is safe to retry."""

    def __init__(self, error: HomeMindError, retry_after: float | None = None) -> None:
        super().__init__(error.detail)
        self.error = error
        self.retry_after = retry_after


class HomeMindClient:
    """Client of one Home Mind server, authenticated with an installation token."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        token: str,
        *,
        request_timeout: float = 15.0,
        first_event_timeout: float = 20.0,
        idle_timeout: float = 30.0,
        user_agent: str | None = None,
    ) -> None:
        url = URL(base_url.strip())
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("base_url must be an absolute http(s) URL")
        self.base_url: str = str(url).rstrip("/")
        self._base = URL(self.base_url)
        self._session = session
        self._token = token
        self.request_timeout = request_timeout
        self.first_event_timeout = first_event_timeout
        self.idle_timeout = idle_timeout
        agent = f"homemind-client/{__version__}"
        self.user_agent = f"{user_agent} {agent}" if user_agent else agent
        self.installation_retry = RetryPolicy(max_retries=2, backoff=0.25, max_retry_after=5.0)
        self.chat_retry = RetryPolicy(max_retries=1, backoff=0.2, max_retry_after=2.0)

    def __repr__(self) -> str:
        return f"HomeMindClient(base_url={self.base_url!r})"

    # --- public API -------------------------------------------------------------------

    async def get_installation(
        self,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the contract's per-call budget
    ) -> InstallationInfo:
        """`GET /api/installation`: what this token's installation is (validates the token)."""
        response, body = await self._with_retries(
            lambda: self._exchange(
                "GET",
                "/api/installation",
                None,
                "installation request",
                repeatable=True,
                timeout=timeout,
            ),
            self.installation_retry,
        )
        return self._parse_model(response, body, InstallationInfo)

    async def chat(
        self,
        request: ChatRequest,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the contract's per-call budget
    ) -> ChatResponse:
        """`POST /api/chat`: one turn, answered whole."""
        return await self._post_model(
            "/api/chat", request, ChatResponse, "chat request", timeout=timeout
        )

    async def task(
        self,
        request: ChatRequest,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the contract's per-call budget
    ) -> ChatResponse:
        """An AI Task: `POST /api/chat` with `mode: "task"`, answered whole.

        With `request.task.structure` the answer is in `data`; HA tool calls come back in
        `tool_calls` as in a chat (run them and send the results in the next request).
        Retried like `chat`.
        """
        if request.mode != "task":
            raise ValueError("a task request needs mode='task'")
        return await self._post_model(
            "/api/chat", request, ChatResponse, "task request", timeout=timeout
        )

    async def chat_stream(
        self,
        request: ChatRequest,
        *,
        first_event_timeout: float | None = None,
        idle_timeout: float | None = None,
        total_timeout: float | None = None,
    ) -> AsyncIterator[ChatStreamEvent]:
        """`POST /api/chat/stream`: typed events as the server sends them.

        Yields `TextDeltaEvent`, `ToolCallEvent` and finally one `DoneEvent`. An `error`
        event raises the mapped `HomeMindError` (after the events already yielded); a
        stream that ends without `done` raises `HomeMindConnectionError`.
        `first_event_timeout` covers connecting, the headers and the first event;
        `idle_timeout` the gap between two reads (keep-alive comments count as life);
        `total_timeout` the whole stream. Each raises `HomeMindTimeoutError`.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        first_budget = first_event_timeout or self.first_event_timeout
        idle = idle_timeout or self.idle_timeout
        total_deadline = started + total_timeout if total_timeout else None
        first_deadline = started + first_budget
        if total_deadline is not None:
            first_deadline = min(first_deadline, total_deadline)

        response = await self._open_stream(request, first_deadline)
        finished = False
        try:
            parser = SSEParser()
            seen_event = False
            while True:
                deadline = first_deadline if not seen_event else loop.time() + idle
                if total_deadline is not None:
                    deadline = min(deadline, total_deadline)
                try:
                    async with asyncio.timeout_at(deadline):
                        chunk = await response.content.readany()
                except TimeoutError as err:
                    what = "the answer" if seen_event else "the first event"
                    raise self._timeout_error(f"waiting for {what}", response) from err
                except (aiohttp.ClientError, ConnectionError) as err:
                    raise self._connection_error(err, response) from err
                if not chunk:
                    raise HomeMindConnectionError(
                        "The stream ended before the answer was complete.",
                        status=response.status,
                        request_id=_request_id(response),
                    )
                for sse in parser.feed(chunk):
                    event = self._decode(sse.event, sse.data, response)
                    if event is None:
                        continue  # a newer server's event: ignore for forward compatibility
                    seen_event = True
                    if isinstance(event, ErrorEvent):
                        raise error_for(
                            status=None,
                            code=event.code,
                            detail=event.detail,
                            request_id=_request_id(response),
                        )
                    if isinstance(event, DoneEvent):
                        finished = True
                        yield event
                        await _drain(response)
                        return
                    yield event
        finally:
            if finished:
                response.release()  # reuses the connection when the body was read to the end
            else:
                response.close()

    async def remember(
        self,
        content: str,
        *,
        category: str | None = None,
        speaker_id: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the contract's per-call budget
    ) -> MemoryItem:
        """`POST /api/installation/memory`: store a fact (the existing one if already known).

        Without `speaker_id` the fact belongs to the whole household.
        """
        body = MemoryCreate(content=content, category=category, speaker_id=speaker_id)
        return await self._post_model(
            "/api/installation/memory", body, MemoryItem, "memory request", timeout=timeout
        )

    async def forget(
        self,
        query: str,
        *,
        speaker_id: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the contract's per-call budget
    ) -> list[MemoryItem]:
        """`POST /api/installation/memory/forget`: delete the best match(es) for `query`.

        Raises `HomeMindNotFoundError` (code `memory_not_found`) when nothing matches.
        """
        body = MemoryForgetRequest(query=query, speaker_id=speaker_id)
        result = await self._post_model(
            "/api/installation/memory/forget",
            body,
            MemoryForgetResult,
            "memory request",
            timeout=timeout,
        )
        return result.forgotten

    # --- internals ----------------------------------------------------------------------

    async def _post_model[M: BaseModel](
        self,
        path: str,
        body: BaseModel,
        model: type[M],
        what: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the contract's per-call budget
    ) -> M:
        """POST a JSON body and parse a 200/201 answer; retried only if never processed."""
        payload = body.model_dump_json(exclude_none=True).encode()
        response, raw = await self._with_retries(
            lambda: self._exchange("POST", path, payload, what, timeout=timeout),
            self.chat_retry,
        )
        return self._parse_model(response, raw, model)

    async def _exchange(
        self,
        method: str,
        path: str,
        payload: bytes | None,
        what: str,
        *,
        repeatable: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 - the contract's per-call budget
    ) -> tuple[aiohttp.ClientResponse, bytes]:
        """One request answered whole: the 2xx response and its body."""
        response, body = await self._attempt(
            method,
            path,
            payload,
            what,
            accept="application/json",
            repeatable=repeatable,
            client_timeout=aiohttp.ClientTimeout(total=timeout or self.request_timeout),
        )
        assert body is not None
        return response, body

    async def _attempt(
        self,
        method: str,
        path: str,
        payload: bytes | None,
        what: str,
        *,
        accept: str,
        repeatable: bool,
        client_timeout: aiohttp.ClientTimeout,
        deadline: float | None = None,
        stream: bool = False,
    ) -> tuple[aiohttp.ClientResponse, bytes | None]:
        """One attempt of a request: the one place transport failures become our errors.

        Answers a 2xx response with its body read (`stream`: a 200 still open, body None).
        Raises `_Retry` when sending the same request again is safe: always when the
        connection was never made; for a `repeatable` request (a GET) after any transport
        failure or a transient status; otherwise only when the answer proves nothing was
        done (`ErrorCode.retryable`). A request that reached the server may have been
        acted on (a chat turn billed, a fact stored), so it is not sent twice.
        """
        headers = self._headers(accept, json_body=payload is not None)
        if stream:
            # Compression would make proxies and aiohttp buffer the stream.
            headers["Accept-Encoding"] = "identity"
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._session.request(
                    method,
                    self._url(path),
                    data=payload,
                    headers=headers,
                    timeout=client_timeout,
                    allow_redirects=False,
                )
                if stream and response.status == 200:
                    return response, None
                try:
                    body = await response.read()
                finally:
                    response.release()
        except HomeMindError:
            raise
        except TimeoutError as err:
            error: HomeMindError = self._timeout_error(what)
            raise (_Retry(error) if repeatable else error) from err
        except aiohttp.ClientConnectorCertificateError as err:
            raise self._connection_error(err) from err
        except aiohttp.ClientConnectorError as err:
            # Never connected: the server cannot have seen the request.
            raise _Retry(self._connection_error(err)) from err
        except aiohttp.ClientError as err:
            error = self._connection_error(err)
            raise (_Retry(error) if repeatable else error) from err
        if response.status in (200, 201) and not stream:
            return response, body
        error = self._error_from_response(response, body)
        if _safe_to_resend(response.status, error, repeatable=repeatable):
            raise _Retry(error, error.retry_after)
        raise error

    def _url(self, path: str) -> URL:
        return self._base.with_path(self._base.path.rstrip("/") + path)

    def _headers(self, accept: str, *, json_body: bool = False) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": accept,
            "User-Agent": self.user_agent,
        }
        if json_body:
            headers["Content-Type"] = "application/json"
        return headers

    async def _open_stream(self, request: ChatRequest, deadline: float) -> aiohttp.ClientResponse:
        """Send the stream request; retried only while nothing can have happened yet."""
        payload = request.model_dump_json(exclude_none=True).encode()

        async def attempt() -> aiohttp.ClientResponse:
            response, _ = await self._attempt(
                "POST",
                "/api/chat/stream",
                payload,
                "waiting for the first event",
                accept="text/event-stream",
                repeatable=False,
                # Our own deadlines govern; a session default must not cut a stream.
                client_timeout=aiohttp.ClientTimeout(total=None),
                deadline=deadline,
                stream=True,
            )
            if response.content_type != "text/event-stream":
                response.close()
                raise HomeMindInvalidResponseError(
                    f"Expected an event stream, got {response.content_type!r}.",
                    status=response.status,
                    request_id=_request_id(response),
                )
            return response

        return await self._with_retries(attempt, self.chat_retry, deadline)

    async def _with_retries[T](
        self,
        attempt: Callable[[], Awaitable[T]],
        policy: RetryPolicy,
        deadline: float | None = None,
    ) -> T:
        loop = asyncio.get_running_loop()
        retries = 0
        while True:
            try:
                return await attempt()
            except _Retry as retry:
                delay = policy.delay(retries, retry.retry_after)
                if delay is None or (deadline is not None and loop.time() + delay >= deadline):
                    raise retry.error from retry.__cause__
                LOGGER.debug(
                    "Retrying in %.2f s after %s (code %s)",
                    delay,
                    type(retry.error).__name__,
                    retry.error.code,
                )
                retries += 1
                await asyncio.sleep(delay)

    def _parse_model[M: BaseModel](
        self, response: aiohttp.ClientResponse, body: bytes, model: type[M]
    ) -> M:
        request_id = _request_id(response)
        try:
            return model.model_validate_json(body)
        except ValidationError as err:
            LOGGER.debug("Invalid %s from server (request id %s)", model.__name__, request_id)
            raise HomeMindInvalidResponseError(
                f"The server's answer is not a valid {model.__name__}.",
                status=response.status,
                request_id=request_id,
            ) from err

    def _error_from_response(self, response: aiohttp.ClientResponse, body: bytes) -> HomeMindError:
        status = response.status
        header_request_id = _request_id(response)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        LOGGER.debug(
            "%s %s -> HTTP %s (request id %s)",
            response.method,
            response.url.path,
            status,
            header_request_id,
        )
        if 300 <= status < 400 or status < 200:
            return HomeMindInvalidResponseError(
                f"Unexpected HTTP {status} from the server (is the URL right?).",
                status=status,
                request_id=header_request_id,
            )
        if 200 <= status < 300:
            return HomeMindInvalidResponseError(
                f"Unexpected HTTP {status} from the server.",
                status=status,
                request_id=header_request_id,
            )
        code, detail, request_id, problem_retry_after = _read_problem(body)
        if retry_after is None:
            retry_after = problem_retry_after
        return error_for(
            status=status,
            code=code,
            detail=detail or f"HTTP {status}",
            request_id=request_id or header_request_id,
            retry_after=retry_after,
        )

    def _decode(self, name: str, data: str, response: aiohttp.ClientResponse) -> StreamEvent | None:
        try:
            return decode_event(name, data)
        except ValueError as err:
            raise HomeMindInvalidResponseError(
                f"The server sent a malformed {name!r} event.",
                status=response.status,
                request_id=_request_id(response),
            ) from err

    def _timeout_error(
        self, what: str, response: aiohttp.ClientResponse | None = None
    ) -> HomeMindTimeoutError:
        return HomeMindTimeoutError(
            f"Timed out: {what}.",
            status=response.status if response is not None else None,
            request_id=_request_id(response) if response is not None else None,
        )

    def _connection_error(
        self, err: BaseException, response: aiohttp.ClientResponse | None = None
    ) -> HomeMindConnectionError:
        # Only the exception type and the server's address: aiohttp's messages can carry
        # request details, and ours never carry headers.
        detail = f"Cannot talk to the Home Mind server at {self._base.host}: {type(err).__name__}"
        reason = _safe_reason(err, self._token)
        if reason:
            detail = f"{detail} ({reason})"
        return HomeMindConnectionError(
            detail,
            status=response.status if response is not None else None,
            request_id=_request_id(response) if response is not None else None,
        )


def _safe_to_resend(status: int, error: HomeMindError, *, repeatable: bool) -> bool:
    """Whether an error answer allows sending the same request again."""
    if repeatable and status in _TRANSIENT_STATUSES:
        return True
    code = error.error_code
    if code is not None:
        return code.retryable  # the answer proves the request was not processed
    return status == 429  # a proxy's or an older server's throttle, without our code


def _request_id(response: aiohttp.ClientResponse | None) -> str | None:
    if response is None:
        return None
    return response.headers.get(REQUEST_ID_HEADER)


def _read_problem(body: bytes) -> tuple[str | None, str, str | None, float | None]:
    """`code, detail, request_id, retry_after` from an error body, as much as it holds."""
    try:
        problem = Problem.model_validate_json(body)
    except ValidationError:
        pass
    else:
        retry_after = float(problem.retry_after) if problem.retry_after is not None else None
        return problem.code, problem.detail, problem.request_id, retry_after
    # Not a full problem document (a proxy's page, another server): take what is usable.
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, "", None, None
    if not isinstance(data, dict):
        return None, "", None, None
    code = data.get("code")
    detail = data.get("detail")
    request_id = data.get("request_id")
    return (
        code if isinstance(code, str) else None,
        detail if isinstance(detail, str) else "",
        request_id if isinstance(request_id, str) else None,
        None,
    )


def _safe_reason(err: BaseException, token: str) -> str:
    """A short reason for a connection failure, without anything that looks like the token."""
    if isinstance(err, aiohttp.ClientConnectorError):
        reason = err.strerror or ""
    elif isinstance(err, aiohttp.ServerDisconnectedError):
        reason = "server disconnected"
    elif isinstance(err, aiohttp.ClientPayloadError):
        reason = "the answer was cut off"
    else:
        reason = ""
    if token and token in reason:
        return ""
    return reason


__all__ = [
    "DEFAULT_URL",
    "ChatStreamEvent",
    "HomeMindClient",
    "RetryPolicy",
    "__version__",
]


# The server finishes its bookkeeping (usage) after `done` and then ends the body; waiting
# that short moment lets aiohttp keep the connection, which saves a TCP and TLS handshake on
# the next turn. A server that does not end the body in time only costs the connection.
_DRAIN_TIMEOUT = 0.5


async def _drain(response: aiohttp.ClientResponse) -> None:
    with contextlib.suppress(TimeoutError, aiohttp.ClientError, ConnectionError):
        async with asyncio.timeout(_DRAIN_TIMEOUT):
            while await response.content.readany():
                pass
