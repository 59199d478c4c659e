"""Routes of the accounts component (filled in by its issue)."""

from __future__ import annotations

from aiohttp import web


def setup_accounts(app: web.Application) -> None:
    """Register the accounts routes and resources on the application."""
