"""Text no database can store is refused at the door (422), not found by a 500 later.

PostgreSQL `text` cannot hold NUL (U+0000), and a lone UTF-16 surrogate (which JSON's
`\\udXXX` escapes can produce) cannot be encoded as UTF-8 by any driver. Both are refused in
JSON bodies (`bodies.read_json`), path segments (the middleware) and the query values
routes read (memory search), with the
stable `validation_error` code. Found by tests/server/test_schemathesis.py (PostgreSQL).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .errors import validation_error

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_MAX_DEPTH = 64


def has_unstorable_text(value: Any, depth: int = 0) -> bool:
    """True when any string in a parsed JSON value (keys included) holds NUL or a surrogate."""
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is not None
    if depth > _MAX_DEPTH:
        return False  # json.loads already bounds nesting; this only keeps the walk finite
    if isinstance(value, dict):
        return any(
            has_unstorable_text(k, depth + 1) or has_unstorable_text(v, depth + 1)
            for k, v in value.items()
        )
    if isinstance(value, list):
        return any(has_unstorable_text(v, depth + 1) for v in value)
    return False


def is_unstorable(text: str) -> bool:
    return _UNSTORABLE.search(text) is not None


UNSTORABLE_DETAIL = "Text must not contain NUL characters or unpaired surrogates."

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def unstorable_text_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Path ids go into queries; query values are checked by the routes that use them
    # (`is_unstorable`), unknown query parameters are ignored.
    if any(_UNSTORABLE.search(part) for part in request.match_info.values()):
        raise validation_error(detail=UNSTORABLE_DETAIL)
    return await handler(request)
