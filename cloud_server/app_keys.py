"""Typed application keys shared between the server's components."""

from __future__ import annotations

from aiohttp import web

from .settings import Settings

SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
