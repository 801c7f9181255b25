"""PROTOCOL.md sections 5 and 8: rate limits, with a FakeClock, every backend.

Limits are counted in the shared storage in fixed windows: per source
address across the ``/v1`` endpoints, and per clientIdentifier and endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lifecycle_support import BACKENDS, Actor, Harness, harness_for
from twofapi_middleware import audit
from twofapi_middleware.constants import MAX_BODY_BYTES
from twofapi_middleware.models import AuditEvent

WINDOW = 60


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(backend: str, tmp_path: Path) -> Iterator[Any]:
    """Harnesses with rate-limit settings, on this test's backend."""
    opened: list[Iterator[Harness]] = []

    def build(**overrides: Any) -> Harness:
        overrides.setdefault("rate_limit_per_address", 0)
        overrides.setdefault("rate_limit_per_client", 0)
        generator = harness_for(backend, tmp_path, **overrides)
        opened.append(generator)
        return next(generator)

    yield build
    for generator in opened:
        generator.close()


def limited(response: httpx.Response) -> bool:
    if response.status_code != 429:
        return False
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:2fapi:error:rate-limited"
    assert 1 <= int(response.headers["retry-after"]) <= WINDOW
    return True


def mixed_requests(client: httpx.Client, cid: str) -> list[httpx.Response]:
    """One request to each /v1 endpoint; most of them refused."""
    actor = Actor(cid)
    return [
        client.post("/v1/clients", json=actor.enroll_body()),
        client.post("/v1/challenges", json=actor.challenge_body()),
        client.post("/v1/verify", json={"clientIdentifier": cid}),
        client.put(f"/v1/clients/{cid}/commitment", json={}),
        client.delete(f"/v1/clients/{cid}"),
        client.post(f"/v1/clients/{cid}/suspend"),
        client.post(f"/v1/clients/{cid}/recover", json={}),
        client.post(f"/v1/clients/{cid}/reactivate", json={}),
    ]


def test_per_address_limit_spans_the_v1_endpoints(make: Any) -> None:
    h: Harness = make(rate_limit_per_address=8)
    client = h.client_at("198.51.100.10")

    answers = mixed_requests(client, h.cid("alice"))

    assert not any(limited(answer) for answer in answers)
    assert limited(client.post("/v1/challenges", json={}))
    assert limited(client.delete(f"/v1/clients/{h.cid('bob')}"))
    # Another address has its own budget.
    other = h.client_at("198.51.100.11")
    assert other.post("/v1/challenges", json={}).status_code == 400


def test_health_and_jwks_are_not_limited(make: Any) -> None:
    h: Harness = make(rate_limit_per_address=2)
    client = h.client_at("198.51.100.12")
    for _ in range(5):
        assert client.get("/health").status_code == 200
        assert client.get("/.well-known/jwks.json").status_code == 200

    assert client.post("/v1/challenges", json={}).status_code == 400
    assert client.post("/v1/challenges", json={}).status_code == 400
    assert limited(client.post("/v1/challenges", json={}))
    assert client.get("/health").status_code == 200


def test_the_window_rolls_over(make: Any) -> None:
    h: Harness = make(rate_limit_per_address=3)
    client = h.client_at("198.51.100.13")
    for _ in range(3):
        assert client.post("/v1/challenges", json={}).status_code == 400
    refused = client.post("/v1/challenges", json={})
    assert limited(refused)
    wait = int(refused.headers["retry-after"])

    h.clock.advance(wait - 1)
    assert limited(client.post("/v1/challenges", json={}))
    h.clock.advance(1)
    assert client.post("/v1/challenges", json={}).status_code == 400


def test_refused_requests_count_too(make: Any) -> None:
    h: Harness = make(rate_limit_per_address=4)
    client = h.client_at("198.51.100.14")
    cid = h.cid("ghost")
    answers = [
        client.post("/v1/challenges", json=Actor(cid).challenge_body()),  # 401
        client.post("/v1/challenges", content=b"{", headers=_json()),  # 400
        client.post("/v1/challenges", content=b"{}", headers=_text()),  # 415
        client.post("/v1/challenges", content=_too_large(), headers=_json()),
    ]

    assert [answer.status_code for answer in answers] == [401, 400, 415, 413]
    assert limited(client.post("/v1/challenges", json={}))


def test_per_client_limit_is_per_endpoint(make: Any) -> None:
    h: Harness = make(rate_limit_per_client=3)
    alice, bob = h.enrolled("alice"), h.enrolled("bob")
    for _ in range(2):
        assert h.challenge(alice).status_code == 200
    issued = h.challenge(alice)
    assert issued.status_code == 200

    assert limited(h.challenge(alice))
    assert h.challenge(bob).status_code == 200
    # The verify endpoint keeps its own budget for alice.
    assert h.verify(alice, issued.json()).status_code == 200
    h.clock.advance(WINDOW)
    assert h.challenge(alice).status_code == 200


def test_per_client_limit_follows_the_identifier_from_any_address(
    make: Any,
) -> None:
    h: Harness = make(rate_limit_per_client=2)
    cid = h.cid("carol")
    body = Actor(cid).challenge_body()
    statuses = [
        h.client_at(f"198.51.100.{20 + n}").post("/v1/challenges", json=body)
        for n in range(3)
    ]

    assert [s.status_code for s in statuses[:2]] == [401, 401]
    assert limited(statuses[2])


def test_per_client_limit_on_path_endpoints(make: Any) -> None:
    h: Harness = make(rate_limit_per_client=2)
    cid = h.cid("dave")
    path = f"/v1/clients/{cid}/recover"
    for _ in range(2):
        assert h.http.post(path, json={"recoveryWords": []}).status_code == 400

    assert limited(h.http.post(path, json={"recoveryWords": []}))
    assert h.http.delete(f"/v1/clients/{cid}").status_code == 403


def test_zero_switches_limits_off(make: Any) -> None:
    h: Harness = make()
    actor = h.enrolled("erin")
    for _ in range(40):
        assert h.challenge(actor).status_code == 200


def test_a_limit_is_shared_by_every_worker(make: Any, backend: str) -> None:
    h: Harness = make(rate_limit_per_address=4)
    storage = h.backend.another()
    other = Harness(
        h.backend,
        clock=h.clock,
        storage=storage,
        rate_limit_per_address=4,
        rate_limit_per_client=0,
    )
    try:
        peer = "198.51.100.30"
        for harness in (h, other, h, other):
            response = harness.client_at(peer).post("/v1/challenges", json={})
            assert response.status_code == 400
        assert limited(h.client_at(peer).post("/v1/challenges", json={}))
        assert limited(other.client_at(peer).post("/v1/challenges", json={}))
    finally:
        other.close()


# -- trusted proxies ---------------------------------------------------------


def sources(h: Harness) -> list[str | None]:
    return [e.source_address for e in h.events if e.kind == audit.RATE_LIMITED]


@pytest.fixture
def proxied(make: Any) -> Any:
    def build(hops: int, limit: int = 2) -> Harness:
        events: list[AuditEvent] = []
        h: Harness = make(
            rate_limit_per_address=limit,
            trusted_proxy_hops=hops,
            audit_hook=events.append,
        )
        h.events = events  # type: ignore[attr-defined]
        return h

    return build


def send(h: Harness, peer: str, forwarded: str | None) -> httpx.Response:
    headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
    return h.client_at(peer).post("/v1/challenges", json={}, headers=headers)


def test_one_hop_believes_the_last_forwarded_entry(proxied: Any) -> None:
    h = proxied(1)
    proxy = "10.0.0.1"
    for _ in range(2):
        assert send(h, proxy, "192.0.2.1").status_code == 400

    assert limited(send(h, proxy, "192.0.2.1"))
    assert sources(h) == ["192.0.2.1"]
    # Each client behind the proxy has its own budget.
    assert send(h, proxy, "192.0.2.2").status_code == 400


def test_spoofed_entries_on_the_left_buy_nothing(proxied: Any) -> None:
    h = proxied(1)
    proxy = "10.0.0.1"
    spoofs = ["1.1.1.1, 192.0.2.1", "2.2.2.2, 3.3.3.3, 192.0.2.1", "192.0.2.1"]
    for forwarded in spoofs[:2]:
        assert send(h, proxy, forwarded).status_code == 400

    assert limited(send(h, proxy, spoofs[2]))
    assert limited(send(h, proxy, "9.9.9.9,192.0.2.1"))


def test_two_hops_believe_the_second_entry_from_the_right(proxied: Any) -> None:
    h = proxied(2)
    edge = "10.0.0.2"
    # client, then the first proxy appended by the second (the peer).
    assert send(h, edge, "192.0.2.5, 10.0.0.1").status_code == 400
    assert send(h, edge, "6.6.6.6, 192.0.2.5, 10.0.0.1").status_code == 400

    assert limited(send(h, edge, "7.7.7.7, 192.0.2.5, 10.0.0.1"))
    assert sources(h) == ["192.0.2.5"]
    assert send(h, edge, "192.0.2.6, 10.0.0.1").status_code == 400


def test_too_few_entries_fall_back_to_the_peer(proxied: Any) -> None:
    h = proxied(2)
    peer = "10.0.0.3"
    assert send(h, peer, "192.0.2.7").status_code == 400
    assert send(h, peer, None).status_code == 400

    assert limited(send(h, peer, "192.0.2.8"))
    assert sources(h) == [peer]


def test_without_trusted_hops_forwarded_headers_are_ignored(
    proxied: Any,
) -> None:
    h = proxied(0)
    peer = "198.51.100.40"
    assert send(h, peer, "192.0.2.10").status_code == 400
    assert send(h, peer, "192.0.2.11").status_code == 400

    assert limited(send(h, peer, "192.0.2.12"))
    assert limited(send(h, peer, None))
    assert sources(h) == [peer, peer]


# -- which error wins --------------------------------------------------------


def _json() -> dict[str, str]:
    return {"Content-Type": "application/json"}


def _text() -> dict[str, str]:
    return {"Content-Type": "text/plain"}


def _too_large() -> bytes:
    return json.dumps({"pad": "x" * MAX_BODY_BYTES}).encode()


def test_precedence_413_then_429_then_415_then_400(make: Any) -> None:
    h: Harness = make(rate_limit_per_address=3)
    client = h.client_at("198.51.100.50")
    duplicate_keys = b'{"a": 1, "a": 2}'

    def post(body: bytes, headers: dict[str, str]) -> httpx.Response:
        return client.post("/v1/challenges", content=body, headers=headers)

    assert post(duplicate_keys, _text()).status_code == 415
    assert post(duplicate_keys, _json()).status_code == 400
    assert client.post("/v1/challenges", json={}).status_code == 400

    # Over the limit from here on.
    assert post(_too_large(), _text()).status_code == 413
    assert limited(post(duplicate_keys, _text()))
    assert limited(post(duplicate_keys, _json()))
    assert limited(client.post("/v1/clients", json={"clientIdentifier": 5}))
    assert limited(client.delete(f"/v1/clients/{h.cid('x')}"))  # before 403


def test_a_forwarded_header_repeated_on_its_own_line_is_one_list(
    proxied: Any,
) -> None:
    # Some proxies (HAProxy's "option forwardfor") add their own
    # X-Forwarded-For line rather than extending the client's: the lines
    # read as one comma-separated list, in order (RFC 9110, section 5.3).
    h = proxied(1)
    client = h.client_at("10.0.0.4")

    def send_lines(*lines: str) -> httpx.Response:
        headers = [("X-Forwarded-For", line) for line in lines]
        return client.post("/v1/challenges", json={}, headers=headers)

    assert send_lines("1.1.1.1", "192.0.2.20").status_code == 400
    assert send_lines("2.2.2.2", "192.0.2.20").status_code == 400

    assert limited(send_lines("3.3.3.3", "192.0.2.20"))
    assert sources(h) == ["192.0.2.20"]
