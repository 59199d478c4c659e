"""Alembic migrations: one chain for SQLite and PostgreSQL."""
