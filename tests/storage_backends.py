"""Helpers of the storage suites: backends opened empty, records, threads.

The fixtures built on them live in ``conftest_storage.py``. The servers are
the real ones of the test machine; environment variables point elsewhere:

    TWOFAPI_TEST_POSTGRESQL_URL   postgresql://postgres@127.0.0.1:5432/test
    TWOFAPI_TEST_MYSQL_URL        mysql://root@127.0.0.1:3306/test
    TWOFAPI_TEST_REDIS_URL        redis://127.0.0.1:6379/15

A test whose server is unreachable fails, and says so; it is never skipped.
Emptying drops the package's tables and flushes the whole Redis database, so
point the variables only at databases kept for tests.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from twofapi_middleware.models import Challenge, ClientRecord, ClientStatus
from twofapi_middleware.storage import Storage, open_storage, redact_url
from twofapi_middleware.storage.migrations import VERSION_TABLE
from twofapi_middleware.storage.redis import RedisStorage
from twofapi_middleware.storage.sql import SQLStorage

NOW = 1_700_000_040.0
"""When the storage tests start: a multiple of 60, where windows begin."""

SERVER_URLS = {
    "postgresql": (
        "TWOFAPI_TEST_POSTGRESQL_URL",
        "postgresql://postgres@127.0.0.1:5432/test",
    ),
    "mysql": ("TWOFAPI_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
    "redis": ("TWOFAPI_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
}

_SQLITE = pytest.param("sqlite", id="sqlite")
_POSTGRESQL = pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql)
_MYSQL = pytest.param("mysql", id="mysql", marks=pytest.mark.mysql)
_REDIS = pytest.param("redis", id="redis", marks=pytest.mark.redis)

SQL_BACKENDS = [_SQLITE, _POSTGRESQL, _MYSQL]
PERSISTENT_BACKENDS = [*SQL_BACKENDS, _REDIS]
SERVER_BACKENDS = [_POSTGRESQL, _MYSQL, _REDIS]
ALL_BACKENDS = [pytest.param("memory", id="memory"), *PERSISTENT_BACKENDS]

_TABLES = (
    "twofapi_challenges",
    "twofapi_counters",
    "twofapi_clients",
    VERSION_TABLE,
)

_T = TypeVar("_T")


def backend_url(backend: str, tmp_path: Path) -> str:
    """The URL of ``backend`` for one test."""
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'storage.db'}"
    variable, default = SERVER_URLS[backend]
    return os.environ.get(variable, default)


def empty_storage(backend: str, tmp_path: Path, **options: Any) -> Storage:
    """``backend`` opened over an emptied store, not migrated."""
    url = backend_url(backend, tmp_path)
    storage = open_storage(url, **options)
    try:
        if isinstance(storage, SQLStorage):
            with storage.engine.begin() as connection:
                for table in _TABLES:
                    connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        elif isinstance(storage, RedisStorage):
            storage.client.flushdb()
    except Exception as error:
        storage.close()
        variable = SERVER_URLS.get(backend, ("", ""))[0]
        pytest.fail(
            f"the {backend} test server at {redact_url(url)} is unreachable "
            f"({type(error).__name__}: {error}); start it, or point {variable} "
            "at one",
            pytrace=False,
        )
    return storage


def make_record(client_id: str = "alice", **changes: Any) -> ClientRecord:
    """A freshly enrolled client; ``changes`` override any field."""
    record = ClientRecord(
        client_id=client_id,
        reference_id=f"ref-{client_id}",
        commitment=bytes(range(32)),
        commitment_version=1,
        status=ClientStatus.ACTIVE,
        recovery_hash="$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
        created_at=NOW,
        updated_at=NOW,
    )
    return dataclasses.replace(record, **changes)


def make_challenge(
    challenge_id: str = "ch-1",
    client_id: str = "alice",
    expires_at: float = NOW + 120,
) -> Challenge:
    """A challenge of ``client_id``, by default live for two minutes."""
    return Challenge(
        challenge_id=challenge_id,
        client_id=client_id,
        nonce=bytes(range(24)),
        channel_binding=b"\xff" * 32,
        commitment_version=1,
        expires_at=expires_at,
    )


def run_together(count: int, work: Callable[[int], _T]) -> list[_T]:
    """Run ``work(0)`` ... ``work(count - 1)`` in threads released at once.

    Re-raises the first error a thread met.
    """
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results
