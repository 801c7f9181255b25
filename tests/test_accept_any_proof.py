"""The classic quick-start, with ``accept_any_proof``, on both adapters.

Exactly the steps of the reference's quick-start, which never computes a
real proof: a random commitment, a "proof of possession" that is base64 of
three base64 strings, a random 32-byte proof and the reference's tag
``2FApi-Sigma-v1``. It runs in-process on both adapters and once against a
real ``twofapi dev --accept-any-proof --port 0`` server.
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

from helpers import Api, assert_problem, b64
from servers import dev_env, running_process
from twofapi_middleware import (
    ConfigurationError,
    Settings,
    TwoFApi,
    TwoFApiMiddleware,
    TwoFApiWSGIMiddleware,
)
from twofapi_middleware.server import demo_app
from twofapi_middleware.tokens import generate_private_key_pem

Post = Callable[[str, dict[str, Any]], tuple[int, Any]]
Get = Callable[[str, dict[str, str]], tuple[int, Any]]


def quick_start(post: Post, get: Get) -> dict[str, Any]:
    """The reference quick-start, step by step; the resource it fetches."""
    client_id = "quickstart-client"

    commitment = b64(secrets.token_bytes(32))
    parts = "".join(b64(secrets.token_bytes(32)) for _ in range(3))
    proof_of_possession = base64.b64encode(parts.encode()).decode()
    assert len(proof_of_possession) == 176  # base64 of 132 bytes
    status, enrolled = post(
        "/v1/clients",
        {
            "clientIdentifier": client_id,
            "commitment": commitment,
            "proofOfPossession": proof_of_possession,
        },
    )
    assert status == 201, enrolled
    assert len(enrolled["recoveryWords"]) == 12

    status, challenge = post(
        "/v1/challenges",
        {
            "clientIdentifier": client_id,
            "credential": b64(secrets.token_bytes(32)),
            "channelBinding": b64(secrets.token_bytes(32)),
        },
    )
    assert status == 200, challenge

    status, verified = post(
        "/v1/verify",
        {
            "clientIdentifier": client_id,
            "challengeId": challenge["challengeId"],
            "proof": b64(secrets.token_bytes(32)),
            "channelBinding": challenge["channelBinding"],
            "domainSeparationTag": "2FApi-Sigma-v1",
        },
    )
    assert status == 200, verified
    assert verified["tokenType"] == "Bearer"
    assert verified["expiresIn"] == 900

    token = verified["accessToken"]
    status, resource = get(
        "/v1/resources/my-data", {"Authorization": f"Bearer {token}"}
    )
    assert status == 200, resource
    assert resource == {
        "resourceId": "my-data",
        "clientIdentifier": client_id,
        "audience": "default",
        "data": {},
    }
    status, _ = get("/v1/resources/my-data", {})
    assert status == 401
    return resource  # type: ignore[no-any-return]


@pytest.fixture
def open_api(make_api: Callable[..., Api]) -> Api:
    return make_api(accept_any_proof=True)


def test_quick_start_in_process(open_api: Api) -> None:
    def post(path: str, body: dict[str, Any]) -> tuple[int, Any]:
        reply = open_api.post(path, body)
        return reply.status, reply.json

    def get(path: str, headers: dict[str, str]) -> tuple[int, Any]:
        reply = open_api.get(path, headers=headers)
        return reply.status, reply.json

    quick_start(post, get)


def test_accept_any_proof_still_checks_everything_else(open_api: Api) -> None:
    api = open_api
    enrolled = api.post(
        "/v1/clients",
        {
            "clientIdentifier": "c",
            "commitment": b64(secrets.token_bytes(32)),
            "proofOfPossession": b64(secrets.token_bytes(96)),
        },
    )
    assert enrolled.status == 201, enrolled
    binding = b64(secrets.token_bytes(32))
    challenge = api.post(
        "/v1/challenges",
        {"clientIdentifier": "c", "credential": b64(b"k"), "channelBinding": binding},
    ).json
    body = {
        "clientIdentifier": "c",
        "challengeId": challenge["challengeId"],
        "proof": b64(secrets.token_bytes(32)),
        "channelBinding": binding,
        "domainSeparationTag": "2FApi-Sigma-v1",
    }

    bad = dict(body, proof="not base64!")
    assert_problem(api.post("/v1/verify", bad), 400, "validation-failed", "proof")
    bad = dict(body, domainSeparationTag="")
    assert_problem(
        api.post("/v1/verify", bad), 400, "validation-failed", "domainSeparationTag"
    )
    stranger = dict(body, clientIdentifier="nobody")
    assert_problem(api.post("/v1/verify", stranger), 401, "verification-refused")

    assert api.post("/v1/verify", body).status == 200
    # Still one use per challenge.
    assert_problem(api.post("/v1/verify", body), 401, "verification-refused")


@pytest.mark.parametrize(
    "build",
    [
        lambda settings: TwoFApi(settings),
        lambda settings: TwoFApiMiddleware(demo_app, settings),
        lambda settings: TwoFApiWSGIMiddleware(lambda e, s: [], settings),
    ],
    ids=["service", "asgi", "wsgi"],
)
def test_production_refuses_accept_any_proof(build: Callable[[Settings], Any]) -> None:
    settings = Settings(
        env="production",
        signing_key=generate_private_key_pem(),
        admin_secret="x" * 32,
        accept_any_proof=True,
    )

    with pytest.raises(ConfigurationError, match="accept-any-proof"):
        build(settings)

    # The same settings without the flag start.
    build(settings.replace(accept_any_proof=False))


def test_production_from_the_environment_refuses_accept_any_proof() -> None:
    environ = {
        "TWOFAPI_ENV": "production",
        "TWOFAPI_SIGNING_KEY": generate_private_key_pem(),
    }
    settings = Settings.from_env(environ, accept_any_proof=True)

    with pytest.raises(ConfigurationError, match="accept-any-proof"):
        TwoFApi(settings)


# -- against a real `twofapi dev --accept-any-proof` ------------------------------


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[str]:
    command = [
        sys.executable,
        "-m",
        "twofapi_middleware.cli",
        "dev",
        "--accept-any-proof",
        "--port",
        "0",
    ]
    with running_process(command, tmp_path, dev_env()) as url:
        yield url


def test_quick_start_against_twofapi_dev(dev_server: str) -> None:
    with httpx.Client(base_url=dev_server, timeout=10) as client:

        def post(path: str, body: dict[str, Any]) -> tuple[int, Any]:
            response = client.post(path, json=body)
            return response.status_code, response.json()

        def get(path: str, headers: dict[str, str]) -> tuple[int, Any]:
            response = client.get(path, headers=headers)
            return response.status_code, response.json()

        quick_start(post, get)
