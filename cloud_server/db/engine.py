"""Database engine lifecycle (filled in by the accounts issue)."""

from __future__ import annotations

from aiohttp import web


def setup_database(app: web.Application) -> None:
    """Open the engine on start-up (migrating the schema) and dispose of it on shutdown."""
