"""Schema versions: refused when missing, older or newer; upgraded in place.

SQL stores are versioned by Alembic revisions (revision 0001 is the shape
before schema version 1, kept to walk a real upgrade); Redis keeps the
version number in one key.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from storage_backends import NOW, empty_storage, make_challenge, make_record
from twofapi_middleware.errors import SchemaError
from twofapi_middleware.models import ClientStatus
from twofapi_middleware.storage import Storage, migrations
from twofapi_middleware.storage.base import SCHEMA_VERSION
from twofapi_middleware.storage.migrations import (
    SCHEMA_REVISION,
    alembic_config,
    stored_revision,
)
from twofapi_middleware.storage.redis import RedisStorage
from twofapi_middleware.storage.sql import SQLStorage

pytest_plugins = ["conftest_storage"]


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


def test_an_empty_store_asks_for_migrate(unmigrated_storage: Storage) -> None:
    with pytest.raises(SchemaError, match="run `twofapi migrate --storage "):
        unmigrated_storage.check_schema()


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

    with pytest.raises(SchemaError, match="newer than this code"):
        storage.check_schema()
    with pytest.raises(SchemaError, match="newer than this code"):
        storage.migrate()
    assert _version(storage) == version


def test_sql_upgrade_from_the_previous_revision_keeps_data(
    sql_storage: SQLStorage,
) -> None:
    with sql_storage.engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0001")
        connection.execute(
            sa.text(
                "INSERT INTO clients (client_id, reference_id, commitment,"
                " commitment_version, status, recovery_hash, created_at,"
                " updated_at, failed_attempts, lockout_streak, locked_until,"
                " revision) VALUES ('alice', 'ref-alice', :commitment, 1,"
                " 'suspended', 'hash', :now, :now, 2, 1, :later, 4)"
            ),
            {"commitment": b"\x00\xff" * 16, "now": NOW, "later": NOW + 60},
        )
        connection.execute(
            sa.text(
                "INSERT INTO challenges VALUES"
                " ('ch-1', 'alice', :nonce, :binding, 1, :expires_at)"
            ),
            {"nonce": bytes(24), "binding": bytes(32), "expires_at": NOW + 120},
        )
    with pytest.raises(SchemaError, match=r"revision 0001.*twofapi migrate"):
        sql_storage.check_schema()

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

    with sql_storage.engine.connect() as connection:
        options = {"include_name": _only_ours, "compare_type": True}
        context = MigrationContext.configure(connection, opts=options)
        differences = compare_metadata(context, migrations.metadata)

    assert differences == []


def test_downgrade_to_nothing_and_up_again(sql_storage: SQLStorage) -> None:
    sql_storage.migrate()
    with sql_storage.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")

    with pytest.raises(SchemaError, match="is missing"):
        sql_storage.check_schema()
    sql_storage.migrate()
    sql_storage.check_schema()
