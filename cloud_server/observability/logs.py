"""Logging: request-scoped context on every line, secrets redacted, text or JSON.

The stdlib `logging` with our own JSON formatter rather than structlog: every module already
logs through `logging.getLogger(__name__)` (as do aiohttp, SQLAlchemy and the SDKs), so one
formatter and one filter on the root handler cover all of it without a second API or a new
dependency.

- Context: `request_id`, `user_id` and `installation_id` live in contextvars, set by the
  request middleware and by authentication; tasks started within a request (memory
  extraction) inherit them. A filter copies them onto each record.
- Redaction by construction: the formatter's output (message, arguments, traceback) passes
  through `redact` before it is written, whatever the call site logged. It masks every
  secret this process was configured with (registered at start) and anything shaped like
  our tokens, a JWT, an Anthropic or Stripe key or a bearer header.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Literal

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
USER_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("user_id", default=None)
INSTALLATION_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "installation_id", default=None
)
_CONTEXT = (("request_id", REQUEST_ID), ("user_id", USER_ID), ("installation_id", INSTALLATION_ID))

MASK = "[redacted]"
_SHAPES = re.compile(
    r"|".join(
        (
            r"\bhm[rp]?_[0-9A-Za-z_-]{20,}",  # installation, refresh and reset tokens
            r"\beyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}",  # JWTs (access tokens)
            r"\bsk-ant-[\w-]{8,}",  # Anthropic keys
            r"\b(?:sk|rk|pk)_(?:live|test)_\w{8,}",  # Stripe keys
            r"\bwhsec_\w{8,}",  # Stripe webhook secrets
            r"(?<=[Bb]earer )[^\s\"',]+",
        )
    )
)


class _KnownSecrets:
    """The exact secret values of this process, as one alternation (longest first)."""

    def __init__(self) -> None:
        self.values: set[str] = set()
        self.pattern: re.Pattern[str] | None = None

    def add(self, values: Iterable[str | None]) -> None:
        for value in values:
            for raw in (value or "").split(","):
                if len(part := raw.strip()) >= 8:
                    self.values.add(part)
        if self.values:
            ordered = sorted(self.values, key=len, reverse=True)
            self.pattern = re.compile("|".join(re.escape(v) for v in ordered))


_KNOWN = _KnownSecrets()


def register_secrets(values: Iterable[str | None]) -> None:
    """Mask these exact values in every later log line (short values are ignored)."""
    _KNOWN.add(values)


def redact(text: str) -> str:
    if _KNOWN.pattern is not None:
        text = _KNOWN.pattern.sub(MASK, text)
    return _SHAPES.sub(MASK, text)


class ContextFilter(logging.Filter):
    """Copies the request context onto each record (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _CONTEXT:
            setattr(record, name, var.get())
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(
            f"{name}={value}" for name, _ in _CONTEXT if (value := getattr(record, name, None))
        )
        if context:
            first, sep, rest = line.partition("\n")
            line = f"{first} [{context}]{sep}{rest}"
        return redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, message, the context, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, _ in _CONTEXT:
            value = getattr(record, name, None)
            if value:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return redact(json.dumps(entry, ensure_ascii=False, default=str))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time (test runners swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


# Libraries that log a line at INFO for every HTTP call they make (httpx's "HTTP Request:
# POST ... 200 OK", one per call to Claude): above DEBUG they log warnings only. Our own
# per-turn line says what each chat did; theirs doubled the log and cost 3 % of a turn's CPU.
CHATTY_AT_INFO = ("httpx2", "httpx")


def configure_logging(level: str, fmt: Literal["text", "json"]) -> Callable[[], None]:
    """Our stderr handler on the root logger (replacing an earlier one of ours only).

    Returns the undo: the root logger's handlers and level as they were. The command line
    undoes it when its command returns, so a caller in the same process (a test, an embedding
    program) gets its logging back as it had it."""
    handler = _StderrHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    before, before_level = list(root.handlers), root.level
    for old in before:
        if isinstance(old, _StderrHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    root_level = getattr(logging, level.upper(), logging.INFO)
    root.setLevel(root_level)
    chatty = [logging.getLogger(name) for name in CHATTY_AT_INFO]
    chatty_levels = [logger.level for logger in chatty]
    if root_level > logging.DEBUG:
        for logger in chatty:
            logger.setLevel(max(logging.WARNING, root_level))

    def undo() -> None:
        root.removeHandler(handler)
        handler.close()
        for old in before:
            if old not in root.handlers:
                root.addHandler(old)
        root.setLevel(before_level)
        for logger, chatty_level in zip(chatty, chatty_levels, strict=True):
            logger.setLevel(chatty_level)

    return undo


def bind_principal(*, user_id: str | None = None, installation_id: str | None = None) -> None:
    """Called by authentication: the rest of the request's lines name who it is for."""
    if user_id is not None:
        USER_ID.set(user_id)
    if installation_id is not None:
        INSTALLATION_ID.set(installation_id)


def configured_secrets(settings: Any, server_secrets: Any = None) -> list[str]:
    """Every secret value of the settings (SecretStr fields, URL passwords) and key rings."""
    import base64
    from urllib.parse import urlsplit

    from pydantic import SecretStr

    found: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
    for url in (settings.database_url, settings.redis_url, settings.shodh_url):
        if url and (password := urlsplit(url).password):
            found.append(password)
    for ring in (getattr(server_secrets, "encryption", None), getattr(server_secrets, "jwt", None)):
        for key in getattr(ring, "keys", {}).values():
            found += [base64.b64encode(key).decode(), base64.urlsafe_b64encode(key).decode()]
            with contextlib.suppress(UnicodeDecodeError):
                found.append(key.decode())
    return found
