"""PROTOCOL.md section 8, lockout: driven by a FakeClock, on every backend."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lifecycle_support import ADMIN, BACKENDS, Actor, Harness, harness_for
from twofapi_middleware.models import ClientStatus
from twofapi_middleware.service import Context
from twofapi_middleware.wire import encode_b64

HOUR = 3600


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def h(backend: str, tmp_path: Path) -> Iterator[Harness]:
    yield from harness_for(backend, tmp_path)


@pytest.fixture
def make(backend: str, tmp_path: Path) -> Iterator[Any]:
    """Harnesses with other settings, on this test's backend."""
    opened: list[Iterator[Harness]] = []

    def build(**overrides: Any) -> Harness:
        generator = harness_for(backend, tmp_path, **overrides)
        opened.append(generator)
        return next(generator)

    yield build
    for generator in opened:
        generator.close()


def lock_out(h: Harness, actor: Actor) -> None:
    for _ in range(3):
        h.fail_login(actor)


def challenge_refused(h: Harness, actor: Actor) -> bool:
    response = h.challenge(actor)
    if response.status_code == 200:
        return False
    assert response.status_code == 401
    assert response.json()["type"] == "urn:2fapi:error:challenge-refused"
    return True


def locked_for(h: Harness, actor: Actor) -> float:
    """Seconds of lock left, measured from outside: refused until then."""
    record = h.record(actor.client_id)
    assert record is not None
    left = record.locked_until - h.clock()
    assert left > 0
    h.clock.advance(left - 1)
    assert challenge_refused(h, actor)
    h.clock.advance(1)
    assert not challenge_refused(h, actor)
    return left


def test_three_counted_failures_lock_for_an_hour(h: Harness) -> None:
    actor = h.enrolled("alice")
    h.fail_login(actor)
    h.fail_login(actor)
    assert not challenge_refused(h, actor)  # two failures lock nothing

    h.fail_login(actor)

    assert challenge_refused(h, actor)
    record = h.record(actor.client_id)
    assert record is not None
    assert record.failed_attempts == 0  # the lock resets the count
    assert record.lockout_streak == 1
    assert locked_for(h, actor) == HOUR
    h.login(actor)


def test_second_lockout_in_a_row_lasts_two_hours(h: Harness) -> None:
    actor = h.enrolled("alice")
    lock_out(h, actor)
    h.clock.advance(HOUR)

    lock_out(h, actor)

    assert locked_for(h, actor) == 2 * HOUR


def test_third_lockout_in_a_row_suspends(h: Harness) -> None:
    actor = h.enrolled("alice")
    token = h.login(actor)
    # Fresh failures after the login: the run of lockouts starts now.
    lock_out(h, actor)
    h.clock.advance(HOUR)
    lock_out(h, actor)
    h.clock.advance(2 * HOUR)
    lock_out(h, actor)

    record = h.record(actor.client_id)
    assert record is not None
    assert record.status is ClientStatus.SUSPENDED
    h.clock.advance(30 * 24 * HOUR)
    assert challenge_refused(h, actor)
    assert h.resource(token).status_code == 401


def test_without_suspension_each_lockout_doubles_up_to_a_day(make: Any) -> None:
    h: Harness = make(lockouts_before_suspension=0)
    actor = h.enrolled("alice")
    durations = []
    for _ in range(8):
        lock_out(h, actor)
        durations.append(locked_for(h, actor))

    assert durations == [HOUR * n for n in (1, 2, 4, 8, 16, 24, 24, 24)]
    record = h.record(actor.client_id)
    assert record is not None
    assert record.status is ClientStatus.ACTIVE


def test_lockout_numbers_are_settings(make: Any) -> None:
    h: Harness = make(
        lockout_threshold=2, lockout_seconds=300, lockouts_before_suspension=2
    )
    actor = h.enrolled("alice")
    h.fail_login(actor)
    h.fail_login(actor)
    assert locked_for(h, actor) == 300
    h.fail_login(actor)
    h.fail_login(actor)

    record = h.record(actor.client_id)
    assert record is not None
    assert record.status is ClientStatus.SUSPENDED


def test_success_clears_the_count(h: Harness) -> None:
    actor = h.enrolled("alice")
    h.fail_login(actor)
    h.fail_login(actor)
    h.login(actor)
    h.fail_login(actor)
    h.fail_login(actor)

    assert not challenge_refused(h, actor)
    record = h.record(actor.client_id)
    assert record is not None
    assert record.failed_attempts == 2


def test_success_clears_the_run_of_lockouts(h: Harness) -> None:
    actor = h.enrolled("alice")
    lock_out(h, actor)
    h.clock.advance(HOUR)
    lock_out(h, actor)
    h.clock.advance(2 * HOUR)
    h.login(actor)

    lock_out(h, actor)

    assert locked_for(h, actor) == HOUR  # a first lockout again, not a third
    record = h.record(actor.client_id)
    assert record is not None
    assert record.status is ClientStatus.ACTIVE


def test_binding_mismatch_counts(h: Harness) -> None:
    actor = h.enrolled("alice")
    for _ in range(3):
        issued = h.challenge(actor).json()
        body = actor.verify_body(issued)
        body["channelBinding"] = encode_b64(secrets.token_bytes(32))
        assert h.post("/v1/verify", body).status_code == 401

    assert challenge_refused(h, actor)


def test_uncounted_refusals_lock_nothing(h: Harness) -> None:
    actor = h.enrolled("alice")
    for _ in range(5):
        # No such challenge.
        issued = h.challenge(actor).json()
        body = actor.verify_body(issued)
        body["challengeId"] = "A" * 22
        assert h.post("/v1/verify", body).status_code == 401
        # A malformed proof (the identity as announcement).
        body = actor.verify_body(issued)
        body["proof"] = encode_b64(bytes(32) + secrets.token_bytes(64))
        assert h.post("/v1/verify", body).status_code == 401
        # An expired challenge.
        issued = h.challenge(actor).json()
        h.clock.advance(121)
        assert h.verify(actor, issued).status_code == 401
        # Bad syntax: a 400, before any work.
        body = actor.verify_body(h.challenge(actor).json())
        body["proof"] = body["proof"][:-8]
        assert h.post("/v1/verify", body).status_code == 400

    record = h.record(actor.client_id)
    assert record is not None
    assert (record.failed_attempts, record.lockout_streak) == (0, 0)
    h.login(actor)


def test_the_lock_withdraws_the_pending_challenge(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    actor = h.enrolled("alice")
    h.fail_login(actor)
    h.fail_login(actor)
    storage = h.service.storage
    take = storage.take_challenge
    pending: list[dict[str, Any]] = []

    def take_then_let_the_owner_in(challenge_id: str, client_id: str) -> Any:
        taken = take(challenge_id, client_id)
        # The real client asks for a challenge while the guess is checked.
        pending.append(h.service.issue_challenge(actor.challenge_body(), Context()))
        return taken

    monkeypatch.setattr(storage, "take_challenge", take_then_let_the_owner_in)
    issued = h.challenge(actor).json()
    assert h.verify(actor, issued, wrong=True).status_code == 401
    monkeypatch.undo()

    # Withdrawn, not merely refused later on: the store no longer holds it.
    assert storage.take_challenge(pending[0]["challengeId"], actor.client_id) is None
    assert challenge_refused(h, actor)
    h.clock.advance(HOUR)
    h.login(actor)


def test_tokens_held_during_a_lock_keep_working(h: Harness) -> None:
    actor = h.enrolled("alice")
    token = h.login(actor)

    lock_out(h, actor)

    assert challenge_refused(h, actor)
    assert h.resource(token).status_code == 200


def test_a_lock_never_tells_how_long_it_lasts(h: Harness) -> None:
    actor = h.enrolled("alice")
    unknown = Actor(h.cid("nobody"))
    lock_out(h, actor)
    h.clock.advance(HOUR - 5)

    locked = h.challenge(actor)
    missing = h.challenge(unknown)

    assert locked.status_code == missing.status_code == 401
    locked_body, missing_body = locked.json(), missing.json()
    locked_body.pop("instance")
    missing_body.pop("instance")
    assert locked_body == missing_body
    skip = {"x-request-id", "content-length"}
    assert {k: v for k, v in locked.headers.items() if k not in skip} == {
        k: v for k, v in missing.headers.items() if k not in skip
    }
    assert "retry-after" not in locked.headers


def test_every_worker_sees_the_count_and_the_lock(h: Harness, backend: str) -> None:
    if backend == "memory":
        other = Harness(h.backend, clock=h.clock)
    else:
        other = Harness(h.backend, clock=h.clock, storage=h.backend.another())
    try:
        actor = h.enrolled("alice")
        h.fail_login(actor)
        other.fail_login(actor)
        h.fail_login(actor)

        assert challenge_refused(other, actor)
        assert challenge_refused(h, actor)
    finally:
        other.close()


def test_suspension_by_lockouts_is_undone_by_reactivation(h: Harness) -> None:
    actor = h.enrolled("alice")
    for wait in (HOUR, 2 * HOUR, 0):
        lock_out(h, actor)
        h.clock.advance(wait)
    assert challenge_refused(h, actor)

    response, _ = h.reactivate(actor, ADMIN)

    assert response.status_code == 200
    record = h.record(actor.client_id)
    assert record is not None
    assert (record.failed_attempts, record.lockout_streak, record.locked_until) == (
        0,
        0,
        0.0,
    )
    h.login(actor)
