"""The client's prover against the shared known-answer vectors, and properties.

Each valid vector proof is rebuilt from its ``prover`` values: the secrets
make the credential and the nonces ``k_s``, ``k_r`` are what ``crypto.prove``
draws. The lifecycle vectors carry no nonces; they follow from the proof,
``k = z - c*x mod L``, and rebuilding the announcement from them checks the
transcript as well.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from helpers import load_vectors
from twofapi_middleware import crypto
from twofapi_middleware.client import (
    Credential,
    authentication_proof,
    proof_of_possession,
    reactivation_proof,
    rotation_proofs,
)
from twofapi_middleware.constants import CLIENT_ID_PATTERN, GROUP_ORDER
from twofapi_middleware.crypto import Opening, Verdict, check_proof


def _vectors(name: str) -> Any:
    return load_vectors(name)


def _valid(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    chosen = [case for case in cases if case["kind"] == "valid"]
    assert chosen, "no valid vectors"
    return chosen


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [case["description"] for case in cases]


AUTH_CASES = _valid(_vectors("proofs.json")["valid"])
POP_CASES = _valid(_vectors("enrollment_pop.json")["cases"])
ROTATION_CASES = _valid(_vectors("lifecycle_proofs.json")["rotation"])
REACTIVATION_CASES = _valid(_vectors("lifecycle_proofs.json")["reactivation"])


def _credential(client_id: str, s: str, r: str) -> Credential:
    opening = Opening(bytes.fromhex(s), bytes.fromhex(r))
    return Credential(client_id, opening, crypto.commit(opening), b"first-factor")


@pytest.fixture
def nonces(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Scalars ``crypto.prove`` draws next, in order; all must be used."""
    queue: list[bytes] = []
    monkeypatch.setattr(crypto, "random_scalar", lambda: queue.pop(0))
    yield queue
    assert queue == [], "the prover drew fewer nonces than expected"


def _scalar(value: int) -> bytes:
    return (value % GROUP_ORDER).to_bytes(32, "little")


def _derived_nonces(
    opening: Opening, proof: bytes, transcript: crypto.TranscriptFn
) -> list[bytes]:
    """The k_s, k_r behind a valid proof: z - c*x (mod L)."""
    commitment = crypto.commit(opening)
    c = int.from_bytes(
        crypto.challenge_scalar(transcript(commitment, proof[:32])), "little"
    )
    z_s = int.from_bytes(proof[32:64], "little")
    z_r = int.from_bytes(proof[64:], "little")
    s = int.from_bytes(opening.s, "little")
    r = int.from_bytes(opening.r, "little")
    return [_scalar(z_s - c * s), _scalar(z_r - c * r)]


@pytest.mark.parametrize("case", AUTH_CASES, ids=_ids(AUTH_CASES))
def test_authentication_proof_reproduces_vector(
    case: dict[str, Any], nonces: list[bytes]
) -> None:
    prover = case["prover"]
    credential = _credential(case["clientIdentifier"], prover["s"], prover["r"])
    assert credential.commitment.hex() == case["commitment"]
    nonces += [bytes.fromhex(prover["k_s"]), bytes.fromhex(prover["k_r"])]

    proof = authentication_proof(
        credential,
        bytes.fromhex(case["nonce"]),
        bytes.fromhex(case["channelBinding"]),
    )

    assert proof.hex() == case["proof"]


@pytest.mark.parametrize("case", POP_CASES, ids=_ids(POP_CASES))
def test_proof_of_possession_reproduces_vector(
    case: dict[str, Any], nonces: list[bytes]
) -> None:
    prover = case["prover"]
    credential = _credential(case["clientIdentifier"], prover["s"], prover["r"])
    assert credential.commitment.hex() == case["commitment"]
    nonces += [bytes.fromhex(prover["k_s"]), bytes.fromhex(prover["k_r"])]

    assert proof_of_possession(credential).hex() == case["proofOfPossession"]


@pytest.mark.parametrize("case", ROTATION_CASES, ids=_ids(ROTATION_CASES))
def test_rotation_proofs_reproduce_vector(
    case: dict[str, Any], nonces: list[bytes]
) -> None:
    prover = case["prover"]
    current = _credential("rotating", prover["s"], prover["r"])
    new = _credential("rotating", prover["newS"], prover["newR"])
    assert current.commitment.hex() == case["currentCommitment"]
    assert new.commitment.hex() == case["newCommitment"]
    current_proof = bytes.fromhex(case["currentProof"])
    new_proof = bytes.fromhex(case["newCommitmentProof"])
    nonces += _derived_nonces(
        current.opening, current_proof, crypto.rotation_current_transcript
    )
    nonces += _derived_nonces(new.opening, new_proof, crypto.rotation_new_transcript)

    assert rotation_proofs(current, new) == (current_proof, new_proof)


@pytest.mark.parametrize("case", REACTIVATION_CASES, ids=_ids(REACTIVATION_CASES))
def test_reactivation_proof_reproduces_vector(
    case: dict[str, Any], nonces: list[bytes]
) -> None:
    prover = case["prover"]
    new = _credential("returning", prover["s"], prover["r"])
    assert new.commitment.hex() == case["newCommitment"]
    proof = bytes.fromhex(case["newCommitmentProof"])
    nonces += _derived_nonces(new.opening, proof, crypto.reactivation_transcript)

    assert reactivation_proof(new) == proof


def test_fresh_proofs_use_fresh_nonces() -> None:
    credential = Credential.generate("alice")
    nonce, binding = bytes(24), bytes(32)

    first = authentication_proof(credential, nonce, binding)
    second = authentication_proof(credential, nonce, binding)

    assert first[:32] != second[:32]


# -- properties --------------------------------------------------------------

scalars = st.integers(min_value=1, max_value=GROUP_ORDER - 1).map(_scalar)
client_ids = st.from_regex(CLIENT_ID_PATTERN, fullmatch=True)


@st.composite
def credentials(draw: st.DrawFn) -> Credential:
    opening = Opening(draw(scalars), draw(scalars))
    return Credential(
        draw(client_ids),
        opening,
        crypto.commit(opening),
        draw(st.binary(min_size=1, max_size=64)),
    )


def _flip(proof: bytes, bit: int) -> bytes:
    index, shift = divmod(bit % (len(proof) * 8), 8)
    return proof[:index] + bytes([proof[index] ^ (1 << shift)]) + proof[index + 1 :]


@settings(max_examples=40, deadline=None)
@given(
    credential=credentials(),
    nonce=st.binary(min_size=24, max_size=24),
    binding=st.sampled_from([32, 48]).flatmap(
        lambda size: st.binary(min_size=size, max_size=size)
    ),
    bit=st.integers(min_value=0),
)
def test_authentication_proofs_verify_and_tampered_ones_do_not(
    credential: Credential, nonce: bytes, binding: bytes, bit: int
) -> None:
    proof = authentication_proof(credential, nonce, binding)

    def transcript(client_id: str, nonce: bytes) -> crypto.TranscriptFn:
        return lambda c, a: crypto.auth_transcript(c, a, client_id, nonce, binding)

    right = transcript(credential.client_id, nonce)
    assert check_proof(credential.commitment, proof, right) is Verdict.VALID
    assert check_proof(credential.commitment, _flip(proof, bit), right) is not (
        Verdict.VALID
    )
    other_nonce = _flip(nonce, bit)
    wrong = transcript(credential.client_id, other_nonce)
    assert check_proof(credential.commitment, proof, wrong) is not Verdict.VALID
    wrong = transcript(credential.client_id + "x", nonce)
    assert check_proof(credential.commitment, proof, wrong) is not Verdict.VALID


@settings(max_examples=25, deadline=None)
@given(credential=credentials(), other=credentials(), bit=st.integers(min_value=0))
def test_lifecycle_proofs_verify_and_tampered_ones_do_not(
    credential: Credential, other: Credential, bit: int
) -> None:
    assume(other.commitment != credential.commitment)
    client_id = credential.client_id

    def pop(c: bytes, a: bytes) -> bytes:
        return crypto.pop_transcript(c, a, client_id)

    current_proof, new_proof = rotation_proofs(other, credential)
    made = [
        (proof_of_possession(credential), pop),
        (new_proof, crypto.rotation_new_transcript),
        (reactivation_proof(credential), crypto.reactivation_transcript),
    ]
    for proof, transcript in made:
        assert check_proof(credential.commitment, proof, transcript) is Verdict.VALID
        tampered = _flip(proof, bit)
        assert check_proof(credential.commitment, tampered, transcript) is not (
            Verdict.VALID
        )
    # A proof is bound to its transcript: no tag stands in for another.
    for proof, transcript in made:
        for _, foreign in made:
            if foreign is not transcript:
                verdict = check_proof(credential.commitment, proof, foreign)
                assert verdict is not Verdict.VALID
    current = crypto.rotation_current_transcript
    assert check_proof(other.commitment, current_proof, current) is Verdict.VALID
    assert check_proof(credential.commitment, current_proof, current) is not (
        Verdict.VALID
    )
