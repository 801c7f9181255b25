"""The SQL schema: the tables as the newest revision leaves them, and the
Alembic revisions that build them, run by ``SQLStorage.migrate``.

Every table's name starts with ``twofapi_``, and Alembic records the
revision in a version table of that name too, so the package's schema can
share a database with an application's tables and migrations. Revision
``0001`` is the shape before the first release, kept so that the tests walk
an upgrade that carries data; revision ``0002`` is schema version 1.
"""

from __future__ import annotations

import functools
from pathlib import Path

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection

__all__ = [
    "SCHEMA_REVISION",
    "VERSION_TABLE",
    "alembic_config",
    "challenges",
    "clients",
    "counters",
    "known_revisions",
    "metadata",
    "stored_revision",
]

SCHEMA_REVISION = "0002"
"""The Alembic revision holding schema version ``SCHEMA_VERSION`` (1)."""

VERSION_TABLE = "twofapi_schema_version"
"""Alembic's version table, named apart from the application's own."""

_DIRECTORY = Path(__file__).parent


def _identifier(length: int) -> sa.types.TypeEngine[str]:
    # MySQL and MariaDB compare strings case-insensitively by default, which
    # would let "Alice" and "alice" collide; identifiers are case-sensitive.
    binary = mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin")
    return sa.String(length).with_variant(binary, "mysql", "mariadb")


def _bytes(length: int) -> sa.types.TypeEngine[bytes]:
    # Kept in the row on MySQL and MariaDB, where BLOBs live apart.
    varbinary = mysql.VARBINARY(length)
    return sa.LargeBinary(length).with_variant(varbinary, "mysql", "mariadb")


# The revisions, not this metadata, create the tables; a test checks that
# both agree.
metadata = sa.MetaData()

clients = sa.Table(
    "twofapi_clients",
    metadata,
    sa.Column("client_id", _identifier(128), primary_key=True),
    sa.Column("reference_id", _identifier(128), nullable=False),
    sa.Column("commitment", _bytes(64), nullable=False),
    sa.Column("commitment_version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("recovery_hash", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("failed_attempts", sa.Integer, nullable=False),
    sa.Column("lockout_streak", sa.Integer, nullable=False),
    sa.Column("locked_until", sa.Double, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("recovery_failures", sa.Integer, nullable=False, server_default="0"),
)

challenges = sa.Table(
    "twofapi_challenges",
    metadata,
    sa.Column("challenge_id", _identifier(128), primary_key=True),
    sa.Column("client_id", _identifier(128), nullable=False, unique=True),
    sa.Column("nonce", _bytes(64), nullable=False),
    sa.Column("channel_binding", _bytes(64), nullable=False),
    sa.Column("commitment_version", sa.Integer, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
    sa.Index("ix_twofapi_challenges_expires_at", "expires_at"),
)

counters = sa.Table(
    "twofapi_counters",
    metadata,
    sa.Column("key", _identifier(255), primary_key=True),
    sa.Column("window_end", sa.Double, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Index("ix_twofapi_counters_window_end", "window_end"),
)


def alembic_config(connection: Connection) -> Config:
    """An Alembic configuration running these revisions on ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(_DIRECTORY).replace("%", "%%"))
    config.attributes["connection"] = connection
    config.attributes["version_table"] = VERSION_TABLE
    return config


@functools.cache
def known_revisions() -> frozenset[str]:
    """Every revision this package ships; any other one is newer."""
    scripts = ScriptDirectory(str(_DIRECTORY))
    return frozenset(script.revision for script in scripts.walk_revisions())


def stored_revision(connection: Connection) -> str | None:
    """The revision the database is at, or None before the first migration."""
    options = {"version_table": VERSION_TABLE}
    heads = MigrationContext.configure(connection, opts=options).get_current_heads()
    return ",".join(heads) if heads else None
