"""The storage contract: the same tests over every backend.

Time never comes from a clock here: every call is handed ``now``, which
lets the tests cross challenge lifetimes and rate-limit windows at once.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from storage_backends import (
    NOW,
    SERVER_BACKENDS,
    SQL_BACKENDS,
    backend_url,
    empty_storage,
    make_challenge,
    make_record,
)
from twofapi_middleware.constants import CHALLENGE_TTL_SECONDS
from twofapi_middleware.errors import ConfigurationError, StorageUnavailable
from twofapi_middleware.models import ClientStatus
from twofapi_middleware.storage import MemoryStorage, Storage, open_storage
from twofapi_middleware.storage.base import PURGE_GRACE_SECONDS
from twofapi_middleware.storage.migrations import clients
from twofapi_middleware.storage.redis import RedisStorage
from twofapi_middleware.storage.sql import SQLStorage

pytest_plugins = ["conftest_storage"]


def test_implements_the_protocol(storage: Storage) -> None:
    assert isinstance(storage, Storage)
    persistent = not isinstance(storage, MemoryStorage)
    assert storage.blocking is persistent
    assert storage.shared is persistent
    storage.check_schema()


# Clients


def test_unknown_client_is_none(storage: Storage) -> None:
    assert storage.get_client("nobody") is None


def test_client_round_trips_every_field(storage: Storage) -> None:
    record = make_record(
        commitment=b"\x00\xff" * 16,
        commitment_version=3,
        status=ClientStatus.SUSPENDED,
        created_at=NOW + 0.125,
        updated_at=NOW + 1 / 3,
        failed_attempts=2,
        lockout_streak=1,
        locked_until=NOW + 3600.5,
        recovery_failures=1,
        revision=7,
    )

    assert storage.add_client(record) == record

    assert storage.get_client("alice") == record


@pytest.mark.parametrize("status", list(ClientStatus))
def test_every_status_round_trips(storage: Storage, status: ClientStatus) -> None:
    storage.add_client(make_record(status=status))

    stored = storage.get_client("alice")

    assert stored is not None and stored.status is status


def test_add_keeps_the_first_enrollment(storage: Storage) -> None:
    first = make_record()
    second = make_record(commitment=b"\x01" * 32, reference_id="other")
    storage.add_client(first)

    assert storage.add_client(second) == first
    assert storage.get_client("alice") == first


def test_identifiers_are_case_sensitive(storage: Storage) -> None:
    upper = storage.add_client(make_record("Alice"))
    lower = storage.add_client(make_record("alice", commitment=b"\x02" * 32))

    assert upper != lower
    assert storage.get_client("Alice") == upper
    assert storage.get_client("alice") == lower


def test_replace_at_the_expected_revision(storage: Storage) -> None:
    record = storage.add_client(make_record())
    changed = record.evolve(NOW + 1, failed_attempts=1)

    assert storage.replace_client(changed, expected_revision=record.revision)
    assert storage.get_client("alice") == changed


def test_replace_at_a_stale_revision_changes_nothing(storage: Storage) -> None:
    record = storage.add_client(make_record())
    first = record.evolve(NOW + 1, failed_attempts=1)
    late = record.evolve(NOW + 2, status=ClientStatus.REVOKED)
    storage.replace_client(first, expected_revision=record.revision)

    assert not storage.replace_client(late, expected_revision=record.revision)
    assert storage.get_client("alice") == first


def test_replace_of_an_unknown_client_fails(storage: Storage) -> None:
    record = make_record()

    assert not storage.replace_client(record.evolve(NOW), expected_revision=1)
    assert storage.get_client("alice") is None


# Challenges


def test_a_challenge_is_taken_once(storage: Storage) -> None:
    challenge = make_challenge()
    storage.put_challenge(challenge, NOW)

    assert storage.take_challenge("ch-1", "alice") == challenge
    assert storage.take_challenge("ch-1", "alice") is None
    assert storage.challenge_count() == 0


def test_a_new_challenge_withdraws_the_earlier_one(storage: Storage) -> None:
    storage.put_challenge(make_challenge("ch-1"), NOW)
    storage.put_challenge(make_challenge("ch-2"), NOW + 1)

    assert storage.challenge_count() == 1
    assert storage.take_challenge("ch-1", "alice") is None
    assert storage.take_challenge("ch-2", "alice") == make_challenge("ch-2")


def test_another_clients_take_leaves_the_challenge(storage: Storage) -> None:
    storage.put_challenge(make_challenge("ch-1", "alice"), NOW)

    assert storage.take_challenge("ch-1", "mallory") is None
    assert storage.take_challenge("ch-1", "alice") is not None


def test_unknown_challenge_is_none(storage: Storage) -> None:
    storage.put_challenge(make_challenge("ch-1"), NOW)

    assert storage.take_challenge("ch-2", "alice") is None
    assert storage.challenge_count() == 1


def test_withdraw_removes_only_that_clients_challenge(storage: Storage) -> None:
    storage.put_challenge(make_challenge("ch-a", "alice"), NOW)
    storage.put_challenge(make_challenge("ch-b", "bob"), NOW)

    storage.withdraw_challenge("alice")
    storage.withdraw_challenge("alice")
    storage.withdraw_challenge("carol")

    assert storage.take_challenge("ch-a", "alice") is None
    assert storage.take_challenge("ch-b", "bob") == make_challenge("ch-b", "bob")


def test_challenge_count(storage: Storage) -> None:
    assert storage.challenge_count() == 0
    for client_id in ("alice", "bob", "carol"):
        storage.put_challenge(make_challenge(f"ch-{client_id}", client_id), NOW)

    assert storage.challenge_count() == 3
    storage.take_challenge("ch-bob", "bob")
    assert storage.challenge_count() == 2


def test_purge_reclaims_expired_challenges_only(storage: Storage) -> None:
    long_expired = NOW - PURGE_GRACE_SECONDS - 1
    storage.put_challenge(make_challenge("old", "alice", long_expired), NOW)
    storage.put_challenge(make_challenge("grace", "bob", NOW - 1), NOW)
    storage.put_challenge(make_challenge("live", "carol", NOW + 60), NOW)

    storage.purge(NOW)

    assert storage.challenge_count() == 2
    assert storage.take_challenge("old", "alice") is None
    assert storage.take_challenge("grace", "bob") is not None
    assert storage.take_challenge("live", "carol") is not None


def test_challenges_stay_bounded_over_a_long_run(storage: Storage) -> None:
    now = NOW
    for issue in range(2000):
        client_id = f"client-{issue % 50}"
        expires_at = now + CHALLENGE_TTL_SECONDS
        storage.put_challenge(make_challenge(f"ch-{issue}", client_id, expires_at), now)
        if issue % 7 == 0:
            storage.take_challenge(f"ch-{issue}", client_id)
        if issue % 100 == 99:
            storage.purge(now)
            assert storage.challenge_count() <= 50
        now += 1.0

    storage.purge(now + CHALLENGE_TTL_SECONDS + PURGE_GRACE_SECONDS + 1)

    assert storage.challenge_count() == 0


# Rate-limit counters


def test_hits_count_within_a_window(storage: Storage) -> None:
    now = NOW + 5

    counts = [storage.hit("addr:192.0.2.1", 60, now + step) for step in range(3)]

    assert counts == [(1, NOW + 60), (2, NOW + 60), (3, NOW + 60)]


def test_hits_start_over_in_the_next_window(storage: Storage) -> None:
    storage.hit("client:alice", 60, NOW)
    assert storage.hit("client:alice", 60, NOW + 59.999) == (2, NOW + 60)

    assert storage.hit("client:alice", 60, NOW + 60) == (1, NOW + 120)
    assert storage.hit("client:alice", 60, NOW + 61) == (2, NOW + 120)
    assert storage.hit("client:alice", 60, NOW + 300) == (1, NOW + 360)


def test_a_lagging_clock_counts_in_the_stored_window(storage: Storage) -> None:
    # A worker whose clock runs ahead has opened the next window already.
    assert storage.hit("client:alice", 60, NOW + 60) == (1, NOW + 120)

    assert storage.hit("client:alice", 60, NOW + 59) == (2, NOW + 120)
    assert storage.hit("client:alice", 60, NOW) == (3, NOW + 120)
    assert storage.hit("client:alice", 60, NOW + 61) == (4, NOW + 120)
    assert storage.hit("client:alice", 60, NOW + 120) == (1, NOW + 180)


def test_hit_keys_are_independent(storage: Storage) -> None:
    storage.hit("client:alice", 60, NOW)
    storage.hit("client:alice", 60, NOW)

    assert storage.hit("client:bob", 60, NOW) == (1, NOW + 60)
    assert storage.hit("client:alice", 60, NOW) == (3, NOW + 60)


def test_purge_keeps_live_counters(storage: Storage) -> None:
    storage.hit("client:alice", 60, NOW)
    storage.hit("client:alice", 60, NOW + 1)

    storage.purge(NOW + 2)

    assert storage.hit("client:alice", 60, NOW + 3) == (3, NOW + 60)


def test_purge_of_ended_counters_starts_them_over(storage: Storage) -> None:
    storage.hit("client:alice", 60, NOW)

    storage.purge(NOW + 60)

    assert storage.hit("client:alice", 60, NOW + 60) == (1, NOW + 120)


# Opening and failing, backend by backend


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("sqlite:///relative.db", "sqlite+pysqlite"),
        ("postgresql://app@db.example/auth", "postgresql+psycopg"),
        ("postgres://app@db.example/auth", "postgresql+psycopg"),
        ("postgresql+psycopg://app@db.example/auth", "postgresql+psycopg"),
        ("mysql://app@db.example/auth", "mysql+pymysql"),
        ("mariadb://app@db.example/auth", "mariadb+pymysql"),
    ],
)
def test_a_bare_scheme_picks_the_driver_of_its_extra(url: str, driver: str) -> None:
    storage = open_storage(url)

    assert isinstance(storage, SQLStorage)
    assert storage.engine.url.drivername == driver
    storage.close()


@pytest.mark.parametrize(
    ("url", "extra"),
    [
        ("postgresql+pg8000://app@db.example/auth", "postgresql"),
        ("mysql+mysqldb://app@db.example/auth", "mysql"),
        ("sqlite+pysqlcipher:///storage.db", "sql"),
    ],
)
def test_a_missing_driver_names_its_extra(url: str, extra: str) -> None:
    with pytest.raises(ConfigurationError, match=f"'{extra}' extra"):
        open_storage(url)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="memory://"):
        open_storage(url)


UNREACHABLE = [
    pytest.param("sqlite:////nonexistent-directory/storage.db", id="sqlite"),
    pytest.param(
        "postgresql://app:s3cret-pw@127.0.0.1:1/test",
        id="postgresql",
        marks=pytest.mark.postgresql,
    ),
    pytest.param(
        "mysql://app:s3cret-pw@127.0.0.1:1/test", id="mysql", marks=pytest.mark.mysql
    ),
    pytest.param(
        "redis://:s3cret-pw@127.0.0.1:1/15", id="redis", marks=pytest.mark.redis
    ),
]


@pytest.mark.parametrize("url", UNREACHABLE)
def test_an_unreachable_store_is_unavailable(url: str) -> None:
    storage = open_storage(url, timeout_seconds=1)

    with pytest.raises(StorageUnavailable) as caught:
        storage.get_client("alice")

    told = [str(caught.value), str(caught.value.__cause__)]
    assert caught.value.__cause__ is not None
    assert not any("s3cret-pw" in text for text in told)
    storage.close()


def _kill_pooled_connection(storage: Storage) -> None:
    """Have the server close the connection the storage pooled."""
    if isinstance(storage, RedisStorage):
        own = storage.client.client_id()
        storage.client.client_kill_filter(_id=str(own))
        return
    assert isinstance(storage, SQLStorage)
    mysql = storage.engine.dialect.name in ("mysql", "mariadb")
    with storage.engine.connect() as connection:
        query = "SELECT CONNECTION_ID()" if mysql else "SELECT pg_backend_pid()"
        own = connection.execute(sa.text(query)).scalar_one()
    killer = sa.create_engine(storage.engine.url, poolclass=sa.pool.NullPool)
    with killer.connect() as connection:
        kill = f"KILL {int(own)}" if mysql else f"SELECT pg_terminate_backend({own})"
        connection.execute(sa.text(kill))
    killer.dispose()


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_a_dropped_connection_is_replaced(backend: str, tmp_path: Path) -> None:
    storage = empty_storage(backend, tmp_path)
    storage.migrate()
    record = storage.add_client(make_record())

    _kill_pooled_connection(storage)

    assert storage.get_client("alice") == record
    storage.close()


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_a_lock_held_too_long_is_unavailable(backend: str, tmp_path: Path) -> None:
    storage = empty_storage(backend, tmp_path, timeout_seconds=1)
    assert isinstance(storage, SQLStorage)
    storage.migrate()
    record = storage.add_client(make_record())
    holder = sa.create_engine(storage.engine.url, poolclass=sa.pool.NullPool)

    with holder.connect() as connection, connection.begin():
        locking = sa.update(clients).values(failed_attempts=9)
        connection.execute(locking.where(clients.c.client_id == "alice"))
        started = time.monotonic()
        with pytest.raises(StorageUnavailable):
            storage.replace_client(record.evolve(NOW), record.revision)
        assert time.monotonic() - started < 5
        connection.rollback()

    assert storage.replace_client(record.evolve(NOW), record.revision)
    holder.dispose()
    storage.close()


@pytest.mark.postgresql
def test_postgresql_options_in_the_url_are_kept(tmp_path: Path) -> None:
    empty_storage("postgresql", tmp_path).close()
    url = _with_query(
        backend_url("postgresql", tmp_path), "options=-c%20lock_timeout%3D4321"
    )
    storage = open_storage(url, timeout_seconds=3)
    assert isinstance(storage, SQLStorage)

    with storage.engine.connect() as connection:
        lock = connection.execute(sa.text("SHOW lock_timeout")).scalar_one()
        statement = connection.execute(sa.text("SHOW statement_timeout")).scalar_one()

    assert (lock, statement) == ("4321ms", "3s")
    storage.close()


@pytest.mark.mysql
def test_mysql_init_command_in_the_url_is_kept(tmp_path: Path) -> None:
    empty_storage("mysql", tmp_path).close()
    url = _with_query(
        backend_url("mysql", tmp_path),
        "init_command=SET%20SESSION%20sql_mode%3D%27ANSI_QUOTES%27",
    )
    storage = open_storage(url, timeout_seconds=3)
    assert isinstance(storage, SQLStorage)

    with storage.engine.connect() as connection:
        mode = connection.execute(sa.text("SELECT @@SESSION.sql_mode")).scalar_one()
        wait = connection.execute(
            sa.text("SELECT @@SESSION.innodb_lock_wait_timeout")
        ).scalar_one()

    assert (mode, int(wait)) == ("ANSI_QUOTES", 3)
    storage.close()


@pytest.mark.redis
def test_redis_keys_outlive_their_expiry_by_the_grace(tmp_path: Path) -> None:
    storage = empty_storage("redis", tmp_path)
    assert isinstance(storage, RedisStorage)
    grace_ms = PURGE_GRACE_SECONDS * 1000

    storage.put_challenge(make_challenge(expires_at=NOW + 120), NOW)
    storage.hit("client:alice", 60, NOW + 15)

    challenge_ttl = storage.client.pttl("twofapi:challenge:alice")
    counter_ttl = storage.client.pttl("twofapi:counter:client:alice")
    assert 120_000 + grace_ms - 1000 < challenge_ttl <= 120_000 + grace_ms
    assert 45_000 + grace_ms - 1000 < counter_ttl <= 45_000 + grace_ms
    storage.close()


def _with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


@pytest.mark.redis
def test_redis_takes_the_prefix_from_the_url(tmp_path: Path) -> None:
    empty_storage("redis", tmp_path).close()
    url = _with_query(backend_url("redis", tmp_path), "prefix=myapp%3A2fa:")
    storage = open_storage(url)
    assert isinstance(storage, RedisStorage)

    storage.migrate()
    storage.add_client(make_record())
    storage.hit("client:alice", 60, NOW)

    assert sorted(storage.client.keys()) == [
        b"myapp:2fa:client:alice",
        b"myapp:2fa:counter:client:alice",
        b"myapp:2fa:schema_version",
    ]
    storage.check_schema()
    storage.close()


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("redis://127.0.0.1/15?prefix=a:", {"prefix": "b:"}),
        ("redis://127.0.0.1/15?prefix=a:&prefix=b:", {}),
    ],
)
def test_redis_prefixes_that_disagree_are_refused(
    url: str, options: dict[str, str]
) -> None:
    with pytest.raises(ConfigurationError, match="prefix"):
        open_storage(url, **options)


def test_redis_prefix_given_twice_alike_is_accepted() -> None:
    storage = open_storage("redis://127.0.0.1/15?prefix=a:", prefix="a:")

    assert "prefix='a:'" in repr(storage)
    storage.close()
