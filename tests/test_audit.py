"""Audit events: one frozen event per security step, and never a secret.

A full lifecycle runs over HTTP while every request and response is
recorded; every secret that crossed the wire (the scalars, the prover's
nonces, proofs, tokens, recovery phrases, the first factor, the admin
secret) is then looked for in every audit event and every log record.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import importlib
import itertools
import json
import logging
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import twofapi_middleware
from lifecycle_support import ADMIN, CREDENTIAL, Actor, Harness, harness_for
from twofapi_middleware import audit, crypto
from twofapi_middleware.models import AuditEvent
from twofapi_middleware.testing import TEST_ADMIN_SECRET

ALL_KINDS = {
    value
    for name, value in vars(audit).items()
    if name.isupper() and isinstance(value, str)
}
SECRET_FIELDS = {
    "proofOfPossession",
    "proof",
    "currentProof",
    "newCommitmentProof",
    "credential",
    "recoveryWords",
    "accessToken",
}
PEER = "198.51.100.77"


class Recorder:
    """Everything the run sends and receives, and every scalar drawn."""

    def __init__(self) -> None:
        self.scalars: list[bytes] = []
        self.values: list[Any] = []

    def on_request(self, request: httpx.Request) -> None:
        request.read()
        for name in ("authorization", "x-admin-identity"):
            if name in request.headers:
                self.values.append(request.headers[name])
        self._collect(request.content)

    def on_response(self, response: httpx.Response) -> None:
        response.read()
        self._collect(response.content)

    def _collect(self, content: bytes) -> None:
        try:
            body = json.loads(content) if content else None
        except ValueError:
            return
        if isinstance(body, dict):
            self.values.extend(
                value for key, value in body.items() if key in SECRET_FIELDS
            )

    def secrets(self) -> set[str]:
        found = {TEST_ADMIN_SECRET, "first-factor", CREDENTIAL}
        for scalar in self.scalars:
            found |= spellings(scalar)
        for value in self.values:
            if isinstance(value, list):  # a recovery phrase
                words = [str(word) for word in value]
                found.add(" ".join(words))
                found.add(json.dumps(words))
                found |= {f"{a} {b}" for a, b in itertools.pairwise(words)}
                continue
            text = str(value)
            found.add(text.removeprefix("Bearer "))
            if text.count(".") == 2:  # a JWT: its signature alone
                found.add(text.rsplit(".", 1)[1])
            else:
                with contextlib.suppress(ValueError):
                    found |= spellings(base64.b64decode(text, validate=True))
        return {secret for secret in found if len(secret) >= 8}


def spellings(data: bytes) -> set[str]:
    """How bytes could leak: hex, base64, base64url, without padding."""
    std = base64.b64encode(data).decode()
    url = base64.urlsafe_b64encode(data).decode()
    return {data.hex(), data.hex().upper(), std, std.rstrip("="), url.rstrip("=")}


@pytest.fixture
def recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Harness, list[AuditEvent], Recorder]]:
    events: list[AuditEvent] = []
    recorder = Recorder()
    draw = crypto.random_scalar

    def recording_scalar() -> bytes:
        scalar = draw()
        recorder.scalars.append(scalar)
        return scalar

    monkeypatch.setattr(crypto, "random_scalar", recording_scalar)
    for h in harness_for(
        "memory",
        tmp_path,
        peer=PEER,
        audit_hook=events.append,
        rate_limit_per_client=10,
    ):
        h.http.event_hooks = {
            "request": [recorder.on_request],
            "response": [recorder.on_response],
        }
        yield h, events, recorder


def run_lifecycle(h: Harness) -> Actor:
    """Every security step of PROTOCOL.md, over HTTP, once at least."""
    actor = h.enrolled("alice")
    assert h.enroll(actor).status_code == 201  # repeated
    assert h.enroll(Actor(actor.client_id)).status_code == 409
    token = h.login(actor)
    assert h.resource(token).status_code == 200
    assert h.resource(token + "x").status_code == 401
    assert h.http.get("/v1/resources/r1").status_code == 401
    assert h.challenge(Actor(h.cid("nobody"))).status_code == 401

    rotated, _ = h.rotate(actor, token)
    assert rotated.status_code == 200
    assert h.resource(token).status_code == 401
    token = h.login(actor)
    stale = Actor(actor.client_id)
    assert h.rotate(stale, token)[0].status_code == 401

    for _ in range(3):
        h.fail_login(actor)
    assert h.challenge(actor).status_code == 401
    h.clock.advance(3600)

    assert h.suspend(actor.client_id).status_code == 403
    assert h.suspend(actor.client_id, **ADMIN).status_code == 204
    assert actor.words is not None
    wrong = list(reversed(actor.words))
    assert h.recover(actor, wrong)[0].status_code in (400, 401)
    assert h.recover(actor, ["abandon"] * 11 + ["about"])[0].status_code == 401
    assert h.recover(actor)[0].status_code == 200
    token = h.login(actor)

    assert h.revoke(actor.client_id, **{"X-Admin-Identity": "nope"}).status_code == 403
    assert h.revoke(actor.client_id, **ADMIN).status_code == 204
    assert h.resource(token).status_code == 401
    assert h.reactivate(Actor(h.cid("ghost")))[0].status_code == 401
    assert h.reactivate(actor)[0].status_code == 200
    token = h.login(actor)
    assert h.resource(token).status_code == 200

    for _ in range(11):
        last = h.challenge(actor)
    assert last.status_code == 429
    return actor


def test_every_security_step_reaches_the_hook(
    recorded: tuple[Harness, list[AuditEvent], Recorder],
) -> None:
    h, events, _ = recorded

    actor = run_lifecycle(h)

    assert {event.kind for event in events} == ALL_KINDS
    for event in events:
        assert event.at == pytest.approx(h.clock(), abs=4000)
        assert event.source_address == PEER
        assert event.request_id
        if event.kind != audit.ACCESS_DENIED or event.outcome == "stale-token":
            assert event.client_id in (actor.client_id, h.cid("nobody"), h.cid("ghost"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        events[0].kind = "nothing"  # type: ignore[misc]


def test_events_follow_the_steps_in_order(
    recorded: tuple[Harness, list[AuditEvent], Recorder],
) -> None:
    h, events, _ = recorded
    actor = h.enrolled("bob")
    h.login(actor)
    for _ in range(3):
        h.fail_login(actor)

    kinds = [event.kind for event in events]

    assert kinds == [
        audit.ENROLLED,
        audit.CHALLENGE_ISSUED,
        audit.VERIFIED,
        audit.TOKEN_ISSUED,
        audit.CHALLENGE_ISSUED,
        audit.VERIFICATION_REFUSED,
        audit.CHALLENGE_ISSUED,
        audit.VERIFICATION_REFUSED,
        audit.CHALLENGE_ISSUED,
        audit.LOCKED_OUT,
        audit.VERIFICATION_REFUSED,
    ]
    assert {event.client_id for event in events} == {actor.client_id}


def test_an_event_names_the_request_it_belongs_to(
    recorded: tuple[Harness, list[AuditEvent], Recorder],
) -> None:
    h, events, _ = recorded
    response = h.http.post(
        "/v1/challenges",
        json=Actor(h.cid("carol")).challenge_body(),
        headers={"X-Request-Id": "req-42"},
    )
    denied = h.http.get("/v1/resources/r1", headers={"Authorization": "Bearer x.y.z"})

    assert response.headers["x-request-id"] == "req-42"
    assert [(e.kind, e.request_id) for e in events] == [
        (audit.CHALLENGE_REFUSED, "req-42"),
        (audit.ACCESS_DENIED, denied.headers["x-request-id"]),
    ]
    assert events[0].as_dict() == {
        "kind": audit.CHALLENGE_REFUSED,
        "client_id": h.cid("carol"),
        "request_id": "req-42",
        "source_address": PEER,
        "at": h.clock(),
        "outcome": "refused",
        "details": {},
    }


def test_no_event_and_no_log_record_holds_a_secret(
    recorded: tuple[Harness, list[AuditEvent], Recorder],
    caplog: pytest.LogCaptureFixture,
) -> None:
    h, events, recorder = recorded
    caplog.set_level(logging.DEBUG, logger="twofapi_middleware")

    run_lifecycle(h)
    secrets = recorder.secrets()

    # Enough secrets were collected to mean something.
    assert len(recorder.scalars) >= 40
    assert sum(value.count(".") == 2 for value in secrets) >= 4  # tokens
    serialised = [json.dumps(event.as_dict()) for event in events]
    leaks = [(s, text) for text in serialised for s in secrets if s in text]
    assert not leaks
    logged = [
        " ".join([record.getMessage(), str(record.args), record.exc_text or ""])
        for record in caplog.records
    ]
    assert not [(s, text) for text in logged for s in secrets if s in text]


def test_a_failing_hook_never_breaks_authentication(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: AuditEvent) -> None:
        raise RuntimeError(f"sink down for {event.kind}")

    for h in harness_for("memory", tmp_path, audit_hook=broken):
        caplog.set_level(logging.DEBUG, logger="twofapi_middleware")
        actor = h.enrolled("dave")
        assert h.resource(h.login(actor)).status_code == 200
    assert any("audit hook raised" in r.getMessage() for r in caplog.records)


# -- the default hook ------------------------------------------------------------


def test_the_default_hook_logs_at_info_on_the_audit_logger(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="twofapi_middleware.audit")
    for h in harness_for("memory", tmp_path, peer=PEER):
        assert h.settings.audit_hook is None
        actor = h.enrolled("erin")

    records = [r for r in caplog.records if r.name == "twofapi_middleware.audit"]
    assert [r.levelno for r in records] == [logging.INFO]
    event = records[0].twofapi_event  # type: ignore[attr-defined]
    assert isinstance(event, AuditEvent)
    assert (event.kind, event.client_id, event.source_address) == (
        audit.ENROLLED,
        actor.client_id,
        PEER,
    )
    assert actor.client_id in records[0].getMessage()


def test_the_library_attaches_no_handler() -> None:
    for module in pkgutil.walk_packages(
        twofapi_middleware.__path__, "twofapi_middleware."
    ):
        if ".migrations" in module.name:
            continue  # Alembic scripts run only inside Alembic
        try:
            importlib.import_module(module.name)
        except ImportError:
            continue  # an optional integration whose framework is absent
    loggers = [
        logger
        for name, logger in logging.Logger.manager.loggerDict.items()
        if name.startswith("twofapi_middleware") and isinstance(logger, logging.Logger)
    ]

    assert logging.getLogger("twofapi_middleware.audit") in loggers
    for logger in loggers:
        assert logger.handlers == [], logger.name
        assert logger.propagate, logger.name
        assert logger.level == logging.NOTSET, logger.name
