"""Shared plumbing of the lifecycle, lockout, rate-limit and audit tests.

An :class:`Actor` holds one client's secrets and builds its request bodies
with the library's own crypto; a :class:`Harness` is the demo app behind the
ASGI middleware, driven through Starlette's TestClient, with a FakeClock and
any storage backend. :class:`Backend` opens a backend by name, migrated and
clean for the test; a backend whose server is down fails the test (it is
never skipped). :func:`start_server` and :func:`run_cli` run the real
``twofapi`` command for the multi-process and command-line suites.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from storage_backends import ALL_BACKENDS, backend_url
from twofapi_middleware import crypto
from twofapi_middleware.asgi import TwoFApiMiddleware
from twofapi_middleware.constants import AUTH_TAG
from twofapi_middleware.errors import StorageUnavailable
from twofapi_middleware.models import ClientRecord
from twofapi_middleware.server import demo_app
from twofapi_middleware.storage import Storage, open_storage, redact_url
from twofapi_middleware.testing import TEST_ADMIN_SECRET, FakeClock, fast_settings
from twofapi_middleware.tokens import generate_private_key_pem
from twofapi_middleware.wire import decode_b64, encode_b64

# Every backend, with the server markers of the storage suites; their
# URLs come from the same TWOFAPI_TEST_*_URL variables.
BACKENDS = ALL_BACKENDS

CREDENTIAL = encode_b64(b"first-factor")


class Backend:
    """One test's view of a storage backend: migrated, and clean for it.

    The PostgreSQL, MySQL and Redis servers are shared with other suites
    that may run at the same time, so a test never empties them: its
    clients carry a suffix of their own (:meth:`cid`), Redis keys a prefix
    of their own, and its clock starts at a time no other test uses, so
    rate-limit windows of other tests never meet its own. On close it
    deletes what it wrote.
    """

    def __init__(self, name: str, tmp_path: Path) -> None:
        self.name = name
        self.suffix = secrets.token_hex(4)
        self.start = 2_000_000_000.0 + secrets.randbelow(1_000_000) * 1000.0
        options: dict[str, Any] = {}
        if name == "redis":
            options["prefix"] = f"twofapi-test-{self.suffix}:"
        self.url = backend_url(name, tmp_path)
        self._options = options
        self.storage = open_storage(self.url, **options)
        try:
            self.storage.migrate()
        except StorageUnavailable as error:
            self.storage.close()
            pytest.fail(
                f"the {name} test server at {redact_url(self.url)} is "
                f"unreachable ({error}); start it, or point the "
                "TWOFAPI_TEST_*_URL variable at one",
                pytrace=False,
            )
        self.storage.check_schema()
        self._others: list[Storage] = []

    def another(self) -> Storage:
        """A second connection to the same store, as another worker has.

        Memory storage lives in one process: there, the same object.
        """
        if self.name == "memory":
            return self.storage
        other = open_storage(self.url, **self._options)
        self._others.append(other)
        return other

    def cid(self, name: str) -> str:
        """A client identifier only this test uses."""
        return f"{name}.{self.suffix}"

    def close(self) -> None:
        try:
            self._clean()
        finally:
            for other in self._others:
                other.close()
            self.storage.close()

    def _clean(self) -> None:
        engine = getattr(self.storage, "engine", None)
        if engine is not None:
            from twofapi_middleware.storage import sql

            mine = f"%.{self.suffix}"
            with engine.begin() as connection:
                for table in (sql.challenges, sql.clients):
                    connection.execute(
                        table.delete().where(table.c.client_id.like(mine))
                    )
                ends = sql.counters.c.window_end
                connection.execute(
                    sql.counters.delete().where(
                        ends.between(self.start, self.start + 10**7)
                    )
                )
            return
        if self.name == "redis":
            redis_client = self.storage.client  # type: ignore[attr-defined]
            keys = list(redis_client.scan_iter(f"twofapi-test-{self.suffix}:*"))
            if keys:
                redis_client.delete(*keys)


@dataclass
class Actor:
    """One client's identifier and secrets, and the bodies it sends."""

    client_id: str
    opening: crypto.Opening = field(default_factory=crypto.Opening.generate)
    binding: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    words: list[str] | None = None

    @property
    def commitment(self) -> bytes:
        return crypto.commit(self.opening)

    def enroll_body(self, opening: crypto.Opening | None = None) -> dict[str, Any]:
        opening = opening or self.opening
        pop = crypto.prove(
            opening, partial(crypto.pop_transcript, client_id=self.client_id)
        )
        return {
            "clientIdentifier": self.client_id,
            "commitment": encode_b64(crypto.commit(opening)),
            "proofOfPossession": encode_b64(pop),
        }

    def challenge_body(self) -> dict[str, Any]:
        return {
            "clientIdentifier": self.client_id,
            "credential": CREDENTIAL,
            "channelBinding": encode_b64(self.binding),
        }

    def verify_body(
        self, challenge: dict[str, Any], *, wrong: bool = False
    ) -> dict[str, Any]:
        """A body answering ``challenge``; ``wrong`` proves another secret.

        A wrong proof is well formed, so only the equation fails: a counted
        failure.
        """
        nonce = decode_b64(challenge["nonce"], "nonce")
        opening = crypto.Opening.generate() if wrong else self.opening
        transcript = partial(
            crypto.auth_transcript,
            client_id=self.client_id,
            nonce=nonce,
            channel_binding=self.binding,
        )
        proof = crypto.prove(opening, transcript)
        return {
            "clientIdentifier": self.client_id,
            "challengeId": challenge["challengeId"],
            "proof": encode_b64(proof),
            "channelBinding": encode_b64(self.binding),
            "domainSeparationTag": AUTH_TAG,
        }

    def rotate_body(self, new: crypto.Opening) -> dict[str, Any]:
        current = crypto.prove(self.opening, crypto.rotation_current_transcript)
        fresh = crypto.prove(new, crypto.rotation_new_transcript)
        return {
            "currentProof": encode_b64(current),
            "newCommitment": encode_b64(crypto.commit(new)),
            "newCommitmentProof": encode_b64(fresh),
        }

    def recover_body(self, new: crypto.Opening, words: list[str]) -> dict[str, Any]:
        pop = crypto.prove(
            new, partial(crypto.pop_transcript, client_id=self.client_id)
        )
        return {
            "recoveryWords": list(words),
            "newCommitment": encode_b64(crypto.commit(new)),
            "newCommitmentProof": encode_b64(pop),
        }

    def reactivate_body(self, new: crypto.Opening) -> dict[str, Any]:
        proof = crypto.prove(new, crypto.reactivation_transcript)
        return {
            "newCommitment": encode_b64(crypto.commit(new)),
            "newCommitmentProof": encode_b64(proof),
        }


ADMIN = {"X-Admin-Identity": TEST_ADMIN_SECRET}


class Harness:
    """The demo app behind the middleware, with a FakeClock and a backend."""

    def __init__(
        self,
        backend: Backend,
        *,
        peer: str = "203.0.113.7",
        clock: FakeClock | None = None,
        storage: Storage | None = None,
        **overrides: Any,
    ) -> None:
        self.backend = backend
        self.clock = clock or FakeClock(backend.start)
        storage = self.storage = storage or backend.storage
        self.settings = fast_settings(clock=self.clock, **overrides)
        self.app = TwoFApiMiddleware(demo_app, self.settings, storage=storage)
        self.service = self.app.service
        self.http = TestClient(self.app, client=(peer, 40000))
        self._peers: dict[str, TestClient] = {}

    def client_at(self, peer: str) -> TestClient:
        """A TestClient whose requests come from ``peer``."""
        if peer not in self._peers:
            self._peers[peer] = TestClient(self.app, client=(peer, 40000))
        return self._peers[peer]

    def close(self) -> None:
        self.http.close()
        for client in self._peers.values():
            client.close()
        self.app._executor.shutdown(wait=True)

    # -- raw calls -------------------------------------------------------

    def post(self, path: str, body: Any, **headers: str) -> httpx.Response:
        return self.http.post(path, json=body, headers=headers or None)

    def enroll(
        self, actor: Actor, opening: crypto.Opening | None = None
    ) -> httpx.Response:
        response = self.post("/v1/clients", actor.enroll_body(opening))
        if response.status_code == 201 and "recoveryWords" in response.json():
            actor.words = response.json()["recoveryWords"]
        return response

    def challenge(self, actor: Actor, **headers: str) -> httpx.Response:
        return self.post("/v1/challenges", actor.challenge_body(), **headers)

    def verify(
        self, actor: Actor, challenge: dict[str, Any], *, wrong: bool = False
    ) -> httpx.Response:
        return self.post("/v1/verify", actor.verify_body(challenge, wrong=wrong))

    def login(self, actor: Actor) -> str:
        """A fresh access token for ``actor``; fails the test otherwise."""
        issued = self.challenge(actor)
        assert issued.status_code == 200, issued.text
        verified = self.verify(actor, issued.json())
        assert verified.status_code == 200, verified.text
        token: str = verified.json()["accessToken"]
        return token

    def fail_login(self, actor: Actor) -> httpx.Response:
        """One counted failure: a challenge, then a wrong proof."""
        issued = self.challenge(actor)
        assert issued.status_code == 200, issued.text
        refused = self.verify(actor, issued.json(), wrong=True)
        assert refused.status_code == 401, refused.text
        return refused

    def resource(self, token: str, resource_id: str = "r1") -> httpx.Response:
        return self.http.get(
            f"/v1/resources/{resource_id}",
            headers={"Authorization": f"Bearer {token}"},
        )

    def rotate(
        self, actor: Actor, token: str, new: crypto.Opening | None = None
    ) -> tuple[httpx.Response, crypto.Opening]:
        new = new or crypto.Opening.generate()
        response = self.http.put(
            f"/v1/clients/{actor.client_id}/commitment",
            json=actor.rotate_body(new),
            headers={"Authorization": f"Bearer {token}"},
        )
        if response.status_code == 200:
            actor.opening = new
        return response, new

    def revoke(self, client_id: str, **headers: str) -> httpx.Response:
        return self.http.delete(f"/v1/clients/{client_id}", headers=headers)

    def suspend(self, client_id: str, **headers: str) -> httpx.Response:
        return self.http.post(f"/v1/clients/{client_id}/suspend", headers=headers)

    def recover(
        self, actor: Actor, words: list[str] | None = None
    ) -> tuple[httpx.Response, crypto.Opening]:
        new = crypto.Opening.generate()
        used = words if words is not None else actor.words
        assert used is not None
        response = self.post(
            f"/v1/clients/{actor.client_id}/recover", actor.recover_body(new, used)
        )
        if response.status_code == 200:
            actor.opening = new
            actor.words = response.json()["recoveryWords"]
        return response, new

    def reactivate(
        self, actor: Actor, headers: dict[str, str] | None = None
    ) -> tuple[httpx.Response, crypto.Opening]:
        new = crypto.Opening.generate()
        response = self.http.post(
            f"/v1/clients/{actor.client_id}/reactivate",
            json=actor.reactivate_body(new),
            headers=ADMIN if headers is None else headers,
        )
        if response.status_code == 200:
            actor.opening = new
            actor.words = response.json()["recoveryWords"]
        return response, new

    # -- state -----------------------------------------------------------

    def record(self, client_id: str) -> ClientRecord | None:
        return self.storage.get_client(client_id)

    def cid(self, name: str) -> str:
        return self.backend.cid(name)

    def enrolled(self, name: str) -> Actor:
        """Enroll a fresh client named ``name`` (made unique to this test)."""
        actor = Actor(self.cid(name))
        response = self.enroll(actor)
        assert response.status_code == 201, response.text
        return actor


def harness_for(backend: str, tmp_path: Path, **overrides: Any) -> Iterator[Harness]:
    """Fixture body: a Harness on ``backend``, cleaned up afterwards."""
    opened = Backend(backend, tmp_path)
    try:
        harness = Harness(opened, **overrides)
        try:
            yield harness
        finally:
            harness.close()
    finally:
        opened.close()


# -- real server processes ---------------------------------------------------

_LISTENING = re.compile(r"\[2FApi\] Listening on (http://\S+)")


def twofapi_command() -> list[str]:
    """The installed ``twofapi`` console script of this interpreter."""
    script = Path(sys.executable).with_name("twofapi")
    if script.exists():
        return [str(script)]
    found = shutil.which("twofapi")
    assert found, "the twofapi console script is not installed"
    return [found]


def production_env(storage_url: str, **extra: str) -> dict[str, str]:
    """What a production server needs, and nothing inherited: a signing
    key, the admin secret, the storage, cheap Argon2, no rate limits."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("TWOFAPI_") or name.startswith("TWOFAPI_TEST_")
    }
    env.update(
        TWOFAPI_ENV="production",
        TWOFAPI_SIGNING_KEY=generate_private_key_pem(),
        TWOFAPI_ADMIN_SECRET=TEST_ADMIN_SECRET,
        TWOFAPI_STORAGE_URL=storage_url,
        TWOFAPI_RATE_LIMIT_PER_ADDRESS="0",
        TWOFAPI_RATE_LIMIT_PER_CLIENT="0",
        TWOFAPI_ARGON2_MEMORY_KIB="64",
        TWOFAPI_ARGON2_TIME_COST="1",
    )
    env.update(extra)
    return env


def run_cli(
    *args: str,
    env: dict[str, str],
    cwd: Path | None = None,
    stdin: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``twofapi ARGS`` to completion, ``stdin`` as its standard input."""
    return subprocess.run(
        [*twofapi_command(), *args],
        env=env,
        cwd=cwd,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class ServerProcess:
    """A ``twofapi serve`` child process and the URL it listens on."""

    url: str
    process: subprocess.Popen[str]
    output: list[str]


def start_server(storage_url: str, env: dict[str, str]) -> ServerProcess:
    """``twofapi serve --storage URL --port 0``; waits until it is healthy."""
    process = subprocess.Popen(
        [*twofapi_command(), "serve", "--storage", storage_url, "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output: list[str] = []
    deadline = time.monotonic() + 30
    url = None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output.append(line)
        found = _LISTENING.search(line)
        if found:
            url = found.group(1)
            break
    if url is None:
        stop_server(ServerProcess("", process, output))
        raise AssertionError("twofapi serve did not start:\n" + "".join(output))
    # Keep draining the output, so that a chatty server never blocks.
    stream = process.stdout
    threading.Thread(
        target=lambda: output.extend(iter(stream.readline, "")), daemon=True
    ).start()
    server = ServerProcess(url, process, output)
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.05)
    stop_server(server)
    raise AssertionError(f"{url} never became healthy:\n" + "".join(output))


def stop_server(server: ServerProcess) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


def forget_clients(storage_url: str, suffix: str) -> None:
    """Delete the clients (and challenges) whose identifier ends in
    ``suffix`` from a store that server processes used."""
    storage = open_storage(storage_url)
    try:
        engine = getattr(storage, "engine", None)
        if engine is not None:
            from twofapi_middleware.storage import sql

            with engine.begin() as connection:
                for table in (sql.challenges, sql.clients):
                    connection.execute(
                        table.delete().where(table.c.client_id.like(f"%{suffix}"))
                    )
            return
        redis_client = getattr(storage, "client", None)
        if redis_client is not None:
            for kind in ("client", "challenge"):
                for key in redis_client.scan_iter(f"twofapi:{kind}:*{suffix}"):
                    redis_client.delete(key)
    finally:
        storage.close()
