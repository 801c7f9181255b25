"""Storage failure fails closed: 503 with Retry-After, one WARNING, recovery.

The connection to the real server is cut by a TCP proxy the test controls,
with requests in flight, then restored.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
from urllib.parse import urlsplit

import pytest
from starlette.testclient import TestClient
from werkzeug.test import Client

from tcp_proxy import tcp_proxy
from twofapi_middleware import TwoFApiMiddleware, TwoFApiWSGIMiddleware, crypto
from twofapi_middleware.server import demo_app
from twofapi_middleware.service import TwoFApi
from twofapi_middleware.storage import open_storage
from twofapi_middleware.testing import fast_settings

SERVERS = {
    "postgresql": os.environ.get(
        "TWOFAPI_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test"
    ),
    "mysql": os.environ.get(
        "TWOFAPI_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"
    ),
    "redis": os.environ.get("TWOFAPI_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def via(url: str, port: int) -> str:
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}127.0.0.1:{port}{parts.path}"


def enrollment(client_id: str) -> dict[str, str]:
    opening = crypto.Opening.generate()
    commitment = crypto.commit(opening)
    pop = crypto.prove(opening, lambda c, a: crypto.pop_transcript(c, a, client_id))
    return {
        "clientIdentifier": client_id,
        "commitment": b64(commitment),
        "proofOfPossession": b64(pop),
    }


def challenge_body(client_id: str) -> dict[str, str]:
    return {
        "clientIdentifier": client_id,
        "credential": b64(b"k"),
        "channelBinding": b64(os.urandom(32)),
    }


@pytest.fixture(params=list(SERVERS), ids=list(SERVERS))
def proxied(request):
    url = SERVERS[request.param]
    direct = open_storage(url)
    direct.migrate()
    parts = urlsplit(url)
    with tcp_proxy(parts.hostname or "127.0.0.1", parts.port or 0) as proxy:
        storage = open_storage(via(url, proxy.port), timeout_seconds=2)
        yield proxy, storage, direct
        storage.close()
    direct.close()


def outage_warnings(caplog) -> int:
    return sum(
        1
        for record in caplog.records
        if record.levelno == logging.WARNING and "storage unavailable" in record.message
    )


def test_cut_connection_gives_503_once_warned_and_recovers(proxied, caplog):
    proxy, storage, direct = proxied
    service = TwoFApi(fast_settings(), storage)
    app = TwoFApiWSGIMiddleware(demo_app, service=service)  # type: ignore[arg-type]
    suffix = os.urandom(4).hex()
    client = Client(app)
    assert (
        client.post("/v1/clients", json=enrollment(f"alice-{suffix}")).status_code
        == 201
    )

    statuses: list[int] = []
    retry_after: list[str | None] = []
    stop = threading.Event()
    lock = threading.Lock()

    def hammer(worker: int) -> None:
        own = Client(app)
        number = 0
        while not stop.is_set():
            number += 1
            if number % 2:
                response = own.post(
                    "/v1/challenges", json=challenge_body(f"alice-{suffix}")
                )
            else:
                body = enrollment(f"c{worker}-{number}-{suffix}")
                response = own.post("/v1/clients", json=body)
            with lock:
                statuses.append(response.status_code)
                if response.status_code == 503:
                    retry_after.append(response.headers.get("Retry-After"))

    caplog.set_level(logging.WARNING, logger="twofapi_middleware")
    workers = [threading.Thread(target=hammer, args=(n,)) for n in range(6)]
    for worker in workers:
        worker.start()
    time.sleep(1.0)
    proxy.cut()
    time.sleep(3.0)
    proxy.restore()
    deadline = time.time() + 30
    while time.time() < deadline:
        with lock:
            recent = statuses[-12:]
        if len(recent) == 12 and all(s in (200, 201) for s in recent):
            break
        time.sleep(0.2)
    stop.set()
    for worker in workers:
        worker.join(timeout=30)

    assert set(statuses) <= {200, 201, 503}, sorted(set(statuses))
    assert 503 in statuses
    assert retry_after and all(value and value.isdigit() for value in retry_after)
    assert outage_warnings(caplog) == 1
    assert statuses[-1] in (200, 201)

    # No partial write: every client is either absent or whole and usable.
    for status_client in [
        f"c{n}-{i}-{suffix}" for n in range(6) for i in range(2, 40, 2)
    ]:
        record = direct.get_client(status_client)
        if record is not None:
            assert crypto.is_acceptable_point(record.commitment)
            assert record.recovery_hash.startswith("$argon2id$")


def test_asgi_path_answers_503_when_the_store_is_gone(proxied, caplog):
    proxy, storage, _ = proxied
    service = TwoFApi(fast_settings(), storage)
    client = TestClient(TwoFApiMiddleware(demo_app, service=service))
    suffix = os.urandom(4).hex()
    assert (
        client.post("/v1/clients", json=enrollment(f"bob-{suffix}")).status_code == 201
    )
    proxy.cut()
    caplog.set_level(logging.WARNING, logger="twofapi_middleware")
    for _ in range(3):
        response = client.post("/v1/challenges", json=challenge_body(f"bob-{suffix}"))
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "urn:2fapi:error:storage-unavailable"
        assert response.headers["retry-after"].isdigit()
    guarded = client.get("/v1/resources/x", headers={"Authorization": "Bearer a.b.c"})
    assert guarded.status_code == 401  # a malformed token never reaches storage
    assert outage_warnings(caplog) == 1
    proxy.restore()
    deadline = time.time() + 20
    status = 0
    while time.time() < deadline and status != 200:
        status = client.post(
            "/v1/challenges", json=challenge_body(f"bob-{suffix}")
        ).status_code
        time.sleep(0.2)
    assert status == 200
