"""Storage fixtures, loaded by the storage suites with ``pytest_plugins``.

Each test gets its backend freshly emptied: the package's tables dropped,
the Redis test database flushed. Parameters of the servers carry the
``postgresql``, ``mysql`` and ``redis`` markers, so ``-m "not redis"``
deselects them; an unreachable server fails the test instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from storage_backends import (
    ALL_BACKENDS,
    PERSISTENT_BACKENDS,
    SQL_BACKENDS,
    empty_storage,
)
from twofapi_middleware.storage import Storage
from twofapi_middleware.storage.sql import SQLStorage


def _open(request: pytest.FixtureRequest, tmp_path: Path, migrate: bool) -> Storage:
    storage = empty_storage(request.param, tmp_path)
    request.addfinalizer(storage.close)
    if migrate:
        storage.migrate()
    return storage


@pytest.fixture(params=ALL_BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """Every backend, empty and migrated."""
    return _open(request, tmp_path, migrate=True)


@pytest.fixture(params=PERSISTENT_BACKENDS)
def unmigrated_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """Every backend that keeps a schema, empty and never migrated."""
    return _open(request, tmp_path, migrate=False)


@pytest.fixture(params=SQL_BACKENDS)
def sql_storage(request: pytest.FixtureRequest, tmp_path: Path) -> SQLStorage:
    """Every SQL backend, empty and never migrated."""
    storage = _open(request, tmp_path, migrate=False)
    assert isinstance(storage, SQLStorage)
    return storage
