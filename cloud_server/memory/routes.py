"""Routes of the memory component (filled in by its issue)."""

from __future__ import annotations

from aiohttp import web


def setup_memory(app: web.Application) -> None:
    """Register the memory routes and resources on the application."""
