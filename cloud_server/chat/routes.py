"""Routes of the chat component (filled in by its issue)."""

from __future__ import annotations

from aiohttp import web


def setup_chat(app: web.Application) -> None:
    """Register the chat routes and resources on the application."""
