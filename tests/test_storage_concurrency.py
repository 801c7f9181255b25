"""Races over one store: the storage's atomic steps must lose nothing.

Threads are released together by a barrier, so on the servers their calls
overlap for real; each test then checks what a serial run would give.
"""

from __future__ import annotations

import pytest

from storage_backends import NOW, make_challenge, make_record, run_together
from twofapi_middleware.storage import Storage
from twofapi_middleware.storage.sql import SQLStorage

pytest_plugins = ["conftest_storage"]


def test_one_of_many_takers_gets_the_challenge(storage: Storage) -> None:
    challenge = make_challenge()
    storage.put_challenge(challenge, NOW)

    taken = run_together(50, lambda _: storage.take_challenge("ch-1", "alice"))

    assert [result for result in taken if result is not None] == [challenge]
    assert storage.challenge_count() == 0


def test_a_thief_racing_the_owner_never_takes(storage: Storage) -> None:
    storage.put_challenge(make_challenge(), NOW)

    def take(index: int) -> object:
        client_id = "alice" if index == 0 else f"mallory-{index}"
        return storage.take_challenge("ch-1", client_id)

    taken = run_together(20, take)

    assert taken[0] is not None
    assert taken[1:] == [None] * 19


def test_compare_and_set_increments_lose_nothing(storage: Storage) -> None:
    storage.add_client(make_record())

    def fail_once(_: int) -> int:
        attempts = 0
        while True:
            attempts += 1
            current = storage.get_client("alice")
            assert current is not None
            changed = current.evolve(NOW, failed_attempts=current.failed_attempts + 1)
            if storage.replace_client(changed, current.revision):
                return attempts

    attempts = run_together(50, fail_once)

    stored = storage.get_client("alice")
    assert stored is not None
    assert stored.failed_attempts == 50
    assert stored.revision == 51
    assert sum(attempts) >= 50


def test_concurrent_enrollments_store_one(storage: Storage) -> None:
    def enroll(index: int) -> object:
        commitment = bytes([index]) * 32
        return storage.add_client(make_record(commitment=commitment))

    returned = run_together(20, enroll)

    stored = storage.get_client("alice")
    assert stored is not None
    assert all(record == stored for record in returned)


def test_concurrent_puts_leave_one_challenge(storage: Storage) -> None:
    def put(index: int) -> None:
        storage.put_challenge(make_challenge(f"ch-{index}"), NOW)

    run_together(20, put)

    assert storage.challenge_count() == 1
    taken = [storage.take_challenge(f"ch-{index}", "alice") for index in range(20)]
    assert sum(result is not None for result in taken) == 1


def test_concurrent_hits_are_each_counted_once(storage: Storage) -> None:
    counts = run_together(50, lambda _: storage.hit("addr:192.0.2.1", 60, NOW))

    assert sorted(count for count, _ in counts) == list(range(1, 51))
    assert {end for _, end in counts} == {NOW + 60}


def test_take_without_returning_has_one_winner(
    sql_storage: SQLStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Servers without DELETE ... RETURNING (MySQL, old SQLite) lock, then delete.
    sql_storage.migrate()
    with sql_storage.engine.connect():
        pass  # the dialect learns the server's version on first connect
    monkeypatch.setattr(sql_storage.engine.dialect, "delete_returning", False)
    challenge = make_challenge()
    sql_storage.put_challenge(challenge, NOW)

    taken = run_together(50, lambda _: sql_storage.take_challenge("ch-1", "alice"))

    assert [result for result in taken if result is not None] == [challenge]
    assert sql_storage.take_challenge("ch-1", "mallory") is None
