"""The memories table (created by the Alembic migration `0002_memory`).

One row per fact. `user_id` is the owner (all installations of a user share the
household memory); `speaker_id` NULL means the whole household, else one HA user.
An updated fact is not overwritten: the old row gets `superseded_by` and is never
recalled again, but stays in the export as history. The search indexes (SQLite FTS5
table, PostgreSQL tsvector column) exist only in the migration, per dialect.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..db.base import Base, UTCDateTime, new_id, utcnow

ID = String(32)


class Memory(Base):
    __tablename__ = "memories"
    __table_args__ = (
        Index("ix_memories_user_hash", "user_id", "content_hash"),
        Index("ix_memories_user_created", "user_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))
    speaker_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    content: Mapped[str] = mapped_column(Text)
    # SHA-256 of the normalised content: `add` is idempotent per owner and scope.
    content_hash: Mapped[str] = mapped_column(String(64))
    category: Mapped[str | None] = mapped_column(String(50), nullable=True)
    # Where the fact came from: api, installation, tool, extraction.
    source: Mapped[str] = mapped_column(String(16), default="api", server_default="api")
    superseded_by: Mapped[str | None] = mapped_column(ID, nullable=True)
    superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    use_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The fact's id in an external recall index (Shodh), when one is configured.
    index_ref: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class MemoryVector(Base):
    """One embedding of an active fact per model (little-endian float32, see vectors.py)."""

    __tablename__ = "memory_vectors"
    __table_args__ = (Index("ix_memory_vectors_user_model", "user_id", "model_id"),)

    memory_id: Mapped[str] = mapped_column(
        ID, ForeignKey("memories.id", ondelete="CASCADE"), primary_key=True
    )
    model_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class MemoryGeneration(Base):
    """Grows on every write to a household's memory: cached matrices compare against it."""

    __tablename__ = "memory_generations"

    user_id: Mapped[str] = mapped_column(
        ID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    generation: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class MemorySpeaker(Base):
    """A speaker (HA user id) of the household and the name their last request carried:
    a turn naming that person may see that person's own facts (see speakers.py)."""

    __tablename__ = "memory_speakers"

    user_id: Mapped[str] = mapped_column(
        ID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    speaker_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
