"""Alembic migrations of the SQL storage schema, run by ``SQLStorage.migrate``."""
