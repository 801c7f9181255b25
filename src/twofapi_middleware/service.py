"""The 2FApi service: every endpoint's work, independent of ASGI and WSGI.

Each public method validates its whole request first (syntax before work),
then loads state, asks :mod:`~twofapi_middleware.policy` and
:mod:`~twofapi_middleware.crypto` for decisions, and saves the result with
the storage protocol's atomic operations. Methods are synchronous; the ASGI
adapter runs them off the event loop when the storage blocks.

Refusals raise the endpoint's one refusal error; which check failed is told
only to the audit hook.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import math
import secrets
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple, TypeVar

from . import audit, crypto, policy, wire
from . import constants as k
from .errors import (
    ChallengeRefused,
    ConfigurationError,
    EnrollmentRefused,
    Forbidden,
    RateLimited,
    ReactivationFailed,
    RecoveryFailed,
    RotationRefused,
    StorageUnavailable,
    Unauthorized,
    UnsupportedVersion,
    ValidationFailed,
    VerificationRefused,
)
from .models import AuditEvent, Challenge, ClientRecord, ClientStatus, Principal
from .recovery import Argon2Gate, new_phrase, normalize_phrase
from .settings import Settings
from .storage import Storage, open_storage
from .tokens import InvalidToken, SigningKey, TokenCodec, load_verification_key

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_ZERO_NONCE = bytes(k.NONCE_BYTES)
_MAX_CAS_ATTEMPTS = 500


class Context(NamedTuple):
    """Who is asking: for rate limits and the audit trail (immutable)."""

    request_id: str | None = None
    source_address: str | None = None


class TwoFApi:
    """The protocol engine behind the middlewares."""

    def __init__(self, settings: Settings, storage: Storage | None = None) -> None:
        self.settings = settings
        self.storage = (
            storage if storage is not None else open_storage(settings.storage_url)
        )
        self.storage.check_schema()
        self.clock = settings.clock
        self.codec = TokenCodec(
            _signing_key(settings),
            [load_verification_key(pem) for pem in settings.verification_keys],
            issuer=settings.issuer,
            audiences=settings.audiences,
            leeway_seconds=settings.token_leeway_seconds,
        )
        self.policy = policy.LockoutPolicy(
            threshold=settings.lockout_threshold,
            first_seconds=settings.lockout_seconds,
            max_seconds=settings.lockout_max_seconds,
            lockouts_before_suspension=settings.lockouts_before_suspension,
            recovery_attempts=settings.recovery_attempts,
        )
        self.argon2 = Argon2Gate(
            memory_kib=settings.argon2_memory_kib,
            time_cost=settings.argon2_time_cost,
            parallelism=settings.argon2_parallelism,
            concurrency=settings.argon2_concurrency,
            queue=settings.argon2_queue,
        )
        self._audit_sink = settings.audit_hook or audit.log_event
        self._nonce_counter = itertools.count()
        self._token_cache: dict[str, tuple[dict[str, Any], Principal]] = {}
        self._cache_lock = threading.Lock()
        _check_production(settings, self.codec.signing_key)

    # -- public documents ------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        return self.codec.jwks()

    # -- rate limits -----------------------------------------------------

    def rate_limit(self, endpoint: str, client_id: str | None, ctx: Context) -> None:
        """Count this request; raise RateLimited when over a limit."""
        settings = self.settings
        window = settings.rate_limit_window_seconds
        now = self.clock()
        checks = []
        if settings.rate_limit_per_address and ctx.source_address:
            key = f"addr:{ctx.source_address}"
            checks.append((key, settings.rate_limit_per_address))
        if settings.rate_limit_per_client and client_id:
            checks.append(
                (f"client:{endpoint}:{client_id}", settings.rate_limit_per_client)
            )
        for key, limit in checks:
            count, window_end = self.storage.hit(key, window, now)
            if count > limit:
                self._emit(audit.RATE_LIMITED, client_id, ctx, "refused")
                # Whole seconds until the window ends: never past it.
                raise RateLimited(max(1, math.ceil(window_end - now)))

    # -- enrollment ------------------------------------------------------

    def enroll(self, body: dict[str, Any], ctx: Context) -> tuple[dict[str, Any], bool]:
        """POST /v1/clients. Returns the body and whether words were issued."""
        client_id = wire.require_client_id(body.get("clientIdentifier"))
        any_proof = self.settings.accept_any_proof
        sizes = None if any_proof else (k.POINT_BYTES,)
        commitment = wire.decode_b64(body.get("commitment"), "commitment", sizes)
        pop_sizes = None if any_proof else (k.PROOF_BYTES,)
        pop = wire.decode_b64(
            body.get("proofOfPossession"), "proofOfPossession", pop_sizes
        )

        if not any_proof and not self._pop_valid(client_id, commitment, pop):
            self._emit(audit.ENROLLMENT_REFUSED, client_id, ctx, "bad-proof")
            raise EnrollmentRefused
        existing = self.storage.get_client(client_id)
        if existing is not None:
            return self._repeat_enrollment(existing, commitment, ctx), False

        words = new_phrase()
        now = self.clock()
        record = ClientRecord(
            client_id=client_id,
            reference_id=wire.encode_b64(secrets.token_bytes(k.REFERENCE_ID_BYTES)),
            commitment=commitment,
            commitment_version=1,
            status=ClientStatus.ACTIVE,
            recovery_hash=self._capped(
                client_id, ctx, self.argon2.hash, " ".join(words)
            ),
            created_at=now,
            updated_at=now,
        )
        stored = self.storage.add_client(record)
        if stored.reference_id != record.reference_id:
            return self._repeat_enrollment(stored, commitment, ctx), False
        self._emit(audit.ENROLLED, client_id, ctx)
        answer = {
            "referenceId": record.reference_id,
            "clientIdentifier": client_id,
            "recoveryWords": words,
        }
        return answer, True

    def _repeat_enrollment(
        self, stored: ClientRecord, commitment: bytes, ctx: Context
    ) -> dict[str, Any]:
        same = hmac.compare_digest(stored.commitment, commitment)
        if not same or stored.status is not ClientStatus.ACTIVE:
            self._emit(audit.ENROLLMENT_REFUSED, stored.client_id, ctx, "taken")
            raise EnrollmentRefused
        self._emit(audit.ENROLLED, stored.client_id, ctx, "repeated")
        return {
            "referenceId": stored.reference_id,
            "clientIdentifier": stored.client_id,
        }

    def _pop_valid(self, client_id: str, commitment: bytes, proof: bytes) -> bool:
        transcript = partial(_pop_transcript, client_id=client_id)
        verdict = crypto.check_proof(commitment, proof, transcript)
        return verdict is crypto.Verdict.VALID

    # -- challenges ------------------------------------------------------

    def issue_challenge(self, body: dict[str, Any], ctx: Context) -> dict[str, Any]:
        """POST /v1/challenges."""
        client_id = wire.require_client_id(body.get("clientIdentifier"))
        credential = wire.decode_b64(
            body.get("credential"),
            "credential",
            range(k.CREDENTIAL_MIN_BYTES, k.CREDENTIAL_MAX_BYTES + 1),
        )
        binding = wire.decode_b64(
            body.get("channelBinding"), "channelBinding", k.CHANNEL_BINDING_SIZES
        )
        if "protocolVersion" in body:
            version = wire.require_string(body["protocolVersion"], "protocolVersion")
            if version not in k.SUPPORTED_VERSIONS:
                raise UnsupportedVersion

        first_factor_ok = self._check_credential(client_id, credential)
        now = self.clock()
        record = self.storage.get_client(client_id)
        if record is None or not first_factor_ok or not policy.can_log_in(record, now):
            self._emit(audit.CHALLENGE_REFUSED, client_id, ctx, "refused")
            raise ChallengeRefused

        # One draw for the nonce and the id: the system call costs more than
        # everything else the challenge needs.
        fresh = secrets.token_bytes(k.NONCE_RANDOM_BYTES + k.CHALLENGE_ID_BYTES)
        counter = next(self._nonce_counter) % 2**64
        nonce = fresh[: k.NONCE_RANDOM_BYTES] + counter.to_bytes(8, "big")
        challenge = Challenge(
            challenge_id=wire.b64url(fresh[k.NONCE_RANDOM_BYTES :]),
            client_id=client_id,
            nonce=nonce,
            channel_binding=binding,
            commitment_version=record.commitment_version,
            expires_at=now + k.CHALLENGE_TTL_SECONDS,
        )
        self.storage.put_challenge(challenge, now)
        self._emit(audit.CHALLENGE_ISSUED, client_id, ctx)
        return {
            "challengeId": challenge.challenge_id,
            "nonce": wire.encode_b64(nonce),
            "channelBinding": wire.encode_b64(binding),
            "expiresAt": wire.iso_time(challenge.expires_at),
            "protocolVersion": k.PROTOCOL_VERSION,
        }

    def _check_credential(self, client_id: str, credential: bytes) -> bool:
        check = self.settings.check_credential
        if check is None:
            return True
        try:
            return check(client_id, credential) is True
        except Exception:  # the hook is the application's; refuse, never 500
            logger.warning("check_credential raised; the challenge is refused")
            return False

    # -- verification ----------------------------------------------------

    def verify(self, body: dict[str, Any], ctx: Context) -> dict[str, Any]:
        """POST /v1/verify, in the order and with the costs of PROTOCOL.md."""
        any_proof = self.settings.accept_any_proof
        client_id = wire.require_client_id(body.get("clientIdentifier"))
        challenge_id = wire.require_challenge_id(body.get("challengeId"))
        proof_sizes = None if any_proof else (k.PROOF_BYTES,)
        proof = wire.decode_b64(body.get("proof"), "proof", proof_sizes)
        binding = wire.decode_b64(
            body.get("channelBinding"), "channelBinding", k.CHANNEL_BINDING_SIZES
        )
        tag = wire.require_string(
            body.get("domainSeparationTag"), "domainSeparationTag"
        )
        tag_ok = k.TAG_PATTERN.fullmatch(tag) if any_proof else tag == k.AUTH_TAG
        if not tag_ok:
            raise ValidationFailed("domainSeparationTag", f"must be {k.AUTH_TAG!r}")
        audience = self._audience(body)

        now = self.clock()
        challenge = self.storage.take_challenge(challenge_id, client_id)
        if challenge is None or challenge.is_expired(now):
            raise self._refused_verify(client_id, proof, binding, ctx, "no-challenge")
        if not challenge.binding_matches(binding):
            self._count_failure(client_id, ctx)
            raise self._refused_verify(client_id, proof, binding, ctx, "binding")

        record = self.storage.get_client(client_id)
        usable = (
            record is not None
            and policy.can_log_in(record, now)
            and record.commitment_version == challenge.commitment_version
        )
        if record is None or not usable:
            raise self._refused_verify(client_id, proof, binding, ctx, "client")

        if any_proof:
            verdict = crypto.Verdict.VALID
        else:
            transcript = partial(
                _auth_transcript,
                client_id=client_id,
                nonce=challenge.nonce,
                binding=binding,
            )
            verdict = crypto.check_proof(record.commitment, proof, transcript)
        if verdict is crypto.Verdict.WRONG:
            self._count_failure(client_id, ctx)
        if verdict is not crypto.Verdict.VALID:
            self._emit(audit.VERIFICATION_REFUSED, client_id, ctx, verdict.value)
            raise VerificationRefused

        if policy.register_success(record, now) is not None:
            self._update(
                client_id, lambda current: policy.register_success(current, now)
            )
        issued = self.codec.issue(
            client_id=client_id,
            audience=audience,
            commitment_version=record.commitment_version,
            channel_binding=binding,
            now=now,
        )
        self._emit(audit.VERIFIED, client_id, ctx)
        self._emit(
            audit.TOKEN_ISSUED, client_id, ctx, details=(("jti", issued.token_id),)
        )
        return {
            "accessToken": issued.token,
            "tokenType": "Bearer",
            "expiresAt": wire.iso_time(issued.expires_at),
            "expiresIn": k.TOKEN_TTL_SECONDS,
        }

    def _audience(self, body: dict[str, Any]) -> str:
        if "targetAudience" not in body:
            return self.settings.audiences[0]
        audience = body["targetAudience"]
        if not isinstance(audience, str) or audience not in self.settings.audiences:
            raise ValidationFailed("targetAudience", "is not a configured audience")
        return audience

    def _refused_verify(
        self, client_id: str, proof: bytes, binding: bytes, ctx: Context, why: str
    ) -> VerificationRefused:
        # The same native work as a real check, so timing does not tell why.
        transcript = partial(
            _auth_transcript, client_id=client_id, nonce=_ZERO_NONCE, binding=binding
        )
        crypto.check_proof(crypto.DUMMY_COMMITMENT, proof, transcript)
        self._emit(audit.VERIFICATION_REFUSED, client_id, ctx, why)
        return VerificationRefused()

    def _count_failure(self, client_id: str, ctx: Context) -> None:
        now = self.clock()
        outcome: list[policy.FailureOutcome] = []

        def change(current: ClientRecord) -> ClientRecord:
            outcome[:] = [policy.register_failure(current, now, self.policy)]
            return outcome[0].record

        _, stored = self._update(client_id, change)
        if stored is None or not outcome:
            return
        if outcome[0].locked or outcome[0].suspended:
            self.storage.withdraw_challenge(client_id)
            self._emit(audit.LOCKED_OUT, client_id, ctx)
        if outcome[0].suspended:
            self._emit(audit.SUSPENDED, client_id, ctx, "lockouts")

    # -- guarded routes --------------------------------------------------

    def authenticate(
        self, authorization: str | None, binding_header: str | None, ctx: Context
    ) -> Principal:
        """Check a bearer token; raise Unauthorized as RFC 6750 wants."""
        token = _bearer_token(authorization)
        now = self.clock()
        try:
            claims, principal = self._decode_cached(token)
            self.codec.check_times(claims, now)
            if binding_header is not None:
                binding = wire.decode_b64(binding_header, "X-Channel-Binding")
                if not self.codec.binding_matches(claims, binding):
                    raise InvalidToken
            elif self.settings.require_channel_binding:
                raise InvalidToken
        except (InvalidToken, ValidationFailed):
            self._emit(audit.ACCESS_DENIED, None, ctx, "invalid-token")
            raise Unauthorized(invalid_token=True) from None

        record = self.storage.get_client(principal.client_id)
        if (
            record is None
            or record.status is not ClientStatus.ACTIVE
            or record.commitment_version != principal.commitment_version
        ):
            self._emit(audit.ACCESS_DENIED, principal.client_id, ctx, "stale-token")
            raise Unauthorized(invalid_token=True)
        return principal

    def _decode_cached(self, token: str) -> tuple[dict[str, Any], Principal]:
        cached = self._token_cache.get(token)
        if cached is not None:
            return cached
        claims = self.codec.decode(token)
        principal = Principal(
            client_id=claims["sub"],
            audience=claims["aud"],
            commitment_version=claims["cv"],
            token_id=str(claims.get("jti", "")),
            expires_at=claims["exp"],
            claims=claims,
        )
        size = self.settings.token_cache_size
        if size:
            with self._cache_lock:
                if len(self._token_cache) >= size:
                    self._token_cache.clear()
                self._token_cache[token] = (claims, principal)
        return claims, principal

    def clear_token_cache(self) -> None:
        with self._cache_lock:
            self._token_cache.clear()

    # -- lifecycle -------------------------------------------------------

    def rotate(
        self,
        client_id: str,
        body: dict[str, Any],
        credentials: tuple[str | None, str | None],
        ctx: Context,
    ) -> dict[str, Any]:
        """PUT /v1/clients/{id}/commitment, with the client's own token.

        ``credentials`` are the Authorization and X-Channel-Binding headers;
        they are checked after the body, as 400 wins over 401.
        """
        current_proof = wire.decode_b64(
            body.get("currentProof"), "currentProof", (k.PROOF_BYTES,)
        )
        new_commitment = wire.decode_b64(
            body.get("newCommitment"), "newCommitment", (k.POINT_BYTES,)
        )
        new_proof = wire.decode_b64(
            body.get("newCommitmentProof"), "newCommitmentProof", (k.PROOF_BYTES,)
        )
        principal = self.authenticate(*credentials, ctx)

        now = self.clock()
        record = self.storage.get_client(client_id)
        ok = (
            record is not None
            and principal.client_id == client_id
            and policy.can_rotate(record)
            and record.commitment_version == principal.commitment_version
            and not hmac.compare_digest(record.commitment, new_commitment)
        )
        current = record.commitment if record is not None else crypto.DUMMY_COMMITMENT
        current_ok = (
            crypto.check_proof(
                current, current_proof, crypto.rotation_current_transcript
            )
            is crypto.Verdict.VALID
        )
        new_ok = (
            crypto.check_proof(
                new_commitment, new_proof, crypto.rotation_new_transcript
            )
            is crypto.Verdict.VALID
        )
        if record is None or not (ok and current_ok and new_ok):
            self._emit(audit.ROTATION_REFUSED, client_id, ctx, "refused")
            raise RotationRefused

        def change(latest: ClientRecord) -> ClientRecord | None:
            if latest.revision != record.revision:
                return None  # changed meanwhile: the proofs were for another state
            return policy.rotate(latest, now, new_commitment)

        _, stored = self._update(client_id, change)
        if stored is None:
            self._emit(audit.ROTATION_REFUSED, client_id, ctx, "conflict")
            raise RotationRefused
        self.storage.withdraw_challenge(client_id)
        self._emit(audit.ROTATED, client_id, ctx)
        return {"rotatedAt": wire.iso_time(now)}

    def check_admin(self, presented: str | None, client_id: str, ctx: Context) -> None:
        secret = self.settings.admin_secret
        given = (presented or "").encode("utf-8", "surrogateescape")
        expected = (secret or "").encode("utf-8")
        # Compare even when no secret is set, so timing says nothing.
        matched = hmac.compare_digest(given, expected)
        if not secret or not presented or not matched:
            self._emit(audit.ADMIN_REFUSED, client_id, ctx, "refused")
            raise Forbidden

    def revoke(self, client_id: str, admin: str | None, ctx: Context) -> None:
        """DELETE /v1/clients/{id}, with the admin credential."""
        self.check_admin(admin, client_id, ctx)
        now = self.clock()
        _, stored = self._update(client_id, lambda r: policy.revoke(r, now))
        self.storage.withdraw_challenge(client_id)
        if stored is not None:
            self._emit(audit.REVOKED, client_id, ctx)

    def suspend(self, client_id: str, admin: str | None, ctx: Context) -> None:
        """POST /v1/clients/{id}/suspend, with the admin credential."""
        self.check_admin(admin, client_id, ctx)
        now = self.clock()
        _, stored = self._update(client_id, lambda r: policy.suspend(r, now))
        if stored is not None:
            self.storage.withdraw_challenge(client_id)
            self._emit(audit.SUSPENDED, client_id, ctx, "admin")

    def recover(
        self, client_id: str, body: dict[str, Any], ctx: Context
    ) -> dict[str, Any]:
        """POST /v1/clients/{id}/recover with the recovery phrase."""
        phrase = normalize_phrase(body.get("recoveryWords"))
        new_commitment = wire.decode_b64(
            body.get("newCommitment"), "newCommitment", (k.POINT_BYTES,)
        )
        new_proof = wire.decode_b64(
            body.get("newCommitmentProof"), "newCommitmentProof", (k.PROOF_BYTES,)
        )

        record = self.storage.get_client(client_id)
        eligible = record is not None and policy.can_recover(record, self.policy)
        stored_hash = record.recovery_hash if record is not None and eligible else None
        phrase_ok = self._capped(
            client_id, ctx, partial(self.argon2.verify, stored_hash), phrase
        )
        if record is None or not eligible:
            self._emit(audit.RECOVERY_REFUSED, client_id, ctx, "ineligible")
            raise RecoveryFailed
        now = self.clock()
        if not phrase_ok:
            self._update(
                client_id,
                lambda latest: policy.register_recovery_failure(latest, now),
            )
            self._emit(audit.RECOVERY_REFUSED, client_id, ctx, "phrase")
            raise RecoveryFailed
        if not self._pop_valid(client_id, new_commitment, new_proof):
            self._emit(audit.RECOVERY_REFUSED, client_id, ctx, "proof")
            raise RecoveryFailed

        words = new_phrase()
        new_hash = self._capped(client_id, ctx, self.argon2.hash, " ".join(words))

        def change(latest: ClientRecord) -> ClientRecord | None:
            # The phrase was checked against this very hash: a concurrent
            # recovery that replaced it wins, and this one is refused.
            if latest.recovery_hash != record.recovery_hash:
                return None
            if not policy.can_recover(latest, self.policy):
                return None
            return policy.renew(latest, now, new_commitment, new_hash)

        _, stored = self._update(client_id, change)
        if stored is None:
            self._emit(audit.RECOVERY_REFUSED, client_id, ctx, "conflict")
            raise RecoveryFailed
        self.storage.withdraw_challenge(client_id)
        self._emit(audit.RECOVERED, client_id, ctx)
        return {
            "recovered": True,
            "clientIdentifier": client_id,
            "recoveryWords": words,
        }

    def reactivate(
        self, client_id: str, body: dict[str, Any], admin: str | None, ctx: Context
    ) -> dict[str, Any]:
        """POST /v1/clients/{id}/reactivate, with the admin credential."""
        new_commitment = wire.decode_b64(
            body.get("newCommitment"), "newCommitment", (k.POINT_BYTES,)
        )
        new_proof = wire.decode_b64(
            body.get("newCommitmentProof"), "newCommitmentProof", (k.PROOF_BYTES,)
        )
        self.check_admin(admin, client_id, ctx)
        proof_ok = (
            crypto.check_proof(
                new_commitment, new_proof, crypto.reactivation_transcript
            )
            is crypto.Verdict.VALID
        )
        record = self.storage.get_client(client_id)
        if record is None or not proof_ok:
            self._emit(audit.REACTIVATION_REFUSED, client_id, ctx, "refused")
            raise ReactivationFailed

        words = new_phrase()
        new_hash = self._capped(client_id, ctx, self.argon2.hash, " ".join(words))
        now = self.clock()
        _, stored = self._update(
            client_id,
            lambda latest: policy.renew(latest, now, new_commitment, new_hash),
        )
        if stored is None:
            raise ReactivationFailed
        self.storage.withdraw_challenge(client_id)
        self._emit(audit.REACTIVATED, client_id, ctx)
        return {
            "reactivated": True,
            "clientIdentifier": client_id,
            "recoveryWords": words,
        }

    # -- plumbing --------------------------------------------------------

    def _update(
        self,
        client_id: str,
        change: Callable[[ClientRecord], ClientRecord | None],
    ) -> tuple[ClientRecord | None, ClientRecord | None]:
        """Read, change and compare-and-set until no concurrent writer wins.

        Returns (record read, record stored); the second is None when there
        is no such client or ``change`` decided to leave it alone.
        """
        for _ in range(_MAX_CAS_ATTEMPTS):
            current = self.storage.get_client(client_id)
            if current is None:
                return None, None
            updated = change(current)
            if updated is None:
                return current, None
            if self.storage.replace_client(updated, current.revision):
                return current, updated
        raise StorageUnavailable("too much write contention on one client")

    def _capped(
        self, client_id: str, ctx: Context, work: Callable[[str], _T], phrase: str
    ) -> _T:
        """Argon2 work through the gate; a call turned away is audited."""
        try:
            return work(phrase)
        except RateLimited:
            self._emit(audit.RATE_LIMITED, client_id, ctx, "argon2-busy")
            raise

    def _emit(
        self,
        kind: str,
        client_id: str | None,
        ctx: Context,
        outcome: str = "ok",
        details: tuple[tuple[str, str], ...] = (),
    ) -> None:
        if self._audit_sink is audit.log_event and not audit.audit_logger.isEnabledFor(
            logging.INFO
        ):
            return  # the default hook would drop it: build nothing
        event = AuditEvent(
            kind=kind,
            client_id=client_id,
            request_id=ctx.request_id,
            source_address=ctx.source_address,
            at=self.clock(),
            outcome=outcome,
            details=details,
        )
        try:
            self._audit_sink(event)
        except Exception:  # an audit hook must never break authentication
            logger.exception("audit hook raised")


def _pop_transcript(commitment: bytes, announcement: bytes, *, client_id: str) -> bytes:
    return crypto.pop_transcript(commitment, announcement, client_id)


def _auth_transcript(
    commitment: bytes,
    announcement: bytes,
    *,
    client_id: str,
    nonce: bytes,
    binding: bytes,
) -> bytes:
    return crypto.auth_transcript(commitment, announcement, client_id, nonce, binding)


def _bearer_token(authorization: str | None) -> str:
    if authorization is None:
        raise Unauthorized(invalid_token=False)
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthorized(invalid_token=False)
    token = token.strip()
    if not token or len(token) > 4096 or not token.isascii():
        raise Unauthorized(invalid_token=True)
    return token


def _signing_key(settings: Settings) -> SigningKey:
    pem = settings.signing_key_pem()
    if pem:
        return SigningKey.from_pem(pem)
    if settings.production:
        raise ConfigurationError(
            "production needs TWOFAPI_SIGNING_KEY or TWOFAPI_SIGNING_KEY_FILE "
            "(make one with `twofapi keygen`)"
        )
    logger.warning(
        "no signing key configured: using an ephemeral key; tokens will not "
        "survive a restart and other workers cannot verify them"
    )
    return SigningKey.generate()


def _check_production(settings: Settings, key: SigningKey) -> None:
    if settings.accept_any_proof:
        if settings.production:
            raise ConfigurationError("accept-any-proof is refused in production")
        logger.warning(
            "accept-any-proof is ON: proofs are NOT verified; never use this "
            "outside local exploration"
        )
    if not settings.production:
        return
    if key.ephemeral:
        raise ConfigurationError("production refuses an ephemeral signing key")
    if settings.check_credential is None:
        logger.warning(
            "no first-factor check (check_credential) is configured: anybody "
            "who knows a client identifier can request its challenges"
        )
