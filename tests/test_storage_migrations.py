"""Schema versions: refused when missing, older or newer; upgraded in place,
by one migration at a time.

SQL stores are versioned by Alembic revisions (revision 0001 is the shape
before schema version 1, kept to walk a real upgrade); Redis keeps the
version number in one key.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from storage_backends import (
    NOW,
    PERSISTENT_BACKENDS,
    backend_url,
    empty_storage,
    make_challenge,
    make_record,
)
from twofapi_middleware.errors import SchemaError, SchemaTooNew, StorageUnavailable
from twofapi_middleware.models import ClientStatus
from twofapi_middleware.storage import Storage, migrations, sql
from twofapi_middleware.storage import redis as redis_storage
from twofapi_middleware.storage.base import SCHEMA_VERSION
from twofapi_middleware.storage.migrations import (
    SCHEMA_REVISION,
    alembic_config,
    stored_revision,
)
from twofapi_middleware.storage.redis import RedisStorage
from twofapi_middleware.storage.sql import SQLStorage

pytest_plugins = ["conftest_storage"]

# One process of a race: open the store, say so, migrate once told to go.
_MIGRATE_ON_GO = """
import sys
from twofapi_middleware.storage import open_storage
storage = open_storage(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
storage.migrate()
storage.close()
"""


def _version(storage: Storage) -> object:
    """Whatever the store records as its schema version."""
    if isinstance(storage, SQLStorage):
        with storage.engine.connect() as connection:
            return stored_revision(connection)
    assert isinstance(storage, RedisStorage)
    return storage.client.get("twofapi:schema_version")


def _record_a_newer_version(storage: Storage) -> None:
    if isinstance(storage, SQLStorage):
        with storage.engine.begin() as connection:
            newer = "UPDATE twofapi_schema_version SET version_num = '9999'"
            connection.execute(sa.text(newer))
        return
    assert isinstance(storage, RedisStorage)
    storage.client.set("twofapi:schema_version", SCHEMA_VERSION + 1)


def _only_ours(name: str | None, kind: str, parents: object) -> bool:
    return kind != "table" or name in migrations.metadata.tables


def _differences(storage: SQLStorage) -> list[object]:
    """How the stored schema differs from the tables the code uses."""
    with storage.engine.connect() as connection:
        options = {"include_name": _only_ours, "compare_type": True}
        context = MigrationContext.configure(connection, opts=options)
        return list(compare_metadata(context, migrations.metadata))


def test_an_empty_store_asks_for_migrate(unmigrated_storage: Storage) -> None:
    with pytest.raises(SchemaError, match="run `twofapi migrate --storage ") as caught:
        unmigrated_storage.check_schema()

    assert not isinstance(caught.value, SchemaTooNew)


def test_migrate_makes_the_schema_current(unmigrated_storage: Storage) -> None:
    unmigrated_storage.migrate()

    unmigrated_storage.check_schema()
    assert unmigrated_storage.get_client("alice") is None


def test_migrating_twice_changes_nothing(unmigrated_storage: Storage) -> None:
    storage = unmigrated_storage
    storage.migrate()
    record = storage.add_client(make_record())
    storage.put_challenge(make_challenge(), NOW)
    storage.hit("client:alice", 60, NOW)
    version = _version(storage)

    storage.migrate()

    storage.check_schema()
    assert _version(storage) == version
    assert storage.get_client("alice") == record
    assert storage.take_challenge("ch-1", "alice") == make_challenge()
    assert storage.hit("client:alice", 60, NOW) == (2, NOW + 60)


def test_a_newer_schema_is_refused(unmigrated_storage: Storage) -> None:
    storage = unmigrated_storage
    storage.migrate()
    _record_a_newer_version(storage)
    version = _version(storage)

    with pytest.raises(SchemaTooNew, match="newer than this code"):
        storage.check_schema()
    with pytest.raises(SchemaTooNew, match="newer than this code"):
        storage.migrate()
    assert _version(storage) == version


def _migrate_in_processes(url: str, count: int) -> None:
    """Migrate ``url`` from ``count`` processes released together."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATE_ON_GO, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            process.stdout.readline()  # ready, or "" if it failed to start
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outcomes = [process.communicate(timeout=60) for process in processes]
    finally:
        for process in processes:
            process.kill()
            process.wait()
    failures = [
        err
        for process, (_, err) in zip(processes, outcomes, strict=True)
        if process.returncode != 0
    ]
    assert failures == []


@pytest.mark.parametrize("backend", PERSISTENT_BACKENDS)
def test_concurrent_migrations_of_an_empty_store_all_succeed(
    backend: str, tmp_path: Path
) -> None:
    storage = empty_storage(backend, tmp_path)

    _migrate_in_processes(backend_url(backend, tmp_path), 6)

    storage.check_schema()
    if isinstance(storage, SQLStorage):
        assert _differences(storage) == []
        with storage.engine.connect() as connection:
            assert stored_revision(connection) == SCHEMA_REVISION
    record = make_record()
    assert storage.add_client(record) == record
    assert storage.hit("client:alice", 60, NOW) == (1, NOW + 60)
    storage.close()


@contextlib.contextmanager
def _migration_lock_held(storage: Storage) -> Iterator[None]:
    """Hold ``storage``'s migration lock as another migration would."""
    if isinstance(storage, RedisStorage):
        storage.client.set("twofapi:migrate_lock", "another", px=60_000)
        yield
        storage.client.delete("twofapi:migrate_lock")
        return
    assert isinstance(storage, SQLStorage)
    lock = {
        "sqlite": "BEGIN IMMEDIATE",
        "postgresql": f"SELECT pg_advisory_lock({sql._PG_MIGRATION_LOCK})",
        "mysql": f"SELECT GET_LOCK('{sql._MYSQL_MIGRATION_LOCK}', 0)",
    }[storage.engine.dialect.name]
    holder = sa.create_engine(storage.engine.url, poolclass=sa.pool.NullPool)
    with holder.connect() as connection:
        connection.exec_driver_sql(lock)
        yield
    holder.dispose()


def test_a_migration_gives_up_on_a_lock_held_too_long(
    unmigrated_storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = unmigrated_storage
    monkeypatch.setattr(sql, "MIGRATION_LOCK_SECONDS", 1)
    monkeypatch.setattr(redis_storage, "MIGRATION_LOCK_SECONDS", 1)

    with _migration_lock_held(storage):
        started = time.monotonic()
        with pytest.raises(StorageUnavailable):
            storage.migrate()
        assert time.monotonic() - started < 5

    storage.migrate()
    storage.check_schema()


def test_a_migration_the_database_refuses_says_why(sql_storage: SQLStorage) -> None:
    # A table of ours that somebody else made, in another shape.
    with sql_storage.engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE twofapi_clients (other INTEGER)"))

    with pytest.raises(SchemaError) as refused:
        sql_storage.migrate()

    told = str(refused.value).lower()
    assert "migrating" in told
    assert "twofapi_clients" in told
    assert "unavailable" not in told
    assert stored_revision_of(sql_storage) is None


def stored_revision_of(storage: SQLStorage) -> str | None:
    with storage.engine.connect() as connection:
        return stored_revision(connection)


def test_sql_upgrade_from_the_previous_revision_keeps_data(
    sql_storage: SQLStorage,
) -> None:
    with sql_storage.engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0001")
        connection.execute(
            sa.text(
                "INSERT INTO twofapi_clients (client_id, reference_id, commitment,"
                " commitment_version, status, recovery_hash, created_at,"
                " updated_at, failed_attempts, lockout_streak, locked_until,"
                " revision) VALUES ('alice', 'ref-alice', :commitment, 1,"
                " 'suspended', 'hash', :now, :now, 2, 1, :later, 4)"
            ),
            {"commitment": b"\x00\xff" * 16, "now": NOW, "later": NOW + 60},
        )
        connection.execute(
            sa.text(
                "INSERT INTO twofapi_challenges VALUES"
                " ('ch-1', 'alice', :nonce, :binding, 1, :expires_at)"
            ),
            {"nonce": bytes(24), "binding": bytes(32), "expires_at": NOW + 120},
        )
    with pytest.raises(SchemaError, match=r"revision 0001.*twofapi migrate") as caught:
        sql_storage.check_schema()
    assert not isinstance(caught.value, SchemaTooNew)

    sql_storage.migrate()

    sql_storage.check_schema()
    stored = sql_storage.get_client("alice")
    assert stored is not None
    assert (stored.status.value, stored.failed_attempts) == ("suspended", 2)
    assert (stored.commitment, stored.locked_until) == (b"\x00\xff" * 16, NOW + 60)
    assert (stored.recovery_failures, stored.revision) == (0, 4)
    taken = sql_storage.take_challenge("ch-1", "alice")
    assert taken is not None and taken.expires_at == NOW + 120
    assert sql_storage.hit("client:alice", 60, NOW) == (1, NOW + 60)


@pytest.mark.redis
def test_redis_upgrade_from_unversioned_data_keeps_it(tmp_path: Path) -> None:
    storage = empty_storage("redis", tmp_path)
    assert isinstance(storage, RedisStorage)
    # A record as written before the schema was versioned, and before
    # recovery failures were counted.
    storage.client.hset(
        "twofapi:client:alice",
        mapping={
            "client_id": "alice",
            "reference_id": "ref-alice",
            "commitment": b"\x00\xff" * 16,
            "commitment_version": "1",
            "status": "suspended",
            "recovery_hash": "hash",
            "created_at": repr(NOW),
            "updated_at": repr(NOW),
            "failed_attempts": "2",
            "lockout_streak": "1",
            "locked_until": repr(NOW + 60),
            "revision": "4",
        },
    )
    with pytest.raises(SchemaError, match="twofapi migrate"):
        storage.check_schema()

    storage.migrate()

    storage.check_schema()
    assert storage.get_client("alice") == make_record(
        commitment=b"\x00\xff" * 16,
        status=ClientStatus.SUSPENDED,
        recovery_hash="hash",
        failed_attempts=2,
        lockout_streak=1,
        locked_until=NOW + 60,
        revision=4,
    )
    storage.close()


def test_the_newest_revision_is_the_schema_version() -> None:
    scripts = ScriptDirectory(str(Path(migrations.__file__).parent))

    assert scripts.get_current_head() == SCHEMA_REVISION
    assert SCHEMA_VERSION == 1


def test_the_revisions_build_the_tables_the_code_uses(
    sql_storage: SQLStorage,
) -> None:
    sql_storage.migrate()

    assert _differences(sql_storage) == []


def test_downgrade_to_nothing_and_up_again(sql_storage: SQLStorage) -> None:
    sql_storage.migrate()
    with sql_storage.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")

    with pytest.raises(SchemaError, match="is missing"):
        sql_storage.check_schema()
    sql_storage.migrate()
    sql_storage.check_schema()
