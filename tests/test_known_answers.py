"""The protocol's known-answer vectors (tests/vectors/) against the package.

Every /v1/verify case of proofs.json runs on both adapters with its state
seeded in storage; the proof-of-possession cases go through enrollment; the
transcripts, commitments, encodings and generators are checked byte for byte
against :mod:`twofapi_middleware.crypto`; and a spy shows that the verify
paths make the same Ristretto255 and transcript-hash calls.

The vectors were made against the reference server, which answers every
refusal with 401. Where PROTOCOL.md makes a refusal a 400 (a proof of the
wrong length, the wrong tag), PROTOCOL.md wins, and the tests say so.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import struct
import types
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
import rbcl

from helpers import (
    Api,
    assert_problem,
    auth_proof,
    enroll,
    issue_challenge,
    load_vectors,
    verify_body,
)
from twofapi_middleware import crypto
from twofapi_middleware.constants import (
    AUTH_TAG,
    BASEPOINT_G,
    CHALLENGE_TTL_SECONDS,
    GENERATOR_H,
    GENERATOR_H_SEED,
    GROUP_ORDER,
    IDENTITY_POINT,
    NONCE_BYTES,
    POINT_BYTES,
    PROOF_BYTES,
    RECOVERY_WORDS_ISSUED,
    TRANSCRIPT_HASH_PREFIX,
)
from twofapi_middleware.models import Challenge, ClientRecord, ClientStatus
from twofapi_middleware.storage.memory import MemoryStorage
from twofapi_middleware.wire import encode_b64

Case = Mapping[str, Any]

PROOFS = load_vectors("proofs.json")
PROOF_CASES: list[Case] = [*PROOFS["valid"], *PROOFS["invalid"]]
POP_CASES: list[Case] = load_vectors("enrollment_pop.json")["cases"]
TRANSCRIPTS: list[Case] = load_vectors("transcripts.json")["cases"]
COMMITMENTS: list[Case] = load_vectors("commitments.json")["cases"]
ENCODINGS = load_vectors("encodings.json")
GENERATORS = load_vectors("generators.json")

CHALLENGE_ID = "known-answer-challenge"
# One earlier failure on record: a counted refusal must make it exactly two
# (below the lockout threshold of three), a success must clear it.
PRIOR_FAILURES = 1


def case_ids(cases: list[Case], key: str = "kind") -> list[str]:
    return [f"{index}-{case[key]}" for index, case in enumerate(cases)]


def lp(data: bytes) -> bytes:
    """LP(x) of PROTOCOL.md section 1: a 4-byte big-endian length, then x."""
    return struct.pack(">I", len(data)) + data


def opening_of(prover: Mapping[str, str]) -> crypto.Opening:
    return crypto.Opening(bytes.fromhex(prover["s"]), bytes.fromhex(prover["r"]))


def failures_of(api: Api, client_id: str) -> int:
    record = api.storage.get_client(client_id)
    assert record is not None, f"{client_id} is gone from storage"
    return record.failed_attempts


# -- proofs.json through POST /v1/verify ----------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What PROTOCOL.md's verify table says one request must do."""

    status: int
    code: str | None  # the problem type's code; None for a 200
    field: str | None  # the field a validation-failed names
    spent: bool  # whether the stored challenge is gone afterwards
    failures: int  # the client's failed_attempts afterwards


def expected_outcome(case: Case) -> Outcome:
    proof = bytes.fromhex(case["proof"])
    assert len(proof) == case["proofLength"]
    unchanged = PRIOR_FAILURES
    # PROTOCOL.md wins over the vector here: the reference answered 401, but
    # a proof of the wrong length is syntax (verify step 1), a 400 that
    # leaves the challenge pending and counts nothing.
    if len(proof) != PROOF_BYTES:
        assert case["expected"] == "reject"
        return Outcome(400, "validation-failed", "proof", False, unchanged)
    # Likewise the wrong domainSeparationTag: a 400 by PROTOCOL.md, not the
    # vector's 401, with the challenge pending and nothing counted.
    if case["domainSeparationTag"] != AUTH_TAG:
        assert case["expected"] == "reject"
        return Outcome(
            400, "validation-failed", "domainSeparationTag", False, unchanged
        )
    if case["expected"] == "accept":
        # A success clears the consecutive-failure count.
        return Outcome(200, None, None, True, 0)
    assert case["expected"] == "reject"
    # Another client's challenge stays untouched (step 2); any later refusal
    # spends it.
    owned = case["challengeClientIdentifier"] == case["clientIdentifier"]
    counted = PRIOR_FAILURES + 1 if case["failedAttemptRecorded"] else unchanged
    return Outcome(401, "verification-refused", None, owned, counted)


def seed(api: Api, case: Case) -> None:
    """The vector's stored state: its client(s) and one live challenge."""
    now = api.clock()
    owners = dict.fromkeys(
        (case["clientIdentifier"], case["challengeClientIdentifier"])
    )
    for client_id in owners:
        api.storage.add_client(
            ClientRecord(
                client_id=client_id,
                reference_id=f"reference-{client_id}",
                commitment=bytes.fromhex(case["commitment"]),
                commitment_version=1,
                status=ClientStatus(case["clientStatus"]),
                recovery_hash="not-used-by-verify",
                created_at=now,
                updated_at=now,
                failed_attempts=PRIOR_FAILURES,
            )
        )
    nonce = bytes.fromhex(case["nonce"])
    assert len(nonce) == NONCE_BYTES
    api.storage.put_challenge(
        Challenge(
            challenge_id=CHALLENGE_ID,
            client_id=case["challengeClientIdentifier"],
            nonce=nonce,
            channel_binding=bytes.fromhex(case["challengeChannelBinding"]),
            commitment_version=1,
            expires_at=now + CHALLENGE_TTL_SECONDS,
        ),
        now,
    )


def verify_request(case: Case) -> dict[str, str]:
    body = {
        "clientIdentifier": case["clientIdentifier"],
        "challengeId": CHALLENGE_ID,
        "proof": encode_b64(bytes.fromhex(case["proof"])),
        "channelBinding": encode_b64(bytes.fromhex(case["channelBinding"])),
        "domainSeparationTag": case["domainSeparationTag"],
    }
    # The vector's own base64 spelling agrees with its hex.
    assert body["proof"] == case["proofBase64"]
    assert body["channelBinding"] == case["channelBindingBase64"]
    return body


def run_proof_case(api: Api, case: Case) -> int:
    """Seed, verify, and check status, type, challenge and count; the status."""
    expected = expected_outcome(case)
    seed(api, case)
    owner = case["challengeClientIdentifier"]

    reply = api.post("/v1/verify", verify_request(case))

    if expected.code is None:
        assert reply.status == expected.status, reply
        assert reply.json["tokenType"] == "Bearer", reply
    else:
        assert_problem(reply, expected.status, expected.code, expected.field)
    pending = api.storage.take_challenge(CHALLENGE_ID, owner)
    assert (pending is None) == expected.spent, (
        "challenge spent" if pending is None else "challenge left pending"
    )
    assert failures_of(api, case["clientIdentifier"]) == expected.failures
    if owner != case["clientIdentifier"]:
        assert failures_of(api, owner) == PRIOR_FAILURES, owner
    return reply.status


def test_every_proof_vector_gets_the_verdict_of_the_verify_table(
    make_api: Callable[..., Api],
) -> None:
    ran = accepted = refused = 0
    disagreements: list[str] = []
    for case in PROOF_CASES:
        api = make_api()
        try:
            status = run_proof_case(api, case)
        except AssertionError as error:
            disagreements.append(f"{case['kind']} ({case['description']}): {error}")
        else:
            accepted += status == 200
            refused += status != 200
        ran += 1

    assert disagreements == []
    assert ran == len(PROOFS["valid"]) + len(PROOFS["invalid"])
    assert accepted == len(PROOFS["valid"])
    assert refused == len(PROOFS["invalid"])


def test_the_proof_vectors_cover_every_row_they_claim() -> None:
    # The loop above is only as good as its input: the file must hold both
    # verdicts, both counted and uncounted refusals, and the two cases where
    # PROTOCOL.md overrides the vector's 401.
    assert PROOFS["valid"]
    assert {case["expected"] for case in PROOFS["valid"]} == {"accept"}
    assert {case["expected"] for case in PROOFS["invalid"]} == {"reject"}
    recorded = {case["failedAttemptRecorded"] for case in PROOFS["invalid"]}
    assert recorded == {True, False}
    statuses = Counter(expected_outcome(case).status for case in PROOFS["invalid"])
    assert statuses.keys() == {400, 401}


# -- enrollment_pop.json through POST /v1/clients --------------------------------


def expected_enrollment(case: Case) -> tuple[int, str | None, str | None]:
    """Status, problem code and named field PROTOCOL.md gives the case."""
    commitment = bytes.fromhex(case["commitment"])
    pop = bytes.fromhex(case["proofOfPossession"])
    assert len(pop) == case["proofLength"]
    if len(commitment) != POINT_BYTES:
        return 400, "validation-failed", "commitment"
    # PROTOCOL.md wins over the vector: a proof that is not 96 bytes is a
    # 400 validation-failed (a decoded length is syntax), not a refusal.
    if len(pop) != PROOF_BYTES:
        assert case["expected"] == "reject"
        return 400, "validation-failed", "proofOfPossession"
    if case["expected"] == "accept":
        return 201, None, None
    assert case["expected"] == "reject"
    # A bad commitment (identity, non-canonical) or a bad proof: one 409.
    return 409, "enrollment-refused", None


@pytest.mark.parametrize("case", POP_CASES, ids=case_ids(POP_CASES))
def test_each_proof_of_possession_vector_enrolls_or_stores_nothing(
    api: Api, case: Case
) -> None:
    client_id = case["clientIdentifier"]
    status, code, field = expected_enrollment(case)
    body = {
        "clientIdentifier": client_id,
        "commitment": encode_b64(bytes.fromhex(case["commitment"])),
        "proofOfPossession": encode_b64(bytes.fromhex(case["proofOfPossession"])),
    }
    assert body["commitment"] == case["commitmentBase64"]
    assert body["proofOfPossession"] == case["proofOfPossessionBase64"]

    reply = api.post("/v1/clients", body)

    if code is None:
        assert reply.status == status, reply
        assert reply.headers["location"] == f"/v1/clients/{client_id}"
        assert reply.json["clientIdentifier"] == client_id
        assert len(reply.json["recoveryWords"]) == RECOVERY_WORDS_ISSUED
        record = api.storage.get_client(client_id)
        assert record is not None
        assert record.commitment == bytes.fromhex(case["commitment"])
        assert record.status is ClientStatus.ACTIVE
        assert record.commitment_version == 1
    else:
        assert_problem(reply, status, code, field)
        storage = api.storage
        assert isinstance(storage, MemoryStorage)
        assert storage.get_client(client_id) is None
        assert storage.client_count() == 0


def test_the_pop_vectors_hold_both_verdicts() -> None:
    verdicts = Counter(expected_enrollment(case)[0] for case in POP_CASES)
    assert verdicts[201] > 0
    assert verdicts[409] > 0
    assert sum(verdicts.values()) == len(POP_CASES)


# -- transcripts, challenges and proofs, byte for byte ----------------------------


@pytest.mark.parametrize("case", TRANSCRIPTS, ids=case_ids(TRANSCRIPTS, "index"))
def test_auth_transcripts_and_challenge_scalars_match_the_vectors(case: Case) -> None:
    transcript = bytes.fromhex(case["transcript"])
    assert len(transcript) == case["transcriptLength"]
    assert bytes.fromhex(case["G"]) == BASEPOINT_G
    assert bytes.fromhex(case["H"]) == GENERATOR_H

    built = crypto.auth_transcript(
        bytes.fromhex(case["commitment"]),
        bytes.fromhex(case["announcement"]),
        case["clientIdentifier"],
        bytes.fromhex(case["nonce"]),
        bytes.fromhex(case["channelBinding"]),
    )
    if case["tag"] == AUTH_TAG:
        assert built.hex() == case["transcript"]
    else:
        # The package only builds transcripts under its own tag; apart from
        # the leading LP(tag), the vector's transcript is the same bytes.
        ours, theirs = lp(AUTH_TAG.encode()), lp(case["tag"].encode())
        assert transcript.startswith(theirs)
        assert built.startswith(ours)
        assert built[len(ours) :] == transcript[len(theirs) :]
        assert built != transcript

    digest = hashlib.sha512(TRANSCRIPT_HASH_PREFIX + transcript).hexdigest()
    assert digest == case["sha512OfDstAndTranscript"]
    assert crypto.challenge_scalar(transcript).hex() == case["challengeScalar"]


SERVER_TRANSCRIPTS = [
    case
    for case in PROOF_CASES
    if case["serverTranscript"] is not None and case["domainSeparationTag"] == AUTH_TAG
]


@pytest.mark.parametrize("case", SERVER_TRANSCRIPTS, ids=case_ids(SERVER_TRANSCRIPTS))
def test_the_server_transcript_of_each_proof_vector_matches(case: Case) -> None:
    proof = bytes.fromhex(case["proof"])
    built = crypto.auth_transcript(
        bytes.fromhex(case["commitment"]),
        proof[:POINT_BYTES],
        case["clientIdentifier"],
        bytes.fromhex(case["nonce"]),
        bytes.fromhex(case["channelBinding"]),
    )
    assert built.hex() == case["serverTranscript"]
    assert crypto.challenge_scalar(built).hex() == case["serverChallenge"]


@pytest.mark.parametrize("case", PROOFS["valid"], ids=case_ids(PROOFS["valid"]))
def test_the_prover_rebuilds_each_valid_auth_proof(case: Case) -> None:
    prover = case["prover"]
    assert prover["tag"] == AUTH_TAG
    assert prover["challenge"] == case["serverChallenge"]

    def transcript(commitment: bytes, announcement: bytes) -> bytes:
        return crypto.auth_transcript(
            commitment,
            announcement,
            case["clientIdentifier"],
            bytes.fromhex(case["nonce"]),
            bytes.fromhex(case["channelBinding"]),
        )

    opening = opening_of(prover)
    assert crypto.commit(opening).hex() == case["commitment"]
    proof = crypto.prove(
        opening,
        transcript,
        k_s=bytes.fromhex(prover["k_s"]),
        k_r=bytes.fromhex(prover["k_r"]),
    )
    assert proof.hex() == case["proof"]


# Only the valid cases carry the transcript (``challengeInput``) they hash.
VALID_POPS = [case for case in POP_CASES if case["expected"] == "accept"]


@pytest.mark.parametrize("case", VALID_POPS, ids=case_ids(VALID_POPS))
def test_pop_transcripts_match_the_vectors(case: Case) -> None:
    pop = bytes.fromhex(case["proofOfPossession"])
    built = crypto.pop_transcript(
        bytes.fromhex(case["commitment"]), pop[:POINT_BYTES], case["clientIdentifier"]
    )
    assert built.hex() == case["challengeInput"]


@pytest.mark.parametrize("case", VALID_POPS, ids=case_ids(VALID_POPS))
def test_the_prover_rebuilds_each_valid_proof_of_possession(case: Case) -> None:
    prover = case["prover"]
    challenge = crypto.challenge_scalar(bytes.fromhex(case["challengeInput"]))
    assert challenge.hex() == prover["challenge"]

    opening = opening_of(prover)
    assert crypto.commit(opening).hex() == case["commitment"]
    proof = crypto.prove(
        opening,
        partial(crypto.pop_transcript, client_id=case["clientIdentifier"]),
        k_s=bytes.fromhex(prover["k_s"]),
        k_r=bytes.fromhex(prover["k_r"]),
    )
    assert proof.hex() == case["proofOfPossession"]


# -- commitments, encodings, generators ---------------------------------------------


@pytest.mark.parametrize("case", COMMITMENTS, ids=case_ids(COMMITMENTS, "index"))
def test_commitments_match_the_vectors(case: Case) -> None:
    commitment = crypto.commit(opening_of(case))

    assert commitment.hex() == case["commitment"]
    assert encode_b64(commitment) == case["commitmentBase64"]
    assert (commitment == IDENTITY_POINT) is case["isIdentity"]
    assert crypto.is_acceptable_point(commitment) is case["acceptableForEnrollment"]


POINTS: list[Case] = ENCODINGS["points"]
SCALARS: list[Case] = ENCODINGS["scalars"]


@pytest.mark.parametrize("case", POINTS, ids=[case["label"] for case in POINTS])
def test_point_encodings_are_classified_as_the_vectors_say(case: Case) -> None:
    data = bytes.fromhex(case["bytes"])
    assert len(data) == case["length"]

    assert crypto.is_canonical_point(data) is case["isCanonicalPoint"]
    assert (data == IDENTITY_POINT) is case["isIdentityPoint"]
    acceptable = case["acceptableAsCommitmentOrAnnouncement"]
    assert crypto.is_acceptable_point(data) is acceptable


@pytest.mark.parametrize("case", SCALARS, ids=[case["label"] for case in SCALARS])
def test_scalar_encodings_are_classified_as_the_vectors_say(case: Case) -> None:
    data = bytes.fromhex(case["bytes"])
    assert len(data) == case["length"]

    assert crypto.is_canonical_scalar(data) is case["isCanonicalScalar"]


def test_generators_and_group_order_match_the_vectors() -> None:
    g = bytes.fromhex(GENERATORS["G"])
    h = bytes.fromhex(GENERATORS["H"])
    one = (1).to_bytes(32, "little")
    zero = bytes(32)

    assert g == BASEPOINT_G
    assert h == GENERATOR_H
    assert bytes(rbcl.crypto_scalarmult_ristretto255_base(one)) == g
    seed_digest = hashlib.sha512(GENERATOR_H_SEED).hexdigest()
    assert seed_digest == GENERATORS["derivation"]["H_seed_sha512"]
    assert crypto.derive_generator_h() == h
    assert bytes.fromhex(GENERATORS["identity"]) == IDENTITY_POINT
    assert int(GENERATORS["groupOrderL"]) == GROUP_ORDER
    assert GROUP_ORDER.to_bytes(32, "little").hex() == GENERATORS["groupOrderLHexLE"]

    checks = GENERATORS["checks"]
    assert crypto.is_canonical_point(g) is checks["G_isCanonical"]
    assert crypto.is_canonical_point(h) is checks["H_isCanonical"]
    assert (crypto.commit(crypto.Opening(one, zero)) == g) is checks[
        "commit_1_0_equals_G"
    ]
    assert (crypto.commit(crypto.Opening(zero, one)) == h) is checks[
        "commit_0_1_equals_H"
    ]


# -- the same native work on every verify path ----------------------------------------

# Every Ristretto255 function crypto.py calls, read from its source so that a
# new call cannot escape the spy.
RISTRETTO_CALLS = sorted(
    set(re.findall(r"rbcl\.(crypto_\w*ristretto255\w*)", inspect.getsource(crypto)))
)
SHA512 = "hashlib.sha512"


def install_spy(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count crypto.py's Ristretto255 calls and its transcript hashes."""
    calls: Counter[str] = Counter()

    def counting(name: str, native: Callable[..., Any]) -> Callable[..., Any]:
        def spy(*args: Any) -> Any:
            calls[name] += 1
            return native(*args)

        return spy

    for name in RISTRETTO_CALLS:
        native = getattr(rbcl, name)
        monkeypatch.setattr(rbcl, name, counting(name, native))

    real_sha512 = hashlib.sha512

    def sha512(data: bytes = b"") -> Any:
        calls[SHA512] += 1
        return real_sha512(data)

    # Only crypto.py's view of hashlib: the token code is left alone.
    monkeypatch.setattr(crypto, "hashlib", types.SimpleNamespace(sha512=sha512))
    return calls


def test_the_spy_sees_every_ristretto_call_of_crypto() -> None:
    assert "crypto_scalarmult_ristretto255" in RISTRETTO_CALLS
    assert "crypto_core_ristretto255_is_valid_point" in RISTRETTO_CALLS
    assert "crypto_core_ristretto255_scalar_reduce" in RISTRETTO_CALLS
    # crypto.py looks its functions up on this very module at each call.
    assert vars(crypto)["rbcl"] is rbcl
    for name in RISTRETTO_CALLS:
        assert callable(getattr(rbcl, name)), name


Body = dict[str, Any]


def native_calls_per_verify_path(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Counter[str]]:
    """The native calls of one /v1/verify request on each path."""
    alice, _, _ = enroll(api, "alice")
    bob, _, _ = enroll(api, "bob")

    def missing_client() -> tuple[Body, int]:
        binding = bytes(range(32))
        proof = auth_proof(alice, "ghost", bytes(NONCE_BYTES), binding)
        body = {
            "clientIdentifier": "ghost",
            "challengeId": CHALLENGE_ID,
            "proof": encode_b64(proof),
            "channelBinding": encode_b64(binding),
            "domainSeparationTag": AUTH_TAG,
        }
        return body, 401

    def foreign_challenge() -> tuple[Body, int]:
        challenge, binding = issue_challenge(api, "alice")
        return verify_body(bob, "bob", challenge, binding), 401

    def failed_equation() -> tuple[Body, int]:
        challenge, binding = issue_challenge(api, "alice")
        return verify_body(bob, "alice", challenge, binding), 401

    def success() -> tuple[Body, int]:
        challenge, binding = issue_challenge(api, "alice")
        return verify_body(alice, "alice", challenge, binding), 200

    paths: dict[str, Callable[[], tuple[Body, int]]] = {
        "missing client": missing_client,
        "foreign challenge": foreign_challenge,
        "failed equation": failed_equation,
        "success": success,
    }
    calls = install_spy(monkeypatch)
    counts: dict[str, Counter[str]] = {}
    for name, build in paths.items():
        body, status = build()  # the prover's own work is not counted
        calls.clear()
        reply = api.post("/v1/verify", body)
        counts[name] = Counter(calls)
        assert reply.status == status, (name, reply)
        if name == "failed equation":
            assert failures_of(api, "alice") == 1  # it reached the equation

    # One transcript hash and the whole equation on the real check.
    real = counts["failed equation"]
    assert real[SHA512] == 1
    assert real["crypto_scalarmult_ristretto255"] == 2
    assert real["crypto_scalarmult_ristretto255_base_allow_scalar_zero"] == 1
    assert real["crypto_core_ristretto255_add"] == 1
    assert real["crypto_core_ristretto255_sub"] == 1
    return counts


def test_refusals_without_a_challenge_make_the_same_native_calls_as_a_real_check(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = native_calls_per_verify_path(api, monkeypatch)

    real = counts["failed equation"]
    assert counts["missing client"] == real
    assert counts["foreign challenge"] == real


def test_a_success_makes_the_same_native_calls_as_a_refusal(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = native_calls_per_verify_path(api, monkeypatch)

    assert counts["success"] == counts["failed equation"]
