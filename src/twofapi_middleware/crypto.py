"""Ristretto255 Sigma proofs of knowledge of a Pedersen commitment's opening.

Byte-compatible with PROTOCOL.md sections 2 to 4. The native work is done by
libsodium through ``rbcl``; this module adds the checks libsodium leaves to
its caller (the top bit of a point, canonical scalars) and never adds or
compares a point that has not passed them.

Verification computes ``z_s*G + z_r*H - c*C`` and compares its canonical
encoding with ``A`` in constant time. Equal encodings mean ``A`` is that
group element in canonical form, so a valid proof costs exactly one
base-point multiplication, two variable-base ones, one addition and one
subtraction. Only a refused proof pays for classifying ``A``, and every
refused proof pays the same.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import rbcl

from .constants import (
    AUTH_TAG,
    BASEPOINT_G,
    GENERATOR_H,
    GENERATOR_H_SEED,
    GROUP_ORDER,
    IDENTITY_POINT,
    POINT_BYTES,
    POP_TAG,
    PROOF_BYTES,
    REACTIVATION_TAG,
    ROTATION_CURRENT_TAG,
    ROTATION_NEW_TAG,
    SCALAR_BYTES,
    TRANSCRIPT_HASH_PREFIX,
)

TranscriptFn = Callable[[bytes, bytes], bytes]
"""Builds a transcript from (commitment, announcement)."""

_AUTH_TAG_BYTES = AUTH_TAG.encode("ascii")
_ZERO_SCALAR = bytes(SCALAR_BYTES)

# Stands in for a missing client so that refusals cost the same native work.
DUMMY_COMMITMENT = rbcl.crypto_scalarmult_ristretto255_base(
    hashlib.sha512(b"2FApi-dummy-commitment").digest()[:31] + b"\x00"
)


class Verdict(Enum):
    """Outcome of a proof check, with what the lockout policy needs to know."""

    VALID = "valid"
    MALFORMED = "malformed"  # bad encoding: refused, not a counted failure
    WRONG = "wrong"  # well-formed but false: a counted failure


def is_canonical_scalar(data: bytes) -> bool:
    """True for a 32-byte little-endian integer below the group order."""
    return len(data) == SCALAR_BYTES and int.from_bytes(data, "little") < GROUP_ORDER


def is_canonical_point(data: bytes) -> bool:
    """True for a canonical Ristretto255 encoding (the identity included)."""
    return (
        len(data) == POINT_BYTES
        and not data[31] & 0x80
        and bool(rbcl.crypto_core_ristretto255_is_valid_point(data))
    )


def is_acceptable_point(data: bytes) -> bool:
    """A canonical encoding that is not the identity: a usable C or A."""
    return data != IDENTITY_POINT and is_canonical_point(data)


def derive_generator_h() -> bytes:
    """Recompute H from its seed (PROTOCOL.md section 2)."""
    digest = hashlib.sha512(GENERATOR_H_SEED).digest()
    return bytes(rbcl.crypto_core_ristretto255_from_hash(digest))


def challenge_scalar(transcript: bytes) -> bytes:
    """c = SHA-512(prefix || transcript) reduced mod L, 32 bytes LE."""
    digest = hashlib.sha512(TRANSCRIPT_HASH_PREFIX + transcript).digest()
    return bytes(rbcl.crypto_core_ristretto255_scalar_reduce(digest))


def _lp(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


# LP(tag) LP(G) LP(H): the same for every authentication proof.
_AUTH_TRANSCRIPT_HEAD = _lp(_AUTH_TAG_BYTES) + _lp(BASEPOINT_G) + _lp(GENERATOR_H)


def auth_transcript(
    commitment: bytes,
    announcement: bytes,
    client_id: str,
    nonce: bytes,
    channel_binding: bytes,
) -> bytes:
    """The length-prefixed transcript of ``/v1/verify`` proofs."""
    return b"".join(
        (
            _AUTH_TRANSCRIPT_HEAD,
            _lp(commitment),
            _lp(announcement),
            _lp(client_id.encode("utf-8")),
            _lp(nonce),
            _lp(channel_binding),
        )
    )


def pop_transcript(commitment: bytes, announcement: bytes, client_id: str) -> bytes:
    """Proof of possession (enrollment, recovery): raw concatenation."""
    return (
        POP_TAG
        + BASEPOINT_G
        + GENERATOR_H
        + commitment
        + announcement
        + client_id.encode("utf-8")
    )


def raw_transcript(tag: bytes, commitment: bytes, announcement: bytes) -> bytes:
    """Rotation and reactivation transcripts: tag G H C A, raw."""
    return tag + BASEPOINT_G + GENERATOR_H + commitment + announcement


def rotation_current_transcript(commitment: bytes, announcement: bytes) -> bytes:
    return raw_transcript(ROTATION_CURRENT_TAG, commitment, announcement)


def rotation_new_transcript(commitment: bytes, announcement: bytes) -> bytes:
    return raw_transcript(ROTATION_NEW_TAG, commitment, announcement)


def reactivation_transcript(commitment: bytes, announcement: bytes) -> bytes:
    return raw_transcript(REACTIVATION_TAG, commitment, announcement)


def _mul_h(scalar: bytes) -> bytes:
    try:
        return bytes(rbcl.crypto_scalarmult_ristretto255(scalar, GENERATOR_H))
    except RuntimeError:
        # Only a zero scalar gets here (H is valid, scalars are canonical):
        # 0*H is the identity.
        return IDENTITY_POINT


def _equation(
    commitment: bytes, announcement: bytes, c: bytes, z_s: bytes, z_r: bytes
) -> tuple[bool, bool]:
    """Whether ``z_s*G + z_r*H - A == c*C``, and whether A and C decoded.

    Checking ``left - A`` against ``c*C``, rather than ``left - c*C``
    against A, has libsodium decode A within the subtraction, so whether A
    is a point comes with the equation instead of from a call of its own:
    every path, success or refusal, makes the same native calls.
    """
    s_term = bytes(rbcl.crypto_scalarmult_ristretto255_base_allow_scalar_zero(z_s))
    r_term = _mul_h(z_r)
    c_usable = True
    try:
        c_term = bytes(rbcl.crypto_scalarmult_ristretto255(c, commitment))
    except RuntimeError:
        # An invalid commitment, or c = 0: keep the work the same, never pass.
        c_term = BASEPOINT_G
        c_usable = False
    left = bytes(rbcl.crypto_core_ristretto255_add(s_term, r_term))
    try:
        difference = bytes(rbcl.crypto_core_ristretto255_sub(left, announcement))
    except RuntimeError:
        difference = IDENTITY_POINT
        a_decoded = False
    else:
        # libsodium leaves the result untouched, all zeros (the identity),
        # when A does not decode; a real identity means left == A, and left
        # is a canonical encoding, so it differs from any A that failed.
        a_decoded = difference != IDENTITY_POINT or hmac.compare_digest(
            left, announcement
        )
    holds = hmac.compare_digest(difference, c_term) and c_usable and a_decoded
    return holds, a_decoded and c_usable


def check_proof(
    commitment: bytes, proof: bytes, transcript_tail: TranscriptFn
) -> Verdict:
    """Check a 96-byte proof ``A || z_s || z_r`` against ``commitment``.

    ``transcript_tail`` builds the transcript from (C, A); the caller binds
    it to the right tag, identifier, nonce and channel binding.
    """
    if len(proof) != PROOF_BYTES:
        return Verdict.MALFORMED
    announcement = proof[:32]
    z_s = proof[32:64]
    z_r = proof[64:]
    sized = len(commitment) == POINT_BYTES
    if not sized:
        # A stored commitment of another size (enrolled while proofs were not
        # checked) can never pass: do the same work on the dummy instead.
        commitment = DUMMY_COMMITMENT

    well_formed = (
        sized
        and announcement != IDENTITY_POINT
        and not announcement[31] & 0x80
        and is_canonical_scalar(z_s)
        and is_canonical_scalar(z_r)
        and commitment != IDENTITY_POINT
        and not commitment[31] & 0x80
    )
    if not well_formed:
        # Same native work as a real check, on values that cannot pass.
        z_s = z_r = _ZERO_SCALAR
    c = challenge_scalar(transcript_tail(commitment, announcement))
    c_is_zero = c == _ZERO_SCALAR

    holds, points_ok = _equation(commitment, announcement, c, z_s, z_r)
    if holds and well_formed and not c_is_zero:
        return Verdict.VALID
    if well_formed and points_ok and not c_is_zero:
        return Verdict.WRONG
    return Verdict.MALFORMED


@dataclass(frozen=True, slots=True, repr=False)
class Opening:
    """The two secret scalars behind a commitment: C = s*G + r*H."""

    s: bytes
    r: bytes

    def __post_init__(self) -> None:
        if not (is_canonical_scalar(self.s) and is_canonical_scalar(self.r)):
            raise ValueError("secret scalars must be canonical 32-byte scalars")

    def __repr__(self) -> str:
        return "Opening(<redacted>)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Opening):
            return NotImplemented
        return hmac.compare_digest(self.s + self.r, other.s + other.r)

    def __hash__(self) -> int:
        return hash(commit(self))

    @classmethod
    def generate(cls) -> Opening:
        """Fresh random secrets; neither is zero."""
        while True:
            s = random_scalar()
            r = random_scalar()
            if s != _ZERO_SCALAR and r != _ZERO_SCALAR:
                return cls(s, r)


def random_scalar() -> bytes:
    """A uniform scalar, from 64 random bytes reduced mod L."""
    return bytes(rbcl.crypto_core_ristretto255_scalar_reduce(secrets.token_bytes(64)))


def commit(opening: Opening) -> bytes:
    """C = s*G + r*H."""
    s_term = rbcl.crypto_scalarmult_ristretto255_base_allow_scalar_zero(opening.s)
    return bytes(rbcl.crypto_core_ristretto255_add(s_term, _mul_h(opening.r)))


def prove(
    opening: Opening,
    transcript_tail: TranscriptFn,
    *,
    k_s: bytes | None = None,
    k_r: bytes | None = None,
) -> bytes:
    """Make a proof ``A || z_s || z_r`` for the transcript built from (C, A).

    ``k_s`` and ``k_r`` are the prover's nonces; leave them out outside of
    known-answer tests, where fresh random ones are drawn.
    """
    k_s = k_s if k_s is not None else random_scalar()
    k_r = k_r if k_r is not None else random_scalar()
    commitment = commit(opening)
    announcement = commit(Opening(k_s, k_r))
    c = challenge_scalar(transcript_tail(commitment, announcement))
    z_s = rbcl.crypto_core_ristretto255_scalar_add(
        k_s, rbcl.crypto_core_ristretto255_scalar_mul(c, opening.s)
    )
    z_r = rbcl.crypto_core_ristretto255_scalar_add(
        k_r, rbcl.crypto_core_ristretto255_scalar_mul(c, opening.r)
    )
    return announcement + bytes(z_s) + bytes(z_r)
