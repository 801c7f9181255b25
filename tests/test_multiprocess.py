"""Two server processes on one shared store: single use and counting hold.

Fifty clients released together by a barrier verify one challenge, spread
over both processes: exactly one wins. Failed attempts made through both
processes are all counted.
"""

from __future__ import annotations

import base64
import os
import threading

import httpx
import pytest

from servers import running_servers, server_env
from twofapi_middleware import crypto
from twofapi_middleware.storage import open_storage

SHARED = {
    "postgresql": os.environ.get(
        "TWOFAPI_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test"
    ),
    "redis": os.environ.get("TWOFAPI_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
}
RACERS = 50


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(params=list(SHARED), ids=list(SHARED))
def two_servers(request):
    url = SHARED[request.param]
    storage = open_storage(url)
    storage.migrate()
    env = server_env(TWOFAPI_LOCKOUT_THRESHOLD="1000")
    with running_servers(url, 2, env) as servers:
        yield [server.url for server in servers], storage
    storage.close()


def enroll(base: str, client_id: str) -> crypto.Opening:
    opening = crypto.Opening.generate()
    commitment = crypto.commit(opening)
    pop = crypto.prove(opening, lambda c, a: crypto.pop_transcript(c, a, client_id))
    body = {
        "clientIdentifier": client_id,
        "commitment": b64(commitment),
        "proofOfPossession": b64(pop),
    }
    assert httpx.post(f"{base}/v1/clients", json=body).status_code == 201
    return opening


def challenge(base: str, client_id: str) -> tuple[dict, bytes]:
    binding = os.urandom(32)
    body = {
        "clientIdentifier": client_id,
        "credential": b64(b"k"),
        "channelBinding": b64(binding),
    }
    response = httpx.post(f"{base}/v1/challenges", json=body)
    assert response.status_code == 200, response.text
    return response.json(), binding


def verify_body(client_id, issued, binding, opening, tamper=False) -> dict:
    nonce = base64.b64decode(issued["nonce"])
    proof = crypto.prove(
        opening, lambda c, a: crypto.auth_transcript(c, a, client_id, nonce, binding)
    )
    if tamper:
        proof = proof[:32] + crypto.random_scalar() + proof[64:]
    return {
        "clientIdentifier": client_id,
        "challengeId": issued["challengeId"],
        "proof": b64(proof),
        "channelBinding": b64(binding),
        "domainSeparationTag": "2FApi-v1.0-Sigma",
    }


def test_fifty_racers_over_two_processes_one_winner(two_servers):
    urls, storage = two_servers
    client_id = f"racer-{os.urandom(4).hex()}"
    opening = enroll(urls[0], client_id)
    issued, binding = challenge(urls[1], client_id)
    body = verify_body(client_id, issued, binding, opening)

    clients = [httpx.Client(base_url=urls[n % 2]) for n in range(RACERS)]
    for client in clients:
        client.get("/health")  # connect before the race
    barrier = threading.Barrier(RACERS)
    results: list[tuple[int, str]] = [(0, "")] * RACERS

    def race(n: int) -> None:
        barrier.wait()
        response = clients[n].post("/v1/verify", json=body)
        results[n] = (response.status_code, response.headers.get("x-served-by", ""))

    threads = [threading.Thread(target=race, args=(n,)) for n in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.close()

    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [401] * (RACERS - 1)
    assert len({pid for _, pid in results}) == 2  # both processes served
    assert storage.take_challenge(issued["challengeId"], client_id) is None
    record = storage.get_client(client_id)
    assert record is not None and record.failed_attempts == 0


def test_failures_through_both_processes_are_all_counted(two_servers):
    urls, storage = two_servers
    client_id = f"guesser-{os.urandom(4).hex()}"
    opening = enroll(urls[0], client_id)
    served = set()
    for attempt in range(8):
        issued, binding = challenge(urls[attempt % 2], client_id)
        body = verify_body(client_id, issued, binding, opening, tamper=True)
        response = httpx.post(f"{urls[(attempt + 1) % 2]}/v1/verify", json=body)
        assert response.status_code == 401
        served.add(response.headers["x-served-by"])
    assert len(served) == 2
    record = storage.get_client(client_id)
    assert record is not None and record.failed_attempts == 8
