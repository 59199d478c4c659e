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
