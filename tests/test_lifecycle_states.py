"""PROTOCOL.md section 8: the client state table, every cell, every backend.

Each cell sets up a client in a state, sends one event over HTTP and checks
the status code and the state that follows (status and commitment version).
Cells that change nothing must leave the stored record exactly as it was,
revision included.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lifecycle_support import ADMIN, BACKENDS, Actor, Harness, harness_for
from twofapi_middleware import crypto
from twofapi_middleware import service as service_module
from twofapi_middleware.models import ClientStatus
from twofapi_middleware.recovery import new_phrase
from twofapi_middleware.testing import TEST_ADMIN_SECRET
from twofapi_middleware.wire import encode_b64

ACTIVE = ClientStatus.ACTIVE
SUSPENDED = ClientStatus.SUSPENDED
REVOKED = ClientStatus.REVOKED


@dataclass(frozen=True)
class Outcome:
    """What a cell expects: the status code, then the next state.

    ``state`` None with ``unchanged`` means no record exists afterwards;
    ``unchanged`` means the stored record is byte-for-byte what it was.
    """

    status: int
    state: ClientStatus | None = None
    version: int | None = None
    unchanged: bool = False


SAME = Outcome(0, unchanged=True)


def same(status: int) -> Outcome:
    return Outcome(status, unchanged=True)


def becomes(status: int, state: ClientStatus, version: int) -> Outcome:
    return Outcome(status, state, version)


# Every client starts at commitment version 1. "lockout" is the third
# lockout in a row; where the table says "—" the client cannot even get a
# challenge, so nothing can be counted and nothing changes.
TABLE: dict[str, dict[str, Outcome]] = {
    "none": {
        "enroll-same": becomes(201, ACTIVE, 1),
        "enroll-other": becomes(201, ACTIVE, 1),
        "rotate": same(401),
        "suspend": same(204),
        "revoke": same(204),
        "recover": same(401),
        "reactivate": same(401),
        "lockout": same(401),
    },
    "active": {
        "enroll-same": same(201),
        "enroll-other": same(409),
        "rotate": becomes(200, ACTIVE, 2),
        "suspend": becomes(204, SUSPENDED, 1),
        "revoke": becomes(204, REVOKED, 1),
        "recover": becomes(200, ACTIVE, 2),
        "reactivate": becomes(200, ACTIVE, 2),
        "lockout": becomes(401, SUSPENDED, 1),
    },
    "suspended": {
        "enroll-same": same(409),
        "enroll-other": same(409),
        "rotate": same(401),
        "suspend": same(204),
        "revoke": becomes(204, REVOKED, 1),
        "recover": becomes(200, ACTIVE, 2),
        "reactivate": becomes(200, ACTIVE, 2),
        "lockout": same(401),
    },
    "revoked": {
        "enroll-same": same(409),
        "enroll-other": same(409),
        "rotate": same(401),
        "suspend": same(204),
        "revoke": same(204),
        "recover": same(401),
        "reactivate": becomes(200, ACTIVE, 2),
        "lockout": same(401),
    },
}

CELLS = [
    pytest.param(state, event, id=f"{state}-{event}")
    for state, row in TABLE.items()
    for event in row
]


@pytest.fixture(params=BACKENDS)
def table_harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    yield from harness_for(request.param, tmp_path)


@dataclass
class Scene:
    """A client brought into a state, with what the events need."""

    actor: Actor
    token: str
    ended_with_lockouts: bool = False


def prepare(h: Harness, state: str, event: str) -> Scene:
    actor = Actor(h.cid("table"))
    if state == "none":
        actor.words = new_phrase()
        # A correctly signed token for a client that does not exist.
        token = h.service.codec.issue(
            client_id=actor.client_id,
            audience="default",
            commitment_version=1,
            channel_binding=actor.binding,
            now=h.clock(),
        ).token
        return Scene(actor, token)

    assert h.enroll(actor).status_code == 201
    token = h.login(actor)
    if state == "suspended":
        assert h.suspend(actor.client_id, **ADMIN).status_code == 204
    elif state == "revoked":
        assert h.revoke(actor.client_id, **ADMIN).status_code == 204
    elif event == "lockout":
        # Two lockouts in a row, each waited out, then two more failures:
        # the next counted failure is the third lockout in a row.
        for minutes in (60, 120):
            for _ in range(3):
                h.fail_login(actor)
            h.clock.advance(minutes * 60 + 1)
        for _ in range(2):
            h.fail_login(actor)
        record = h.record(actor.client_id)
        assert record is not None
        assert (record.lockout_streak, record.failed_attempts) == (2, 2)
    return Scene(actor, token)


def fire(h: Harness, scene: Scene, event: str) -> int:
    actor = scene.actor
    if event == "enroll-same":
        return h.enroll(actor).status_code
    if event == "enroll-other":
        return h.enroll(Actor(actor.client_id)).status_code
    if event == "rotate":
        return h.rotate(actor, scene.token)[0].status_code
    if event == "suspend":
        return h.suspend(actor.client_id, **ADMIN).status_code
    if event == "revoke":
        return h.revoke(actor.client_id, **ADMIN).status_code
    if event == "recover":
        return h.recover(actor)[0].status_code
    if event == "reactivate":
        return h.reactivate(actor)[0].status_code
    assert event == "lockout"
    issued = h.challenge(actor)
    if issued.status_code != 200:
        return issued.status_code
    return h.verify(actor, issued.json(), wrong=True).status_code


@pytest.mark.parametrize(("state", "event"), CELLS)
def test_state_table(table_harness: Harness, state: str, event: str) -> None:
    h = table_harness
    expected = TABLE[state][event]
    scene = prepare(h, state, event)
    client_id = scene.actor.client_id
    before = h.record(client_id)

    status = fire(h, scene, event)
    after = h.record(client_id)

    assert status == expected.status
    if expected.unchanged:
        assert after == before
        return
    assert after is not None
    assert (after.status, after.commitment_version) == (
        expected.state,
        expected.version,
    )
    if before is not None:
        assert after.revision > before.revision


# -- section 6, endpoint by endpoint -------------------------------------------


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    yield from harness_for("memory", tmp_path)


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = dict(response.json())
    assert body["type"] == f"urn:2fapi:error:{code}"
    assert body.pop("instance") == response.headers["x-request-id"]
    return body


def test_enrollment_answers_once_with_words_then_idempotently(h: Harness) -> None:
    actor = Actor(h.cid("alice"))
    first = h.enroll(actor)
    again = h.enroll(actor)

    assert first.status_code == again.status_code == 201
    assert first.headers["location"] == f"/v1/clients/{actor.client_id}"
    assert again.headers["location"] == first.headers["location"]
    assert set(first.json()) == {"referenceId", "clientIdentifier", "recoveryWords"}
    assert again.json() == {
        "referenceId": first.json()["referenceId"],
        "clientIdentifier": actor.client_id,
    }


def test_rotation_needs_the_clients_own_token(h: Harness) -> None:
    alice, bob = h.enrolled("alice"), h.enrolled("bob")
    path = f"/v1/clients/{alice.client_id}/commitment"
    body = alice.rotate_body(crypto.Opening.generate())
    bob_token = h.login(bob)

    missing = h.http.put(path, json=body)
    garbage = h.http.put(path, json=body, headers={"Authorization": "Bearer a.b.c"})
    foreign = h.http.put(
        path, json=body, headers={"Authorization": f"Bearer {bob_token}"}
    )

    problem(missing, 401, "unauthorized")
    assert missing.headers["www-authenticate"] == 'Bearer realm="2fapi"'
    problem(garbage, 401, "unauthorized")
    assert 'error="invalid_token"' in garbage.headers["www-authenticate"]
    problem(foreign, 401, "rotation-refused")
    assert "www-authenticate" not in foreign.headers
    record = h.record(alice.client_id)
    assert record is not None
    assert record.commitment_version == 1


def test_rotation_refusals_share_one_body(h: Harness) -> None:
    actor = h.enrolled("alice")
    token = h.login(actor)
    path = f"/v1/clients/{actor.client_id}/commitment"
    new = crypto.Opening.generate()
    good = actor.rotate_body(new)
    stranger = Actor(actor.client_id, opening=crypto.Opening.generate())
    bodies = {
        "current-proof-of-another-secret": stranger.rotate_body(new),
        "new-proof-of-another-secret": {
            **good,
            "newCommitmentProof": actor.rotate_body(crypto.Opening.generate())[
                "newCommitmentProof"
            ],
        },
        "proofs-swapped": {
            **good,
            "currentProof": good["newCommitmentProof"],
            "newCommitmentProof": good["currentProof"],
        },
        "same-commitment": actor.rotate_body(actor.opening),
        "identity-commitment": {**good, "newCommitment": encode_b64(bytes(32))},
    }
    bearer = {"Authorization": f"Bearer {token}"}

    answers = [
        problem(h.http.put(path, json=body, headers=bearer), 401, "rotation-refused")
        for body in bodies.values()
    ]

    assert all(answer == answers[0] for answer in answers)
    record = h.record(actor.client_id)
    assert record is not None
    assert record.commitment_version == 1
    assert h.resource(token).status_code == 200


def test_a_bad_body_is_400_before_any_token_check(h: Harness) -> None:
    actor = h.enrolled("alice")
    path = f"/v1/clients/{actor.client_id}/commitment"
    body = actor.rotate_body(crypto.Opening.generate())
    body["newCommitment"] = body["newCommitment"][:-4]

    problem(h.http.put(path, json=body), 400, "validation-failed")


def test_rotation_ends_every_token_and_challenge_of_the_old_commitment(
    h: Harness,
) -> None:
    actor = h.enrolled("alice")
    token, other_token = h.login(actor), h.login(actor)
    pending = h.challenge(actor).json()
    old = Actor(actor.client_id, opening=actor.opening)

    response, _ = h.rotate(actor, token)

    assert response.status_code == 200
    assert set(response.json()) == {"rotatedAt"}
    assert response.json()["rotatedAt"].endswith("Z")
    assert h.resource(token).status_code == 401
    assert h.resource(other_token).status_code == 401
    assert h.verify(old, pending).status_code == 401
    issued = h.challenge(old).json()
    assert h.verify(old, issued).status_code == 401
    fresh = h.login(actor)
    assert h.service.codec.decode(fresh)["cv"] == 2
    assert h.resource(fresh).status_code == 200


ADMIN_CALLS = ["revoke", "suspend", "reactivate"]


def admin_call(h: Harness, name: str, actor: Actor, headers: dict[str, str]) -> Any:
    if name == "revoke":
        return h.http.delete(f"/v1/clients/{actor.client_id}", headers=headers)
    if name == "suspend":
        return h.http.post(f"/v1/clients/{actor.client_id}/suspend", headers=headers)
    return h.reactivate(actor, headers)[0]


@pytest.mark.parametrize("name", ADMIN_CALLS)
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"X-Admin-Identity": ""}, id="empty"),
        pytest.param({"X-Admin-Identity": "wrong"}, id="wrong-short"),
        pytest.param({"X-Admin-Identity": TEST_ADMIN_SECRET[:-1]}, id="prefix"),
        pytest.param({"X-Admin-Identity": TEST_ADMIN_SECRET + "x"}, id="longer"),
        pytest.param({"X-Admin-Identity": TEST_ADMIN_SECRET.upper()}, id="case"),
        pytest.param({"X-Admin-Identity": f" {TEST_ADMIN_SECRET}"}, id="space"),
    ],
)
def test_admin_calls_without_the_secret_are_403(
    h: Harness, name: str, headers: dict[str, str]
) -> None:
    actor = h.enrolled("alice")
    before = h.record(actor.client_id)

    answer = problem(admin_call(h, name, actor, headers), 403, "forbidden")

    assert answer["title"] == "Forbidden"
    assert h.record(actor.client_id) == before


@pytest.mark.parametrize("name", ADMIN_CALLS)
def test_admin_calls_are_403_when_no_secret_is_configured(
    tmp_path: Path, name: str
) -> None:
    for h in harness_for("memory", tmp_path, admin_secret=None):
        actor = h.enrolled("alice")
        before = h.record(actor.client_id)
        for headers in ({}, {"X-Admin-Identity": ""}, ADMIN):
            problem(admin_call(h, name, actor, headers), 403, "forbidden")
        assert h.record(actor.client_id) == before


def test_the_admin_secret_is_compared_in_constant_time(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = service_module.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(service_module.hmac, "compare_digest", spy)
    target = h.cid("alice")

    assert h.suspend(target, **{"X-Admin-Identity": "guess"}).status_code == 403
    assert h.suspend(target, **ADMIN).status_code == 204

    secret = TEST_ADMIN_SECRET.encode()
    assert (b"guess", secret) in compared
    assert (secret, secret) in compared


def test_validation_wins_over_the_admin_check(h: Harness) -> None:
    actor = h.enrolled("alice")
    path = f"/v1/clients/{actor.client_id}/reactivate"

    problem(h.http.post(path, json={"newCommitment": 5}), 400, "validation-failed")
    problem(h.http.delete("/v1/clients/bad%20id"), 400, "validation-failed")


def test_admin_calls_need_no_body_nor_content_type(h: Harness) -> None:
    actor = h.enrolled("alice")
    headers = {**ADMIN, "Content-Type": "text/plain"}

    suspended = h.http.post(f"/v1/clients/{actor.client_id}/suspend", headers=ADMIN)
    revoked = h.http.request(
        "DELETE", f"/v1/clients/{actor.client_id}", headers=headers
    )

    assert (suspended.status_code, suspended.content) == (204, b"")
    assert (revoked.status_code, revoked.content) == (204, b"")


@pytest.mark.parametrize("name", ["revoke", "suspend"])
def test_revoke_and_suspend_end_tokens_and_challenges_at_once(
    h: Harness, name: str
) -> None:
    actor = h.enrolled("alice")
    token = h.login(actor)
    pending = h.challenge(actor).json()

    assert admin_call(h, name, actor, ADMIN).status_code == 204

    assert h.resource(token).status_code == 401
    assert (
        h.service.storage.take_challenge(pending["challengeId"], actor.client_id)
        is None
    )
    problem(h.challenge(actor), 401, "challenge-refused")


@pytest.mark.parametrize("name", ["revoke", "suspend"])
def test_revoke_and_suspend_of_an_unknown_client_create_nothing(
    h: Harness, name: str
) -> None:
    ghost = Actor(h.cid("ghost"))

    assert admin_call(h, name, ghost, ADMIN).status_code == 204

    assert h.record(ghost.client_id) is None
    assert h.enroll(ghost).status_code == 201


def test_reactivation_answers_and_refusals(h: Harness) -> None:
    actor = h.enrolled("alice")
    path = f"/v1/clients/{actor.client_id}/reactivate"
    new = crypto.Opening.generate()
    pop_instead = actor.recover_body(new, [])
    del pop_instead["recoveryWords"]
    refusals = [
        h.reactivate(Actor(h.cid("ghost")))[0],
        h.http.post(path, json=pop_instead, headers=ADMIN),
        h.http.post(
            path,
            json={
                **actor.reactivate_body(new),
                "newCommitment": encode_b64(crypto.commit(crypto.Opening.generate())),
            },
            headers=ADMIN,
        ),
    ]
    bodies = [problem(r, 401, "reactivation-failed") for r in refusals]
    assert bodies[0] == bodies[1] == bodies[2]
    assert h.record(h.cid("ghost")) is None
    record = h.record(actor.client_id)
    assert record is not None
    assert record.commitment_version == 1

    answer, _ = h.reactivate(actor)

    assert answer.status_code == 200
    assert answer.json()["reactivated"] is True
    assert answer.json()["clientIdentifier"] == actor.client_id
    assert len(answer.json()["recoveryWords"]) == 12
    assert h.resource(h.login(actor)).status_code == 200


def test_recovery_answers(h: Harness) -> None:
    actor = h.enrolled("alice")
    answer, _ = h.recover(actor)

    assert answer.status_code == 200
    assert set(answer.json()) == {"recovered", "clientIdentifier", "recoveryWords"}
    assert answer.json()["recovered"] is True
    assert answer.json()["clientIdentifier"] == actor.client_id
