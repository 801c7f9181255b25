"""SQL storage through SQLAlchemy Core: SQLite, PostgreSQL, MySQL and MariaDB.

URLs use SQLAlchemy's syntax. A bare scheme picks the driver its extra
installs (``postgresql`` psycopg 3, ``mysql`` and ``mariadb`` PyMySQL); an
explicit ``+driver`` is honoured. How the protocol's guarantees are kept:

* ``add_client`` inserts; on a key violation it returns the row that the
  other enrollment stored;
* ``replace_client`` is ``UPDATE ... WHERE client_id = ? AND revision = ?``,
  successful when exactly one row changed;
* ``put_challenge`` is an upsert on the unique ``client_id``: the client's
  one row is overwritten in place, so concurrent puts leave one challenge;
* ``take_challenge`` is ``DELETE ... WHERE challenge_id = ? AND client_id = ?
  RETURNING``; without ``RETURNING``, a locking read and the same delete,
  which only one transaction can win;
* ``hit`` is an upsert too, which starts the count over only when a later
  window begins; a hit from a lagging clock counts in the stored window.
  Upserts are ``ON CONFLICT`` or ``ON DUPLICATE KEY`` statements.

A transaction that a deadlock ended runs again. Concurrent migrations take
turns: under an advisory lock on PostgreSQL, ``GET_LOCK`` on MySQL and
MariaDB, and on SQLite in one ``BEGIN IMMEDIATE`` transaction, which holds
the database's write lock throughout.

The tables and their Alembic revisions live in :mod:`.migrations`. Driver
errors become :class:`~twofapi_middleware.errors.StorageUnavailable`, with
bind parameters hidden and the URL's password redacted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, SQLAlchemyError

from ..errors import (
    ConfigurationError,
    SchemaError,
    SchemaTooNew,
    StorageUnavailable,
)
from ..models import Challenge, ClientRecord, ClientStatus
from . import redact_url
from .base import MIGRATION_LOCK_SECONDS, PURGE_GRACE_SECONDS, SCHEMA_VERSION
from .migrations import (
    SCHEMA_REVISION,
    alembic_config,
    challenges,
    clients,
    counters,
    known_revisions,
    stored_revision,
)

__all__ = ["SQLStorage"]

# backend -> (driver used when the URL names none, extra that installs it)
_DRIVERS = {
    "sqlite": ("pysqlite", "sql"),
    "postgresql": ("psycopg", "postgresql"),
    "mysql": ("pymysql", "mysql"),
    "mariadb": ("pymysql", "mysql"),
}

# A transaction that a deadlock or a serialization failure ended runs again.
_RETRIES = 10
_PG_RETRY_STATES = frozenset({"40001", "40P01"})  # serialization, deadlock
_MYSQL_DEADLOCK = 1213

# The locks that make migrations of one database take turns. PostgreSQL's
# key is b"twofapi" read as a number; a MySQL lock name is server-wide, so
# migrations of two databases on one server take turns too, which is
# harmless.
_PG_MIGRATION_LOCK = 0x74776F66617069
_MYSQL_MIGRATION_LOCK = "twofapi_migrate"
_PG_LOCK_TIMEOUT = "55P03"

_T = TypeVar("_T")


def _engine_url(url: str) -> tuple[URL, str]:
    """``url`` with its driver made explicit, and the extra installing it."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(f"invalid SQL storage URL {redact_url(url)}") from None
    backend, _, driver = parsed.drivername.partition("+")
    backend = "postgresql" if backend == "postgres" else backend
    if backend not in _DRIVERS:
        raise ConfigurationError(f"unsupported SQL storage URL {redact_url(url)}")
    default_driver, extra = _DRIVERS[backend]
    parsed = parsed.set(drivername=f"{backend}+{driver or default_driver}")

    if backend == "sqlite" and (
        parsed.database in (None, "", ":memory:")
        or parsed.query.get("mode") == "memory"
    ):
        raise ConfigurationError(
            "an in-memory SQLite database lives in one connection; "
            "use memory:// or a sqlite:///file.db URL"
        )
    if backend in ("mysql", "mariadb") and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed, extra


def _connect_args(
    backend: str,
    timeout_seconds: float,
    limited: bool,
    query: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Driver options bounding connecting and, if ``limited``, statements.

    Migrations are not ``limited``: their statements may rightly run longer
    than a request's. ``query`` holds the options the URL already gives; the
    bounds add to them and never replace one the user chose.
    """
    given = query or {}
    seconds = max(1, math.ceil(timeout_seconds))
    if backend == "sqlite":
        # A migration waits for the write lock that another one holds.
        busy = timeout_seconds if limited else MIGRATION_LOCK_SECONDS
        return _without({"timeout": busy, "check_same_thread": False}, given)
    if backend == "postgresql":
        args: dict[str, Any] = {"connect_timeout": max(2, seconds)}  # libpq min
        if limited:
            # Unacknowledged sends (a server or a route gone silent) fail
            # after the timeout too, not after the kernel's fifteen minutes.
            args["tcp_user_timeout"] = seconds * 1000
            options = f"-c statement_timeout={seconds * 1000}"
            if given.get("options"):
                options = f"{given['options']} {options}"
            args["options"] = options
        return _without(args, given, keep="options")
    # MySQL's lock wait is bounded by _bound_lock_waits, after any
    # init_command of the URL has run.
    args = {"connect_timeout": timeout_seconds}
    if limited:
        args["read_timeout"] = args["write_timeout"] = timeout_seconds
    return _without(args, given)


def _without(
    args: dict[str, Any], given: Mapping[str, Any], *, keep: str = ""
) -> dict[str, Any]:
    """``args`` less the options the URL sets itself (the URL wins)."""
    return {
        name: value for name, value in args.items() if name == keep or name not in given
    }


def _bound_lock_waits(seconds: int) -> Callable[[Any, Any], None]:
    def bound(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET SESSION innodb_lock_wait_timeout = {seconds}")
        cursor.close()

    return bound


def _use_wal(dbapi_connection: Any, _record: Any) -> None:
    # With a write-ahead log, readers go on while one connection writes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def _leave_transactions_to_sqlalchemy(dbapi_connection: Any, _record: Any) -> None:
    # Left to itself, pysqlite begins a transaction only before DML, so
    # DDL would run outside any; _begin_immediate begins them instead.
    dbapi_connection.isolation_level = None


def _begin_immediate(connection: Connection) -> None:
    # The write lock is taken at once, so a second migration waits here
    # and then finds the schema current, instead of racing the first.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _is_conflict(error: DBAPIError) -> bool:
    """True when the transaction only lost a race and may simply run again."""
    if getattr(error.orig, "sqlstate", None) in _PG_RETRY_STATES:
        return True
    args: tuple[Any, ...] = getattr(error.orig, "args", ())
    return bool(args) and args[0] == _MYSQL_DEADLOCK


def _record_values(record: ClientRecord) -> dict[str, Any]:
    values = {column.name: getattr(record, column.name) for column in clients.c}
    values["status"] = record.status.value
    return values


def _record(row: sa.RowMapping | None) -> ClientRecord | None:
    if row is None:
        return None
    return ClientRecord(**{**row, "status": ClientStatus(row["status"])})


def _challenge(row: sa.RowMapping | None) -> Challenge | None:
    return None if row is None else Challenge(**row)


def _upsert(
    db: Connection,
    table: sa.Table,
    key: str,
    values: dict[str, Any],
    changes: Callable[[Any], dict[str, Any]],
) -> None:
    """Insert ``values`` or, if their unique ``key`` is taken, update that
    row with ``changes(proposed)``, in one statement.

    ``proposed`` holds the columns of the row that was not inserted.
    """
    if db.dialect.name in ("mysql", "mariadb"):
        upsert = mysql.insert(table).values(values)
        # MySQL assigns in order, each change seeing the ones before it.
        assignments = list(changes(upsert.inserted).items())
        db.execute(upsert.on_duplicate_key_update(assignments))
        return
    insert = postgresql.insert if db.dialect.name == "postgresql" else sqlite.insert
    statement = insert(table).values(values)
    set_ = changes(statement.excluded)
    db.execute(statement.on_conflict_do_update(index_elements=[key], set_=set_))


def _overwrite(proposed: Any) -> dict[str, Any]:
    """Every column of the proposed challenge, overwriting the client's."""
    return {column.name: proposed[column.name] for column in challenges.c}


def _next_count(proposed: Any) -> dict[str, Any]:
    """The counter after one more hit, starting over in a later window.

    A hit whose window ends earlier comes from a worker whose clock lags;
    it counts in the stored window, so that worker cannot reset it.
    """
    stored_end = counters.c.window_end
    later = proposed.window_end > stored_end
    return {
        "count": sa.case((later, 1), else_=counters.c.count + 1),
        # Last: MySQL assigns in order, and ``later`` must see the old end.
        "window_end": sa.case((later, proposed.window_end), else_=stored_end),
    }


class SQLStorage:
    """Storage in a SQL database, chosen by a SQLAlchemy URL.

    ``timeout_seconds`` bounds connecting, waiting for a pooled connection,
    each statement and each lock wait; past it a call raises
    StorageUnavailable. ``pool_size`` and ``max_overflow`` size this
    process's pool, whose connections are checked before use, so the storage
    recovers by itself once a restarted server answers again.
    """

    blocking = True
    shared = True

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 5.0,
        pool_size: int = 5,
        max_overflow: int = 10,
    ) -> None:
        if timeout_seconds <= 0:
            raise ConfigurationError("timeout_seconds must be positive")
        self._url, self._extra = _engine_url(url)
        self._label = redact_url(url)
        self._timeout_seconds = timeout_seconds
        self._engine = self._create_engine(
            limited=True,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=timeout_seconds,
        )

    def __repr__(self) -> str:
        return f"SQLStorage({self._label!r})"

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, for tools and tests that need plain SQL."""
        return self._engine

    def _create_engine(self, *, limited: bool, **pool_options: Any) -> Engine:
        """An engine for requests if ``limited``, else one for a migration."""
        backend = self._url.get_backend_name()
        connect_args = _connect_args(
            backend, self._timeout_seconds, limited, self._url.query
        )
        if backend in ("mysql", "mariadb"):
            # Repeatable read adds gap locks, on which concurrent upserts and
            # deletes of one client's rows deadlock far more often.
            pool_options["isolation_level"] = "READ COMMITTED"
        try:
            engine = sa.create_engine(
                self._url,
                connect_args=connect_args,
                pool_pre_ping=True,
                hide_parameters=True,
                **pool_options,
            )
        except ImportError as error:
            backend, _, driver = self._url.drivername.partition("+")
            if driver != _DRIVERS[backend][0]:
                # The extra installs the default driver, not this one.
                raise ConfigurationError(
                    f"storage URL {self._label} names the driver {driver!r}, "
                    f"which is not installed ({error}); install it, or leave "
                    f"the driver out to use the one the {self._extra!r} extra "
                    f"installs: pip install 'twofapi-middleware[{self._extra}]'"
                ) from None
            raise ConfigurationError(
                f"storage URL {self._label} needs the {self._extra!r} extra: "
                f"pip install 'twofapi-middleware[{self._extra}]' ({error})"
            ) from None
        except ArgumentError as error:
            raise ConfigurationError(f"storage URL {self._label}: {error}") from None
        if engine.dialect.is_async:
            raise ConfigurationError(
                f"storage URL {self._label} names an asyncio driver; "
                "leave the driver out to use the default one"
            )
        if backend == "sqlite":
            sa.event.listen(engine, "connect", _use_wal)
            if not limited:
                connect = _leave_transactions_to_sqlalchemy
                sa.event.listen(engine, "connect", connect)
                sa.event.listen(engine, "begin", _begin_immediate)
        if backend in ("mysql", "mariadb") and limited:
            seconds = max(1, math.ceil(self._timeout_seconds))
            sa.event.listen(engine, "connect", _bound_lock_waits(seconds))
        return engine

    def _unavailable(self, error: Exception) -> StorageUnavailable:
        cause = getattr(error, "orig", None) or error
        name = type(cause).__name__
        return StorageUnavailable(f"storage {self._label} is unavailable ({name})")

    def _run(self, work: Callable[[Connection], _T], *, duplicates: bool = False) -> _T:
        """Run ``work`` in one transaction, again if a deadlock ended it.

        Driver errors become StorageUnavailable, except an IntegrityError
        when the caller expects ``duplicates``.
        """
        for attempt in range(1, _RETRIES + 1):
            try:
                with self._engine.begin() as connection:
                    return work(connection)
            except IntegrityError as error:
                if duplicates:
                    raise
                raise self._unavailable(error) from error
            except DBAPIError as error:
                if attempt == _RETRIES or not _is_conflict(error):
                    raise self._unavailable(error) from error
            except SQLAlchemyError as error:
                raise self._unavailable(error) from error
        raise AssertionError("unreachable")

    def check_schema(self) -> None:
        """Raise SchemaError unless the schema is at SCHEMA_REVISION."""
        database = self._url.database
        if (
            self._url.get_backend_name() == "sqlite"
            and "uri" not in self._url.query  # file: URIs name no plain path
            and not (database and os.path.exists(database))
        ):
            # Connecting would leave an empty file behind.
            revision = None
        else:
            revision = self._run(stored_revision)
        if revision == SCHEMA_REVISION:
            return
        if revision is not None and revision not in known_revisions():
            raise self._newer(revision)
        state = "is missing" if revision is None else f"is at revision {revision}"
        raise SchemaError(
            f"the twofapi schema at {self._label} {state}; this code needs "
            f"revision {SCHEMA_REVISION} (schema version {SCHEMA_VERSION}): "
            f"run `twofapi migrate --storage {self._label}`"
        )

    def _newer(self, revision: str) -> SchemaTooNew:
        return SchemaTooNew(
            f"the twofapi schema at {self._label} is at revision {revision}, "
            f"newer than this code knows (schema version {SCHEMA_VERSION}); "
            "upgrade twofapi-middleware"
        )

    def migrate(self) -> None:
        """Upgrade the schema to SCHEMA_REVISION; nothing happens if it is.

        Runs on a connection of its own, free of the statement timeout,
        under the migration lock: a concurrent migration waits up to
        MIGRATION_LOCK_SECONDS, then finds the schema current.
        """
        engine = self._create_engine(limited=False, poolclass=sa.pool.NullPool)
        try:
            try:
                connection = engine.connect()
            except SQLAlchemyError as error:
                raise self._unavailable(error) from error
            try:
                with connection, self._migration_lock(connection), connection.begin():
                    revision = stored_revision(connection)
                    if revision is not None and revision not in known_revisions():
                        raise self._newer(revision)
                    command.upgrade(alembic_config(connection), SCHEMA_REVISION)
            except SQLAlchemyError as error:
                raise self._migration_failed(error) from error
        finally:
            engine.dispose()

    def _migration_failed(
        self, error: SQLAlchemyError
    ) -> StorageUnavailable | SchemaError:
        """What the database said, for the operator running the migration.

        A lost connection is an outage; anything else (a missing privilege,
        a clashing table) is told as the database told it, first line only.
        Parameters are hidden from SQLAlchemy's messages on these engines.
        """
        if isinstance(error, DBAPIError) and error.connection_invalidated:
            return self._unavailable(error)
        cause = getattr(error, "orig", None) or error
        if self._url.get_backend_name() == "sqlite" and "locked" in str(cause):
            # BEGIN IMMEDIATE waited out its busy timeout behind another writer.
            return self._still_locked()
        told = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        return SchemaError(
            f"migrating {self._label} failed ({type(cause).__name__}: {told})"
        )

    @contextlib.contextmanager
    def _migration_lock(self, connection: Connection) -> Iterator[None]:
        """Hold this database's migration lock on ``connection``.

        The lock belongs to the session, not to a transaction, and is let go
        explicitly after a migration; after a failed one, the connection
        closes, which lets go of it too. SQLite needs nothing here: the
        migration engine begins with BEGIN IMMEDIATE.
        """
        dialect = connection.dialect.name
        if dialect == "postgresql":
            self._pg_lock(connection)
            release = sa.func.pg_advisory_unlock(_PG_MIGRATION_LOCK)
        elif dialect in ("mysql", "mariadb"):
            name, seconds = _MYSQL_MIGRATION_LOCK, MIGRATION_LOCK_SECONDS
            taken = connection.execute(sa.select(sa.func.get_lock(name, seconds)))
            if taken.scalar() != 1:
                raise self._still_locked()
            connection.commit()
            release = sa.func.release_lock(name)
        else:
            yield
            return

        yield
        connection.execute(sa.select(release))
        connection.commit()

    def _pg_lock(self, connection: Connection) -> None:
        timeout = f"SET lock_timeout = '{MIGRATION_LOCK_SECONDS}s'"
        connection.exec_driver_sql(timeout)
        try:
            lock = sa.func.pg_advisory_lock(_PG_MIGRATION_LOCK)
            connection.execute(sa.select(lock))
        except DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) == _PG_LOCK_TIMEOUT:
                raise self._still_locked() from error
            raise
        connection.exec_driver_sql("RESET lock_timeout")
        connection.commit()

    def _still_locked(self) -> StorageUnavailable:
        return StorageUnavailable(
            f"storage {self._label}: another migration held the lock for "
            f"over {MIGRATION_LOCK_SECONDS} seconds"
        )

    def close(self) -> None:
        """Close the pooled connections."""
        self._engine.dispose()

    def get_client(self, client_id: str) -> ClientRecord | None:
        query = sa.select(clients).where(clients.c.client_id == client_id)
        return self._run(lambda db: _record(db.execute(query).mappings().first()))

    def add_client(self, record: ClientRecord) -> ClientRecord:
        statement = sa.insert(clients).values(_record_values(record))
        try:
            self._run(lambda db: db.execute(statement), duplicates=True)
        except IntegrityError as error:
            # Another enrollment of this identifier committed first.
            stored = self.get_client(record.client_id)
            if stored is None:
                raise self._unavailable(error) from error
            return stored
        return record

    def replace_client(self, record: ClientRecord, expected_revision: int) -> bool:
        values = _record_values(record)
        del values["client_id"]
        statement = (
            sa.update(clients)
            .where(clients.c.client_id == record.client_id)
            .where(clients.c.revision == expected_revision)
            .values(values)
        )
        return self._run(lambda db: db.execute(statement).rowcount) == 1

    def put_challenge(self, challenge: Challenge, now: float) -> None:
        values = dataclasses.asdict(challenge)
        self._run(lambda db: _upsert(db, challenges, "client_id", values, _overwrite))

    def take_challenge(self, challenge_id: str, client_id: str) -> Challenge | None:
        owned = sa.and_(
            challenges.c.challenge_id == challenge_id,
            challenges.c.client_id == client_id,
        )
        deletion = sa.delete(challenges).where(owned)

        def take(db: Connection) -> Challenge | None:
            if db.dialect.delete_returning:
                taken = db.execute(deletion.returning(*challenges.c))
                return _challenge(taken.mappings().first())
            locked = sa.select(challenges).where(owned).with_for_update()
            row = db.execute(locked).mappings().first()
            if row is None or db.execute(deletion).rowcount != 1:
                return None
            return _challenge(row)

        return self._run(take)

    def withdraw_challenge(self, client_id: str) -> None:
        statement = sa.delete(challenges).where(challenges.c.client_id == client_id)
        self._run(lambda db: db.execute(statement))

    def hit(self, key: str, window_seconds: int, now: float) -> tuple[int, float]:
        end = float((math.floor(now / window_seconds) + 1) * window_seconds)
        values = {"key": key, "window_end": end, "count": 1}
        query = sa.select(counters.c.count, counters.c.window_end)
        query = query.where(counters.c.key == key)

        def count(db: Connection) -> tuple[int, float]:
            # The upsert holds the row lock, so the read sees this very hit.
            _upsert(db, counters, "key", values, _next_count)
            stored_count, stored_end = db.execute(query).one()
            return int(stored_count), float(stored_end)

        return self._run(count)

    def purge(self, now: float) -> None:
        horizon = now - PURGE_GRACE_SECONDS
        expired = sa.delete(challenges).where(challenges.c.expires_at < horizon)
        ended = sa.delete(counters).where(counters.c.window_end <= now)

        def purge(db: Connection) -> None:
            db.execute(expired)
            db.execute(ended)

        self._run(purge)

    def challenge_count(self) -> int:
        query = sa.select(sa.func.count()).select_from(challenges)
        return int(self._run(lambda db: db.execute(query).scalar_one()))
