"""Installation scopes: what a token may do (chat, memory, the MCP server).

Revision ID: 0007_installation_scopes
Revises: 0006_memory_speed
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_installation_scopes"
down_revision: str | None = "0006_memory_speed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL is every scope: the tokens Home Assistant already holds keep working.
    with op.batch_alter_table("installations") as batch:
        batch.add_column(sa.Column("scopes", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("installations") as batch:
        batch.drop_column("scopes")
