"""Memory: the memories table and its full-text index (FTS5 on SQLite, tsvector on PostgreSQL).

Revision ID: 0002_memory
Revises: 0001_initial
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_memory"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The FTS5 table holds its own copy of the text (not an external-content table): the
# memories table has a text primary key, and its implicit rowid may change on VACUUM.
# `owner` holds "u<user_id>" so a MATCH is restricted to one household inside the index.
_SQLITE_FTS = [
    """
    CREATE VIRTUAL TABLE memories_fts USING fts5(
        memory_id UNINDEXED, owner, body,
        tokenize = 'unicode61 remove_diacritics 2'
    )
    """,
    """
    CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN
        INSERT INTO memories_fts (memory_id, owner, body)
        VALUES (new.id, 'u' || new.user_id, new.content || ' ' || coalesce(new.category, ''));
    END
    """,
    """
    CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN
        DELETE FROM memories_fts WHERE memory_id = old.id;
    END
    """,
    # Only active facts are indexed: a superseded fact leaves the index (it stays in the table).
    """
    CREATE TRIGGER memories_fts_update
    AFTER UPDATE OF content, category, user_id, superseded_by ON memories
    BEGIN
        DELETE FROM memories_fts WHERE memory_id = old.id;
        INSERT INTO memories_fts (memory_id, owner, body)
        SELECT new.id, 'u' || new.user_id, new.content || ' ' || coalesce(new.category, '')
        WHERE new.superseded_by IS NULL;
    END
    """,
    # `ORDER BY rank` is FTS5's fast path; rank = BM25 on the body column only.
    "INSERT INTO memories_fts (memories_fts, rank) VALUES ('rank', 'bm25(0.0, 0.0, 1.0)')",
]


def _ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "memories",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("speaker_id", sa.String(128), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("category", sa.String(50), nullable=True),
        sa.Column("source", sa.String(16), server_default="api", nullable=False),
        sa.Column("superseded_by", sa.String(32), nullable=True),
        _ts("superseded_at", nullable=True),
        sa.Column("use_count", sa.Integer(), server_default="0", nullable=False),
        _ts("last_used_at", nullable=True),
        sa.Column("index_ref", sa.String(64), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_memories_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_memories"),
    )
    op.create_index("ix_memories_user_hash", "memories", ["user_id", "content_hash"])
    op.create_index("ix_memories_user_created", "memories", ["user_id", "created_at"])

    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in _SQLITE_FTS:
            op.execute(statement)
    elif dialect == "postgresql":
        op.execute(
            "ALTER TABLE memories ADD COLUMN search_vector tsvector GENERATED ALWAYS AS "
            "(to_tsvector('simple', content || ' ' || coalesce(category, ''))) STORED"
        )
        op.execute("CREATE INDEX ix_memories_search_vector ON memories USING gin (search_vector)")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name in ("memories_fts_update", "memories_fts_delete", "memories_fts_insert"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS memories_fts")
    elif dialect == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_memories_search_vector")
    op.drop_index("ix_memories_user_created", table_name="memories")
    op.drop_index("ix_memories_user_hash", table_name="memories")
    op.drop_table("memories")
