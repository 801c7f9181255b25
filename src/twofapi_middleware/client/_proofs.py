"""The four proofs a client makes, each bound to its transcript.

Every proof draws fresh nonces. Never reuse one: two proofs with the same
nonces and different challenges give the secrets away.
"""

from __future__ import annotations

from ..crypto import (
    auth_transcript,
    pop_transcript,
    prove,
    reactivation_transcript,
    rotation_current_transcript,
    rotation_new_transcript,
)
from ._credential import Credential


def proof_of_possession(credential: Credential) -> bytes:
    """The proof sent at enrollment and recovery (PoP transcript)."""
    client_id = credential.client_id
    return prove(
        credential.opening,
        lambda commitment, announcement: pop_transcript(
            commitment, announcement, client_id
        ),
    )


def authentication_proof(
    credential: Credential, nonce: bytes, channel_binding: bytes
) -> bytes:
    """The proof sent to ``/v1/verify`` for a challenge's ``nonce``."""
    client_id = credential.client_id
    return prove(
        credential.opening,
        lambda commitment, announcement: auth_transcript(
            commitment, announcement, client_id, nonce, channel_binding
        ),
    )


def rotation_proofs(current: Credential, new: Credential) -> tuple[bytes, bytes]:
    """``(currentProof, newCommitmentProof)`` for a commitment rotation."""
    return (
        prove(current.opening, rotation_current_transcript),
        prove(new.opening, rotation_new_transcript),
    )


def reactivation_proof(new: Credential) -> bytes:
    """The proof an admin sends to reactivate a client with ``new``."""
    return prove(new.opening, reactivation_transcript)
