"""Base64 as the protocol writes it: standard alphabet, strict on input."""

from __future__ import annotations

import base64
import binascii
import re

_B64_BODY = re.compile(r"[A-Za-z0-9+/]*")


def encode_b64(data: bytes) -> str:
    """Standard base64 with padding (RFC 4648 section 4)."""
    return base64.b64encode(data).decode("ascii")


def decode_b64(text: object) -> bytes:
    """Decode standard base64, padded or not; raise ``ValueError`` otherwise.

    Characters outside the alphabet, incomplete padding, impossible lengths
    and non-zero bits after the last byte are refused: each would be a second
    spelling of the same bytes.
    """
    if not isinstance(text, str):
        raise ValueError("not a base64 string")
    body = text.rstrip("=")
    padded = body + "=" * (-len(body) % 4)
    if text not in (body, padded) or not _B64_BODY.fullmatch(body):
        raise ValueError("not valid base64")
    try:
        data = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None
    if encode_b64(data).rstrip("=") != body:
        raise ValueError("not valid base64")
    return data
