"""Shared test plumbing: one client API over both adapters, and the crypto.

:class:`Api` drives the demo app behind either the ASGI middleware (through
Starlette's TestClient) or the WSGI middleware (through Werkzeug's test
client) with the same calls, so a test written once runs against both.
The ``api`` and ``make_api`` fixtures in ``conftest.py`` build them.

The protocol helpers (:func:`enroll`, :func:`issue_challenge`,
:func:`login`, the proof builders) use the library's own crypto, as a real
client would.
"""

from __future__ import annotations

import base64
import json as jsonlib
import secrets
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient
from werkzeug.test import Client as WerkzeugClient

from twofapi_middleware import crypto
from twofapi_middleware.asgi import TwoFApiMiddleware
from twofapi_middleware.constants import AUTH_TAG, CLIENT_ID_PATTERN
from twofapi_middleware.server import demo_app
from twofapi_middleware.service import TwoFApi
from twofapi_middleware.settings import Settings
from twofapi_middleware.storage import Storage
from twofapi_middleware.testing import TEST_ADMIN_SECRET, FakeClock
from twofapi_middleware.wire import encode_b64
from twofapi_middleware.wsgi import TwoFApiWSGIMiddleware

VECTORS = Path(__file__).resolve().parent / "vectors"


def load_vectors(name: str) -> Any:
    """One file of the protocol's known-answer vectors (tests/vectors/)."""
    return jsonlib.loads((VECTORS / name).read_text("utf-8"))


KINDS = ("asgi", "wsgi")
ADMIN = {"X-Admin-Identity": TEST_ADMIN_SECRET}
CREDENTIAL = encode_b64(b"first-factor")
PROBLEM = "application/problem+json"

_NO_BODY: Any = object()
_DEFAULT: Any = object()


def b64(data: bytes) -> str:
    return encode_b64(data)


# -- a WSGI twin of server.demo_app --------------------------------------------


def demo_wsgi_app(
    environ: dict[str, Any], start_response: Callable[..., Any]
) -> Iterable[bytes]:
    """``GET /v1/resources/{id}``, as :func:`twofapi_middleware.server.demo_app`."""
    raw = environ.get("PATH_INFO", "")
    path = raw.encode("latin-1").decode("utf-8", "replace")
    prefix = "/v1/resources/"
    resource_id = path[len(prefix) :] if path.startswith(prefix) else None
    principal = environ.get("twofapi.principal")
    if (
        environ.get("REQUEST_METHOD") in ("GET", "HEAD")
        and resource_id is not None
        and CLIENT_ID_PATTERN.fullmatch(resource_id)
        and principal is not None
    ):
        status, body = (
            "200 OK",
            {
                "resourceId": resource_id,
                "clientIdentifier": principal.client_id,
                "audience": principal.audience,
                "data": {},
            },
        )
    else:
        status, body = "404 Not Found", {"error": "not found"}
    payload = jsonlib.dumps(body, separators=(",", ":")).encode()
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
    )
    return [payload]


# -- one client over both adapters ---------------------------------------------


@dataclass
class Reply:
    """A response: status, lowercased headers, raw body."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return jsonlib.loads(self.body) if self.body else None

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body[:300]!r})"


@dataclass
class Api:
    """The demo app behind one adapter, with its service, storage and clock."""

    kind: str
    settings: Settings
    service: TwoFApi
    app: Any
    _client: Any = field(repr=False)

    @property
    def clock(self) -> FakeClock:
        return self.settings.clock  # type: ignore[return-value]

    @property
    def storage(self) -> Storage:
        return self.service.storage

    def request(
        self,
        method: str,
        path: str,
        json: Any = _NO_BODY,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = _DEFAULT,
    ) -> Reply:
        """Send a request; ``json`` is serialised, ``body`` sent as is.

        A body goes with ``Content-Type: application/json`` unless
        ``content_type`` says otherwise (None: no Content-Type at all).
        """
        if json is not _NO_BODY:
            body = jsonlib.dumps(json).encode()
        sent = dict(headers or {})
        if content_type is _DEFAULT:
            content_type = "application/json" if body is not None else None
        if content_type is not None:
            sent["Content-Type"] = content_type
        url = urllib.parse.quote(path, safe="/")
        if self.kind == "asgi":
            response = self._client.request(method, url, content=body, headers=sent)
            lowered = {k.lower(): v for k, v in response.headers.items()}
            return Reply(response.status_code, lowered, response.content)
        # A real WSGI server always names the peer; Werkzeug's test one not.
        response = self._client.open(
            url,
            method=method,
            data=body,
            headers=list(sent.items()),
            environ_base={"REMOTE_ADDR": "127.0.0.1"},
        )
        try:
            lowered = {k.lower(): v for k, v in response.headers.items()}
            return Reply(response.status_code, lowered, response.get_data())
        finally:
            response.close()

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.request("GET", path, **kwargs)

    def head(self, path: str, **kwargs: Any) -> Reply:
        return self.request("HEAD", path, **kwargs)

    def options(self, path: str, **kwargs: Any) -> Reply:
        return self.request("OPTIONS", path, **kwargs)

    def post(self, path: str, json: Any = _NO_BODY, **kwargs: Any) -> Reply:
        return self.request("POST", path, json, **kwargs)

    def put(self, path: str, json: Any = _NO_BODY, **kwargs: Any) -> Reply:
        return self.request("PUT", path, json, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Reply:
        return self.request("DELETE", path, **kwargs)

    def close(self) -> None:
        executor = getattr(self.app, "_executor", None)
        if executor is not None:
            executor.shutdown(wait=False)


def build_api(kind: str, settings: Settings) -> Api:
    """The demo app behind the ``kind`` adapter ("asgi" or "wsgi")."""
    service = TwoFApi(settings)
    if kind == "asgi":
        app: Any = TwoFApiMiddleware(demo_app, service=service)
        client: Any = TestClient(app)
    elif kind == "wsgi":
        app = TwoFApiWSGIMiddleware(demo_wsgi_app, service=service)
        client = WerkzeugClient(app)
    else:
        raise ValueError(kind)
    return Api(kind, settings, service, app, client)


# -- problem answers -----------------------------------------------------------


def assert_problem(
    reply: Reply, status: int, code: str, field_name: str | None = None
) -> dict[str, Any]:
    """Check a problem answer; for validation-failed, the field it names."""
    assert reply.status == status, reply
    assert reply.headers.get("content-type") == PROBLEM, reply.headers
    problem = reply.json
    assert problem["type"] == f"urn:2fapi:error:{code}", problem
    assert problem["status"] == status
    assert problem["instance"] == reply.headers["x-request-id"]
    if field_name is not None:
        assert f"'{field_name}'" in problem["detail"], problem
    return problem  # type: ignore[no-any-return]


# -- proofs --------------------------------------------------------------------


def pop_proof(opening: crypto.Opening, client_id: str) -> bytes:
    return crypto.prove(opening, partial(crypto.pop_transcript, client_id=client_id))


def auth_proof(
    opening: crypto.Opening, client_id: str, nonce: bytes, binding: bytes
) -> bytes:
    def transcript(commitment: bytes, announcement: bytes) -> bytes:
        return crypto.auth_transcript(
            commitment, announcement, client_id, nonce, binding
        )

    return crypto.prove(opening, transcript)


def rotation_bodies(current: crypto.Opening, new: crypto.Opening) -> dict[str, str]:
    """A valid rotate body from ``current`` to ``new``."""
    return {
        "currentProof": b64(crypto.prove(current, crypto.rotation_current_transcript)),
        "newCommitment": b64(crypto.commit(new)),
        "newCommitmentProof": b64(crypto.prove(new, crypto.rotation_new_transcript)),
    }


def recovery_body(
    words: list[str], new: crypto.Opening, client_id: str
) -> dict[str, Any]:
    return {
        "recoveryWords": list(words),
        "newCommitment": b64(crypto.commit(new)),
        "newCommitmentProof": b64(pop_proof(new, client_id)),
    }


def reactivation_body(new: crypto.Opening) -> dict[str, str]:
    return {
        "newCommitment": b64(crypto.commit(new)),
        "newCommitmentProof": b64(crypto.prove(new, crypto.reactivation_transcript)),
    }


# -- protocol steps --------------------------------------------------------------


def enroll_body(opening: crypto.Opening, client_id: str) -> dict[str, str]:
    return {
        "clientIdentifier": client_id,
        "commitment": b64(crypto.commit(opening)),
        "proofOfPossession": b64(pop_proof(opening, client_id)),
    }


def enroll(api: Api, client_id: str) -> tuple[crypto.Opening, bytes, list[str]]:
    """Enroll ``client_id``: its opening, commitment and recovery words."""
    opening = crypto.Opening.generate()
    reply = api.post("/v1/clients", enroll_body(opening, client_id))
    assert reply.status == 201, reply
    return opening, crypto.commit(opening), reply.json["recoveryWords"]


def issue_challenge(
    api: Api, client_id: str, binding: bytes | None = None
) -> tuple[dict[str, Any], bytes]:
    """A fresh challenge for ``client_id``, and the channel binding it holds."""
    binding = binding if binding is not None else secrets.token_bytes(32)
    reply = api.post(
        "/v1/challenges",
        {
            "clientIdentifier": client_id,
            "credential": CREDENTIAL,
            "channelBinding": b64(binding),
        },
    )
    assert reply.status == 200, reply
    return reply.json, binding


def verify_body(
    opening: crypto.Opening,
    client_id: str,
    challenge: Mapping[str, Any],
    binding: bytes,
    **extra: Any,
) -> dict[str, Any]:
    """A valid /v1/verify body answering ``challenge``."""
    nonce = base64.b64decode(challenge["nonce"], validate=True)
    body = {
        "clientIdentifier": client_id,
        "challengeId": challenge["challengeId"],
        "proof": b64(auth_proof(opening, client_id, nonce, binding)),
        "channelBinding": b64(binding),
        "domainSeparationTag": AUTH_TAG,
    }
    body.update(extra)
    return body


def login(
    api: Api, client_id: str, opening: crypto.Opening, **extra: Any
) -> tuple[str, bytes]:
    """Challenge and verify: the access token and the channel binding used."""
    challenge, binding = issue_challenge(api, client_id)
    reply = api.post(
        "/v1/verify", verify_body(opening, client_id, challenge, binding, **extra)
    )
    assert reply.status == 200, reply
    return reply.json["accessToken"], binding


def bearer(token: str, binding: bytes | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if binding is not None:
        headers["X-Channel-Binding"] = b64(binding)
    return headers
