"""Regressions from hostile use: prefixes, forwarded addresses, repeated headers."""

from __future__ import annotations

import asyncio
import os

import httpx
import pytest

from twofapi_middleware import TwoFApiMiddleware, crypto
from twofapi_middleware.client import Credential, TwoFApiClient
from twofapi_middleware.client._flow import client_segment
from twofapi_middleware.http import source_address
from twofapi_middleware.service import TwoFApi
from twofapi_middleware.testing import FakeClock, fast_settings, issue_token


async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def call(app, path: str, headers=()) -> int:
    """One GET with the path exactly as given (no client-side normalising)."""
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in headers],
        "client": ("127.0.0.1", 1),
    }
    sent = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"]


@pytest.fixture
def service() -> TwoFApi:
    return TwoFApi(fast_settings(clock=FakeClock(), exclude_prefixes=("/public",)))


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/public", 200),
        ("/public/hello", 200),
        ("/publicity", 401),
        ("/public-admin/secret", 401),
        ("/public/../admin", 401),
        ("/public/./x", 401),
        ("/public//x", 401),
        ("/public/..", 401),
    ],
)
def test_excluded_prefix_is_a_path_prefix_not_a_string_prefix(service, path, status):
    assert call(TwoFApiMiddleware(hello, service=service), path) == status


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("1.1.1.1, 203.0.113.9", "203.0.113.9"),
        ("2001:db8::1", "2001:db8::1"),
        ("a" * 300, "10.0.0.1"),
        ("999.1.1.1", "10.0.0.1"),
        ("", "10.0.0.1"),
    ],
)
def test_forwarded_addresses_must_be_addresses(forwarded, expected):
    headers = {"x-forwarded-for": forwarded}
    assert source_address("10.0.0.1", headers, 1) == expected


def test_a_repeated_authorization_header_is_refused_whatever_the_order(service):
    token = issue_token(service, "alice")
    app = TwoFApiMiddleware(hello, service=service)
    good = ("authorization", f"Bearer {token}")
    junk = ("authorization", "Bearer junk")
    assert call(app, "/x", [good]) == 200
    assert call(app, "/x", [good, junk]) == 401
    assert call(app, "/x", [junk, good]) == 401


def test_a_stored_commitment_of_another_size_is_a_refusal_not_a_crash():
    proof = os.urandom(96)
    for size in (0, 31, 33):
        verdict = crypto.check_proof(
            os.urandom(size), proof, crypto.rotation_current_transcript
        )
        assert verdict is crypto.Verdict.MALFORMED


def test_dot_identifiers_survive_url_normalisation():
    assert client_segment("..") == "%2E%2E"
    assert client_segment("alice.b") == "alice.b"
    service = TwoFApi(fast_settings(clock=FakeClock()))
    app = TwoFApiMiddleware(hello, service=service)
    credential = Credential.generate("..")
    transport = httpx.ASGITransport(app=app)

    async def go() -> None:
        from twofapi_middleware.client import AsyncTwoFApiClient

        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            client = AsyncTwoFApiClient("http://t", credential, http=http)
            await client.enroll()
            await client.login()
            await client.rotate(credential.successor())

    asyncio.run(go())
    record = service.storage.get_client("..")
    assert record is not None and record.commitment_version == 2
    assert TwoFApiClient  # the sync shell shares the same path building
