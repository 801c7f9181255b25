"""The whole flow against real server processes: ASGI and WSGI.

``twofapi dev`` is the ASGI server (uvicorn); the WSGI one is waitress
serving the WSGI middleware around a small WSGI app. The Python client
enrolls, logs in and calls a guarded route; then hostile proofs go to the
same server over HTTP, and what the server did with each is read from the
outside: whether the challenge was spent (a valid proof for it afterwards),
and whether the failure was counted (three counted failures in a row lock
the client out of new challenges; three uncounted ones do not).
"""

from __future__ import annotations

import base64
import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from servers import dev_env, running_process
from twofapi_middleware import crypto
from twofapi_middleware.client import Credential, TwoFApiClient, authentication_proof
from twofapi_middleware.constants import AUTH_TAG, GROUP_ORDER, POINT_BYTES
from twofapi_middleware.wire import encode_b64

# The WSGI server: the middleware around an app that names its caller.
_WSGI_SERVER = """
import json, sys
import waitress
from twofapi_middleware import Settings, TwoFApiWSGIMiddleware

def app(environ, start_response):
    principal = environ["twofapi.principal"]
    body = json.dumps({"path": environ["PATH_INFO"],
                       "clientIdentifier": principal.client_id}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]

server = waitress.create_server(
    TwoFApiWSGIMiddleware(app, Settings.from_env()), host="127.0.0.1", port=0
)
print(f"WSGI on http://127.0.0.1:{server.effective_port}", flush=True)
server.run()
"""

_COMMANDS = {
    "asgi": [sys.executable, "-m", "twofapi_middleware.cli", "dev", "--port", "0"],
    "wsgi": [sys.executable, "-c", _WSGI_SERVER],
}


def _running(kind: str, folder: Path, **settings: str) -> Any:
    """A real server process of ``kind``; a context yielding its URL."""
    env = dev_env(
        TWOFAPI_RATE_LIMIT_PER_ADDRESS="0",
        TWOFAPI_RATE_LIMIT_PER_CLIENT="0",
        TWOFAPI_ARGON2_MEMORY_KIB="64",
        TWOFAPI_ARGON2_TIME_COST="1",
    )
    env.update(settings)
    return running_process(_COMMANDS[kind], folder, env)


@pytest.fixture(scope="module", params=list(_COMMANDS))
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with _running(request.param, tmp_path_factory.mktemp(request.param)) as url:
        yield url


def _enrolled(server: str, name: str) -> Credential:
    credential = Credential.generate(f"{name}-{secrets.token_hex(4)}")
    with TwoFApiClient(server, credential) as client:
        client.enroll()
    return credential


def _challenge(server: str, credential: Credential) -> tuple[httpx.Response, bytes]:
    binding = secrets.token_bytes(32)
    answer = httpx.post(
        f"{server}/v1/challenges",
        json={
            "clientIdentifier": credential.client_id,
            "credential": encode_b64(credential.first_factor),
            "channelBinding": encode_b64(binding),
        },
    )
    return answer, binding


def _verify(
    server: str,
    credential: Credential,
    challenge: dict[str, str],
    binding: bytes,
    proof: bytes,
    tag: str = AUTH_TAG,
) -> httpx.Response:
    return httpx.post(
        f"{server}/v1/verify",
        json={
            "clientIdentifier": credential.client_id,
            "challengeId": challenge["challengeId"],
            "proof": encode_b64(proof),
            "channelBinding": encode_b64(binding),
            "domainSeparationTag": tag,
        },
    )


def _nonce(challenge: dict[str, str]) -> bytes:
    return base64.b64decode(challenge["nonce"])


def test_the_python_client_completes_the_flow(server: str) -> None:
    credential = Credential.generate(f"alice-{secrets.token_hex(4)}")

    with TwoFApiClient(server, credential) as client:
        enrollment = client.enroll()
        assert enrollment.recovery_words is not None
        answer = client.get("/v1/resources/my-data")

    assert answer["clientIdentifier"] == credential.client_id
    refused = httpx.get(f"{server}/v1/resources/my-data")
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"


def test_a_tampered_proof_is_refused_and_the_token_withheld(server: str) -> None:
    credential = _enrolled(server, "bob")
    answer, binding = _challenge(server, credential)
    challenge = answer.json()
    proof = bytearray(authentication_proof(credential, _nonce(challenge), binding))
    proof[40] ^= 0x01

    refused = _verify(server, credential, challenge, binding, bytes(proof))

    assert refused.status_code == 401
    assert refused.json()["type"].endswith("verification-refused")
    assert "accessToken" not in refused.text


# -- hostile proofs: spent or not, counted or not ----------------------------


def _zero_responses_identity(credential: Credential, nonce: bytes, b: bytes) -> bytes:
    return bytes(POINT_BYTES) + bytes(64)


def _top_bit_announcement(credential: Credential, nonce: bytes, b: bytes) -> bytes:
    proof = authentication_proof(credential, nonce, b)
    return proof[:31] + bytes([proof[31] | 0x80]) + proof[32:]


def _response_plus_order(credential: Credential, nonce: bytes, b: bytes) -> bytes:
    proof = authentication_proof(credential, nonce, b)
    z_s = int.from_bytes(proof[32:64], "little") + GROUP_ORDER
    return proof[:32] + z_s.to_bytes(32, "little") + proof[64:]


def _transcript_without_nonce(credential: Credential, nonce: bytes, b: bytes) -> bytes:
    client_id = credential.client_id
    return crypto.prove(
        credential.opening,
        lambda c, a: crypto.auth_transcript(c, a, client_id, b"", b),
    )


Spoiler = Callable[[Credential, bytes, bytes], bytes]


def _login_works(server: str, credential: Credential) -> bool:
    answer, binding = _challenge(server, credential)
    if answer.status_code != 200:
        return False
    challenge = answer.json()
    proof = authentication_proof(credential, _nonce(challenge), binding)
    return _verify(server, credential, challenge, binding, proof).status_code == 200


@pytest.mark.parametrize(
    ("spoil", "counted"),
    [
        (_zero_responses_identity, False),
        (_top_bit_announcement, False),
        (_response_plus_order, False),
        (_transcript_without_nonce, True),
    ],
    ids=["identity A, zero z", "A top bit", "z_s + L", "no nonce in transcript"],
)
def test_a_refused_proof_spends_the_challenge_and_counts_as_the_table_says(
    server: str, spoil: Spoiler, counted: bool
) -> None:
    credential = _enrolled(server, "carol")

    for _ in range(3):
        answer, binding = _challenge(server, credential)
        assert answer.status_code == 200
        challenge = answer.json()
        bad = spoil(credential, _nonce(challenge), binding)
        refused = _verify(server, credential, challenge, binding, bad)
        assert refused.status_code == 401
        assert refused.json()["type"].endswith("verification-refused")
        # Spent: the right proof for that challenge comes too late.
        good = authentication_proof(credential, _nonce(challenge), binding)
        assert _verify(server, credential, challenge, binding, good).status_code == 401

    # Three counted failures in a row lock the client out; uncounted do not.
    assert _login_works(server, credential) is not counted


@pytest.mark.parametrize(
    ("shape", "tag"),
    [
        (lambda proof: proof, "2FApi-Sigma-v1"),
        (lambda proof: proof[:95], AUTH_TAG),
        (lambda proof: proof + b"\x00", AUTH_TAG),
    ],
    ids=["wrong tag", "95 bytes", "97 bytes"],
)
def test_a_malformed_request_is_400_and_leaves_the_challenge_usable(
    server: str, shape: Callable[[bytes], bytes], tag: str
) -> None:
    credential = _enrolled(server, "dave")
    answer, binding = _challenge(server, credential)
    challenge = answer.json()
    good = authentication_proof(credential, _nonce(challenge), binding)

    refused = _verify(server, credential, challenge, binding, shape(good), tag)

    assert refused.status_code == 400
    assert refused.json()["type"].endswith("validation-failed")
    assert _verify(server, credential, challenge, binding, good).status_code == 200


@pytest.mark.parametrize("kind", list(_COMMANDS))
def test_a_forged_forwarded_for_buys_no_new_attempts(kind: str, tmp_path: Path) -> None:
    # No proxy is trusted (the default): the peer address is the key, whatever
    # X-Forwarded-For says, and whatever the server in front would make of it.
    with _running(kind, tmp_path, TWOFAPI_RATE_LIMIT_PER_ADDRESS="3") as url:
        statuses = [
            httpx.post(
                f"{url}/v1/challenges",
                json={"clientIdentifier": "nobody", "credential": "AAAA"},
                headers={"X-Forwarded-For": f"203.0.113.{attempt}"},
            ).status_code
            for attempt in range(6)
        ]

    assert statuses[:3] != [429] * 3
    assert statuses[3:] == [429] * 3
