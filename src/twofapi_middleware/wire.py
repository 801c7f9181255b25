"""Strict decoding of what arrives on the wire, and encoding of what leaves.

Python's defaults are lenient where this protocol is strict: ``b64decode``
skips junk, ``json.loads`` accepts NaN and repeated keys and recurses until
the interpreter gives up. Everything here refuses instead, with an error
that names the field.
"""

from __future__ import annotations

import binascii
import functools
import json
import re
import time
from collections.abc import Iterable
from typing import Any, NoReturn

from .constants import (
    CHALLENGE_ID_PATTERN,
    CLIENT_ID_PATTERN,
    MAX_JSON_DEPTH,
)
from .errors import MalformedBody, ValidationFailed

_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# Bits of the last character that carry no data, by unpadded length mod 4
# (a length of 1 mod 4 is no byte string's).
SPARE_BITS = {0: 0, 2: 0x0F, 3: 0x03}
_URLSAFE = bytes.maketrans(b"+/", b"-_")
_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def decode_b64(value: object, field: str, sizes: Iterable[int] | None = None) -> bytes:
    """Decode standard base64 strictly; ``sizes`` lists allowed decoded sizes.

    Padding may be absent or complete. Characters outside the alphabet,
    impossible lengths and non-zero leftover bits are refused.
    """
    if not isinstance(value, str):
        raise ValidationFailed(field, "must be a base64 string")
    body = value.rstrip("=")
    padding = len(value) - len(body)
    spare = SPARE_BITS.get(len(body) % 4)
    if padding > 2 or (padding and len(value) % 4) or spare is None:
        raise ValidationFailed(field, "is not valid base64")
    try:
        # Strict mode refuses every character outside the alphabet.
        padded = body + "=" * (-len(body) % 4)
        data = binascii.a2b_base64(padded, strict_mode=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed(field, "is not valid base64") from None
    # Non-zero bits after the last byte would make a second spelling of the
    # same bytes.
    if spare and _B64_ALPHABET.index(body[-1]) & spare:
        raise ValidationFailed(field, "is not valid base64")
    if sizes is not None and len(data) not in sizes:
        raise ValidationFailed(field, "has the wrong decoded length")
    return data


# binascii directly: the base64 module adds two Python calls to each.
def encode_b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def b64url(data: bytes) -> str:
    """Unpadded base64url."""
    encoded = binascii.b2a_base64(data, newline=False).translate(_URLSAFE)
    return encoded.rstrip(b"=").decode("ascii")


def require_client_id(value: object, field: str = "clientIdentifier") -> str:
    if not isinstance(value, str) or not CLIENT_ID_PATTERN.fullmatch(value):
        raise ValidationFailed(field, "must be 1 to 128 characters of [A-Za-z0-9._-]")
    return value


def require_challenge_id(value: object, field: str = "challengeId") -> str:
    if not isinstance(value, str) or not CHALLENGE_ID_PATTERN.fullmatch(value):
        raise ValidationFailed(field, "must be 1 to 128 characters of [A-Za-z0-9_-]")
    return value


def require_string(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise ValidationFailed(field, "must be a string")
    return value


def iso_time(timestamp: float) -> str:
    """ISO 8601 UTC with milliseconds and ``Z``."""
    seconds = int(timestamp)
    millis = round((timestamp - seconds) * 1000)
    if millis == 1000:
        seconds, millis = seconds + 1, 0
    return f"{_utc_seconds(seconds)}.{millis:03d}Z"


@functools.lru_cache(maxsize=64)
def _utc_seconds(seconds: int) -> str:
    # Expiry times cluster within a second of each other; strftime is slow.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def _refuse_constant(name: str) -> NoReturn:
    raise MalformedBody


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise MalformedBody
    return result


def _nesting_depth(body: bytes) -> int:
    depth = deepest = 0
    for match in _JSON_TOKENS.finditer(body):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                break
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


# Built once: json.loads and json.dumps with options build one per call.
_STRICT_DECODER = json.JSONDecoder(
    object_pairs_hook=_object_without_duplicates, parse_constant=_refuse_constant
)
# Only this package's own answers are encoded: none refers to itself.
_COMPACT_ENCODER = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, check_circular=False
)
# JSONEncoder.encode still makes a C encoder per call; make that one once,
# with the arguments it would pass (falling back where json has no C part).
_make_c_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODER: Any = (
    None
    if _make_c_encoder is None
    else _make_c_encoder(
        None,  # no circular check, as above
        _COMPACT_ENCODER.default,
        json.encoder.encode_basestring,
        None,  # no indent
        _COMPACT_ENCODER.key_separator,
        _COMPACT_ENCODER.item_separator,
        False,  # sort_keys
        False,  # skipkeys
        True,  # allow_nan
    )
)


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Parse a request body that must be one JSON object, strictly."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedBody from None
    # A flat object, the usual case, needs no depth scan.
    nested = b"[" in body or b"{" in body.lstrip()[1:]
    if nested and _nesting_depth(body) > MAX_JSON_DEPTH:
        raise MalformedBody
    try:
        value = _STRICT_DECODER.decode(text)
    except (ValueError, RecursionError):
        raise MalformedBody from None
    if not isinstance(value, dict):
        raise MalformedBody
    return value


def dump_json(value: Any) -> bytes:
    if _C_ENCODER is None:
        return _COMPACT_ENCODER.encode(value).encode()
    return "".join(_C_ENCODER(value, 0)).encode()
