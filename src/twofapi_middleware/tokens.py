"""EdDSA access tokens (PROTOCOL.md section 7).

PyJWT writes and reads the tokens: the compact JWS, its header, the claims
and their checks (issuer, audience, the required claims). The Ed25519
signatures go through PyNaCl (libsodium), registered as PyJWT's ``EdDSA``
algorithm, about twice as fast as PyJWT's default backend. Keys are Ed25519
PKCS#8 PEM, identified by their RFC 7638 thumbprint (``kid``).

Expiry is checked here against the caller's ``now`` rather than by PyJWT,
which would read the wall clock: the application's clock decides, so a fake
clock works in tests.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jwt
import nacl.bindings
import nacl.exceptions
import nacl.signing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from jwt.algorithms import Algorithm

from . import wire
from .constants import JTI_BYTES, TOKEN_TTL_SECONDS
from .errors import ConfigurationError
from .wire import b64url


def binding_thumbprint(channel_binding: bytes) -> str:
    """The ``cnf`` value of a channel binding: b64url(SHA-256(binding))."""
    return b64url(hashlib.sha256(channel_binding).digest())


_REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "cv"]
_BASE64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


class _StrictJWS(jwt.PyJWS):
    """PyJWS reading each segment as canonical, unpadded base64url only.

    PyJWT 2.15 also accepts trailing ``=`` and checks the alphabet one
    character at a time in Python, which cost more than the signature
    check itself; a whole-segment ``bytes.translate`` does it in C.
    """

    @staticmethod
    def _decode_base64url_segment(segment: bytes, name: str) -> bytes:
        spare = wire.SPARE_BITS.get(len(segment) % 4)
        if spare is None or segment.translate(None, _BASE64URL):
            raise jwt.DecodeError(f"Invalid {name} encoding")
        # Unused low bits of the last character must be zero: one token,
        # one spelling.
        if spare and _BASE64URL.index(segment[-1]) & spare:
            raise jwt.DecodeError(f"Invalid {name} encoding")
        padded = segment.translate(_TO_STANDARD) + b"=" * (-len(segment) % 4)
        try:
            return binascii.a2b_base64(padded, strict_mode=True)
        except binascii.Error:
            raise jwt.DecodeError(f"Invalid {name} encoding") from None


@dataclass(frozen=True, slots=True, repr=False)
class _SodiumSecretKey:
    """libsodium's 64-byte Ed25519 secret key, made once per codec."""

    secret: bytes
    public: bytes

    @classmethod
    def from_signing_key(cls, key: nacl.signing.SigningKey) -> _SodiumSecretKey:
        public, secret = nacl.bindings.crypto_sign_seed_keypair(bytes(key))
        return cls(secret, public)


class _NaClEdDSA(Algorithm):
    """PyJWT's ``EdDSA`` algorithm on libsodium, for PyNaCl keys."""

    def prepare_key(self, key: Any) -> Any:
        if isinstance(key, _SodiumSecretKey | nacl.signing.VerifyKey):
            return key
        if isinstance(key, nacl.signing.SigningKey):
            return _SodiumSecretKey.from_signing_key(key)
        raise jwt.InvalidKeyError("expected a PyNaCl Ed25519 key")

    def sign(self, msg: bytes, key: Any) -> bytes:
        # libsodium's own call: SigningKey.sign wraps every signature in a
        # SignedMessage, a fifth of the cost of signing a token.
        signed: bytes = nacl.bindings.crypto_sign(msg, key.secret)
        return signed[: nacl.bindings.crypto_sign_BYTES]

    def verify(self, msg: bytes, key: Any, sig: bytes) -> bool:
        public = key.public if isinstance(key, _SodiumSecretKey) else bytes(key)
        if len(sig) != nacl.bindings.crypto_sign_BYTES:
            return False
        try:
            nacl.bindings.crypto_sign_open(sig + msg, public)
        except (nacl.exceptions.BadSignatureError, ValueError):
            return False
        return True

    @staticmethod
    def to_jwk(key_obj: Any, as_dict: bool = False) -> Any:
        if isinstance(key_obj, nacl.signing.SigningKey):
            key_obj = key_obj.verify_key
        public = (
            key_obj.public if isinstance(key_obj, _SodiumSecretKey) else bytes(key_obj)
        )
        jwk = VerificationKey.from_public_bytes(public).jwk()
        return jwk if as_dict else json.dumps(jwk)

    @staticmethod
    def from_jwk(jwk: Any) -> Any:
        data = json.loads(jwk) if isinstance(jwk, str) else jwk
        if data.get("kty") != "OKP" or data.get("crv") != "Ed25519":
            raise jwt.InvalidKeyError("not an Ed25519 JWK")
        return nacl.signing.VerifyKey(jwt.utils.base64url_decode(data["x"]))


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


class IssuedToken(NamedTuple):
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
        self._only_key = keys[0] if len(self._keys) == 1 else None
        self.issuer = issuer
        self.audiences = audiences
        self._audience_list = list(audiences)
        self.leeway_seconds = leeway_seconds
        self._header = {"kid": signing_key.verification.kid, "typ": "JWT"}
        self._secret = _SodiumSecretKey.from_signing_key(signing_key.nacl_key)
        self._jwt = jwt.PyJWT(
            {
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "require": _REQUIRED_CLAIMS,
            }
        )
        # PyJWT keeps its algorithms on its PyJWS: this instance's reads
        # segments strictly and signs and verifies only with libsodium.
        jws = _StrictJWS(algorithms=[], options=self._jwt._jws.options)
        jws.register_algorithm("EdDSA", _NaClEdDSA())
        self._jwt._jws = self._jws = jws

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
        claims = {
            "iss": self.issuer,
            "sub": client_id,
            "aud": audience,
            "iat": issued_at,
            "exp": expires_at,
            "jti": token_id,
            "cnf": {"cb#S256": binding_thumbprint(channel_binding)},
            "cv": commitment_version,
        }
        # PyJWT's annotations name only its own key types; the registered
        # algorithm takes libsodium's. The claims are plain JSON, encoded
        # compactly here; PyJWS writes the header, the segments and the
        # signature.
        secret: Any = self._secret
        token = self._jws.encode(
            wire.dump_json(claims),
            secret,
            algorithm="EdDSA",
            headers=self._header,
            sort_headers=False,
        )
        return IssuedToken(token, token_id, issued_at, expires_at)

    def decode(self, token: str) -> dict[str, Any]:
        """Check signature, algorithm, kid, issuer, audience and required claims.

        Expiry is not checked here (see :meth:`check_times`), so a decoded
        token can be cached and re-checked against the clock on each use.
        """
        try:
            # With one key, PyJWT parses the token once and the kid is
            # compared after; during a rotation the kid picks the key first.
            key = self._only_key or self._key_for(jwt.get_unverified_header(token))
            verify_key: Any = key.nacl_key
            decoded = self._jwt.decode_complete(
                token,
                verify_key,
                algorithms=["EdDSA"],
                audience=self._audience_list,
                issuer=self.issuer,
            )
        except (jwt.PyJWTError, ValueError, TypeError):
            raise InvalidToken from None
        claims: dict[str, Any] = decoded["payload"]
        if decoded["header"].get("kid") != key.kid or not _claims_well_typed(claims):
            raise InvalidToken
        return claims

    def _key_for(self, header: dict[str, Any]) -> VerificationKey:
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken
        return key

    def check_times(self, claims: dict[str, Any], now: float) -> None:
        if now >= claims["exp"] + self.leeway_seconds:
            raise InvalidToken
        if claims["iat"] > now + self.leeway_seconds:
            raise InvalidToken
        # Not a claim of ours, but a token that names one is held to it.
        not_before = claims.get("nbf", 0)
        if type(not_before) is not int or not_before > now + self.leeway_seconds:
            raise InvalidToken

    @staticmethod
    def binding_matches(claims: dict[str, Any], channel_binding: bytes) -> bool:
        cnf = claims.get("cnf")
        expected = cnf.get("cb#S256") if isinstance(cnf, dict) else None
        if not isinstance(expected, str):
            return False
        return hmac.compare_digest(expected, binding_thumbprint(channel_binding))


def _claims_well_typed(claims: dict[str, Any]) -> bool:
    return (
        isinstance(claims.get("sub"), str)
        and isinstance(claims.get("aud"), str)
        and isinstance(claims.get("jti", ""), str)
        and type(claims.get("exp")) is int
        and type(claims.get("iat")) is int
        and type(claims.get("cv")) is int
    )
