"""A 2FApi client: credentials, proofs and the HTTP exchanges.

A :class:`Credential` holds a client's secrets and lives in an owner-only
file. :class:`TwoFApiClient` and :class:`AsyncTwoFApiClient` enroll it, log
in and call guarded routes with the token; both run the same flows, written
once without I/O. :class:`AdminClient` makes the admin calls. Every error
raised on purpose is a :class:`ClientError`::

    with TwoFApiClient("https://api.example.com", credential) as client:
        client.enroll()
        data = client.get("/v1/resources/42")
"""

from __future__ import annotations

from ._credential import FILE_FORMAT_VERSION, Credential
from ._errors import (
    ClientError,
    CredentialFileError,
    InvalidResponse,
    ProblemResponse,
    TransportFailed,
)
from ._flow import (
    TOKEN_REFRESH_MARGIN_SECONDS,
    AccessToken,
    EnrollmentResult,
    RecoveryResult,
)
from ._proofs import (
    authentication_proof,
    proof_of_possession,
    reactivation_proof,
    rotation_proofs,
)
from ._shells import (
    AdminClient,
    AsyncAdminClient,
    AsyncTwoFApiClient,
    TwoFApiClient,
)

__all__ = [
    "FILE_FORMAT_VERSION",
    "TOKEN_REFRESH_MARGIN_SECONDS",
    "AccessToken",
    "AdminClient",
    "AsyncAdminClient",
    "AsyncTwoFApiClient",
    "ClientError",
    "Credential",
    "CredentialFileError",
    "EnrollmentResult",
    "InvalidResponse",
    "ProblemResponse",
    "RecoveryResult",
    "TransportFailed",
    "TwoFApiClient",
    "authentication_proof",
    "proof_of_possession",
    "reactivation_proof",
    "rotation_proofs",
]
