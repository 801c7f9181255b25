"""PROTOCOL.md section 6, recovery: BIP-39 phrases kept as Argon2id hashes."""

from __future__ import annotations

import dataclasses
import resource
import secrets
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import argon2
import pytest
from mnemonic import Mnemonic
from starlette.testclient import TestClient

from lifecycle_support import ADMIN, BACKENDS, Actor, Harness, harness_for
from twofapi_middleware import audit, crypto
from twofapi_middleware.asgi import TwoFApiMiddleware
from twofapi_middleware.constants import (
    ARGON2_MEMORY_KIB,
    ARGON2_PARALLELISM,
    ARGON2_TIME_COST,
)
from twofapi_middleware.models import AuditEvent, ClientStatus
from twofapi_middleware.recovery import new_phrase
from twofapi_middleware.server import demo_app
from twofapi_middleware.settings import Settings
from twofapi_middleware.storage import MemoryStorage
from twofapi_middleware.testing import TEST_ADMIN_SECRET, FakeClock

ENGLISH = Mnemonic("english")
# "abandon" x 11 + "about" is the best-known valid 12-word phrase.
ABANDON = ["abandon"] * 11


@pytest.fixture(params=BACKENDS)
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    yield from harness_for(request.param, tmp_path)


def is_bip39_phrase(words: Any) -> bool:
    return (
        isinstance(words, list)
        and len(words) == 12
        and all(isinstance(w, str) and w == w.lower() for w in words)
        and all(w in ENGLISH.wordlist for w in words)
        and ENGLISH.check(" ".join(words))
    )


def wrong_phrase(right: list[str]) -> list[str]:
    while True:
        words = new_phrase()
        if words != right:
            return words


def refusal(response: Any) -> dict[str, Any]:
    assert response.status_code == 401, response.text
    body = dict(response.json())
    assert body.pop("instance")
    assert body["type"] == "urn:2fapi:error:recovery-failed"
    return body


# -- the phrase ----------------------------------------------------------------


def test_enrollment_recovery_and_reactivation_hand_out_bip39_phrases(
    h: Harness,
) -> None:
    actor = h.enrolled("alice")
    phrases = [actor.words]

    recovered, _ = h.recover(actor)
    phrases.append(recovered.json()["recoveryWords"])
    reactivated, _ = h.reactivate(actor)
    phrases.append(reactivated.json()["recoveryWords"])

    assert recovered.json()["recovered"] is True
    assert recovered.json()["clientIdentifier"] == actor.client_id
    assert reactivated.json()["reactivated"] is True
    assert all(is_bip39_phrase(words) for words in phrases)
    assert len({" ".join(words) for words in phrases if words}) == 3


def test_only_an_argon2id_hash_is_stored(h: Harness) -> None:
    actor = h.enrolled("alice")
    record = h.record(actor.client_id)
    assert record is not None
    assert actor.words is not None

    assert record.recovery_hash.startswith("$argon2id$v=19$")
    stored = repr(dataclasses.asdict(record))
    assert " ".join(actor.words) not in stored
    assert sum(word in stored for word in actor.words) < 3  # no word list
    assert argon2.PasswordHasher().verify(record.recovery_hash, " ".join(actor.words))


def test_default_settings_hash_with_at_least_the_owasp_parameters() -> None:
    settings = Settings(admin_secret=TEST_ADMIN_SECRET, clock=FakeClock())
    storage = MemoryStorage()
    app = TwoFApiMiddleware(demo_app, settings, storage=storage)
    actor = Actor("defaults")
    with TestClient(app) as client:
        response = client.post("/v1/clients", json=actor.enroll_body())
    assert response.status_code == 201
    record = storage.get_client("defaults")
    assert record is not None

    parameters = argon2.extract_parameters(record.recovery_hash)

    assert parameters.type is argon2.Type.ID
    assert parameters.memory_cost >= 19456 == ARGON2_MEMORY_KIB
    assert parameters.time_cost >= 2 == ARGON2_TIME_COST
    assert parameters.parallelism == 1 == ARGON2_PARALLELISM
    assert "$m=19456,t=2,p=1$" in record.recovery_hash


@pytest.mark.parametrize(
    "spell",
    [
        pytest.param(str.upper, id="uppercase"),
        pytest.param(str.title, id="titlecase"),
        pytest.param(
            lambda w: "".join(chr(ord(c) - ord("a") + 0xFF41) for c in w),
            id="fullwidth",
        ),
        pytest.param(
            lambda w: "".join(chr(ord(c) - ord("a") + 0xFF21) for c in w),
            id="fullwidth-uppercase",
        ),
    ],
)
def test_words_are_nfkd_normalised_and_lowercased(h: Harness, spell: Any) -> None:
    actor = h.enrolled("alice")
    assert actor.words is not None
    spelled = [spell(word) for word in actor.words]
    assert spelled != actor.words
    assert [unicodedata.normalize("NFKD", w).lower() for w in spelled] == actor.words

    response, _ = h.recover(actor, spelled)

    assert response.status_code == 200, response.text


# -- refusals --------------------------------------------------------------------


def _valid(count: int) -> list[str]:
    strength = {12: 128, 15: 160, 18: 192, 24: 256}[count]
    return str(ENGLISH.generate(strength=strength)).split(" ")


BAD_PHRASES = {
    "eleven-words": [*ABANDON[:10], "about"],
    "thirteen-words": [*ABANDON, "about", "abandon"],
    "fifteen-words": _valid(15),
    "empty": [],
    "a-string": " ".join([*ABANDON, "about"]),
    "an-object": {"words": [*ABANDON, "about"]},
    "null": None,
    "a-number-inside": [*ABANDON[:10], 7, "about"],
    "null-inside": [*ABANDON[:10], None, "about"],
    "nested-list": [*ABANDON[:10], ["abandon"], "about"],
    "word-outside-the-list": [*ABANDON[:10], "abandonx", "about"],
    "french-word": [*ABANDON[:10], "abaisser", "about"],
    "padded-word": [*ABANDON[:10], " abandon", "about"],
    "bad-checksum": ["abandon"] * 12,
    "bad-checksum-24": ["abandon"] * 24,
}


@pytest.mark.parametrize("words", BAD_PHRASES.values(), ids=BAD_PHRASES.keys())
def test_malformed_phrases_are_400_and_not_counted(h: Harness, words: Any) -> None:
    actor = h.enrolled("alice")
    before = h.record(actor.client_id)
    body = actor.recover_body(crypto.Opening.generate(), [])
    body["recoveryWords"] = words

    for _ in range(4):
        response = h.post(f"/v1/clients/{actor.client_id}/recover", body)
        assert response.status_code == 400
        problem = response.json()
        assert problem["type"] == "urn:2fapi:error:validation-failed"
        assert "recoveryWords" in problem["detail"]

    assert h.record(actor.client_id) == before
    assert h.recover(actor)[0].status_code == 200


@pytest.mark.parametrize("count", [12, 18, 24])
def test_wrong_phrase_is_401_and_counted_on_its_own(h: Harness, count: int) -> None:
    actor = h.enrolled("alice")
    h.fail_login(actor)

    response, _ = h.recover(actor, _valid(count))

    refusal(response)
    record = h.record(actor.client_id)
    assert record is not None
    assert record.recovery_failures == 1
    assert record.failed_attempts == 1  # the login count is another one
    assert record.commitment_version == 1


def test_three_wrong_phrases_in_a_row_disable_recovery_until_reactivation(
    h: Harness,
) -> None:
    actor = h.enrolled("alice")
    assert actor.words is not None
    right = list(actor.words)
    token = h.login(actor)
    for _ in range(3):
        refusal(h.recover(actor, wrong_phrase(right))[0])
    disabled = h.record(actor.client_id)

    refused, _ = h.recover(actor, right)

    assert refusal(refused) == refusal(h.recover(actor, wrong_phrase(right))[0])
    assert h.record(actor.client_id) == disabled  # the right phrase changed nothing
    assert h.resource(token).status_code == 200  # logins are another matter
    reactivated, _ = h.reactivate(actor, ADMIN)
    assert reactivated.status_code == 200
    record = h.record(actor.client_id)
    assert record is not None
    assert record.recovery_failures == 0
    assert h.recover(actor)[0].status_code == 200


def test_success_resets_the_run_of_wrong_phrases(h: Harness) -> None:
    actor = h.enrolled("alice")
    assert actor.words is not None
    for _ in range(2):
        refusal(h.recover(actor, wrong_phrase(actor.words))[0])
    assert h.recover(actor)[0].status_code == 200
    for _ in range(2):
        refusal(h.recover(actor, wrong_phrase(actor.words))[0])

    assert h.recover(actor)[0].status_code == 200


def test_right_phrase_with_a_bad_proof_is_not_counted_nor_spent(h: Harness) -> None:
    actor = h.enrolled("alice")
    assert actor.words is not None
    before = h.record(actor.client_id)
    new = crypto.Opening.generate()
    bad_proofs = {
        "other-secret": actor.recover_body(crypto.Opening.generate(), actor.words),
        "other-client": Actor(h.cid("mallory")).recover_body(new, actor.words),
        "rotation-transcript": {
            **actor.recover_body(new, actor.words),
            "newCommitmentProof": actor.rotate_body(new)["newCommitmentProof"],
        },
    }
    bad_proofs["other-secret"]["newCommitment"] = actor.recover_body(new, actor.words)[
        "newCommitment"
    ]
    path = f"/v1/clients/{actor.client_id}/recover"

    for body in bad_proofs.values():
        refusal(h.post(path, body))

    assert h.record(actor.client_id) == before
    assert h.recover(actor)[0].status_code == 200


def test_unknown_and_revoked_clients_get_the_same_401_after_the_same_work(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    hasher = CountingHasher(h.service.argon2._hasher)
    revoked = h.enrolled("revoked")
    assert revoked.words is not None
    assert h.revoke(revoked.client_id, **ADMIN).status_code == 204
    live = h.enrolled("live")
    assert live.words is not None
    monkeypatch.setattr(h.service.argon2, "_hasher", hasher)
    unknown = Actor(h.cid("unknown"))

    answers = [
        refusal(h.recover(unknown, new_phrase())[0]),
        refusal(h.recover(revoked, revoked.words)[0]),
        refusal(h.recover(live, wrong_phrase(live.words))[0]),
    ]

    assert answers[0] == answers[1] == answers[2]
    assert hasher.calls["verify"] == 3
    assert h.record(unknown.client_id) is None
    record = h.record(revoked.client_id)
    assert record is not None
    assert record.status is ClientStatus.REVOKED


def test_success_renews_the_phrase_and_ends_tokens_and_challenges(
    h: Harness,
) -> None:
    actor = h.enrolled("alice")
    assert actor.words is not None
    old_words = list(actor.words)
    old_opening = actor.opening
    token = h.login(actor)
    pending = h.challenge(actor).json()
    h.fail_login(actor)

    response, _ = h.recover(actor)

    assert response.status_code == 200
    assert response.json()["recoveryWords"] != old_words
    assert h.resource(token).status_code == 401
    record = h.record(actor.client_id)
    assert record is not None
    assert record.failed_attempts == 0
    assert (
        h.service.storage.take_challenge(pending["challengeId"], actor.client_id)
        is None
    )
    refusal(h.recover(actor, old_words)[0])
    # The old secret no longer logs in; the new one does.
    stale = Actor(actor.client_id, opening=old_opening)
    issued = h.challenge(stale).json()
    assert h.verify(stale, issued).status_code == 401
    assert h.resource(h.login(actor)).status_code == 200


def test_recovery_clears_lockouts_and_lifts_suspension(h: Harness) -> None:
    actor = h.enrolled("alice")
    for wait in (3600, 7200, 0):
        for _ in range(3):
            h.fail_login(actor)
        h.clock.advance(wait)
    record = h.record(actor.client_id)
    assert record is not None
    assert record.status is ClientStatus.SUSPENDED

    assert h.recover(actor)[0].status_code == 200

    record = h.record(actor.client_id)
    assert record is not None
    assert record.status is ClientStatus.ACTIVE
    assert (record.failed_attempts, record.lockout_streak) == (0, 0)
    h.login(actor)


# -- the Argon2 concurrency cap ----------------------------------------------------


class CountingHasher:
    """Wraps argon2's PasswordHasher: how many calls, how many at once."""

    def __init__(self, real: argon2.PasswordHasher, delay: float = 0.0) -> None:
        self.real = real
        self.delay = delay
        self.calls: Counter[str] = Counter()
        self.running = 0
        self.peak = 0
        self._lock = threading.Lock()

    def _run(self, name: str, *args: str) -> Any:
        with self._lock:
            self.calls[name] += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            time.sleep(self.delay)
            return getattr(self.real, name)(*args)
        finally:
            with self._lock:
                self.running -= 1

    def hash(self, phrase: str) -> str:
        return str(self._run("hash", phrase))

    def verify(self, stored: str, phrase: str) -> bool:
        return bool(self._run("verify", stored, phrase))


@pytest.fixture
def flood_target(tmp_path: Path) -> Iterator[Harness]:
    events: list[AuditEvent] = []
    for h in harness_for(
        "memory",
        tmp_path,
        argon2_memory_kib=16 * 1024,
        argon2_concurrency=2,
        argon2_queue=2,
        storage_threads=32,
        audit_hook=events.append,
    ):
        h.events = events  # type: ignore[attr-defined]
        yield h


def flood(h: Harness, requests: list[tuple[str, dict[str, Any]]]) -> Counter[int]:
    def send(item: tuple[str, dict[str, Any]]) -> int:
        path, body = item
        with TestClient(h.app, client=(f"192.0.2.{secrets.randbelow(250)}", 1)) as c:
            return c.post(path, json=body).status_code

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return Counter(pool.map(send, requests))


def test_a_flood_of_argon2_work_is_capped(
    flood_target: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = flood_target
    hasher = CountingHasher(h.service.argon2._hasher, delay=0.05)
    monkeypatch.setattr(h.service.argon2, "_hasher", hasher)
    peak_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    enrollments = [
        ("/v1/clients", Actor(h.cid(f"flood{n}")).enroll_body()) for n in range(24)
    ]
    recoveries = [
        (
            f"/v1/clients/{h.cid(f'ghost{n}')}/recover",
            Actor(h.cid(f"ghost{n}")).recover_body(
                crypto.Opening.generate(), new_phrase()
            ),
        )
        for n in range(24)
    ]

    enrolled = flood(h, enrollments)
    hashes_made = hasher.calls["hash"]
    recovered = flood(h, recoveries)

    assert set(enrolled) <= {201, 429} and enrolled[429] > 0 and enrolled[201] > 0
    assert set(recovered) <= {401, 429} and recovered[429] > 0
    assert recovered[401] > 0
    # Never more than the cap at work, so Argon2 memory is bounded by
    # cap x m. The process's peak RSS also counts allocator slack, so it is
    # only held to half of what 24 hashes at once would take.
    assert hasher.peak <= 2
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before_kib
    assert grown_kib < 24 * 16 * 1024 // 2
    # The ones turned away did no Argon2 work and left no client behind.
    assert hashes_made == enrolled[201]
    assert hasher.calls["verify"] == recovered[401]
    stored = [h.record(h.cid(f"flood{n}")) for n in range(24)]
    assert sum(record is not None for record in stored) == enrolled[201]
    # Each call turned away is audited.
    events: list[AuditEvent] = h.events  # type: ignore[attr-defined]
    busy = [e for e in events if e.kind == audit.RATE_LIMITED]
    assert len(busy) == enrolled[429] + recovered[429]
    assert {e.outcome for e in busy} == {"argon2-busy"}


def test_a_429_from_the_cap_carries_retry_after(
    flood_target: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = flood_target
    hasher = CountingHasher(h.service.argon2._hasher, delay=0.2)
    monkeypatch.setattr(h.service.argon2, "_hasher", hasher)
    answers: list[Any] = []
    lock = threading.Lock()

    def send(n: int) -> None:
        actor = Actor(h.cid(f"late{n}"))
        with TestClient(h.app) as client:
            response = client.post("/v1/clients", json=actor.enroll_body())
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    refused = [a for a in answers if a.status_code == 429]
    assert refused
    for answer in refused:
        assert answer.json()["type"] == "urn:2fapi:error:rate-limited"
        assert int(answer.headers["retry-after"]) >= 1
