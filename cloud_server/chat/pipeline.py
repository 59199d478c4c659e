"""One chat request: recall, ask Claude (streaming), run server tools, hand HA's tool calls back.

The pipeline talks to its caller through a `Sink` (the SSE writer, or a collector for the
plain JSON endpoint), so both endpoints share every rule:

- HA's tools and the memory provider's server tools are offered together. A server tool call
  is run here and Claude is asked again within the same request (at most
  `max_model_calls` calls; the last allowed call gets `tool_choice: none`). Any other tool
  call — HA's, or a name the model invented — ends the request with `stop_reason: tool_use`
  and goes to HA, which executes it or reports an unknown tool as an error result.
  When one answer mixes both, the server tools still run (their effect, e.g. remembering,
  is wanted) but their results stay inside this request: HA sends back only its own calls and
  results, so the next request is a valid conversation by construction.
- Task mode (`ChatRequest.mode == "task"`, an AI Task): no memory tools; with a structure,
  a result tool whose schema is the task's is added and required (`tool_choice` names it,
  or `any` next to HA's tools), and its input becomes the answer's `data`.
- Deadlines: `first_token_timeout` per model call (from the call to its first content event)
  and `response_timeout` for the whole request. Expiry is `upstream_unavailable`.
- Claude's transient failures (429/529/5xx/connection) get one quick retry per request, only
  while nothing has been sent to our client; everything else is mapped by `upstream.classify`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, cast

import anthropic
import httpx2

from homemind_client.models import (
    ChatRequest,
    ChatResponse,
    ResponseToolCall,
    StopReason,
    ToolSpec,
    Usage,
)

from ..accounts.principal import InstallationPrincipal
from ..db.base import new_id
from ..errors import ApiError
from ..prompts import TASK_RESULT_DESCRIPTION
from ..settings import Settings
from . import persona
from .conversation import Message, last_user_text, to_anthropic_messages, to_anthropic_tool
from .hooks import ChatAccess, MemoryProvider, RecalledFact
from .upstream import (
    MAX_QUICK_RETRY_WAIT,
    QUICK_RETRY_DELAY,
    IncompleteStream,
    UpstreamFailure,
    classify,
    unavailable,
    upstream_events,
)

LOGGER = logging.getLogger(__name__)

# Recall must never hold the answer up for long; without memories the turn still works.
RECALL_TIMEOUT = 2.0

_STOP_REASONS: dict[str, StopReason] = {
    "end_turn": "end_turn",
    "stop_sequence": "end_turn",
    "pause_turn": "end_turn",
    "refusal": "end_turn",
    "tool_use": "end_turn",  # only server tools were called, and the loop ended
    "max_tokens": "max_tokens",
    "model_context_window_exceeded": "max_tokens",
}


class ClientGone(Exception):
    """Our own client went away; stop working for it."""


class Sink(Protocol):
    @property
    def started(self) -> bool:
        """Whether any byte has been sent to the client (then no retry, errors become events)."""
        ...

    async def text(self, text: str) -> None: ...

    async def tool_call(self, call: ResponseToolCall) -> None: ...


class CollectingSink:
    """For `POST /api/chat`: nothing is sent before the whole answer."""

    started = False

    async def text(self, text: str) -> None:
        return None

    async def tool_call(self, call: ResponseToolCall) -> None:
        return None


@dataclass(slots=True)
class _Block:
    kind: Literal["text", "tool_use"]
    text: str = ""
    tool_id: str = ""
    name: str = ""
    json_parts: list[str] = field(default_factory=list)
    arguments: dict[str, Any] = field(default_factory=dict)
    complete: bool = False


@dataclass(slots=True)
class _CallResult:
    blocks: dict[int, _Block] = field(default_factory=dict)
    stop_reason: str | None = None

    def tool_blocks(self) -> list[_Block]:
        return [b for _, b in sorted(self.blocks.items()) if b.kind == "tool_use" and b.complete]

    def assistant_content(self) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = []
        for _, block in sorted(self.blocks.items()):
            if block.kind == "text" and block.text:
                content.append({"type": "text", "text": block.text})
            elif block.kind == "tool_use" and block.complete:
                content.append(
                    {
                        "type": "tool_use",
                        "id": block.tool_id,
                        "name": block.name,
                        "input": block.arguments,
                    }
                )
        return content


def _parse_arguments(parts: list[str]) -> dict[str, Any]:
    raw = "".join(parts).strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        LOGGER.warning("Claude sent tool arguments that are not JSON; using none")
        return {}
    return value if isinstance(value, dict) else {}


class ChatTurn:
    """Runs one request against Claude; usage and model calls are kept even when it fails."""

    def __init__(
        self,
        *,
        settings: Settings,
        client: anthropic.AsyncAnthropic,
        chat: ChatRequest,
        conversation: Sequence[Message],
        principal: InstallationPrincipal,
        access: ChatAccess,
        provider: MemoryProvider | None,
        sign_tool_id: Callable[[str], str] = lambda raw_id: raw_id,
    ) -> None:
        self.settings = settings
        # Ids of the calls handed to HA are signed, so their follow-up proves its origin.
        self._sign_tool_id = sign_tool_id
        self.client = client
        self.chat = chat
        self.conversation = conversation
        self.principal = principal
        self.access = access
        self.provider = provider
        self.usage = Usage()
        self.model_calls = 0  # every call made to Claude, retries included
        self.reply_parts: list[str] = []
        self.tool_calls: list[ResponseToolCall] = []
        self.stop_reason: StopReason | None = None
        self.data: dict[str, Any] | None = None  # a structured task's result
        self._joiner = persona.VOICE_JOINER if chat.is_voice else persona.TEXT_JOINER
        self._need_joiner = False
        self._server_names: set[str] = set()
        self.conversation_id = chat.conversation_id or new_id()
        # For the metrics: recall's duration and outcome, each failed Claude call's kind.
        self.recall_seconds: float | None = None
        # What recall gave the prompt, for the extraction after the turn (None: recall
        # failed, or a server tool ran, so the memory may have changed since).
        self.recalled: list[RecalledFact] | None = None
        self.recall_outcome = "ok"
        self.upstream_failures: list[str] = []

    @property
    def reply(self) -> str:
        return "".join(self.reply_parts)

    async def run(self, sink: Sink) -> ChatResponse:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.response_timeout
        memories = await self._recall()
        system = persona.system_blocks(self.chat, datetime.now(UTC), memories)

        # A task gets no memory tools: it reads the memory, it never writes it.
        is_task = self.chat.mode == "task"
        server_specs = (
            self.provider.server_tools() if self.provider is not None and not is_task else []
        )
        result_spec = task_result_tool(self.chat)
        if result_spec is not None:
            server_specs = [*server_specs, result_spec]
        server_names = self._server_names = {tool.name for tool in server_specs}
        tools = [to_anthropic_tool(t) for t in self.chat.tools if t.name not in server_names]
        tools += [to_anthropic_tool(t) for t in server_specs]
        # A structured task must end in its result tool (or call HA's tools on the way).
        required_choice: dict[str, Any] | None = None
        if result_spec is not None:
            only_result = len(tools) == 1
            required_choice = (
                {"type": "tool", "name": result_spec.name} if only_result else {"type": "any"}
            )
        messages = to_anthropic_messages(self.conversation)
        max_tokens = (
            self.settings.voice_max_tokens if self.chat.is_voice else self.settings.max_tokens
        )

        retry_left = True
        completed_calls = 0
        while True:
            # In a server-tool loop, the last allowed call must answer in words.
            force_text = (
                completed_calls > 0 and completed_calls + 1 >= self.settings.max_model_calls
            )
            # Where this call's text starts: a retried call must not repeat a partial answer.
            reply_mark, joiner_mark = len(self.reply_parts), self._need_joiner
            try:
                result = await self._call(
                    sink,
                    messages=messages,
                    system=system,
                    tools=tools,
                    max_tokens=max_tokens,
                    deadline=deadline,
                    force_text=force_text,
                    required_choice=required_choice,
                )
            except UpstreamFailure as failure:
                self.upstream_failures.append(failure.kind)
                wait = QUICK_RETRY_DELAY if failure.retry_wait is None else failure.retry_wait
                if (
                    failure.retryable
                    and retry_left
                    and not sink.started
                    and wait <= MAX_QUICK_RETRY_WAIT
                    and loop.time() + wait < deadline
                ):
                    retry_left = False
                    del self.reply_parts[reply_mark:]
                    self._need_joiner = joiner_mark
                    LOGGER.info("Claude failed (%s); retrying once", failure.error.code)
                    await asyncio.sleep(wait)
                    continue
                raise failure.error from None
            completed_calls += 1

            calls = result.tool_blocks()
            ha_calls = [b for b in calls if b.name not in server_names]
            answer = next((b for b in calls if result_spec and b.name == result_spec.name), None)
            if answer is not None and not ha_calls:
                # The structured task's result: the tool's input is the answer.
                self.data = answer.arguments
                self.stop_reason = "end_turn"
                break
            server_calls = [
                b for b in calls if b.name in server_names and b.name != persona.TASK_RESULT_TOOL
            ]
            if server_calls:
                self.recalled = None
                results = await self._run_server_tools(server_calls, deadline)
            if ha_calls:
                self.tool_calls = [
                    ResponseToolCall(id=b.tool_id, name=b.name, arguments=b.arguments)
                    for b in ha_calls
                ]
                self.stop_reason = "tool_use"
                break
            if server_calls:
                if completed_calls >= self.settings.max_model_calls:
                    LOGGER.warning(
                        "Model-call limit (%d) reached in a server-tool loop; ending the turn",
                        self.settings.max_model_calls,
                    )
                    self.stop_reason = "end_turn"
                    break
                messages = [
                    *messages,
                    {"role": "assistant", "content": result.assistant_content()},
                    {"role": "user", "content": results},
                ]
                self._need_joiner = bool(self.reply_parts)
                continue
            self.stop_reason = _STOP_REASONS.get(result.stop_reason or "", "end_turn")
            break

        return ChatResponse(
            conversation_id=self.conversation_id,
            reply=self.reply,
            tool_calls=self.tool_calls,
            stop_reason=self.stop_reason,
            usage=self.usage,
            notices=list(self.access.notices),
            data=self.data,
        )

    async def _recall(self) -> list[RecalledFact]:
        if self.provider is None:
            return []
        query = last_user_text(self.conversation)
        started = time.monotonic()
        try:
            async with asyncio.timeout(RECALL_TIMEOUT):
                facts = list(await self.provider.recall(self.principal, self.chat, query))
            self.recalled = facts
            return facts
        except TimeoutError:
            self.recall_outcome = "timeout"
            LOGGER.warning("Memory recall took too long; answering without memories")
        except Exception:
            self.recall_outcome = "error"
            LOGGER.exception("Memory recall failed; answering without memories")
        finally:
            self.recall_seconds = time.monotonic() - started
        return []

    async def _run_server_tools(
        self, blocks: list[_Block], deadline: float
    ) -> list[dict[str, Any]]:
        assert self.provider is not None
        results: list[dict[str, Any]] = []
        for block in blocks:
            is_error = False
            try:
                async with asyncio.timeout_at(deadline):
                    output: Any = await self.provider.run_tool(
                        self.principal, self.chat, block.name, block.arguments
                    )
            except TimeoutError:
                raise unavailable("The answer took too long.") from None
            except ApiError:
                raise
            except Exception:
                LOGGER.exception("Server tool %s failed", block.name)
                output, is_error = persona.SERVER_TOOL_FAILED, True
            result: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": block.tool_id,
                "content": json.dumps(output, ensure_ascii=False, default=str),
            }
            if is_error:
                result["is_error"] = True
            results.append(result)
        return results

    async def _emit_text(self, sink: Sink, text: str) -> None:
        if not text:
            return
        if self._need_joiner:
            self._need_joiner = False
            self.reply_parts.append(self._joiner)
            await sink.text(self._joiner)
        self.reply_parts.append(text)
        await sink.text(text)

    async def _call(
        self,
        sink: Sink,
        *,
        messages: list[dict[str, Any]],
        system: list[Any],
        tools: list[dict[str, Any]],
        max_tokens: int,
        deadline: float,
        force_text: bool,
        required_choice: dict[str, Any] | None = None,
    ) -> _CallResult:
        """One streamed model call; raises `UpstreamFailure`.

        The SDK builds and sends the request and raises its typed errors for a refused one;
        the events are read from its raw response as plain JSON (`upstream_events`): its
        typed event objects cost more CPU than the rest of the turn together.
        """
        loop = asyncio.get_running_loop()
        self.model_calls += 1
        result = _CallResult()
        call_usage = Usage()
        got_stop = False
        first_token_at = min(loop.time() + self.settings.first_token_timeout, deadline)
        waiting_first = True
        timer: asyncio.Timeout | None = None
        try:
            async with asyncio.timeout_at(first_token_at) as timer:
                async with self.client.messages.with_streaming_response.create(
                    model=self.settings.model,
                    max_tokens=max_tokens,
                    system=system,
                    messages=cast(Any, messages),
                    metadata={"user_id": _opaque_user(self.principal)},
                    stream=True,
                    tools=cast(Any, tools) if tools else anthropic.omit,
                    tool_choice=cast(Any, _tool_choice(tools, force_text, required_choice)),
                ) as response:
                    async for event in upstream_events(response.http_response):
                        kind = event.get("type")
                        # The first generated token (not the block opening) ends the wait.
                        if waiting_first and kind in ("content_block_delta", "message_delta"):
                            waiting_first = False
                            timer.reschedule(deadline)
                        await self._on_event(sink, kind, event, result, call_usage)
                        if kind == "message_stop":
                            got_stop = True
                if not got_stop:
                    raise IncompleteStream
        except TimeoutError:
            if timer is None or not timer.expired():
                raise
            which = "first token" if waiting_first else "whole answer"
            LOGGER.warning("Claude timed out waiting for the %s", which)
            raise UpstreamFailure(
                unavailable("Claude took too long to answer; try again shortly."),
                retryable=False,
                kind="first_token_timeout" if waiting_first else "response_timeout",
            ) from None
        except (anthropic.AnthropicError, httpx2.HTTPError, IncompleteStream) as err:
            raise classify(err, self.access.key_source) from None
        finally:
            self._add_usage(call_usage)
        return result

    async def _on_event(
        self, sink: Sink, kind: Any, event: dict[str, Any], result: _CallResult, usage: Usage
    ) -> None:
        if kind == "content_block_delta":
            await self._on_block_delta(sink, event, result)
        elif kind == "content_block_start":
            await self._on_block_start(sink, event, result)
        elif kind == "content_block_stop":
            await self._on_block_stop(sink, event, result)
        elif kind == "message_start":
            _usage_from_start(usage, _mapping(_mapping(event.get("message")).get("usage")))
        elif kind == "message_delta":
            result.stop_reason = _mapping(event.get("delta")).get("stop_reason")
            _usage_from_delta(usage, _mapping(event.get("usage")))

    async def _on_block_delta(self, sink: Sink, event: dict[str, Any], result: _CallResult) -> None:
        delta = _mapping(event.get("delta"))
        block = result.blocks.get(event.get("index"))  # type: ignore[arg-type]
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text") or ""
            if block is not None:
                block.text += text
            await self._emit_text(sink, text)
        elif kind == "input_json_delta" and block is not None:
            block.json_parts.append(delta.get("partial_json") or "")

    async def _on_block_start(self, sink: Sink, event: dict[str, Any], result: _CallResult) -> None:
        content = _mapping(event.get("content_block"))
        index = event.get("index")
        kind = content.get("type")
        if kind == "text":
            text = content.get("text") or ""
            result.blocks[index] = _Block(kind="text", text=text)  # type: ignore[index]
            await self._emit_text(sink, text)
        elif kind == "tool_use":
            result.blocks[index] = _Block(  # type: ignore[index]
                kind="tool_use", tool_id=content.get("id") or "", name=content.get("name") or ""
            )

    async def _on_block_stop(self, sink: Sink, event: dict[str, Any], result: _CallResult) -> None:
        block = result.blocks.get(event.get("index"))  # type: ignore[arg-type]
        if block is None or block.kind != "tool_use":
            return
        block.arguments = _parse_arguments(block.json_parts)
        block.complete = True
        if block.name not in self._server_names:
            block.tool_id = self._sign_tool_id(block.tool_id)
            await sink.tool_call(
                ResponseToolCall(id=block.tool_id, name=block.name, arguments=block.arguments)
            )

    def _add_usage(self, call: Usage) -> None:
        self.usage = Usage(
            input_tokens=self.usage.input_tokens + call.input_tokens,
            output_tokens=self.usage.output_tokens + call.output_tokens,
            cache_read_input_tokens=self.usage.cache_read_input_tokens
            + call.cache_read_input_tokens,
            cache_creation_input_tokens=self.usage.cache_creation_input_tokens
            + call.cache_creation_input_tokens,
        )


def task_result_tool(chat: ChatRequest) -> ToolSpec | None:
    """The tool a structured task answers with: its schema is the task's structure."""
    if chat.mode != "task" or chat.task is None or chat.task.structure is None:
        return None
    schema = dict(chat.task.structure)
    schema.setdefault("type", "object")
    return ToolSpec(
        name=persona.TASK_RESULT_TOOL,
        description=TASK_RESULT_DESCRIPTION,
        parameters=schema,
    )


def _tool_choice(
    tools: list[dict[str, Any]], force_text: bool, required: dict[str, Any] | None
) -> Any:
    if not tools:
        return anthropic.omit
    if required is not None:
        # A structured task: the last allowed call must give the result itself.
        if force_text:
            return {"type": "tool", "name": persona.TASK_RESULT_TOOL}
        return required
    return {"type": "none"} if force_text else anthropic.omit


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) else None


def _usage_from_start(usage: Usage, start: dict[str, Any]) -> None:
    usage.input_tokens = _count(start.get("input_tokens")) or 0
    usage.cache_read_input_tokens = _count(start.get("cache_read_input_tokens")) or 0
    usage.cache_creation_input_tokens = _count(start.get("cache_creation_input_tokens")) or 0
    usage.output_tokens = _count(start.get("output_tokens")) or 0


def _usage_from_delta(usage: Usage, delta: dict[str, Any]) -> None:
    # message_delta's counts are cumulative for the call.
    usage.output_tokens = _count(delta.get("output_tokens")) or usage.output_tokens
    if (input_tokens := _count(delta.get("input_tokens"))) is not None:
        usage.input_tokens = input_tokens
    if (cache_read := _count(delta.get("cache_read_input_tokens"))) is not None:
        usage.cache_read_input_tokens = cache_read
    if (cache_write := _count(delta.get("cache_creation_input_tokens"))) is not None:
        usage.cache_creation_input_tokens = cache_write


def _opaque_user(principal: InstallationPrincipal) -> str:
    """Anthropic's abuse tooling gets a stable pseudonym, not our ids."""
    return hashlib.sha256(b"homemind-user:" + principal.installation_id.encode()).hexdigest()[:32]
