"""PROTOCOL.md section 7: tokens die at once, on every process.

Two real ``twofapi serve`` processes share one store (PostgreSQL, Redis) and
one signing key, with the verified-token cache on (the default). A client
logs in through A and uses its token on B, which caches it; then a
rotation, recovery, suspension, revocation or reactivation made through A
must end that token on B at the very next request, without any wait.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from lifecycle_support import (
    ServerProcess,
    forget_clients,
    production_env,
    run_cli,
    start_server,
    stop_server,
)
from storage_backends import backend_url
from twofapi_middleware.client import (
    AccessToken,
    AdminClient,
    Credential,
    TwoFApiClient,
)
from twofapi_middleware.testing import TEST_ADMIN_SECRET
from twofapi_middleware.wire import encode_b64

SHARED = [
    pytest.param("postgresql", marks=pytest.mark.postgresql),
    pytest.param("redis", marks=pytest.mark.redis),
]


@dataclass
class Pair:
    a: ServerProcess
    b: ServerProcess
    tag: str
    suffix: str = field(default_factory=lambda: secrets.token_hex(4))


@pytest.fixture(scope="module", params=SHARED)
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    backend = str(request.param)
    url = backend_url(backend, tmp_path_factory.mktemp(backend))
    env = production_env(url)
    assert "TWOFAPI_TOKEN_CACHE_SIZE" not in env  # the cache stays on
    migrated = run_cli("migrate", "--storage", url, env=env)
    assert migrated.returncode == 0, migrated.stderr
    first = start_server(url, env)
    try:
        second = start_server(url, env)
    except BaseException:
        stop_server(first)
        raise
    pair = Pair(first, second, backend)
    try:
        assert first.process.pid != second.process.pid
        yield pair
    finally:
        stop_server(first)
        stop_server(second)
        forget_clients(url, pair.suffix)


def use(server: ServerProcess, token: AccessToken, *, bound: bool = False) -> int:
    headers = {"Authorization": f"Bearer {token.token}"}
    if bound:
        headers["X-Channel-Binding"] = encode_b64(token.channel_binding)
    response = httpx.get(f"{server.url}/v1/resources/doc", headers=headers, timeout=10)
    if response.status_code == 401:
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
    return response.status_code


def warm(pair: Pair, client: TwoFApiClient) -> AccessToken:
    """A token from A, accepted (and cached) by B."""
    token = client.login()
    for _ in range(3):
        assert use(pair.b, token) == 200
    assert use(pair.b, token, bound=True) == 200
    assert use(pair.a, token) == 200
    return token


def client_id(pair: Pair, name: str) -> str:
    return f"xp-{pair.tag}-{name}.{pair.suffix}"


def test_every_lifecycle_step_through_a_ends_the_token_on_b(pair: Pair) -> None:
    credential = Credential.generate(client_id(pair, "alice"))
    admin = AdminClient(pair.a.url, TEST_ADMIN_SECRET)
    with TwoFApiClient(pair.a.url, credential) as client, admin:
        enrolled = client.enroll()
        assert enrolled.recovery_words is not None
        words = list(enrolled.recovery_words)

        token = warm(pair, client)
        client.rotate(client.credential.successor())
        assert use(pair.b, token) == 401, "rotation"
        assert use(pair.a, token) == 401

        token = warm(pair, client)
        recovered = client.recover(words, client.credential.successor())
        assert use(pair.b, token) == 401, "recovery"

        token = warm(pair, client)
        admin.suspend(credential.client_id)
        assert use(pair.b, token) == 401, "suspension"

        successor = client.credential.successor()
        admin.reactivate(credential.client_id, successor)
        with TwoFApiClient(pair.a.url, successor) as again:
            token = warm(pair, again)
            admin.revoke(credential.client_id)
            assert use(pair.b, token) == 401, "revocation"

        successor = successor.successor()
        admin.reactivate(credential.client_id, successor)
        with TwoFApiClient(pair.a.url, successor) as again:
            token = warm(pair, again)
            newest = successor.successor()
            admin.reactivate(credential.client_id, newest)
            assert use(pair.b, token) == 401, "reactivation"

        # B still logs the client in, with the last credential only.
        with TwoFApiClient(pair.b.url, newest) as on_b:
            assert use(pair.b, on_b.login()) == 200
    assert recovered.recovery_words != tuple(words)


def test_a_step_through_b_ends_the_token_on_a_too(pair: Pair) -> None:
    credential = Credential.generate(client_id(pair, "bob"))
    with TwoFApiClient(pair.a.url, credential) as client:
        client.enroll()
        token = warm(pair, client)
        with AdminClient(pair.b.url, TEST_ADMIN_SECRET) as admin:
            admin.revoke(credential.client_id)

        assert use(pair.a, token) == 401
        assert use(pair.b, token) == 401


def test_tokens_of_other_clients_live_on(pair: Pair) -> None:
    alice = Credential.generate(client_id(pair, "dora"))
    carol = Credential.generate(client_id(pair, "carol"))
    with (
        TwoFApiClient(pair.a.url, alice) as for_alice,
        TwoFApiClient(pair.a.url, carol) as for_carol,
        AdminClient(pair.a.url, TEST_ADMIN_SECRET) as admin,
    ):
        for_alice.enroll()
        for_carol.enroll()
        alice_token, carol_token = warm(pair, for_alice), warm(pair, for_carol)

        admin.suspend(alice.client_id)

        assert use(pair.b, alice_token) == 401
        assert use(pair.b, carol_token) == 200


def test_the_servers_run_in_production(pair: Pair) -> None:
    for server in (pair.a, pair.b):
        assert server.process.poll() is None
        jwks = httpx.get(f"{server.url}/.well-known/jwks.json", timeout=10).json()
        assert len(jwks["keys"]) == 1
    kid_a = httpx.get(f"{pair.a.url}/.well-known/jwks.json").json()["keys"][0]["kid"]
    kid_b = httpx.get(f"{pair.b.url}/.well-known/jwks.json").json()["keys"][0]["kid"]
    assert kid_a == kid_b
