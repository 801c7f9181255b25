"""The token codec refuses every token it did not sign as it signs them.

Forgeries are built with PyJWT and the cryptography package, independently
of the codec, so a test cannot pass by sharing the codec's own mistakes.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from twofapi_middleware.tokens import (
    InvalidToken,
    SigningKey,
    TokenCodec,
    _StrictJWS,
    generate_private_key_pem,
)

NOW = 1_800_000_000
BINDING = b"b" * 32


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def codec_for(key: SigningKey, *extra: SigningKey, **options: Any) -> TokenCodec:
    settings: dict[str, Any] = {
        "issuer": "2fapi",
        "audiences": ("default", "other"),
        "leeway_seconds": 5,
    }
    settings.update(options)
    return TokenCodec(key, [k.verification for k in extra], **settings)


@pytest.fixture
def pem() -> str:
    return generate_private_key_pem()


@pytest.fixture
def codec(pem: str) -> TokenCodec:
    return codec_for(SigningKey.from_pem(pem))


def issue(codec: TokenCodec, **overrides: Any) -> str:
    settings: dict[str, Any] = {
        "client_id": "alice",
        "audience": "default",
        "commitment_version": 1,
        "channel_binding": BINDING,
        "now": NOW,
    }
    settings.update(overrides)
    return codec.issue(**settings).token


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": "2fapi",
        "sub": "alice",
        "aud": "default",
        "iat": NOW,
        "exp": NOW + 900,
        "jti": "AAAAAAAAAAAAAAAAAAAAAA",
        "cnf": {"cb#S256": b64(b"x" * 32)},
        "cv": 1,
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def signed_by(pem: str, payload: dict[str, Any], **header: Any) -> str:
    """A token signed by PyJWT's own EdDSA with the codec's key."""
    key = Ed25519PrivateKey.from_private_bytes(
        SigningKey.from_pem(pem).nacl_key.encode()
    )
    headers = {"kid": SigningKey.from_pem(pem).verification.kid, **header}
    return jwt.encode(payload, key, algorithm="EdDSA", headers=headers)


def test_a_token_of_the_codec_decodes_with_every_claim(codec: TokenCodec) -> None:
    token = issue(codec, audience="other", commitment_version=7)

    decoded = codec.decode(token)

    assert decoded["sub"] == "alice"
    assert decoded["aud"] == "other"
    assert decoded["cv"] == 7
    assert decoded["exp"] == NOW + 900
    assert codec.binding_matches(decoded, BINDING)
    assert not codec.binding_matches(decoded, b"c" * 32)


def test_tokens_of_pyjwts_default_backend_are_read_alike(
    pem: str, codec: TokenCodec
) -> None:
    assert codec.decode(signed_by(pem, claims()))["sub"] == "alice"


def test_times_are_checked_against_the_given_clock(codec: TokenCodec) -> None:
    decoded = codec.decode(issue(codec))

    codec.check_times(decoded, NOW + 904)
    with pytest.raises(InvalidToken):
        codec.check_times(decoded, NOW + 905)
    with pytest.raises(InvalidToken):
        codec.check_times(decoded, NOW - 6)


@pytest.mark.parametrize("nbf", [NOW + 6, NOW + 3600, "0", 1.5])
def test_a_not_before_claim_is_held_to_the_clock(
    pem: str, codec: TokenCodec, nbf: Any
) -> None:
    decoded = codec.decode(signed_by(pem, claims(nbf=nbf)))

    with pytest.raises(InvalidToken):
        codec.check_times(decoded, NOW)


def test_a_due_not_before_claim_passes(pem: str, codec: TokenCodec) -> None:
    decoded = codec.decode(signed_by(pem, claims(nbf=NOW + 5)))

    codec.check_times(decoded, NOW)


@pytest.mark.parametrize(
    "payload",
    [
        claims(iss="someone-else"),
        claims(aud="elsewhere"),
        claims(aud=["default"]),
        claims(cv=None),
        claims(cv="1"),
        claims(cv=True),
        claims(exp=None),
        claims(exp=NOW + 900.5),
        claims(iat="now"),
        claims(sub=None),
        claims(sub=7),
        claims(jti=7),
    ],
    ids=[
        "issuer",
        "audience",
        "audience-list",
        "no-cv",
        "cv-string",
        "cv-bool",
        "no-exp",
        "exp-float",
        "iat-string",
        "no-sub",
        "sub-number",
        "jti-number",
    ],
)
def test_claims_out_of_contract_are_refused(
    pem: str, codec: TokenCodec, payload: dict[str, Any]
) -> None:
    with pytest.raises(InvalidToken):
        codec.decode(signed_by(pem, payload))


def test_another_key_is_refused_even_under_our_kid(pem: str, codec: TokenCodec) -> None:
    stranger = generate_private_key_pem()
    token = jwt.encode(
        claims(),
        Ed25519PrivateKey.from_private_bytes(
            SigningKey.from_pem(stranger).nacl_key.encode()
        ),
        algorithm="EdDSA",
        headers={"kid": SigningKey.from_pem(pem).verification.kid},
    )

    with pytest.raises(InvalidToken):
        codec.decode(token)


def hand_signed(pem: str, header: dict[str, Any], payload: dict[str, Any]) -> str:
    """A JWS assembled by hand, for headers PyJWT refuses to write."""
    key = Ed25519PrivateKey.from_private_bytes(
        SigningKey.from_pem(pem).nacl_key.encode()
    )
    signing_input = ".".join(
        b64(json.dumps(part).encode()) for part in (header, payload)
    )
    return f"{signing_input}.{b64(key.sign(signing_input.encode()))}"


@pytest.mark.parametrize("kid", ["unknown", None, 7, ["x"]])
def test_an_unknown_kid_is_refused(pem: str, kid: Any) -> None:
    header = {"alg": "EdDSA", "typ": "JWT", "kid": kid}
    rotating = codec_for(
        SigningKey.from_pem(pem), SigningKey.from_pem(generate_private_key_pem())
    )
    good = hand_signed(
        pem, {**header, "kid": SigningKey.from_pem(pem).verification.kid}, claims()
    )

    assert rotating.decode(good)["sub"] == "alice"
    for codec in (codec_for(SigningKey.from_pem(pem)), rotating):
        with pytest.raises(InvalidToken):
            codec.decode(hand_signed(pem, header, claims()))


def test_crit_extensions_and_unencoded_payloads_are_refused(
    pem: str, codec: TokenCodec
) -> None:
    with pytest.raises(InvalidToken):
        codec.decode(signed_by(pem, claims(), crit=["exp"], exp=1))
    with pytest.raises(InvalidToken):
        codec.decode(signed_by(pem, claims(), b64=False))


def test_algorithm_confusion_is_refused(pem: str, codec: TokenCodec) -> None:
    public = SigningKey.from_pem(pem).verification.public_bytes
    kid = SigningKey.from_pem(pem).verification.kid
    hmac_token = jwt.encode(claims(), public, algorithm="HS256", headers={"kid": kid})
    header = b64(json.dumps({"alg": "none", "kid": kid}).encode())
    none_token = f"{header}.{b64(json.dumps(claims()).encode())}."

    for token in (hmac_token, none_token):
        with pytest.raises(InvalidToken):
            codec.decode(token)


def test_tampering_with_any_segment_is_refused(codec: TokenCodec) -> None:
    token = issue(codec)
    header, payload, signature = token.split(".")
    other_payload = b64(
        json.dumps(
            {**json.loads(base64.urlsafe_b64decode(payload + "==")), "sub": "bob"}
        ).encode()
    )
    # The last character of a 64-byte signature carries 2 unused bits;
    # another spelling of the same bytes must not be a second valid token.
    last = signature[-1]
    respelled = signature[:-1] + ("B" if last == "A" else chr(ord(last) + 1))
    forged = [
        f"{header}.{other_payload}.{signature}",
        f"{header}.{payload}.{respelled}",
        f"{header}.{payload}.{signature}=",
        f"{header}.{payload}.{signature}==",
        f"{header}=.{payload}.{signature}",
        f"{header}.{payload}.{signature[:-2]}",
        f"{header}.{payload}",
        f"{header}.{payload}.{signature}.{signature}",
        f" {token}",
        f"{header}.{payload}!.{signature}",
        "",
        "a.b.c",
    ]

    for token_text in forged:
        with pytest.raises(InvalidToken):
            codec.decode(token_text)


def test_only_eddsa_is_known_to_the_codec(codec: TokenCodec) -> None:
    assert codec._jwt._jws.get_algorithms() == ["EdDSA"]


def test_a_retired_key_keeps_verifying_during_a_rotation(pem: str) -> None:
    old = SigningKey.from_pem(pem)
    new = SigningKey.from_pem(generate_private_key_pem())
    old_token = issue(codec_for(old))

    rotated = codec_for(new, old)

    assert rotated.decode(old_token)["sub"] == "alice"
    assert rotated.decode(issue(rotated))["sub"] == "alice"
    assert [key["kid"] for key in rotated.jwks()["keys"]] == [
        new.verification.kid,
        old.verification.kid,
    ]
    with pytest.raises(InvalidToken):
        codec_for(new).decode(old_token)


def test_the_signing_key_is_not_in_its_repr(pem: str) -> None:
    key = SigningKey.from_pem(pem)

    assert key.verification.kid in repr(key)
    assert b64(key.nacl_key.encode()) not in repr(key)


def _canonical_segment(segment: bytes) -> bytes | None:
    """The reference: what the standard library decodes and spells back."""
    if len(segment) % 4 == 1 or not set(segment) <= set(URLSAFE_ALPHABET):
        return None
    decoded = base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != segment:
        return None
    return decoded


URLSAFE_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=24).map(lambda raw: base64.urlsafe_b64encode(raw)),
        st.binary(max_size=24).map(
            lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=")
        ),
        st.text("AQgw-_+/=! \n" + URLSAFE_ALPHABET.decode(), max_size=16).map(
            str.encode
        ),
    )
)
def test_segments_decode_only_in_their_one_canonical_spelling(segment: bytes) -> None:
    expected = _canonical_segment(segment)

    try:
        decoded = _StrictJWS._decode_base64url_segment(segment, "payload")
    except jwt.DecodeError:
        decoded = None

    assert decoded == expected
