"""The notes examples, in process and as real servers.

Each example runs one scenario (:func:`notes_scenario`) through its own
framework's test client: Flask's, Starlette's, and Django's ``Client``
(WSGI) and ``AsyncClient`` (ASGI). Then each runs as a real server process
(``examples/<name>/run.py --port 0``) driven by the Python client, with
large and chunked bodies, and once more with all three on one Redis.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import queue
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Generator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import django
import httpx
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
for _name in ("flask_app", "fastapi_app", "django_app"):
    if str(EXAMPLES / _name) not in sys.path:
        sys.path.insert(0, str(EXAMPLES / _name))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notes_django.settings")
django.setup()

from django.test import AsyncClient  # noqa: E402
from django.test import Client as DjangoClient  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from flask.testing import FlaskClient  # noqa: E402
from notes_fastapi import create_app as create_fastapi_app  # noqa: E402
from notes_flask import create_app as create_flask_app  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from twofapi_middleware.client import (  # noqa: E402
    Credential,
    ProblemResponse,
    TwoFApiClient,
    authentication_proof,
    proof_of_possession,
)
from twofapi_middleware.constants import AUTH_TAG  # noqa: E402
from twofapi_middleware.storage import open_storage  # noqa: E402
from twofapi_middleware.testing import fast_settings  # noqa: E402
from twofapi_middleware.tokens import generate_private_key_pem  # noqa: E402

REDIS_URL = os.environ.get(
    "TWOFAPI_TEST_EXAMPLES_REDIS_URL", "redis://127.0.0.1:6379/14"
)
BIG_TEXT = "0123456789abcdef" * (5 * 1024 * 1024 // 16)  # 5 MiB
FAST_ENV = {
    "TWOFAPI_ARGON2_MEMORY_KIB": "64",
    "TWOFAPI_ARGON2_TIME_COST": "1",
    "TWOFAPI_RATE_LIMIT_PER_ADDRESS": "0",
    "TWOFAPI_RATE_LIMIT_PER_CLIENT": "0",
}
FAST_DJANGO = {
    "argon2_memory_kib": 64,
    "argon2_time_cost": 1,
    "rate_limit_per_address": 0,
    "rate_limit_per_client": 0,
}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def new_id(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:12]}"


# -- one scenario, driven by every test client ---------------------------------


@dataclass
class Call:
    method: str
    path: str
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


Scenario = Generator[Call, Reply, None]


def login(client_id: str) -> Generator[Call, Reply, dict[str, str]]:
    """Enroll a fresh credential and log in; returns the auth headers."""
    credential = Credential.generate(client_id)
    reply = yield Call(
        "POST",
        "/v1/clients",
        {
            "clientIdentifier": client_id,
            "commitment": b64(credential.commitment),
            "proofOfPossession": b64(proof_of_possession(credential)),
        },
    )
    assert reply.status == 201, reply.body
    assert len(reply.json["recoveryWords"]) == 12

    binding = secrets.token_bytes(32)
    reply = yield Call(
        "POST",
        "/v1/challenges",
        {
            "clientIdentifier": client_id,
            "credential": b64(credential.first_factor),
            "channelBinding": b64(binding),
        },
    )
    assert reply.status == 200, reply.body
    nonce = base64.b64decode(reply.json["nonce"])
    reply = yield Call(
        "POST",
        "/v1/verify",
        {
            "clientIdentifier": client_id,
            "challengeId": reply.json["challengeId"],
            "proof": b64(authentication_proof(credential, nonce, binding)),
            "channelBinding": b64(binding),
            "domainSeparationTag": AUTH_TAG,
        },
    )
    assert reply.status == 200, reply.body
    return {"Authorization": f"Bearer {reply.json['accessToken']}"}


def notes_scenario() -> Scenario:
    reply = yield Call("GET", "/health")
    assert reply.status == 200 and reply.json["status"] == "ok"
    reply = yield Call("GET", "/public/hello")
    assert reply.status == 200 and reply.json == {"message": "Hello, world"}

    reply = yield Call("GET", "/notes")
    assert reply.status == 401
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.headers["www-authenticate"] == 'Bearer realm="2fapi"'
    assert reply.json["type"] == "urn:2fapi:error:unauthorized"
    reply = yield Call("POST", "/notes", {"text": "x"}, {"Authorization": "Bearer x"})
    assert reply.status == 401
    assert 'error="invalid_token"' in reply.headers["www-authenticate"]

    alice_id, bob_id = new_id("alice"), new_id("bob")
    alice = yield from login(alice_id)
    bob = yield from login(bob_id)

    reply = yield Call("POST", "/notes", {"text": "alice's"}, alice)
    assert reply.status == 201, reply.body
    alice_note = reply.json
    assert alice_note["owner"] == alice_id and alice_note["text"] == "alice's"
    reply = yield Call("POST", "/notes", {"text": "bob's"}, bob)
    assert reply.status == 201
    bob_note = reply.json

    reply = yield Call("GET", "/notes", headers=alice)
    assert reply.json == {"notes": [alice_note]}
    reply = yield Call("GET", f"/notes/{alice_note['id']}", headers=alice)
    assert reply.status == 200 and reply.json == alice_note
    reply = yield Call("GET", f"/notes/{bob_note['id']}", headers=alice)
    assert reply.status == 404
    reply = yield Call("GET", f"/notes/{alice_note['id']}", headers=bob)
    assert reply.status == 404

    reply = yield Call("GET", "/v1/resources/res-1", headers=bob)
    assert reply.status == 200
    assert reply.json == {
        "resourceId": "res-1",
        "clientIdentifier": bob_id,
        "audience": "default",
        "data": {},
    }
    reply = yield Call("GET", "/v1/resources/bad!id", headers=bob)
    assert reply.status == 404

    reply = yield Call("POST", "/notes", {"text": BIG_TEXT}, alice)
    assert reply.status == 201
    reply = yield Call("GET", f"/notes/{reply.json['id']}", headers=alice)
    assert reply.json["text"] == BIG_TEXT


def run(scenario: Scenario, send: Callable[[Call], Reply]) -> None:
    try:
        call = next(scenario)
        while True:
            call = scenario.send(send(call))
    except StopIteration:
        pass


async def arun(scenario: Scenario, send: Callable[[Call], Awaitable[Reply]]) -> None:
    try:
        call = next(scenario)
        while True:
            call = scenario.send(await send(call))
    except StopIteration:
        pass


def lowered(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


# -- in process -----------------------------------------------------------------


def test_flask_example_with_flask_test_client() -> None:
    app = create_flask_app(FAST_ENV)
    client: FlaskClient = app.test_client()

    def send(call: Call) -> Reply:
        response = client.open(
            call.path, method=call.method, json=call.json, headers=call.headers
        )
        return Reply(response.status_code, lowered(response.headers), response.data)

    run(notes_scenario(), send)


def test_fastapi_example_with_starlette_test_client() -> None:
    app = create_fastapi_app(fast_settings())

    with TestClient(app) as client:

        def send(call: Call) -> Reply:
            response = client.request(
                call.method, call.path, json=call.json, headers=call.headers
            )
            return Reply(
                response.status_code, lowered(response.headers), response.content
            )

        run(notes_scenario(), send)


def _django_call(call: Call) -> dict[str, Any]:
    data = "" if call.json is None else json.dumps(call.json)
    return {
        "method": call.method,
        "path": call.path,
        "data": data,
        "content_type": "application/json",
        "headers": call.headers,
    }


@override_settings(TWOFAPI=FAST_DJANGO)
def test_django_example_under_wsgi_with_django_client() -> None:
    client = DjangoClient(enforce_csrf_checks=True)

    def send(call: Call) -> Reply:
        response = client.generic(**_django_call(call))
        return Reply(response.status_code, lowered(response.headers), response.content)

    run(notes_scenario(), send)


@override_settings(TWOFAPI=FAST_DJANGO)
def test_django_example_under_asgi_with_django_async_client() -> None:
    client = AsyncClient(enforce_csrf_checks=True)

    async def send(call: Call) -> Reply:
        response = await client.generic(**_django_call(call))
        return Reply(response.status_code, lowered(response.headers), response.content)

    asyncio.run(arun(notes_scenario(), send))


# -- real servers -----------------------------------------------------------------


@contextmanager
def serve(example: str, *options: str, env: dict[str, str]) -> Iterator[str]:
    """Run ``examples/<example>/run.py --port 0``; yield its base URL."""
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / example / "run.py"), "--port", "0", *options],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    url = None
    deadline = time.monotonic() + 30
    try:
        while url is None:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = ""
            seen.append(line)
            if line.startswith("[2FApi] Listening on "):
                url = line.split()[-1]
            elif not line or time.monotonic() > deadline:
                raise AssertionError(f"{example} did not start:\n{''.join(seen)}")
        assert sum("Listening on" in line for line in seen) == 1
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def chunks(text: str) -> Iterator[bytes]:
    payload = json.dumps({"text": text}).encode()
    for start in range(0, len(payload), 256 * 1024):
        yield payload[start : start + 256 * 1024]


def client_flow(url: str) -> None:
    """The notes flow through the Python client against a live server."""
    alice_id, bob_id = new_id("alice"), new_id("bob")
    with (
        TwoFApiClient(url, Credential.generate(alice_id)) as alice,
        TwoFApiClient(url, Credential.generate(bob_id)) as bob,
    ):
        assert alice.enroll().recovery_words is not None
        bob.enroll()
        alice.login()

        note = alice.request("POST", "/notes", json={"text": "alice's"}).json()
        assert note["owner"] == alice_id
        bob_note = bob.request("POST", "/notes", json={"text": "bob's"}).json()
        assert alice.get(f"/notes/{note['id']}") == note
        assert alice.get("/notes") == {"notes": [note]}
        for reader, other in ((bob, note), (alice, bob_note)):
            with pytest.raises(ProblemResponse) as refused:
                reader.get(f"/notes/{other['id']}")
            assert refused.value.status == 404
        resource = alice.get("/v1/resources/res-1")
        assert resource["clientIdentifier"] == alice_id

        big = alice.request("POST", "/notes", json={"text": BIG_TEXT}).json()
        assert alice.get(f"/notes/{big['id']}")["text"] == BIG_TEXT
        streamed = alice.request(
            "POST",
            "/notes",
            content=chunks(BIG_TEXT),
            headers={"Content-Type": "application/json"},
        )
        assert streamed.request.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in streamed.request.headers
        assert alice.get(f"/notes/{streamed.json()['id']}")["text"] == BIG_TEXT

    refused_reply = httpx.get(f"{url}/notes")
    assert refused_reply.status_code == 401
    assert refused_reply.headers["www-authenticate"] == 'Bearer realm="2fapi"'
    assert refused_reply.json()["type"] == "urn:2fapi:error:unauthorized"
    hello = httpx.get(f"{url}/public/hello")
    assert hello.status_code == 200 and hello.json() == {"message": "Hello, world"}


SERVERS = [
    pytest.param(("flask_app",), id="flask-waitress"),
    pytest.param(("fastapi_app",), id="fastapi-uvicorn"),
    pytest.param(("django_app",), id="django-asgi-uvicorn"),
    pytest.param(("django_app", "--wsgi"), id="django-wsgi-waitress"),
]


@pytest.mark.parametrize("command", SERVERS)
def test_example_server_with_python_client(command: tuple[str, ...]) -> None:
    with serve(*command, env=FAST_ENV) as url:
        client_flow(url)


@pytest.mark.redis
def test_examples_share_one_redis_storage() -> None:
    storage = open_storage(REDIS_URL)
    storage.migrate()
    env = {**FAST_ENV, "TWOFAPI_SIGNING_KEY": generate_private_key_pem()}
    try:
        with ExitStack() as stack:
            urls = [
                stack.enter_context(serve(name, "--storage", REDIS_URL, env=env))
                for name in ("flask_app", "fastapi_app", "django_app")
            ]
            for url in urls:
                client_flow(url)

            # Enrolled on one server, logged in on the next, served by the
            # third: the state and the signing key are shared.
            carol_id = new_id("carol")
            credential = Credential.generate(carol_id)
            with TwoFApiClient(urls[0], credential) as carol:
                carol.enroll()
            with TwoFApiClient(urls[1], credential) as carol:
                token = carol.login().token
            mine = httpx.get(
                f"{urls[2]}/notes", headers={"Authorization": f"Bearer {token}"}
            )
            assert mine.status_code == 200 and mine.json() == {"notes": []}
            assert storage.get_client(carol_id) is not None
    finally:
        storage.close()
