"""`homemind`: talk to a Home Mind server from a terminal.

    HOMEMIND_TOKEN=... homemind chat "turn on the kitchen light"
    homemind installation

The token comes from `--token` or `HOMEMIND_TOKEN` (prefer the environment: command lines
are visible to other users); it is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import TextIO

import aiohttp

from . import errors
from .client import DEFAULT_URL, HomeMindClient, __version__
from .errors import HomeMindError
from .models import ChatRequest, ChatResponse, DoneEvent, TextDeltaEvent, ToolCallEvent

EXIT_OK = 0
EXIT_ERROR = 1  # any other HomeMindError
EXIT_USAGE = 2  # argparse's own
EXIT_CONFIG = 3  # no token, bad URL
EXIT_INTERRUPTED = 130

# Most specific first: the first matching class decides the exit status.
EXIT_CODES: tuple[tuple[type[HomeMindError], int], ...] = (
    (errors.HomeMindTimeoutError, 5),
    (errors.HomeMindConnectionError, 4),
    (errors.HomeMindInstallationRevokedError, 7),
    (errors.HomeMindAuthenticationError, 6),
    (errors.HomeMindSubscriptionRequiredError, 8),
    (errors.HomeMindUsageLimitError, 9),
    (errors.HomeMindNoApiKeyError, 10),
    (errors.HomeMindRateLimitedError, 11),
    (errors.HomeMindUpstreamError, 12),
    (errors.HomeMindUpstreamKeyRejectedError, 13),
    (errors.HomeMindValidationError, 14),
    (errors.HomeMindNotFoundError, 15),
    (errors.HomeMindServerError, 16),
    (errors.HomeMindInvalidResponseError, 17),
)

_EPILOG = """exit status: 0 ok, 1 other error, 2 usage, 3 configuration, 4 connection,
5 timeout, 6 invalid token, 7 installation revoked, 8 subscription required,
9 usage limit reached, 10 no API key, 11 rate limited, 12 upstream unavailable,
13 upstream rejected key, 14 invalid request, 15 not found, 16 server error,
17 invalid response, 130 interrupted"""


def exit_code_for(error: HomeMindError) -> int:
    """The process exit status for an error (see `--help`)."""
    for cls, code in EXIT_CODES:
        if isinstance(error, cls):
            return code
    return EXIT_ERROR


def _connection_options() -> argparse.ArgumentParser:
    # Accepted before or after the command; SUPPRESS keeps a later default from
    # overwriting an earlier value.
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--url",
        default=argparse.SUPPRESS,
        help=f"server URL (default: $HOMEMIND_URL or {DEFAULT_URL})",
    )
    options.add_argument(
        "--token",
        default=argparse.SUPPRESS,
        help="installation token (default: $HOMEMIND_TOKEN; the environment is safer)",
    )
    options.add_argument(
        "--timeout",
        type=float,
        default=argparse.SUPPRESS,
        help="seconds allowed per request (default 15)",
    )
    return options


def _parser() -> argparse.ArgumentParser:
    options = _connection_options()
    parser = argparse.ArgumentParser(
        prog="homemind",
        parents=[options],
        description="Talk to a Home Mind server.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"homemind {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    chat = commands.add_parser(
        "chat", parents=[options], help="send one message and stream the answer"
    )
    chat.add_argument("message", help="what to say")
    chat.add_argument("--language", default=None, help="BCP-47 language of the answer")
    chat.add_argument("--voice", action="store_true", help="short plain answers, as for voice")
    chat.add_argument(
        "--json", action="store_true", help="print the final response as JSON instead of text"
    )
    chat.add_argument("--conversation-id", default=None, help="continue this conversation")

    commands.add_parser("installation", parents=[options], help="show this token's installation")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `homemind` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    args.timeout = getattr(args, "timeout", None)
    token = getattr(args, "token", None) or os.environ.get("HOMEMIND_TOKEN", "")
    url = getattr(args, "url", None) or os.environ.get("HOMEMIND_URL") or DEFAULT_URL
    if not token:
        _fail("no token: pass --token or set HOMEMIND_TOKEN", token)
        return EXIT_CONFIG
    try:
        return asyncio.run(_run(args, url, token))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except ValueError as err:  # a malformed URL or request
        _fail(str(err), token)
        return EXIT_CONFIG
    except HomeMindError as err:
        _fail(_describe(err), token)
        return exit_code_for(err)


async def _run(args: argparse.Namespace, url: str, token: str) -> int:
    async with aiohttp.ClientSession() as session:
        client = HomeMindClient(session, url, token, user_agent=f"homemind-cli/{__version__}")
        if args.command == "installation":
            info = await client.get_installation(timeout=args.timeout)
            print(info.model_dump_json(indent=2))
            return EXIT_OK
        request = ChatRequest(
            message=args.message,
            language=args.language,
            is_voice=args.voice,
            conversation_id=args.conversation_id,
        )
        return await _chat(client, request, as_json=args.json, timeout=args.timeout)


async def _chat(
    client: HomeMindClient,
    request: ChatRequest,
    *,
    as_json: bool,
    timeout: float | None,  # noqa: ASYNC109 - forwarded as the client's time budget
) -> int:
    out = sys.stdout
    response: ChatResponse | None = None
    wrote_text = False
    async for event in client.chat_stream(request, first_event_timeout=timeout, total_timeout=None):
        if isinstance(event, TextDeltaEvent):
            if not as_json:
                out.write(event.text)
                out.flush()
                wrote_text = wrote_text or bool(event.text)
        elif isinstance(event, ToolCallEvent):
            arguments = json.dumps(event.arguments, ensure_ascii=False, sort_keys=True)
            _err(f"[tool] {event.name} {arguments}")
        elif isinstance(event, DoneEvent):
            response = event.response
    assert response is not None  # chat_stream ends with `done` or raises
    if as_json:
        print(response.model_dump_json(indent=2))
    elif wrote_text:
        out.write("\n")
        out.flush()
    if response.stop_reason == "tool_use":
        _err(
            "[note] the model asked for Home Assistant tools; the CLI cannot execute them "
            "(use the Home Assistant integration for device control)"
        )
    return EXIT_OK


def _describe(err: HomeMindError) -> str:
    text = str(err)
    extras = []
    if err.code:
        extras.append(f"code {err.code}")
    if err.status:
        extras.append(f"HTTP {err.status}")
    if err.retry_after is not None:
        extras.append(f"retry after {err.retry_after:g} s")
    if err.request_id:
        extras.append(f"request id {err.request_id}")
    return f"{text} ({', '.join(extras)})" if extras else text


def _fail(message: str, token: str) -> None:
    if token:
        message = message.replace(token, "***")
    _err(f"homemind: error: {' '.join(message.split())}")


def _err(line: str, stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    stream.write(line + "\n")
    stream.flush()


if __name__ == "__main__":
    sys.exit(main())
