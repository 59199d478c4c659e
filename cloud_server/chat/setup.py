"""The chat component's resources on the application (the routes are in `routes.py`).

Chat depends on other components only through the hooks of `hooks.py`: the gate (billing
installs its own in `billing/setup.py`; without it, `gate.DefaultChatGate`) and the memory
provider (`memory/setup.py`). The Claude clients are built on start-up, closed on shutdown.
"""

from __future__ import annotations

from aiohttp import web

from .gate import DefaultChatGate
from .hooks import CHAT_GATE
from .upstream import claude_clients_ctx


def setup_chat(app: web.Application) -> None:
    """Put the chat resources on the app (after billing, which may install its gate)."""
    if CHAT_GATE not in app:
        app[CHAT_GATE] = DefaultChatGate()
    app.cleanup_ctx.append(claude_clients_ctx)
