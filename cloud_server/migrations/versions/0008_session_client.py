"""Sessions: which client a refresh family belongs to (the dashboard's browser or the API).

Revision ID: 0008_session_client
Revises: 0007_installation_scopes
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_session_client"
down_revision: str | None = "0007_installation_scopes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing families are the API's: only a dashboard sign-in marks one as the browser's.
    with op.batch_alter_table("auth_sessions") as batch:
        batch.add_column(sa.Column("client", sa.String(16), nullable=False, server_default="api"))


def downgrade() -> None:
    with op.batch_alter_table("auth_sessions") as batch:
        batch.drop_column("client")
