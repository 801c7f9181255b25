"""Helpers for testing applications that use twofapi_middleware.

:class:`FakeClock` replaces the application's clock, so expiry, lockouts and
rate-limit windows can be driven without sleeping, on every storage backend.
:func:`fast_settings` gives settings for test suites: cheap Argon2, rate
limits off, a fixed admin secret. :func:`issue_token` enrolls a client and
logs it in through a service directly, for tests of guarded views.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from .settings import Settings

if TYPE_CHECKING:
    from .service import TwoFApi

TEST_ADMIN_SECRET = "test-admin-secret-0123456789abcdef"


class FakeClock:
    """A clock that only moves when told to. Thread-safe."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward and return the new time."""
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, now: float) -> None:
        with self._lock:
            self._now = now


def fast_settings(**overrides: Any) -> Settings:
    """Settings for tests: cheap Argon2, no rate limits, an admin secret.

    Never use these in production: the Argon2 parameters are deliberately
    weak so that suites run fast.
    """
    values: dict[str, Any] = {
        "argon2_memory_kib": 64,
        "argon2_time_cost": 1,
        "rate_limit_per_address": 0,
        "rate_limit_per_client": 0,
        "admin_secret": TEST_ADMIN_SECRET,
    }
    values.update(overrides)
    return Settings(**values)


def issue_token(
    service: TwoFApi, client_id: str, *, audience: str | None = None
) -> str:
    """Enroll ``client_id`` with fresh secrets, log it in, return the token.

    Goes through the service's own enrollment, challenge and verification,
    without HTTP; the token works on every route the service guards.
    """
    import secrets

    from .client import Credential, authentication_proof, proof_of_possession
    from .constants import AUTH_TAG
    from .service import Context
    from .wire import decode_b64, encode_b64

    credential = Credential.generate(client_id)
    ctx = Context()
    service.enroll(
        {
            "clientIdentifier": client_id,
            "commitment": encode_b64(credential.commitment),
            "proofOfPossession": encode_b64(proof_of_possession(credential)),
        },
        ctx,
    )

    binding = secrets.token_bytes(32)
    challenge = service.issue_challenge(
        {
            "clientIdentifier": client_id,
            "credential": encode_b64(credential.first_factor),
            "channelBinding": encode_b64(binding),
        },
        ctx,
    )
    nonce = decode_b64(challenge["nonce"], "nonce")
    body = {
        "clientIdentifier": client_id,
        "challengeId": challenge["challengeId"],
        "proof": encode_b64(authentication_proof(credential, nonce, binding)),
        "channelBinding": encode_b64(binding),
        "domainSeparationTag": AUTH_TAG,
    }
    if audience is not None:
        body["targetAudience"] = audience
    token: str = service.verify(body, ctx)["accessToken"]
    return token
