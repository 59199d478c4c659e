"""Application keys of the accounts component (resources other components read).

Kept apart from `setup.py` (which fills them) so that `principal.py`, which every
component imports, depends on nothing but these keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from ..server_secrets import ServerSecrets
from .mailer import Mailer
from .throttle import InMemoryThrottle, Throttle

SERVER_SECRETS: web.AppKey[ServerSecrets] = web.AppKey("server_secrets", ServerSecrets)
THROTTLE: web.AppKey[Throttle] = web.AppKey("accounts_throttle", InMemoryThrottle)
MAILER: web.AppKey[Mailer] = web.AppKey("accounts_mailer", Mailer)
# Work that must not delay the answer (e.g. sending mail); awaited on shutdown.
BACKGROUND: web.AppKey[set[asyncio.Task[None]]] = web.AppKey("accounts_background", set)


def spawn(app: web.Application, coro: Coroutine[Any, Any, None]) -> None:
    """Run `coro` after the answer; shutdown waits for it (up to 10 s)."""
    tasks = app[BACKGROUND]
    task = asyncio.ensure_future(coro)
    tasks.add(task)
    task.add_done_callback(tasks.discard)
