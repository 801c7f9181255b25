"""EdDSA access tokens (PROTOCOL.md section 7).

Compact JWS with one fixed header, written and read here: PyJWT's generic
path parsed every token twice and cost more than the signature check on a
fresh token. The Ed25519 signatures are made and checked by PyNaCl
(libsodium). Reading is strict: three canonical unpadded base64url
segments, the algorithm pinned to EdDSA, a known ``kid``, no ``crit``
extensions, then the claim checks PyJWT made with the options this codec
gave it. Keys are Ed25519 PKCS#8 PEM, identified by their RFC 7638
thumbprint (``kid``).

Expiry is checked here against the caller's ``now`` rather than by PyJWT,
which would read the wall clock: the application's clock decides, so a fake
clock works in tests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import nacl.bindings
import nacl.exceptions
import nacl.signing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from .constants import JTI_BYTES, TOKEN_TTL_SECONDS
from .errors import ConfigurationError
from .wire import b64url


def binding_thumbprint(channel_binding: bytes) -> str:
    """The ``cnf`` value of a channel binding: b64url(SHA-256(binding))."""
    return b64url(hashlib.sha256(channel_binding).digest())


_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "cv")
_SIGNATURE_BYTES = 64


def _segment(text: str) -> bytes:
    """One unpadded base64url segment, refused unless canonical."""
    if len(text) % 4 == 1 or not _SEGMENT.fullmatch(text):
        raise InvalidToken
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken from None
    # Non-zero leftover bits would make a second spelling of the same bytes.
    if b64url(data) != text:
        raise InvalidToken
    return data


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise InvalidToken from None
    if not isinstance(value, dict):
        raise InvalidToken
    return value


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """An Ed25519 public key and its RFC 7638 thumbprint."""

    public_bytes: bytes
    kid: str
    nacl_key: nacl.signing.VerifyKey

    @classmethod
    def from_public_bytes(cls, public_bytes: bytes) -> VerificationKey:
        members = {"crv": "Ed25519", "kty": "OKP", "x": b64url(public_bytes)}
        canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
        kid = b64url(hashlib.sha256(canonical.encode("ascii")).digest())
        return cls(public_bytes, kid, nacl.signing.VerifyKey(public_bytes))

    def jwk(self) -> dict[str, str]:
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64url(self.public_bytes),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        }


@dataclass(frozen=True, slots=True, repr=False)
class SigningKey:
    """An Ed25519 private key; ``ephemeral`` when made up at start-up."""

    nacl_key: nacl.signing.SigningKey
    verification: VerificationKey
    ephemeral: bool = False

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.verification.kid!r}, <redacted>)"

    @classmethod
    def from_seed(cls, seed: bytes, *, ephemeral: bool = False) -> SigningKey:
        nacl_key = nacl.signing.SigningKey(seed)
        public = bytes(nacl_key.verify_key)
        return cls(nacl_key, VerificationKey.from_public_bytes(public), ephemeral)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls.from_seed(secrets.token_bytes(32), ephemeral=True)

    @classmethod
    def from_pem(cls, pem: str | bytes) -> SigningKey:
        data = pem.encode("ascii") if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as error:
            raise ConfigurationError(f"signing key is not a PEM key: {error}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigurationError("signing key must be an Ed25519 private key")
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return cls.from_seed(seed)


def generate_private_key_pem() -> str:
    """A new Ed25519 private key as PKCS#8 PEM."""
    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode("ascii")
    )


def load_verification_key(pem: str) -> VerificationKey:
    """An extra verification key (rotation): a public or a private PEM key."""
    data = pem.encode("ascii")
    try:
        if b"PRIVATE KEY" in data:
            return SigningKey.from_pem(data).verification
        key = serialization.load_pem_public_key(data)
    except ValueError as error:
        raise ConfigurationError(f"verification key is not PEM: {error}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigurationError("verification keys must be Ed25519 keys")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return VerificationKey.from_public_bytes(raw)


class InvalidToken(Exception):
    """Any reason a token is refused; deliberately without detail."""


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    token_id: str
    issued_at: int
    expires_at: int


class TokenCodec:
    """Issues and checks the signature and claims of access tokens."""

    def __init__(
        self,
        signing_key: SigningKey,
        extra_keys: Iterable[VerificationKey] = (),
        *,
        issuer: str,
        audiences: tuple[str, ...],
        leeway_seconds: int,
    ) -> None:
        self.signing_key = signing_key
        keys = [signing_key.verification, *extra_keys]
        self._keys = {key.kid: key for key in keys}
        self.issuer = issuer
        self.audiences = audiences
        self.leeway_seconds = leeway_seconds
        # Sorted keys, compact separators: the bytes PyJWT used to write.
        header = {"alg": "EdDSA", "kid": signing_key.verification.kid, "typ": "JWT"}
        self._header_segment = b64url(_compact_json(header))
        # libsodium's own calls: PyNaCl's key objects wrap every signature
        # in a SignedMessage, a fifth of the cost of signing a token.
        seed = bytes(signing_key.nacl_key)
        self._secret_key = nacl.bindings.crypto_sign_seed_keypair(seed)[1]

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [key.jwk() for key in self._keys.values()]}

    def issue(
        self,
        *,
        client_id: str,
        audience: str,
        commitment_version: int,
        channel_binding: bytes,
        now: float,
    ) -> IssuedToken:
        issued_at = int(now)
        expires_at = issued_at + TOKEN_TTL_SECONDS
        token_id = b64url(secrets.token_bytes(JTI_BYTES))
        # The claims as json.dumps(separators=(",", ":")) writes them, the
        # strings escaped by its own C function, in a third of its time.
        claims = (
            f'{{"iss":{_json_string(self.issuer)},"sub":{_json_string(client_id)},'
            f'"aud":{_json_string(audience)},"iat":{issued_at:d},'
            f'"exp":{expires_at:d},"jti":"{token_id}",'
            f'"cnf":{{"cb#S256":"{binding_thumbprint(channel_binding)}"}},'
            f'"cv":{commitment_version:d}}}'
        )
        signing_input = f"{self._header_segment}.{b64url(claims.encode('ascii'))}"
        signed = nacl.bindings.crypto_sign(signing_input.encode(), self._secret_key)
        signature = signed[: nacl.bindings.crypto_sign_BYTES]
        token = f"{signing_input}.{b64url(signature)}"
        return IssuedToken(token, token_id, issued_at, expires_at)

    def decode(self, token: str) -> dict[str, Any]:
        """Check signature, algorithm, kid, issuer, audience and required claims.

        Expiry is not checked here (see :meth:`check_times`), so a decoded
        token can be cached and re-checked against the clock on each use.
        """
        segments = token.split(".")
        if len(segments) != 3:
            raise InvalidToken
        header_segment, payload_segment, signature_segment = segments
        header = _json_object(_segment(header_segment))
        payload = _segment(payload_segment)
        signature = _segment(signature_segment)

        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        # No JWS extension is understood, so none may be critical (RFC 7515
        # section 4.1.11); b64=false (RFC 7797) would change what is signed.
        if (
            key is None
            or header.get("alg") != "EdDSA"
            or "crit" in header
            or header.get("b64", True) is False
            or len(signature) != _SIGNATURE_BYTES
        ):
            raise InvalidToken
        signing_input = f"{header_segment}.{payload_segment}".encode("ascii")
        try:
            nacl.bindings.crypto_sign_open(signature + signing_input, key.public_bytes)
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
            raise InvalidToken from None

        claims = _json_object(payload)
        if any(claims.get(name) is None for name in _REQUIRED_CLAIMS):
            raise InvalidToken
        if claims["iss"] != self.issuer or claims["aud"] not in self.audiences:
            raise InvalidToken
        if not isinstance(claims.get("jti", ""), str) or not _claims_well_typed(claims):
            raise InvalidToken
        return claims

    def check_times(self, claims: dict[str, Any], now: float) -> None:
        if now >= claims["exp"] + self.leeway_seconds:
            raise InvalidToken
        if claims["iat"] > now + self.leeway_seconds:
            raise InvalidToken

    @staticmethod
    def binding_matches(claims: dict[str, Any], channel_binding: bytes) -> bool:
        cnf = claims.get("cnf")
        expected = cnf.get("cb#S256") if isinstance(cnf, dict) else None
        if not isinstance(expected, str):
            return False
        return hmac.compare_digest(expected, binding_thumbprint(channel_binding))


_COMPACT_ENCODER = json.JSONEncoder(separators=(",", ":"))
_json_string = json.encoder.encode_basestring_ascii


def _compact_json(value: dict[str, Any]) -> bytes:
    return _COMPACT_ENCODER.encode(value).encode("ascii")


def _claims_well_typed(claims: dict[str, Any]) -> bool:
    return (
        isinstance(claims.get("sub"), str)
        and isinstance(claims.get("aud"), str)
        and type(claims.get("exp")) is int
        and type(claims.get("iat")) is int
        and type(claims.get("cv")) is int
    )
