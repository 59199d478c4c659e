"""Routes of the billing component (filled in by its issue)."""

from __future__ import annotations

from aiohttp import web


def setup_billing(app: web.Application) -> None:
    """Register the billing routes and resources on the application."""
