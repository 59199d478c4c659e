"""Alembic environment: runs on a connection handed over by `cloud_server.db.engine`,
or, from the `alembic` command line, on the database of the environment's settings."""

from __future__ import annotations

import asyncio
import contextlib
import importlib

from alembic import context
from sqlalchemy.engine import Connection

from cloud_server.db.base import Base

# Every component's tables belong to one metadata (used by autogenerate and tests).
for _module in (
    "cloud_server.db.models",
    "cloud_server.memory.models",
    "cloud_server.billing.models",
    "cloud_server.chat.models",
):
    with contextlib.suppress(ModuleNotFoundError):
        importlib.import_module(_module)

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: later migrations use batch mode there.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_settings() -> None:
    from cloud_server.db.engine import create_engine
    from cloud_server.settings import Settings

    engine = create_engine(Settings().effective_database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


_given = context.config.attributes.get("connection")
if _given is not None:
    _run(_given)
else:
    asyncio.run(_run_from_settings())
