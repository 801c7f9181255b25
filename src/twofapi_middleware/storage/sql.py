"""SQL storage through SQLAlchemy Core: SQLite, PostgreSQL, MySQL and MariaDB.

URLs use SQLAlchemy's syntax. A bare scheme picks the driver the matching
extra installs; an explicit ``+driver`` is honoured::

    sqlite:///relative.db            sqlite:////absolute/path.db
    postgresql://user@host/db        (psycopg 3: postgresql+psycopg)
    mysql://user@host/db             (PyMySQL: mysql+pymysql)
    mariadb://user@host/db           (PyMySQL: mariadb+pymysql)

How each guarantee of the storage protocol is kept:

* ``add_client`` inserts, and on a primary-key violation returns the row the
  other writer stored;
* ``replace_client`` is ``UPDATE ... WHERE client_id = ? AND revision = ?``,
  successful when exactly one row changed;
* ``put_challenge`` deletes the client's challenge and inserts the new one in
  one transaction; the unique ``client_id`` turns a concurrent put into a
  violation, and the transaction is run again;
* ``take_challenge`` is ``DELETE ... WHERE challenge_id = ? AND client_id = ?
  RETURNING``, or, where the server lacks ``RETURNING``, a locking read
  followed by the same delete, which only one transaction can win;
* ``hit`` is one upsert (``ON CONFLICT`` or ``ON DUPLICATE KEY``) that resets
  the count when the window changes.

The schema is versioned by Alembic in its own version table, so it never
mixes with an application's migrations. Driver errors are wrapped in
:class:`~twofapi_middleware.errors.StorageUnavailable`, with bind parameters
hidden and the URL's password redacted.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, SQLAlchemyError

from ..errors import ConfigurationError, SchemaError, StorageUnavailable
from ..models import Challenge, ClientRecord, ClientStatus
from . import redact_url
from .base import PURGE_GRACE_SECONDS, SCHEMA_VERSION

__all__ = [
    "MIGRATIONS_DIR",
    "SCHEMA_REVISION",
    "VERSION_TABLE",
    "SQLStorage",
    "alembic_config",
]

SCHEMA_REVISION = "0002"
"""The Alembic revision that holds schema version ``SCHEMA_VERSION``."""

VERSION_TABLE = "twofapi_schema_version"
"""Alembic's version table, named apart from the application's own."""

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# backend -> (driver used when the URL names none, extra that installs it)
_DRIVERS: dict[str, tuple[str, str]] = {
    "sqlite": ("pysqlite", "sql"),
    "postgresql": ("psycopg", "postgresql"),
    "mysql": ("pymysql", "mysql"),
    "mariadb": ("pymysql", "mysql"),
}

# Transactions that lost a race only to a concurrent one are run again.
_RETRIES = 10
_PG_RETRY_STATES = frozenset({"40001", "40P01"})  # serialization, deadlock
_MYSQL_DEADLOCK = 1213

_T = TypeVar("_T")


def _identifier(length: int) -> sa.types.TypeEngine[str]:
    # MySQL and MariaDB compare strings case-insensitively by default, which
    # would let "Alice" and "alice" collide; identifiers are case-sensitive.
    binary = mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin")
    return sa.String(length).with_variant(binary, "mysql", "mariadb")


# The tables as migration SCHEMA_REVISION leaves them.
metadata = sa.MetaData()

clients = sa.Table(
    "clients",
    metadata,
    sa.Column("client_id", _identifier(128), primary_key=True),
    sa.Column("reference_id", _identifier(128), nullable=False),
    sa.Column("commitment", sa.LargeBinary(64), nullable=False),
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
    "challenges",
    metadata,
    sa.Column("challenge_id", _identifier(128), primary_key=True),
    sa.Column("client_id", _identifier(128), nullable=False, unique=True),
    sa.Column("nonce", sa.LargeBinary(64), nullable=False),
    sa.Column("channel_binding", sa.LargeBinary(64), nullable=False),
    sa.Column("commitment_version", sa.Integer, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
    sa.Index("ix_challenges_expires_at", "expires_at"),
)

counters = sa.Table(
    "counters",
    metadata,
    sa.Column("key", _identifier(255), primary_key=True),
    sa.Column("window_end", sa.Double, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Index("ix_counters_window_end", "window_end"),
)


def alembic_config(connection: Connection) -> Config:
    """An Alembic configuration that runs the packaged migrations on
    ``connection``, for ``SQLStorage.migrate`` and for tests that need to
    stop at an older revision."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.attributes["connection"] = connection
    config.attributes["version_table"] = VERSION_TABLE
    return config


@functools.cache
def _known_revisions() -> frozenset[str]:
    scripts = ScriptDirectory(str(MIGRATIONS_DIR))
    return frozenset(script.revision for script in scripts.walk_revisions())


def _stored_revision(connection: Connection) -> str | None:
    context = MigrationContext.configure(
        connection, opts={"version_table": VERSION_TABLE}
    )
    heads = context.get_current_heads()
    return ",".join(heads) if heads else None


def _engine_url(url: str) -> tuple[URL, str]:
    """The SQLAlchemy URL with its driver made explicit, and the extra."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(
            f"invalid SQL storage URL: {redact_url(url)}"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    backend = "postgresql" if backend == "postgres" else backend
    if backend not in _DRIVERS:
        raise ConfigurationError(f"unsupported SQL storage URL: {redact_url(url)}")
    default_driver, extra = _DRIVERS[backend]
    parsed = parsed.set(drivername=f"{backend}+{driver or default_driver}")

    if backend == "sqlite" and (
        parsed.database in (None, "", ":memory:")
        or parsed.query.get("mode") == "memory"
    ):
        raise ConfigurationError(
            "an in-memory SQLite database is private to one connection; "
            "use memory:// or a sqlite:///file.db URL"
        )
    if backend in ("mysql", "mariadb") and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed, extra


def _connect_args(
    backend: str, timeout_seconds: float, limited: bool
) -> dict[str, Any]:
    """Driver options bounding how long connecting and each statement take.

    ``limited`` is False for migrations, whose statements may rightly run
    longer than a request's.
    """
    seconds = max(1, math.ceil(timeout_seconds))
    if backend == "sqlite":
        return {"timeout": timeout_seconds, "check_same_thread": False}
    if backend == "postgresql":
        args: dict[str, Any] = {
            "connect_timeout": max(2, seconds),  # libpq's minimum
            "application_name": "twofapi",
        }
        if limited:
            args["options"] = f"-c statement_timeout={seconds * 1000}"
        return args
    args = {"connect_timeout": timeout_seconds}
    if limited:
        args["read_timeout"] = timeout_seconds
        args["write_timeout"] = timeout_seconds
        args["init_command"] = f"SET SESSION innodb_lock_wait_timeout = {seconds}"
    return args


def _use_wal(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers go on while one connection writes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def _is_conflict(error: DBAPIError) -> bool:
    """True when the transaction only lost a race and may simply run again."""
    cause = error.orig
    if getattr(cause, "sqlstate", None) in _PG_RETRY_STATES:
        return True
    args = getattr(cause, "args", ())
    return bool(args) and args[0] == _MYSQL_DEADLOCK


def _record_from_row(row: sa.Row[Any]) -> ClientRecord:
    values = row._mapping
    return ClientRecord(
        client_id=values["client_id"],
        reference_id=values["reference_id"],
        commitment=bytes(values["commitment"]),
        commitment_version=int(values["commitment_version"]),
        status=ClientStatus(values["status"]),
        recovery_hash=values["recovery_hash"],
        created_at=float(values["created_at"]),
        updated_at=float(values["updated_at"]),
        failed_attempts=int(values["failed_attempts"]),
        lockout_streak=int(values["lockout_streak"]),
        locked_until=float(values["locked_until"]),
        recovery_failures=int(values["recovery_failures"]),
        revision=int(values["revision"]),
    )


def _record_values(record: ClientRecord) -> dict[str, Any]:
    return {
        "client_id": record.client_id,
        "reference_id": record.reference_id,
        "commitment": record.commitment,
        "commitment_version": record.commitment_version,
        "status": record.status.value,
        "recovery_hash": record.recovery_hash,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "failed_attempts": record.failed_attempts,
        "lockout_streak": record.lockout_streak,
        "locked_until": record.locked_until,
        "recovery_failures": record.recovery_failures,
        "revision": record.revision,
    }


def _challenge_from_row(row: sa.Row[Any]) -> Challenge:
    values = row._mapping
    return Challenge(
        challenge_id=values["challenge_id"],
        client_id=values["client_id"],
        nonce=bytes(values["nonce"]),
        channel_binding=bytes(values["channel_binding"]),
        commitment_version=int(values["commitment_version"]),
        expires_at=float(values["expires_at"]),
    )
