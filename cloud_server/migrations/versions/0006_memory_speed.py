"""Memory speed and speakers: full-text terms scoped per household, the speaker directory.

Full text: every indexed word becomes `<household key>_<word>` (SQLite: `u` + the first
10 hex digits of the user id + `_`; PostgreSQL: the same without the `_`, which its
parser splits on), so a search reads only its own household's postings. One index
shared by all households made a 10k household pay for a 100k co-tenant's matches
(see bench/memory_latency.py). Two households sharing a key (a 40-bit prefix of a
random id) would only share postings: every search still filters on `user_id`.

`memory_speakers`: the household's speakers (HA user ids) and their names, as the chat
requests carried them, so a turn that names a person may see that person's own facts
(cloud_server/memory/speakers.py).

Revision ID: 0006_memory_speed
Revises: 0005_dashboard
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_memory_speed"
down_revision: str | None = "0005_dashboard"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Characters FTS5's unicode61 tokenizer splits words on that often sit inside a "word"
# of the text: each becomes a space first, so every piece gets the household prefix.
# (SQLite's parser allows about 24 nested calls in a trigger. A separator missing here only makes
# the piece after it unfindable lexically, as with `[x]`; the fact is still found by
# its other words and by dense recall.)
SEPARATORS = "\t\n-'\u2019\".,;:!?()/+«»¿¡\u2013"  # right quote, en dash


def _sqlite_body(row: str) -> str:
    text = f"lower({row}.content || ' ' || coalesce({row}.category, ''))"
    for char in SEPARATORS:
        quoted = char.replace("'", "''")
        text = f"replace({text}, '{quoted}', ' ')"
    key = f"'u' || substr({row}.user_id, 1, 10) || '_'"
    return f"{key} || replace({text}, ' ', ' ' || {key})"


# Only constant text is interpolated (the separators above, column names).
_SQLITE_NEW = [
    """
    CREATE VIRTUAL TABLE memories_fts USING fts5(
        memory_id UNINDEXED, body,
        tokenize = "unicode61 remove_diacritics 2 tokenchars '_'"
    )
    """,
    f"""
    CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories
    WHEN new.superseded_by IS NULL BEGIN
        INSERT INTO memories_fts (memory_id, body) VALUES (new.id, {_sqlite_body("new")});
    END
    """,  # noqa: S608
    """
    CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN
        DELETE FROM memories_fts WHERE memory_id = old.id;
    END
    """,
    # Only active facts are indexed: a superseded fact leaves the index (it stays in the table).
    f"""
    CREATE TRIGGER memories_fts_update
    AFTER UPDATE OF content, category, user_id, superseded_by ON memories
    BEGIN
        DELETE FROM memories_fts WHERE memory_id = old.id;
        INSERT INTO memories_fts (memory_id, body)
        SELECT new.id, {_sqlite_body("new")} WHERE new.superseded_by IS NULL;
    END
    """,  # noqa: S608
    # `ORDER BY rank` is FTS5's fast path; rank = BM25 on the body column only.
    "INSERT INTO memories_fts (memories_fts, rank) VALUES ('rank', 'bm25(0.0, 1.0)')",
    f"""
    INSERT INTO memories_fts (memory_id, body)
    SELECT m.id, {_sqlite_body("m")} FROM memories AS m WHERE m.superseded_by IS NULL
    """,  # noqa: S608
]

# The index of 0002_memory, for the downgrade.
_SQLITE_OLD = [
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
    "INSERT INTO memories_fts (memories_fts, rank) VALUES ('rank', 'bm25(0.0, 0.0, 1.0)')",
    """
    INSERT INTO memories_fts (memory_id, owner, body)
    SELECT id, 'u' || user_id, content || ' ' || coalesce(category, '')
    FROM memories WHERE superseded_by IS NULL
    """,
]

# PostgreSQL: every word prefixed with the household key; only active facts get terms.
_PG_NEW = (
    "ALTER TABLE memories ADD COLUMN search_vector tsvector GENERATED ALWAYS AS "
    "(CASE WHEN superseded_by IS NULL THEN to_tsvector('simple', regexp_replace("
    "content || ' ' || coalesce(category, ''), '(\\w+)', 'u' || substr(user_id, 1, 10) || '\\1', "
    "'g')) END) STORED"
)
_PG_OLD = (
    "ALTER TABLE memories ADD COLUMN search_vector tsvector GENERATED ALWAYS AS "
    "(to_tsvector('simple', content || ' ' || coalesce(category, ''))) STORED"
)
_SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS memories_fts_update",
    "DROP TRIGGER IF EXISTS memories_fts_delete",
    "DROP TRIGGER IF EXISTS memories_fts_insert",
    "DROP TABLE IF EXISTS memories_fts",
]


def _pg_swap(column: str, options: str) -> None:
    op.execute("DROP INDEX IF EXISTS ix_memories_search_vector")
    op.execute("ALTER TABLE memories DROP COLUMN IF EXISTS search_vector")
    op.execute(column)
    op.execute(
        f"CREATE INDEX ix_memories_search_vector ON memories USING gin (search_vector){options}"
    )


def upgrade() -> None:
    op.create_table(
        "memory_speakers",
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("speaker_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "speaker_id", name="pk_memory_speakers"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_memory_speakers_user_id_users", ondelete="CASCADE"
        ),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in [*_SQLITE_DROP, *_SQLITE_NEW]:
            op.execute(statement)
    elif dialect == "postgresql":
        # No pending list: with GIN's fast update, every search scanned the rows written
        # since the last vacuum one by one (28 ms of a 36 ms search after a bulk load).
        _pg_swap(_PG_NEW, " WITH (fastupdate = off)")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in [*_SQLITE_DROP, *_SQLITE_OLD]:
            op.execute(statement)
    elif dialect == "postgresql":
        _pg_swap(_PG_OLD, "")
    op.drop_table("memory_speakers")
