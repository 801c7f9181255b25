"""The client's protocol, written once as generators, without I/O.

Each flow yields the ``httpx.Request`` it wants sent and receives the
``httpx.Response``, as httpx's own auth flows do; its return value is the
call's result. The sync and async shells only drive these generators, so
they cannot drift apart.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TypeVar

import httpx

from ..constants import AUTH_TAG, CLIENT_ID_PATTERN, NONCE_BYTES, PROTOCOL_VERSION
from ._credential import Credential
from ._encoding import decode_b64, encode_b64
from ._errors import InvalidResponse, ProblemResponse
from ._proofs import (
    authentication_proof,
    proof_of_possession,
    reactivation_proof,
    rotation_proofs,
)

T = TypeVar("T")
Flow = Generator[httpx.Request, httpx.Response, T]
"""A protocol exchange: yields requests, receives responses, returns T."""

CHANNEL_BINDING_BYTES: Final = 32
"""Size of the random channel binding drawn for each login."""

TOKEN_REFRESH_MARGIN_SECONDS: Final = 30
"""A token this close to its expiry is replaced before it is used."""

_INVALID_TOKEN = re.compile(r'error\s*=\s*"?invalid_token"?', re.IGNORECASE)


def client_segment(client_id: str) -> str:
    """``client_id`` as a path segment that no URL normaliser can rewrite.

    ``.`` and ``..`` are valid identifiers but dot segments of a URL; sent
    percent-encoded they reach the server as the identifier itself.
    """
    if client_id in (".", ".."):
        return "%2E" * len(client_id)
    return client_id


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class AccessToken:
    """A bearer token from ``/v1/verify``, with the binding it was issued for.

    ``received_at`` is the local clock's time of issue: with ``expires_in``
    it bounds the token's life even when the two clocks disagree.
    """

    token: str
    expires_at: datetime
    expires_in: int
    channel_binding: bytes
    received_at: float
    audience: str | None = None
    token_type: str = "Bearer"

    def __repr__(self) -> str:
        return (
            f"AccessToken(expires_at={self.expires_at.isoformat()}, "
            f"audience={self.audience!r}, token=<redacted>)"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AccessToken):
            return NotImplemented
        return hmac.compare_digest(self.token.encode(), other.token.encode())

    def __hash__(self) -> int:
        return hash(self.token)

    def is_expired(
        self, now: float, margin_seconds: float = TOKEN_REFRESH_MARGIN_SECONDS
    ) -> bool:
        """True when the token ends within ``margin_seconds`` of ``now``."""
        end = min(self.expires_at.timestamp(), self.received_at + self.expires_in)
        return now >= end - margin_seconds


@dataclass(frozen=True, slots=True)
class EnrollmentResult:
    """The answer to an enrollment.

    ``recovery_words`` is ``None`` when the server saw a retry of an earlier
    enrollment with the same commitment: the words went with the first answer.
    """

    reference_id: str
    recovery_words: tuple[str, ...] | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class RecoveryResult:
    """A client given a new commitment, and its fresh recovery phrase."""

    client_id: str
    recovery_words: tuple[str, ...] = field(repr=False)


class ClientFlows:
    """The state and the exchanges of one client, without I/O.

    ``clock`` returns POSIX seconds; it decides when a token is too old.
    """

    def __init__(
        self,
        base_url: str,
        credential: Credential,
        *,
        audience: str | None,
        clock: Callable[[], float],
    ) -> None:
        self.base_url = normalise_base_url(base_url)
        self.credential = credential
        self.audience = audience
        self.token: AccessToken | None = None
        self._clock = clock

    def enroll(self) -> Flow[EnrollmentResult]:
        """POST /v1/clients with the commitment and a proof of possession."""
        credential = self.credential
        payload = {
            "clientIdentifier": credential.client_id,
            "commitment": encode_b64(credential.commitment),
            "proofOfPossession": encode_b64(proof_of_possession(credential)),
        }
        response = yield self._post("/v1/clients", payload)

        body = success_body(response)
        words = body.get("recoveryWords")
        return EnrollmentResult(
            reference_id=string_field(body, "referenceId"),
            recovery_words=None if words is None else word_list(body),
        )

    def login(self, audience: str | None = None) -> Flow[AccessToken]:
        """Ask for a challenge, prove knowledge of the opening, keep the token."""
        credential = self.credential
        binding = secrets.token_bytes(CHANNEL_BINDING_BYTES)
        audience = audience if audience is not None else self.audience
        response = yield self._post(
            "/v1/challenges",
            {
                "clientIdentifier": credential.client_id,
                "credential": encode_b64(credential.first_factor),
                "channelBinding": encode_b64(binding),
                "protocolVersion": PROTOCOL_VERSION,
            },
        )

        body = success_body(response)
        challenge_id = string_field(body, "challengeId")
        nonce = bytes_field(body, "nonce", NONCE_BYTES)
        payload = {
            "clientIdentifier": credential.client_id,
            "challengeId": challenge_id,
            "proof": encode_b64(authentication_proof(credential, nonce, binding)),
            "channelBinding": encode_b64(binding),
            "domainSeparationTag": AUTH_TAG,
        }
        if audience is not None:
            payload["targetAudience"] = audience
        response = yield self._post("/v1/verify", payload)

        body = success_body(response)
        self.token = AccessToken(
            token=string_field(body, "accessToken"),
            expires_at=time_field(body, "expiresAt"),
            expires_in=int_field(body, "expiresIn"),
            channel_binding=binding,
            received_at=self._clock(),
            audience=audience,
            token_type=str(body.get("tokenType", "Bearer")),
        )
        return self.token

    def request(self, method: str, path: str, **kwargs: Any) -> Flow[httpx.Response]:
        """Call a guarded route of the application with the bearer token.

        ``kwargs`` go to ``httpx.Request``. A retried request is built again
        from them, so pass a body as bytes, text or JSON, not a stream.
        """
        url = self._url(path)
        extra_headers = kwargs.pop("headers", None)

        def build(token: AccessToken) -> httpx.Request:
            headers = httpx.Headers(extra_headers)
            headers.update(authorization_headers(token))
            return httpx.Request(method, url, headers=headers, **kwargs)

        response = yield from self._authorized(build)
        if not response.is_success:
            raise ProblemResponse.from_response(response)
        return response

    def rotate(self, new: Credential) -> Flow[datetime]:
        """PUT /v1/clients/{id}/commitment; on success ``new`` takes over.

        Every token of the old commitment dies with the rotation, the one
        used for the call included, so the client forgets its token.
        """
        current = self.credential
        if new.client_id != current.client_id:
            raise ValueError("the new credential is for another client")
        if new.commitment == current.commitment:
            raise ValueError("the new credential has the current commitment")
        current_proof, new_proof = rotation_proofs(current, new)
        payload = {
            "currentProof": encode_b64(current_proof),
            "newCommitment": encode_b64(new.commitment),
            "newCommitmentProof": encode_b64(new_proof),
        }
        url = self._url(f"/v1/clients/{client_segment(current.client_id)}/commitment")

        def build(token: AccessToken) -> httpx.Request:
            headers = authorization_headers(token)
            return httpx.Request("PUT", url, headers=headers, json=payload)

        response = yield from self._authorized(build)
        body = success_body(response)
        rotated_at = time_field(body, "rotatedAt")
        self.credential = new
        self.token = None
        return rotated_at

    def recover(
        self, words: str | Sequence[str], new: Credential
    ) -> Flow[RecoveryResult]:
        """POST /v1/clients/{id}/recover with the phrase; ``new`` takes over."""
        if new.client_id != self.credential.client_id:
            raise ValueError("the new credential is for another client")
        payload = {
            "recoveryWords": split_words(words),
            "newCommitment": encode_b64(new.commitment),
            "newCommitmentProof": encode_b64(proof_of_possession(new)),
        }
        path = f"/v1/clients/{client_segment(new.client_id)}/recover"
        response = yield self._post(path, payload)

        body = success_body(response)
        result = RecoveryResult(string_field(body, "clientIdentifier"), word_list(body))
        self.credential = new
        self.token = None
        return result

    def _authorized(
        self, build: Callable[[AccessToken], httpx.Request]
    ) -> Flow[httpx.Response]:
        """Send ``build(token)``, logging in first or once more when needed."""
        token = self.token
        fresh = False
        if token is None or token.is_expired(self._clock()):
            audience = token.audience if token is not None else self.audience
            token = yield from self.login(audience)
            fresh = True
        response = yield build(token)

        # A token can die early (rotation elsewhere, a restarted server with
        # new keys); one new login is worth a try, a second would be a loop.
        if not fresh and token_refused(response):
            token = yield from self.login(token.audience)
            response = yield build(token)
        return response

    def _post(self, path: str, payload: dict[str, Any]) -> httpx.Request:
        return httpx.Request("POST", self._url(path), json=payload)

    def _url(self, path: str) -> str:
        if not path.startswith("/"):
            # The token must never leave for another origin.
            raise ValueError("path must start with '/' and stay on the server")
        return self.base_url + path


class AdminFlows:
    """The admin calls, without I/O; the secret goes in ``X-Admin-Identity``."""

    def __init__(self, base_url: str, admin_secret: str) -> None:
        self.base_url = normalise_base_url(base_url)
        self._headers = {"X-Admin-Identity": admin_secret}

    def revoke(self, client_id: str) -> Flow[None]:
        """DELETE /v1/clients/{id}: the client and its tokens end at once."""
        response = yield self._request("DELETE", client_id, "")
        success_body(response, allow_empty=True)

    def suspend(self, client_id: str) -> Flow[None]:
        """POST /v1/clients/{id}/suspend."""
        response = yield self._request("POST", client_id, "/suspend")
        success_body(response, allow_empty=True)

    def reactivate(self, client_id: str, new: Credential) -> Flow[RecoveryResult]:
        """POST /v1/clients/{id}/reactivate with ``new``'s commitment."""
        if new.client_id != client_id:
            raise ValueError("the new credential is for another client")
        payload = {
            "newCommitment": encode_b64(new.commitment),
            "newCommitmentProof": encode_b64(reactivation_proof(new)),
        }
        response = yield self._request("POST", client_id, "/reactivate", payload)

        body = success_body(response)
        return RecoveryResult(string_field(body, "clientIdentifier"), word_list(body))

    def _request(
        self,
        method: str,
        client_id: str,
        suffix: str,
        payload: dict[str, Any] | None = None,
    ) -> httpx.Request:
        if not isinstance(client_id, str) or not CLIENT_ID_PATTERN.fullmatch(client_id):
            raise ValueError("client_id must be 1 to 128 of [A-Za-z0-9._-]")
        url = f"{self.base_url}/v1/clients/{client_segment(client_id)}{suffix}"
        return httpx.Request(method, url, headers=self._headers, json=payload)


def normalise_base_url(base_url: str) -> str:
    """``base_url`` without a trailing slash; only http and https."""
    url = httpx.URL(base_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"not an http(s) URL: {base_url!r}")
    return str(url).rstrip("/")


def authorization_headers(token: AccessToken) -> dict[str, str]:
    """The bearer token and the channel binding it was issued for."""
    return {
        "Authorization": f"Bearer {token.token}",
        "X-Channel-Binding": encode_b64(token.channel_binding),
    }


def token_refused(response: httpx.Response) -> bool:
    """A 401 that says the token itself is bad (RFC 6750 ``invalid_token``)."""
    challenge = response.headers.get("www-authenticate", "")
    return response.status_code == 401 and bool(_INVALID_TOKEN.search(challenge))


def split_words(words: str | Sequence[str]) -> list[str]:
    """A phrase as a list of words; a single string is split on whitespace."""
    if isinstance(words, str):
        return words.split()
    if not all(isinstance(word, str) for word in words):
        raise TypeError("recovery words must be strings")
    return [word.strip() for word in words]


def success_body(
    response: httpx.Response, *, allow_empty: bool = False
) -> dict[str, Any]:
    """The JSON object of a 2xx answer; a non-2xx one raises its problem."""
    if not response.is_success:
        raise ProblemResponse.from_response(response)
    if allow_empty and not response.content:
        return {}
    try:
        body = response.json()
    except ValueError:
        raise InvalidResponse(f"{response.status_code} answer is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidResponse(f"{response.status_code} answer is not a JSON object")
    return body


def string_field(body: dict[str, Any], key: str) -> str:
    """A non-empty string member, or ``InvalidResponse``."""
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidResponse(f"answer lacks the string {key!r}")
    return value


def int_field(body: dict[str, Any], key: str) -> int:
    """A non-negative integer member (not a bool), or ``InvalidResponse``."""
    value = body.get(key)
    if type(value) is not int or value < 0:
        raise InvalidResponse(f"answer lacks the integer {key!r}")
    return value


def bytes_field(body: dict[str, Any], key: str, size: int) -> bytes:
    """A base64 member of exactly ``size`` bytes, or ``InvalidResponse``."""
    try:
        value = decode_b64(body.get(key))
    except ValueError:
        raise InvalidResponse(f"answer lacks the base64 {key!r}") from None
    if len(value) != size:
        raise InvalidResponse(f"answer's {key!r} is not {size} bytes")
    return value


def time_field(body: dict[str, Any], key: str) -> datetime:
    """An ISO 8601 time with a zone, or ``InvalidResponse``."""
    text = string_field(body, key)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidResponse(f"answer's {key!r} is not an ISO time") from None
    if value.tzinfo is None:
        raise InvalidResponse(f"answer's {key!r} has no time zone")
    return value


def word_list(body: dict[str, Any]) -> tuple[str, ...]:
    """The ``recoveryWords`` array, or ``InvalidResponse``."""
    words = body.get("recoveryWords")
    if not isinstance(words, list) or not words:
        raise InvalidResponse("answer lacks 'recoveryWords'")
    if not all(isinstance(word, str) and word for word in words):
        raise InvalidResponse("answer's 'recoveryWords' are not all words")
    return tuple(words)
