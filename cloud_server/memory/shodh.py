"""Shodh Memory as the recall index, when `SHODH_URL` is set.

Decision: our memories table stays the source of truth (list, get, update, export,
scoping, history); Shodh only ranks. Every active fact is upserted into Shodh with
our id as `external_id` (and in a tag), recall asks Shodh (`mode=hybrid`) and maps
its answers back to our rows, dropping anything superseded, deleted or of another
speaker. When Shodh fails or has not indexed a fact yet, the local full-text search
fills the gap, so a Shodh outage degrades ranking but never loses or hides a fact.

API shapes follow Shodh's OpenAPI document and handlers (github.com/varun29ankuS/
shodh-memory: openapi.yaml, src/handlers/remember.rs, recall.rs, crud.rs, users.rs,
src/validation.rs): `X-API-Key` header; `POST /api/remember` and `POST /api/upsert`
`{user_id, content, tags, memory_type, external_id}` → `{id, success}` (upsert adds
`was_update`, `version`); `POST /api/recall` `{user_id, query, limit, mode}` →
`{memories: [{id, experience: {content, memory_type, tags}, score, ...}], count}`;
`DELETE /api/forget/{id}?user_id=`; `DELETE /api/users/{user_id}`; content of 10 to
50,000 bytes; user ids `[A-Za-z0-9-_@.]{1,128}` without "..", leading or trailing dots.
"""

from __future__ import annotations

import builtins
import logging
import re
from collections.abc import Sequence
from typing import Any

import aiohttp

from .backend import ActiveCount, AddResult, MemoryBackendError, MemoryRecord, Source
from .sql_backend import SqlMemoryBackend, visible_speakers

LOGGER = logging.getLogger(__name__)

# Shodh's memory types (its `MemoryType` enum); a household fact is `Context`.
SHODH_MEMORY_TYPES = (
    "Observation",
    "Decision",
    "Learning",
    "Error",
    "Discovery",
    "Pattern",
    "Context",
    "Task",
    "Conversation",
)
FACT_MEMORY_TYPE = "Context"
MIN_CONTENT = 10
MAX_CONTENT = 50_000
ID_TAG = "hm-id:"
_UNSAFE = re.compile(r"[^A-Za-z0-9_@.-]")


def shodh_user_id(user_id: str) -> str:
    """Our user id in Shodh's alphabet, `[A-Za-z0-9-_@.]{1,128}`, stable and collision-poor."""
    safe = _UNSAFE.sub("_", f"hm-{user_id}")
    while ".." in safe:
        safe = safe.replace("..", "_.")
    safe = safe.strip(".") or "hm-user"
    return safe[:128].rstrip(".")


def shodh_content(content: str) -> str:
    """Shodh refuses content under 10 characters: short facts get a neutral prefix."""
    if len(content.strip()) >= MIN_CONTENT:
        return content[:MAX_CONTENT]
    return f"Household fact: {content.strip()}"


class ShodhError(MemoryBackendError):
    pass


class ShodhClient:
    """A small async client of the Shodh Memory HTTP API."""

    def __init__(self, base_url: str, api_key: str | None, *, timeout: float = 5.0) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {"X-API-Key": api_key} if api_key else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers, timeout=self._timeout, raise_for_status=False
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        allow_404: bool = False,
    ) -> dict[str, Any]:
        try:
            async with self._http().request(
                method, self._base + path, json=json, params=params
            ) as response:
                if allow_404 and response.status == 404:
                    return {}
                if response.status >= 400:
                    body = (await response.text())[:300]
                    raise ShodhError(f"Shodh {method} {path} answered {response.status}: {body}")
                data = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            raise ShodhError(f"Shodh {method} {path} failed: {err!r}") from err
        return data if isinstance(data, dict) else {}

    async def upsert(
        self,
        user_id: str,
        external_id: str,
        content: str,
        tags: list[str],
        memory_type: str = FACT_MEMORY_TYPE,
    ) -> str:
        data = await self._call(
            "POST",
            "/api/upsert",
            json={
                "user_id": shodh_user_id(user_id),
                "external_id": external_id,
                "content": shodh_content(content),
                "tags": tags,
                "memory_type": memory_type,
            },
        )
        memory_id = data.get("id")
        if not isinstance(memory_id, str) or not memory_id:
            raise ShodhError("Shodh upsert answered without an id")
        return memory_id

    async def recall(self, user_id: str, query: str, limit: int) -> list[dict[str, Any]]:
        data = await self._call(
            "POST",
            "/api/recall",
            json={
                "user_id": shodh_user_id(user_id),
                "query": query,
                "limit": max(1, min(limit, 100)),
                "mode": "hybrid",
            },
        )
        memories = data.get("memories")
        return [m for m in memories if isinstance(m, dict)] if isinstance(memories, list) else []

    async def forget(self, user_id: str, memory_id: str) -> None:
        await self._call(
            "DELETE",
            f"/api/forget/{memory_id}",
            params={"user_id": shodh_user_id(user_id)},
            allow_404=True,
        )

    async def delete_user(self, user_id: str) -> None:
        await self._call("DELETE", f"/api/users/{shodh_user_id(user_id)}", allow_404=True)

    async def health(self) -> bool:
        try:
            async with self._http().get(self._base + "/health") as response:
                return response.status < 400
        except (aiohttp.ClientError, TimeoutError):
            return False


def _tags(record: MemoryRecord) -> list[str]:
    tags = [ID_TAG + record.id, "scope:" + ("speaker" if record.speaker_id else "household")]
    if record.category:
        tags.append("category:" + record.category)
    return tags


def _our_id(memory: dict[str, Any]) -> str | None:
    experience = memory.get("experience")
    tags = experience.get("tags") if isinstance(experience, dict) else None
    for tag in tags if isinstance(tags, list) else []:
        if isinstance(tag, str) and tag.startswith(ID_TAG):
            return tag[len(ID_TAG) :]
    return None


class ShodhMemoryBackend:
    """Our table for truth, Shodh for ranking (see the module docstring)."""

    name = "shodh"

    def __init__(self, store: SqlMemoryBackend, client: ShodhClient) -> None:
        self.store = store
        self.client = client

    async def _index(self, record: MemoryRecord) -> None:
        try:
            ref = await self.client.upsert(record.user_id, record.id, record.content, _tags(record))
        except ShodhError:
            LOGGER.warning(
                "Shodh indexing failed; the fact is kept and found locally", exc_info=True
            )
            return
        if ref != record.index_ref:
            await self.store.set_index_ref(record.user_id, record.id, ref)

    async def _unindex(self, record: MemoryRecord) -> None:
        if not record.index_ref:
            return
        try:
            await self.client.forget(record.user_id, record.index_ref)
        except ShodhError:
            LOGGER.warning("Shodh forget failed; recall filters the fact out anyway", exc_info=True)

    async def add(
        self,
        user_id: str,
        content: str,
        *,
        category: str | None = None,
        speaker_id: str | None = None,
        source: Source = "api",
    ) -> AddResult:
        result = await self.store.add(
            user_id, content, category=category, speaker_id=speaker_id, source=source
        )
        if result.created or result.record.index_ref is None:
            await self._index(result.record)
        return result

    async def search(
        self,
        user_id: str,
        query: str,
        *,
        speaker_id: str | None = None,
        all_speakers: bool = False,
        limit: int = 10,
        also_speakers: Sequence[str] = (),
    ) -> list[MemoryRecord]:
        local = await self.store.search(
            user_id,
            query,
            speaker_id=speaker_id,
            all_speakers=all_speakers,
            limit=limit,
            also_speakers=also_speakers,
        )
        try:
            found = await self.client.recall(user_id, query, limit * 3)
        except ShodhError:
            LOGGER.warning("Shodh recall failed; using the local index", exc_info=True)
            return local
        ids = [i for i in (_our_id(m) for m in found) if i]
        ranked = []
        # The same rule as the local search: the household, the speaker, the people named.
        visible = {None, *visible_speakers(speaker_id, also_speakers)}
        for record in await self.store.get_many(user_id, ids):
            if not record.active:
                continue
            if not all_speakers and record.speaker_id not in visible:
                continue
            ranked.append(record)
        seen = {r.id for r in ranked}
        # Facts Shodh does not know (yet) or did not rank still count when they match.
        ranked.extend(r for r in local if r.id not in seen)
        return ranked[:limit]

    async def list(
        self,
        user_id: str,
        *,
        speaker_id: str | None = None,
        all_speakers: bool = True,
        include_superseded: bool = False,
        limit: int | None = 50,
        offset: int = 0,
        also_speakers: Sequence[str] = (),
    ) -> builtins.list[MemoryRecord]:
        return await self.store.list(
            user_id,
            speaker_id=speaker_id,
            all_speakers=all_speakers,
            include_superseded=include_superseded,
            limit=limit,
            offset=offset,
            also_speakers=also_speakers,
        )

    def prepare_query(self, query: str) -> None:
        self.store.prepare_query(query)

    async def note_speaker(self, user_id: str, speaker_id: str, name: str) -> None:
        await self.store.note_speaker(user_id, speaker_id, name)

    async def speakers(self, user_id: str) -> dict[str, str]:
        return await self.store.speakers(user_id)

    async def get(self, user_id: str, memory_id: str) -> MemoryRecord:
        return await self.store.get(user_id, memory_id)

    async def update(
        self,
        user_id: str,
        memory_id: str,
        *,
        content: str | None = None,
        category: str | None = None,
        set_category: bool = False,
    ) -> MemoryRecord:
        record = await self.store.update(
            user_id, memory_id, content=content, category=category, set_category=set_category
        )
        if record.active:
            await self._index(record)
        return record

    async def supersede(
        self, user_id: str, memory_id: str, content: str, *, source: Source = "tool"
    ) -> MemoryRecord:
        old = await self.store.get(user_id, memory_id)
        new = await self.store.supersede(user_id, memory_id, content, source=source)
        if new.id != old.id:
            await self._unindex(old)
            if new.index_ref is None:
                await self._index(new)
        return new

    async def delete(self, user_id: str, memory_id: str) -> MemoryRecord:
        record = await self.store.delete(user_id, memory_id)
        await self._unindex(record)
        return record

    async def delete_all(self, user_id: str) -> int:
        count = await self.store.delete_all(user_id)
        try:
            await self.client.delete_user(user_id)
        except ShodhError:
            LOGGER.warning("Shodh user deletion failed", exc_info=True)
        return count

    async def mark_used(
        self, user_id: str, memory_ids: builtins.list[str], *, times: int = 1
    ) -> None:
        await self.store.mark_used(user_id, memory_ids, times=times)

    async def count(self, user_id: str, *, include_superseded: bool = False) -> int:
        return await self.store.count(user_id, include_superseded=include_superseded)

    async def count_active(
        self,
        user_id: str,
        *,
        speaker_id: str | None = None,
        cap: int,
        also_speakers: Sequence[str] = (),
    ) -> ActiveCount:
        return await self.store.count_active(
            user_id, speaker_id=speaker_id, cap=cap, also_speakers=also_speakers
        )

    async def all_that_fit(
        self,
        user_id: str,
        *,
        speaker_id: str | None = None,
        also_speakers: Sequence[str] = (),
        cap: int,
        max_chars: int,
    ) -> builtins.list[MemoryRecord] | None:
        return await self.store.all_that_fit(
            user_id,
            speaker_id=speaker_id,
            also_speakers=also_speakers,
            cap=cap,
            max_chars=max_chars,
        )

    async def health(self) -> bool:
        return await self.store.health() and await self.client.health()

    async def close(self) -> None:
        await self.client.close()
