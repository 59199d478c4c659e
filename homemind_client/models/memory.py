"""Memory wire models (`/api/memory`)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from .base import RequestModel, ResponseModel

MAX_MEMORY_CHARS = 2_000


class MemoryCreate(RequestModel):
    content: str = Field(min_length=1, max_length=MAX_MEMORY_CHARS)
    category: str | None = Field(default=None, max_length=50)
    speaker_id: str | None = Field(default=None, max_length=128)


class MemoryUpdate(RequestModel):
    content: str | None = Field(default=None, min_length=1, max_length=MAX_MEMORY_CHARS)
    category: str | None = Field(default=None, max_length=50)


class MemoryItem(ResponseModel):
    id: str
    content: str
    category: str | None = None
    speaker_id: str | None = None
    created_at: datetime
    updated_at: datetime


class MemoryExportItem(MemoryItem):
    """One fact in the export, with its history fields (superseded facts included)."""

    source: str = "api"
    superseded_by: str | None = None
    superseded_at: datetime | None = None
    use_count: int = 0
    last_used_at: datetime | None = None


class MemoryExport(ResponseModel):
    """`GET /api/memory/export`: everything remembered for the account."""

    exported_at: datetime
    count: int
    memories: list[MemoryExportItem]


class MemoryForgetRequest(RequestModel):
    """`POST /api/installation/memory/forget`: forget the best match(es) for `query`."""

    query: str = Field(min_length=1, max_length=500)
    speaker_id: str | None = Field(default=None, max_length=128)


class MemoryForgetResult(ResponseModel):
    forgotten: list[MemoryItem]
