"""Memory vectors: one embedding per active fact and model, and a per-household generation.

`memory_vectors.vector` is little-endian float32 (BLOB on SQLite, bytea on PostgreSQL);
pgvector is not required. `memory_generations.generation` grows on every write to a
household's memory: each server instance compares it with its cached matrix (see
cloud_server/memory/vectors.py).

Revision ID: 0004_memory_vectors
Revises: 0003_billing
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_memory_vectors"
down_revision: str | None = "0003_billing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "memory_vectors",
        sa.Column("memory_id", sa.String(32), nullable=False),
        sa.Column("model_id", sa.String(100), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("memory_id", "model_id", name="pk_memory_vectors"),
        sa.ForeignKeyConstraint(
            ["memory_id"],
            ["memories.id"],
            name="fk_memory_vectors_memory_id_memories",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_memory_vectors_user_id_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_memory_vectors_user_model", "memory_vectors", ["user_id", "model_id"])
    op.create_table(
        "memory_generations",
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("user_id", name="pk_memory_generations"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_memory_generations_user_id_users",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("memory_generations")
    op.drop_index("ix_memory_vectors_user_model", table_name="memory_vectors")
    op.drop_table("memory_vectors")
