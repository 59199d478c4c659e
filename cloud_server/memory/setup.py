"""The memory component's resources on the application (the routes are in `routes.py`).

`SHODH_URL` chooses the backend: Shodh in front of the SQL store, or the SQL store
alone (the database of `db/engine.py`). The service (recall, tools, extraction) is made
on start-up, after the database, and becomes chat's memory provider.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from ..app_keys import SETTINGS
from ..chat.hooks import MEMORY_PROVIDER
from ..db.engine import DB_ENGINE, DB_SESSIONMAKER
from .backend import MemoryBackend
from .embedder import build_embedder
from .provider import MemoryService
from .shodh import ShodhClient, ShodhMemoryBackend
from .sql_backend import sql_backend_for
from .vectors import VectorIndex

LOGGER = logging.getLogger(__name__)

MEMORY_BACKEND: web.AppKey[MemoryBackend] = web.AppKey("memory_backend", MemoryBackend)
MEMORY_SERVICE: web.AppKey[MemoryService] = web.AppKey("memory_service", MemoryService)


async def build_backend(app: web.Application) -> MemoryBackend:
    settings = app[SETTINGS]
    loop = asyncio.get_running_loop()
    # Loading checks the model's SHA-256 (tens of MB): off the event loop.
    embedder = await loop.run_in_executor(None, build_embedder, settings.memory_embedder, settings)
    vectors = VectorIndex(app[DB_ENGINE], embedder) if embedder is not None else None
    store = sql_backend_for(app[DB_ENGINE], app[DB_SESSIONMAKER], vectors)
    if settings.shodh_url:
        key = settings.shodh_api_key.get_secret_value() if settings.shodh_api_key else None
        return ShodhMemoryBackend(store, ShodhClient(settings.shodh_url, key))
    return store


async def _memory_ctx(app: web.Application) -> AsyncIterator[None]:
    backend = await build_backend(app)
    service = MemoryService(backend, app[SETTINGS], app=app)
    app[MEMORY_BACKEND] = backend
    app[MEMORY_SERVICE] = service
    # A provider installed before start-up (e.g. a test's) is left in place.
    if MEMORY_PROVIDER not in app:
        app[MEMORY_PROVIDER] = service
    LOGGER.info("Memory backend: %s", backend.name)
    try:
        yield
    finally:
        await service.aclose()
        vectors = getattr(getattr(backend, "store", backend), "vectors", None)
        if vectors is not None:
            await vectors.embedder.close()


async def _drain(app: web.Application) -> None:
    # on_shutdown runs before any cleanup: extractions finish while Claude clients
    # and the database are still open.
    service = app.get(MEMORY_SERVICE)
    if service is not None:
        await service.drain()


def setup_memory(app: web.Application) -> None:
    """Create the backend on start-up (after the database) and install the chat provider."""
    app.cleanup_ctx.append(_memory_ctx)
    app.on_shutdown.append(_drain)  # type: ignore[arg-type]
