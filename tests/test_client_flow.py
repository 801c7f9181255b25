"""The client's HTTP flows: against a scripted server, then a live one.

The scripted server (``FakeServer``, behind ``httpx.MockTransport``) checks
every proof with the library's crypto and can be told to refuse tokens; it
shows the sync and async shells send the same requests for the same
answers. The live tests run ``twofapi dev --port 0`` in a subprocess and go
through enrollment, login, a guarded route, rotation, recovery and the
admin calls, with the library and with the ``twofapi`` command.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random
import re
import secrets
import socket
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from servers import dev_env, running_process
from twofapi_middleware import crypto
from twofapi_middleware.cli import main
from twofapi_middleware.client import (
    AccessToken,
    AdminClient,
    AsyncAdminClient,
    AsyncTwoFApiClient,
    ClientError,
    Credential,
    EnrollmentResult,
    InvalidResponse,
    ProblemResponse,
    RecoveryResult,
    TransportFailed,
    TwoFApiClient,
)
from twofapi_middleware.constants import AUTH_TAG
from twofapi_middleware.testing import FakeClock

BASE = "http://api.test"
ADMIN_SECRET = "admin-secret-for-tests-0123456789abcdef"
WORDS = ["abandon"] * 11 + ["about"]
START = 1_800_000_000.0


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def problem(
    status: int, code: str, *, invalid_token: bool = False, **headers: str
) -> httpx.Response:
    if invalid_token:
        headers["WWW-Authenticate"] = 'Bearer realm="2fapi", error="invalid_token"'
    body = {
        "type": f"urn:2fapi:error:{code}",
        "title": code.replace("-", " ").capitalize(),
        "status": status,
        "detail": f"fixed detail of {code}",
        "instance": "req-1",
    }
    return httpx.Response(
        status,
        json=body,
        headers={"content-type": "application/problem+json", **headers},
    )


@dataclass
class FakeServer:
    """A small 2FApi server in memory that checks every proof for real."""

    clock: FakeClock
    requests: list[httpx.Request] = field(default_factory=list)
    commitments: dict[str, bytes] = field(default_factory=dict)
    words: dict[str, list[str]] = field(default_factory=dict)
    challenges: dict[str, tuple[str, bytes, bytes]] = field(default_factory=dict)
    tokens: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    refuse_tokens: int = 0
    counter: int = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = json.loads(request.content) if request.content else {}
        path = request.url.path
        route = re.fullmatch(r"/v1/clients/([^/]+)(/\w+)?", path)
        if request.method == "POST" and path == "/v1/clients":
            return self.enroll(body)
        if request.method == "POST" and path == "/v1/challenges":
            return self.challenge(body)
        if request.method == "POST" and path == "/v1/verify":
            return self.verify(body)
        if path.startswith("/v1/resources/"):
            return self.resource(request)
        if route and request.method == "PUT" and route[2] == "/commitment":
            return self.rotate(request, route[1], body)
        if route and request.method == "POST" and route[2] == "/recover":
            return self.recover(route[1], body)
        if route and request.headers.get("x-admin-identity") != ADMIN_SECRET:
            return problem(403, "forbidden")
        if route and request.method == "DELETE" and route[2] is None:
            self.commitments.pop(route[1], None)
            return httpx.Response(204)
        if route and request.method == "POST" and route[2] == "/suspend":
            return httpx.Response(204)
        if route and request.method == "POST" and route[2] == "/reactivate":
            return self.reactivate(route[1], body)
        return httpx.Response(404, json={"error": "not found"})

    def enroll(self, body: dict[str, Any]) -> httpx.Response:
        client_id = body["clientIdentifier"]
        commitment = unb64(body["commitment"])
        if not self.valid(commitment, body["proofOfPossession"], self.pop(client_id)):
            return problem(409, "enrollment-refused")
        answer = {"referenceId": f"ref-{client_id}", "clientIdentifier": client_id}
        if client_id not in self.commitments:
            self.commitments[client_id] = commitment
            self.words[client_id] = WORDS
            answer["recoveryWords"] = WORDS
        elif self.commitments[client_id] != commitment:
            return problem(409, "enrollment-refused")
        return httpx.Response(201, json=answer)

    def challenge(self, body: dict[str, Any]) -> httpx.Response:
        assert body["protocolVersion"] == "1.0"
        assert unb64(body["credential"])
        binding = unb64(body["channelBinding"])
        assert len(binding) == 32
        if body["clientIdentifier"] not in self.commitments:
            return problem(401, "challenge-refused")
        self.counter += 1
        challenge_id = f"challenge-{self.counter}"
        nonce = bytes(16) + self.counter.to_bytes(8, "big")
        self.challenges[challenge_id] = (body["clientIdentifier"], nonce, binding)
        return httpx.Response(
            200,
            json={
                "challengeId": challenge_id,
                "nonce": b64(nonce),
                "channelBinding": body["channelBinding"],
                "expiresAt": iso(self.clock() + 120),
                "protocolVersion": "1.0",
            },
        )

    def verify(self, body: dict[str, Any]) -> httpx.Response:
        assert body["domainSeparationTag"] == AUTH_TAG
        client_id = body["clientIdentifier"]
        owner, nonce, binding = self.challenges.pop(body["challengeId"])
        assert owner == client_id
        assert unb64(body["channelBinding"]) == binding

        def transcript(c: bytes, a: bytes) -> bytes:
            return crypto.auth_transcript(c, a, client_id, nonce, binding)

        if not self.valid(self.commitments[client_id], body["proof"], transcript):
            return problem(401, "verification-refused")
        token = f"token-{self.counter}-{body.get('targetAudience', 'default')}"
        self.tokens[token] = (client_id, binding)
        return httpx.Response(
            200,
            json={
                "accessToken": token,
                "tokenType": "Bearer",
                "expiresAt": iso(self.clock() + 900),
                "expiresIn": 900,
            },
        )

    def bearer(self, request: httpx.Request) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.tokens:
            return None
        client_id, binding = self.tokens[token]
        if unb64(request.headers["x-channel-binding"]) != binding:
            return None
        if self.refuse_tokens:
            self.refuse_tokens -= 1
            return None
        return client_id

    def resource(self, request: httpx.Request) -> httpx.Response:
        client_id = self.bearer(request)
        if client_id is None:
            return problem(401, "unauthorized", invalid_token=True)
        resource_id = request.url.path.rsplit("/", 1)[1]
        return httpx.Response(
            200, json={"resourceId": resource_id, "clientIdentifier": client_id}
        )

    def rotate(
        self, request: httpx.Request, client_id: str, body: dict[str, Any]
    ) -> httpx.Response:
        if self.bearer(request) != client_id:
            return problem(401, "unauthorized", invalid_token=True)
        new = unb64(body["newCommitment"])
        current = crypto.rotation_current_transcript
        if not (
            self.valid(self.commitments[client_id], body["currentProof"], current)
            and self.valid(
                new, body["newCommitmentProof"], crypto.rotation_new_transcript
            )
        ):
            return problem(401, "rotation-refused")
        self.replace(client_id, new)
        return httpx.Response(200, json={"rotatedAt": iso(self.clock())})

    def recover(self, client_id: str, body: dict[str, Any]) -> httpx.Response:
        new = unb64(body["newCommitment"])
        if body["recoveryWords"] != self.words.get(client_id) or not self.valid(
            new, body["newCommitmentProof"], self.pop(client_id)
        ):
            return problem(401, "recovery-failed")
        self.replace(client_id, new)
        self.words[client_id] = list(reversed(WORDS))
        return httpx.Response(
            200,
            json={
                "recovered": True,
                "clientIdentifier": client_id,
                "recoveryWords": self.words[client_id],
            },
        )

    def reactivate(self, client_id: str, body: dict[str, Any]) -> httpx.Response:
        new = unb64(body["newCommitment"])
        proof = body["newCommitmentProof"]
        if not self.valid(new, proof, crypto.reactivation_transcript):
            return problem(401, "reactivation-failed")
        self.replace(client_id, new)
        self.words[client_id] = WORDS
        return httpx.Response(
            200,
            json={
                "reactivated": True,
                "clientIdentifier": client_id,
                "recoveryWords": WORDS,
            },
        )

    def replace(self, client_id: str, commitment: bytes) -> None:
        self.commitments[client_id] = commitment
        self.tokens = {k: v for k, v in self.tokens.items() if v[0] != client_id}

    @staticmethod
    def pop(client_id: str) -> crypto.TranscriptFn:
        return lambda c, a: crypto.pop_transcript(c, a, client_id)

    @staticmethod
    def valid(commitment: bytes, proof: str, transcript: crypto.TranscriptFn) -> bool:
        verdict = crypto.check_proof(commitment, unb64(proof), transcript)
        return verdict is crypto.Verdict.VALID

    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r in self.requests]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def server(clock: FakeClock) -> FakeServer:
    return FakeServer(clock)


@pytest.fixture
def alice() -> Credential:
    return Credential.generate("alice")


@pytest.fixture
def client(
    server: FakeServer, alice: Credential, clock: FakeClock
) -> Iterator[TwoFApiClient]:
    http = httpx.Client(transport=httpx.MockTransport(server))
    with http, TwoFApiClient(BASE, alice, http=http, clock=clock) as client:
        yield client


def enrolled(client: TwoFApiClient) -> TwoFApiClient:
    client.enroll()
    return client


# -- one flow, two shells ------------------------------------------------------

Step = tuple[str, tuple[Any, ...], Callable[[FakeServer, FakeClock], None] | None]


def _scenario(new: Credential, newer: Credential) -> list[Step]:
    """Every client call, including re-logins and refusals."""

    def advance(seconds: float) -> Callable[[FakeServer, FakeClock], None]:
        return lambda server, clock: clock.set(clock() + seconds)

    def refuse(count: int) -> Callable[[FakeServer, FakeClock], None]:
        return lambda server, clock: setattr(server, "refuse_tokens", count)

    resource = ("/v1/resources/x",)
    return [
        ("enroll", (), None),
        ("enroll", (), None),
        ("get", resource, None),
        ("get", resource, None),
        ("get", resource, advance(900 - 29)),
        ("get", resource, refuse(1)),
        ("get", resource, refuse(2)),
        ("login", ("reports",), None),
        ("get", resource, None),
        ("rotate", (new,), None),
        ("get", resource, None),
        ("recover", (WORDS[::-1], newer), None),
        ("recover", (" ".join(WORDS), newer), None),
        ("get", ("/v1/missing",), None),
    ]


def _outcome(result: Any) -> Any:
    if isinstance(result, AccessToken):
        return ("token", result.token, result.expires_at, result.audience)
    return result


def _error(error: ClientError) -> Any:
    if isinstance(error, ProblemResponse):
        return ("problem", error.status, error.type, error.detail)
    return (type(error).__name__, str(error))


def _run_sync(alice: Credential, steps: list[Step]) -> tuple[list[Any], FakeServer]:
    clock = FakeClock(START)
    server = FakeServer(clock)
    results: list[Any] = []
    http = httpx.Client(transport=httpx.MockTransport(server))
    with TwoFApiClient(BASE, alice, http=http, clock=clock) as client:
        for name, args, before in steps:
            if before is not None:
                before(server, clock)
            try:
                results.append(_outcome(getattr(client, name)(*args)))
            except ClientError as error:
                results.append(_error(error))
    http.close()
    return results, server


async def _run_async(
    alice: Credential, steps: list[Step]
) -> tuple[list[Any], FakeServer]:
    clock = FakeClock(START)
    server = FakeServer(clock)
    results: list[Any] = []
    http = httpx.AsyncClient(transport=httpx.MockTransport(server))
    async with AsyncTwoFApiClient(BASE, alice, http=http, clock=clock) as client:
        for name, args, before in steps:
            if before is not None:
                before(server, clock)
            try:
                results.append(_outcome(await getattr(client, name)(*args)))
            except ClientError as error:
                results.append(_error(error))
    await http.aclose()
    return results, server


def _wire(server: FakeServer) -> list[tuple[str, str, list[tuple[str, str]], bytes]]:
    return [
        (
            request.method,
            str(request.url),
            sorted(
                (key, value)
                for key, value in request.headers.items()
                if key not in ("user-agent", "accept-encoding")
            ),
            request.content,
        )
        for request in server.requests
    ]


def _deterministic_randomness(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    source = random.Random(seed)
    monkeypatch.setattr(secrets, "token_bytes", lambda size=32: source.randbytes(size))


def test_sync_and_async_shells_send_the_same_requests(
    alice: Credential, monkeypatch: pytest.MonkeyPatch
) -> None:
    new, newer = alice.successor(), alice.successor()
    steps = _scenario(new, newer)

    _deterministic_randomness(monkeypatch, 7)
    sync_results, sync_server = _run_sync(alice, steps)
    _deterministic_randomness(monkeypatch, 7)
    async_results, async_server = asyncio.run(_run_async(alice, steps))

    assert _wire(sync_server) == _wire(async_server)
    assert sync_results == async_results
    # The scenario went where it was meant to.
    assert sync_results[0] == EnrollmentResult("ref-alice", tuple(WORDS))
    assert sync_results[1] == EnrollmentResult("ref-alice", None)
    assert sync_results[6][:3] == ("problem", 401, "urn:2fapi:error:unauthorized")
    assert sync_results[11][:3] == ("problem", 401, "urn:2fapi:error:recovery-failed")
    assert sync_results[12] == RecoveryResult("alice", tuple(reversed(WORDS)))
    assert sync_results[13][:2] == ("problem", 404)
    assert sync_server.paths().count("POST /v1/verify") == 7


def test_admin_shells_send_the_same_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reactivated = Credential.generate("bob")

    def run_sync() -> tuple[list[Any], FakeServer]:
        server = FakeServer(FakeClock(START))
        http = httpx.Client(transport=httpx.MockTransport(server))
        with http, AdminClient(BASE, ADMIN_SECRET, http=http) as admin:
            admin.suspend("bob")
            result = admin.reactivate("bob", reactivated)
            admin.revoke("bob")
        return [result], server

    async def run_async() -> tuple[list[Any], FakeServer]:
        server = FakeServer(FakeClock(START))
        http = httpx.AsyncClient(transport=httpx.MockTransport(server))
        async with http, AsyncAdminClient(BASE, ADMIN_SECRET, http=http) as admin:
            await admin.suspend("bob")
            result = await admin.reactivate("bob", reactivated)
            await admin.revoke("bob")
        return [result], server

    _deterministic_randomness(monkeypatch, 3)
    sync_results, sync_server = run_sync()
    _deterministic_randomness(monkeypatch, 3)
    async_results, async_server = asyncio.run(run_async())

    assert sync_results == async_results
    assert sync_results == [RecoveryResult("bob", tuple(WORDS))]
    assert _wire(sync_server) == _wire(async_server)
    assert sync_server.paths() == [
        "POST /v1/clients/bob/suspend",
        "POST /v1/clients/bob/reactivate",
        "DELETE /v1/clients/bob",
    ]
    assert all(
        r.headers["x-admin-identity"] == ADMIN_SECRET for r in sync_server.requests
    )


# -- what goes on the wire -----------------------------------------------------


def test_login_sends_the_documented_fields(
    client: TwoFApiClient, server: FakeServer, alice: Credential
) -> None:
    enrolled(client).login(audience="reports")

    challenge, verify = (json.loads(r.content) for r in server.requests[1:])
    assert challenge == {
        "clientIdentifier": "alice",
        "credential": b64(alice.first_factor),
        "channelBinding": challenge["channelBinding"],
        "protocolVersion": "1.0",
    }
    assert verify == {
        "clientIdentifier": "alice",
        "challengeId": "challenge-1",
        "proof": verify["proof"],
        "channelBinding": challenge["channelBinding"],
        "domainSeparationTag": "2FApi-v1.0-Sigma",
        "targetAudience": "reports",
    }
    assert len(unb64(verify["proof"])) == 96
    assert all(r.headers["content-type"] == "application/json" for r in server.requests)


def test_each_login_draws_a_fresh_channel_binding(
    client: TwoFApiClient, server: FakeServer
) -> None:
    first = enrolled(client).login()
    second = client.login()

    assert first.channel_binding != second.channel_binding
    assert len(first.channel_binding) == 32


def test_guarded_call_carries_token_and_binding(
    client: TwoFApiClient, server: FakeServer
) -> None:
    data = enrolled(client).get("/v1/resources/x")

    assert data == {"resourceId": "x", "clientIdentifier": "alice"}
    token = client.token
    assert token is not None
    call = server.requests[-1]
    assert call.headers["authorization"] == f"Bearer {token.token}"
    assert unb64(call.headers["x-channel-binding"]) == token.channel_binding
    assert server.paths()[1:] == [
        "POST /v1/challenges",
        "POST /v1/verify",
        "GET /v1/resources/x",
    ]


def test_token_is_reused_until_close_to_expiry(
    client: TwoFApiClient, server: FakeServer, clock: FakeClock
) -> None:
    enrolled(client).get("/v1/resources/x")
    clock.advance(900 - 31)
    client.get("/v1/resources/x")
    assert server.paths().count("POST /v1/verify") == 1

    clock.advance(2)
    client.get("/v1/resources/x")
    assert server.paths().count("POST /v1/verify") == 2


def test_local_clock_bounds_a_token_from_a_skewed_server(
    client: TwoFApiClient, server: FakeServer, clock: FakeClock
) -> None:
    # The server's clock is an hour ahead: expiresAt alone would look fine
    # for an hour too long, expiresIn is counted on the local clock.
    server.clock = FakeClock(START + 3600)
    enrolled(client).login()
    token = client.token
    assert token is not None

    assert not token.is_expired(clock())
    assert token.is_expired(clock() + 900 - 29)


def test_invalid_token_answer_logs_in_again_once(
    client: TwoFApiClient, server: FakeServer
) -> None:
    enrolled(client).get("/v1/resources/x")
    server.refuse_tokens = 1

    assert client.get("/v1/resources/x")["resourceId"] == "x"
    assert server.paths()[-3:] == [
        "POST /v1/challenges",
        "POST /v1/verify",
        "GET /v1/resources/x",
    ]

    server.refuse_tokens = 2
    with pytest.raises(ProblemResponse) as caught:
        client.get("/v1/resources/x")
    assert caught.value.status == 401
    assert server.paths().count("POST /v1/verify") == 3


def test_a_fresh_login_is_not_retried(
    client: TwoFApiClient, server: FakeServer
) -> None:
    enrolled(client)
    server.refuse_tokens = 1

    with pytest.raises(ProblemResponse):
        client.get("/v1/resources/x")

    assert server.paths().count("POST /v1/verify") == 1


def test_problem_details_are_carried(client: TwoFApiClient, server: FakeServer) -> None:
    with pytest.raises(ProblemResponse) as caught:
        client.login()

    error = caught.value
    assert isinstance(error, ClientError)
    assert (error.status, error.code) == (401, "challenge-refused")
    assert error.type == "urn:2fapi:error:challenge-refused"
    assert error.detail == "fixed detail of challenge-refused"
    assert error.body["instance"] == "req-1"
    assert str(error) == "401 Challenge refused: fixed detail of challenge-refused"


def test_non_problem_errors_and_retry_after_are_read() -> None:
    response = httpx.Response(
        429,
        text="slow down",
        headers={"Retry-After": "17", "content-type": "text/plain"},
    )

    error = ProblemResponse.from_response(response)

    assert (error.status, error.type, error.title) == (
        429,
        "about:blank",
        "Too Many Requests",
    )
    assert error.retry_after_seconds == 17
    assert error.code is None


def test_enrollment_refusal_is_a_problem(
    client: TwoFApiClient, server: FakeServer
) -> None:
    server.commitments["alice"] = Credential.generate("alice").commitment

    with pytest.raises(ProblemResponse) as caught:
        client.enroll()

    assert caught.value.code == "enrollment-refused"


def test_rotation_switches_credential_and_forgets_the_token(
    client: TwoFApiClient, server: FakeServer, alice: Credential
) -> None:
    new = alice.successor()
    enrolled(client).login()

    rotated_at = client.rotate(new)

    assert rotated_at == datetime.fromtimestamp(START, UTC)
    assert client.credential == new
    assert client.token is None
    assert server.commitments["alice"] == new.commitment
    assert client.get("/v1/resources/x")["clientIdentifier"] == "alice"


def test_refused_rotation_keeps_the_credential(
    client: TwoFApiClient, server: FakeServer, alice: Credential
) -> None:
    enrolled(client).login()
    server.commitments["alice"] = Credential.generate("alice").commitment

    with pytest.raises(ProblemResponse) as caught:
        client.rotate(alice.successor())

    assert caught.value.code == "rotation-refused"
    assert client.credential == alice
    assert server.paths()[-1] == "PUT /v1/clients/alice/commitment"


@pytest.mark.parametrize(
    "make",
    [lambda cred: Credential.generate("mallory"), lambda cred: cred],
    ids=["another client", "same commitment"],
)
def test_rotation_refuses_a_wrong_new_credential_before_sending(
    client: TwoFApiClient,
    server: FakeServer,
    alice: Credential,
    make: Callable[[Credential], Credential],
) -> None:
    with pytest.raises(ValueError):
        client.rotate(make(alice))

    assert server.requests == []


def test_recovery_takes_a_string_or_a_list(
    client: TwoFApiClient, server: FakeServer, alice: Credential
) -> None:
    enrolled(client)
    new = alice.successor()

    result = client.recover(" ".join(WORDS) + "\n", new)

    assert result == RecoveryResult("alice", tuple(reversed(WORDS)))
    assert json.loads(server.requests[-1].content)["recoveryWords"] == WORDS
    assert client.credential == new
    assert "about" not in repr(result)


@pytest.mark.parametrize("path", ["v1/resources/x", "http://evil.test/steal", ""])
def test_token_never_leaves_for_another_origin(
    client: TwoFApiClient, server: FakeServer, path: str
) -> None:
    enrolled(client).login()

    with pytest.raises(ValueError):
        client.get(path)


def test_base_url_keeps_its_path_prefix(alice: Credential) -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(201, json={"referenceId": "r"})

    http = httpx.Client(transport=httpx.MockTransport(answer))
    with http, TwoFApiClient(f"{BASE}/auth/", alice, http=http) as client:
        client.enroll()

    assert seen == [f"{BASE}/auth/v1/clients"]


@pytest.mark.parametrize("url", ["ftp://api.test", "api.test", "http://"])
def test_base_url_must_be_http(alice: Credential, url: str) -> None:
    with pytest.raises(ValueError):
        TwoFApiClient(url, alice)


def test_transport_errors_are_wrapped(alice: Credential) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    http = httpx.Client(transport=httpx.MockTransport(refuse))
    with (
        http,
        TwoFApiClient(BASE, alice, http=http) as client,
        pytest.raises(TransportFailed, match=r"cannot reach http://api\.test"),
    ):
        client.login()


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="<html>"),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(200, json={"challengeId": "c"}),
        httpx.Response(200, json={"challengeId": "c", "nonce": "AA=="}),
        httpx.Response(200, json={"challengeId": "c", "nonce": "not base64!"}),
    ],
    ids=["html", "list", "no nonce", "short nonce", "bad nonce"],
)
def test_broken_success_answers_are_invalid_responses(
    alice: Credential, answer: httpx.Response
) -> None:
    http = httpx.Client(transport=httpx.MockTransport(lambda request: answer))
    with (
        http,
        TwoFApiClient(BASE, alice, http=http) as client,
        pytest.raises(InvalidResponse),
    ):
        client.login()


def test_results_hide_their_secrets(client: TwoFApiClient, server: FakeServer) -> None:
    enrollment = client.enroll()
    token = client.login()

    assert "abandon" not in repr(enrollment)
    assert token.token not in repr(token)
    admin = AdminClient(BASE, ADMIN_SECRET)
    assert ADMIN_SECRET not in repr(admin)
    admin.close()


def test_wrong_admin_secret_is_forbidden(server: FakeServer) -> None:
    http = httpx.Client(transport=httpx.MockTransport(server))
    with (
        http,
        AdminClient(BASE, "wrong", http=http) as admin,
        pytest.raises(ProblemResponse) as caught,
    ):
        admin.revoke("bob")

    assert caught.value.code == "forbidden"


# -- against a live `twofapi dev` ------------------------------------------------

LIVE_ADMIN_SECRET = "live-admin-secret-" + "x" * 32
_BANNER = re.compile(r"\[2FApi\] Listening on (http://\S+)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``twofapi dev --port 0`` in a subprocess; yields its base URL."""
    env = dev_env(
        TWOFAPI_ADMIN_SECRET=LIVE_ADMIN_SECRET,
        TWOFAPI_RATE_LIMIT_PER_ADDRESS="0",
        TWOFAPI_RATE_LIMIT_PER_CLIENT="0",
        TWOFAPI_ARGON2_MEMORY_KIB="64",
        TWOFAPI_ARGON2_TIME_COST="1",
    )
    command = [sys.executable, "-m", "twofapi_middleware.cli", "dev", "--port", "0"]
    with running_process(command, tmp_path_factory.mktemp("dev"), env) as url:
        yield url


def _client_id(name: str) -> str:
    return f"{name}-{secrets.token_hex(4)}"


def test_live_enroll_login_get_rotate_recover(live_server: str) -> None:
    client_id = _client_id("alice")
    credential = Credential.generate(client_id)

    with TwoFApiClient(live_server, credential) as client:
        enrollment = client.enroll()
        assert enrollment.recovery_words is not None
        assert len(enrollment.recovery_words) == 12
        assert client.enroll().recovery_words is None

        data = client.get("/v1/resources/x")
        assert data["resourceId"] == "x"
        assert data["clientIdentifier"] == client_id
        old_token = client.token
        assert old_token is not None and old_token.expires_in == 900

        rotated = credential.successor()
        client.rotate(rotated)
        # The rotation ended the token it was made with.
        answer = httpx.get(
            f"{live_server}/v1/resources/x",
            headers={"Authorization": f"Bearer {old_token.token}"},
        )
        assert answer.status_code == 401
        assert client.get("/v1/resources/y")["resourceId"] == "y"

        recovered = rotated.successor()
        result = client.recover(enrollment.recovery_words, recovered)
        assert result.client_id == client_id
        assert result.recovery_words != enrollment.recovery_words
        assert client.get("/v1/resources/z")["clientIdentifier"] == client_id

        with pytest.raises(ProblemResponse) as caught:
            client.recover(enrollment.recovery_words, recovered.successor())
        assert caught.value.code == "recovery-failed"

    with TwoFApiClient(live_server, credential) as stale:
        with pytest.raises(ProblemResponse) as caught:
            stale.login()
        assert caught.value.status == 401


def test_live_async_client(live_server: str) -> None:
    credential = Credential.generate(_client_id("async"))

    async def run() -> dict[str, Any]:
        async with AsyncTwoFApiClient(live_server, credential) as client:
            await client.enroll()
            await client.login()
            await client.rotate(credential.successor())
            data: dict[str, Any] = await client.get("/v1/resources/a")
            return data

    assert asyncio.run(run())["clientIdentifier"] == credential.client_id


def test_live_admin_calls(live_server: str) -> None:
    client_id = _client_id("bob")
    credential = Credential.generate(client_id)
    with TwoFApiClient(live_server, credential) as client:
        client.enroll()

    with AdminClient(live_server, "wrong-secret") as intruder:
        with pytest.raises(ProblemResponse) as caught:
            intruder.suspend(client_id)
        assert caught.value.status == 403

    with AdminClient(live_server, LIVE_ADMIN_SECRET) as admin:
        admin.suspend(client_id)
        with TwoFApiClient(live_server, credential) as client:
            with pytest.raises(ProblemResponse) as caught:
                client.login()
            assert caught.value.code == "challenge-refused"

        fresh = Credential.generate(client_id)
        result = admin.reactivate(client_id, fresh)
        assert len(result.recovery_words) == 12
        with TwoFApiClient(live_server, fresh) as client:
            assert client.get("/v1/resources/r")["clientIdentifier"] == client_id

        admin.revoke(client_id)
        with (
            TwoFApiClient(live_server, fresh) as client,
            pytest.raises(ProblemResponse),
        ):
            client.login()


def _words_from(output: str) -> str:
    lines = output.splitlines()
    index = next(i for i, line in enumerate(lines) if "shown only this once" in line)
    words = lines[index + 1].split()
    assert len(words) == 12
    return " ".join(words)


def test_live_cli_round_trip(
    live_server: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client_id = _client_id("cli")
    path = tmp_path / "cred.json"
    common = ["--credential", str(path), "--server", live_server]

    assert main(["client", "enroll", "--client-id", client_id, *common]) == 0
    words = _words_from(capsys.readouterr().out)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Credential.load(path).server_url == live_server

    # The server URL comes from the file from now on.
    assert main(["client", "login", "--credential", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"Logged in as {client_id}" in out
    assert "eyJ" not in out

    assert main(["client", "login", "--print-token", *common]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().count(".") == 2
    assert "Logged in" in captured.err

    assert main(["client", "get", "/v1/resources/x", *common]) == 0
    assert json.loads(capsys.readouterr().out)["clientIdentifier"] == client_id

    before = Credential.load(path)
    assert main(["client", "rotate", *common]) == 0
    after = Credential.load(path)
    assert after.commitment != before.commitment
    assert after.first_factor == before.first_factor
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cred.json"]
    capsys.readouterr()

    monkeypatch.setattr(sys, "stdin", io.StringIO(words + "\n"))
    assert main(["client", "recover", *common]) == 0
    fresh_words = _words_from(capsys.readouterr().out)
    assert fresh_words != words
    assert Credential.load(path).commitment != after.commitment
    assert main(["client", "get", "/v1/resources/y", *common]) == 0
    capsys.readouterr()

    # The old phrase is spent.
    assert main(["client", "recover", "--words", words, *common]) == 1
    err = capsys.readouterr().err
    assert err.startswith("twofapi: error: 401") and err.count("\n") == 1
    assert not (tmp_path / "cred.json.pending").exists()

    monkeypatch.setenv("TWOFAPI_ADMIN_SECRET", LIVE_ADMIN_SECRET)
    admin = ["--server", live_server]
    assert main(["admin", "suspend", client_id, *admin]) == 0
    assert main(["client", "login", *common]) == 1
    new_path = tmp_path / "reactivated.json"
    assert (
        main(["admin", "reactivate", client_id, *admin, "--credential", str(new_path)])
        == 0
    )
    assert stat.S_IMODE(new_path.stat().st_mode) == 0o600
    capsys.readouterr()
    assert main(["client", "login", "--credential", str(new_path)]) == 0
    assert main(["admin", "revoke", client_id, *admin]) == 0
    assert main(["client", "login", "--credential", str(new_path)]) == 1


def test_cli_reports_connection_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cred.json"
    server = f"http://127.0.0.1:{_free_port()}"

    status = main(
        [
            "client",
            "enroll",
            "--client-id",
            "x",
            "--credential",
            str(path),
            "--server",
            server,
        ]
    )

    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith(f"twofapi: error: cannot reach {server}")
    assert err.count("\n") == 1
    assert "Traceback" not in err
    # The outcome is unknown, so the new credential is kept for a retry.
    assert Credential.load(path).client_id == "x"
