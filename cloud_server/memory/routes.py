"""The memory API (the component's resources are set up in `setup.py`).

User JWT (the owner manages everything): `POST/GET/DELETE /api/memory`,
`GET/PATCH/DELETE /api/memory/{id}`, `GET /api/memory/export`.
Installation token (Home Assistant's `home_mind.remember` / `home_mind.forget` actions):
`POST /api/installation/memory` and `POST /api/installation/memory/forget`.
Every query is scoped to the caller's account: another user's fact is a 404.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from homemind_client.models import ErrorCode
from homemind_client.models.memory import (
    MemoryCreate,
    MemoryExport,
    MemoryExportItem,
    MemoryForgetRequest,
    MemoryForgetResult,
    MemoryItem,
    MemoryUpdate,
)

from ..accounts.lifecycle import AccountDataHook, add_account_data_hook
from ..accounts.principal import require_installation, require_user
from ..accounts.scopes import require_scope
from ..bodies import json_model, read_model
from ..db.base import utcnow
from ..errors import ApiError, validation_error
from ..input_text import UNSTORABLE_DETAIL, is_unstorable
from .backend import MemoryBackend, MemoryBackendError, MemoryNotFoundError, MemoryRecord
from .provider import forget_matching
from .setup import MEMORY_BACKEND

LOGGER = logging.getLogger(__name__)

MAX_LIMIT = 200
DEFAULT_LIMIT = 50
MAX_OFFSET = 1_000_000
MAX_QUERY_CHARS = 500


def add_routes(app: web.Application) -> None:
    """The memory API (its resources come from `setup.py`), and its part of account export/erase."""
    add_account_data_hook(app, AccountDataHook("memory", _export_for_account, _erase_for_account))
    app.router.add_post("/api/memory", create_memory)
    app.router.add_get("/api/memory", list_memories)
    app.router.add_delete("/api/memory", delete_all_memories)
    # Before `/api/memory/{id}`, which would otherwise take "export" for an id.
    app.router.add_get("/api/memory/export", export_memories)
    app.router.add_get("/api/memory/{id}", get_memory)
    app.router.add_patch("/api/memory/{id}", update_memory)
    app.router.add_delete("/api/memory/{id}", delete_memory)
    app.router.add_post("/api/installation/memory", installation_remember)
    app.router.add_post("/api/installation/memory/forget", installation_forget)


def _backend(request: web.Request) -> MemoryBackend:
    return request.app[MEMORY_BACKEND]


def item(record: MemoryRecord) -> MemoryItem:
    return MemoryItem(
        id=record.id,
        content=record.content,
        category=record.category,
        speaker_id=record.speaker_id,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def _not_found() -> ApiError:
    return ApiError(ErrorCode.MEMORY_NOT_FOUND, "No such memory.")


def _unavailable(err: MemoryBackendError) -> ApiError:
    # The person gets a plain 503; the log keeps why (a full disk, a lock, a lost server).
    LOGGER.warning("Memory store failed: %s (%r)", err, err.__cause__)
    return ApiError(ErrorCode.MEMORY_UNAVAILABLE, "Memory is not available right now; try again.")


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise validation_error(detail=f"'{name}' must be a whole number.") from None
    if not low <= value <= high:
        raise validation_error(detail=f"'{name}' must be between {low} and {high}.")
    return value


def _str_param(request: web.Request, name: str, max_len: int) -> str | None:
    raw = request.query.get(name)
    if raw is None or raw.strip() == "":
        return None
    if len(raw) > max_len:
        raise validation_error(detail=f"'{name}' is longer than {max_len} characters.")
    if is_unstorable(raw):
        raise validation_error(detail=UNSTORABLE_DETAIL)
    return raw


async def _add(request: web.Request, user_id: str, source: str) -> web.Response:
    body = await read_model(request, MemoryCreate)
    if not body.content.strip():
        raise validation_error(detail="'content' must not be blank.")
    try:
        result = await _backend(request).add(
            user_id,
            body.content,
            category=body.category,
            speaker_id=body.speaker_id,
            source="installation" if source == "installation" else "api",
        )
    except MemoryBackendError as err:
        raise _unavailable(err) from err
    # 201 for a new fact; 200 with the existing one when it was already remembered.
    return json_model(item(result.record), status=201 if result.created else 200)


async def create_memory(request: web.Request) -> web.Response:
    user = await require_user(request)
    return await _add(request, user.user_id, "api")


async def list_memories(request: web.Request) -> web.Response:
    user = await require_user(request)
    query = _str_param(request, "q", MAX_QUERY_CHARS)
    speaker = _str_param(request, "speaker_id", 128)
    limit = _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _int_param(request, "offset", 0, 0, MAX_OFFSET)
    backend = _backend(request)
    try:
        if query is not None:
            # Relevance order; `speaker_id` narrows to the household plus that speaker.
            hits = await backend.search(
                user.user_id,
                query,
                speaker_id=speaker,
                all_speakers=speaker is None,
                limit=min(offset + limit, MAX_LIMIT),
            )
            records = hits[offset : offset + limit]
        else:
            records = await backend.list(
                user.user_id,
                speaker_id=speaker,
                all_speakers=speaker is None,
                limit=limit,
                offset=offset,
            )
    except MemoryBackendError as err:
        raise _unavailable(err) from err
    return json_model([item(r) for r in records])


async def _active(request: web.Request, user_id: str) -> MemoryRecord:
    try:
        record = await _backend(request).get(user_id, request.match_info["id"])
    except MemoryNotFoundError:
        raise _not_found() from None
    if not record.active:
        raise _not_found()  # history is only in the export
    return record


async def get_memory(request: web.Request) -> web.Response:
    user = await require_user(request)
    return json_model(item(await _active(request, user.user_id)))


async def update_memory(request: web.Request) -> web.Response:
    user = await require_user(request)
    body = await read_model(request, MemoryUpdate)
    record = await _active(request, user.user_id)
    if body.content is not None and not body.content.strip():
        raise validation_error(detail="'content' must not be blank.")
    set_category = "category" in body.model_fields_set
    if body.content is None and not set_category:
        return json_model(item(record))
    try:
        updated = await _backend(request).update(
            user.user_id,
            record.id,
            content=body.content,
            category=body.category,
            set_category=set_category,
        )
    except MemoryNotFoundError:
        raise _not_found() from None
    return json_model(item(updated))


async def delete_memory(request: web.Request) -> web.Response:
    user = await require_user(request)
    try:
        await _backend(request).delete(user.user_id, request.match_info["id"])
    except MemoryNotFoundError:
        raise _not_found() from None
    return web.Response(status=204)


async def delete_all_memories(request: web.Request) -> web.Response:
    user = await require_user(request)
    await _backend(request).delete_all(user.user_id)
    return web.Response(status=204)


async def export_memories(request: web.Request) -> web.Response:
    user = await require_user(request)
    response = json_model(await memory_export(request.app, user.user_id))
    response.headers["Content-Disposition"] = 'attachment; filename="homemind-memory.json"'
    return response


async def memory_export(app: web.Application, user_id: str) -> MemoryExport:
    """Every fact of the account with its history (the API, the page and the account export)."""
    records = await app[MEMORY_BACKEND].list(
        user_id, all_speakers=True, include_superseded=True, limit=None
    )
    return MemoryExport(
        exported_at=utcnow(),
        count=len(records),
        memories=[
            MemoryExportItem(
                **item(r).model_dump(),
                source=r.source,
                superseded_by=r.superseded_by,
                superseded_at=r.superseded_at,
                use_count=r.use_count,
                last_used_at=r.last_used_at,
            )
            for r in records
        ],
    )


async def _export_for_account(app: web.Application, user_id: str) -> Any:
    return (await memory_export(app, user_id)).model_dump(mode="json")["memories"]


async def _erase_for_account(app: web.Application, user_id: str) -> None:
    await app[MEMORY_BACKEND].delete_all(user_id)


async def installation_remember(request: web.Request) -> web.Response:
    principal = await require_installation(request)
    require_scope(principal.scopes, "memory:write")
    return await _add(request, principal.user_id, "installation")


async def installation_forget(request: web.Request) -> web.Response:
    principal = await require_installation(request)
    require_scope(principal.scopes, "memory:write")
    body = await read_model(request, MemoryForgetRequest)
    try:
        gone = await forget_matching(
            _backend(request),
            principal.user_id,
            body.query,
            speaker_id=body.speaker_id,
            all_speakers=body.speaker_id is None,
        )
    except MemoryBackendError as err:
        raise _unavailable(err) from err
    if not gone:
        raise ApiError(ErrorCode.MEMORY_NOT_FOUND, "Nothing remembered matches that.")
    return json_model(MemoryForgetResult(forgotten=[item(r) for r in gone]))
