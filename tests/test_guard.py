"""The guard of both middlewares: what passes, what is refused, what is never read."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import tracemalloc
from typing import Any

import pytest

from twofapi_middleware import TwoFApiMiddleware, TwoFApiWSGIMiddleware, crypto
from twofapi_middleware.service import Context, TwoFApi
from twofapi_middleware.testing import FakeClock, fast_settings

MB = 1024 * 1024


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def issue_token(service: TwoFApi, client_id: str = "alice") -> tuple[str, bytes]:
    """Enroll and log in through the service, returning a token and binding."""
    opening = crypto.Opening.generate()
    commitment = crypto.commit(opening)
    pop = crypto.prove(opening, lambda c, a: crypto.pop_transcript(c, a, client_id))
    ctx = Context()
    service.enroll(
        {
            "clientIdentifier": client_id,
            "commitment": b64(commitment),
            "proofOfPossession": b64(pop),
        },
        ctx,
    )
    binding = os.urandom(32)
    challenge = service.issue_challenge(
        {
            "clientIdentifier": client_id,
            "credential": b64(b"k"),
            "channelBinding": b64(binding),
        },
        ctx,
    )
    nonce = base64.b64decode(challenge["nonce"])
    proof = crypto.prove(
        opening,
        lambda c, a: crypto.auth_transcript(c, a, client_id, nonce, binding),
    )
    answer = service.verify(
        {
            "clientIdentifier": client_id,
            "challengeId": challenge["challengeId"],
            "proof": b64(proof),
            "channelBinding": b64(binding),
            "domainSeparationTag": "2FApi-v1.0-Sigma",
        },
        ctx,
    )
    return answer["accessToken"], binding


class Spy:
    """An ASGI receive that records whether anyone called it."""

    def __init__(self, chunks: int = 0, chunk_size: int = 0) -> None:
        self.calls = 0
        self.chunks = chunks
        self.chunk = b"x" * chunk_size

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        more = self.calls < self.chunks
        return {"type": "http.request", "body": self.chunk, "more_body": more}


def http_scope(
    path: str, token: str | None = None, method: str = "GET"
) -> dict[str, Any]:
    headers = [(b"host", b"test")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return {
        "type": "http",
        "method": method,
        "path": path,
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "query_string": b"",
        "root_path": "",
    }


def run_asgi(app: Any, scope: dict[str, Any], receive: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


@pytest.fixture
def service() -> TwoFApi:
    return TwoFApi(fast_settings(clock=FakeClock(), exclude_prefixes=("/public",)))


def test_asgi_guard_never_reads_the_body_and_hands_over_a_frozen_principal(service):
    token, _ = issue_token(service)
    seen: dict[str, Any] = {}

    async def app(scope, receive, send):
        seen.update(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    spy = Spy()
    sent = run_asgi(
        TwoFApiMiddleware(app, service=service), http_scope("/x", token), spy
    )
    assert sent[0]["status"] == 204
    assert spy.calls == 0
    principal = seen["twofapi.principal"]
    assert seen["user"] is principal and seen["auth"] is principal
    assert principal.client_id == "alice" and principal.is_authenticated
    with pytest.raises(AttributeError):
        principal.client_id = "mallory"


def test_asgi_refusal_does_not_read_the_body_either(service):
    spy = Spy()
    app = TwoFApiMiddleware(lambda *a: None, service=service)
    sent = run_asgi(app, http_scope("/x"), spy)
    assert sent[0]["status"] == 401 and spy.calls == 0
    headers = dict(sent[0]["headers"])
    assert headers[b"www-authenticate"] == b'Bearer realm="2fapi"'


def test_asgi_streams_a_100_mb_upload_with_flat_memory(service):
    token, _ = issue_token(service)
    received = 0

    async def app(scope, receive, send):
        nonlocal received
        while True:
            message = await receive()
            received += len(message["body"])
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        # A streamed response passes through chunk by chunk.
        for _ in range(3):
            await send({"type": "http.response.body", "body": b"ok", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    tracemalloc.start()
    sent = run_asgi(
        TwoFApiMiddleware(app, service=service),
        http_scope("/upload", token, "POST"),
        Spy(chunks=100, chunk_size=MB),
    )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert received == 100 * MB
    assert peak < 8 * MB
    assert [m.get("body") for m in sent[1:]] == [b"ok", b"ok", b"ok", b""]


def test_lifespan_and_unknown_scopes_pass_through(service):
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    middleware = TwoFApiMiddleware(app, service=service)
    run_asgi(middleware, {"type": "lifespan"}, Spy())
    run_asgi(middleware, {"type": "custom.thing"}, Spy())
    assert seen == ["lifespan", "custom.thing"]


def test_exclusions_and_cors_preflight_pass_unguarded(service):
    hits = []

    async def app(scope, receive, send):
        hits.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = TwoFApiMiddleware(app, service=service)
    assert run_asgi(middleware, http_scope("/public/a"), Spy())[0]["status"] == 200
    preflight = http_scope("/private", method="OPTIONS")
    preflight["headers"] += [
        (b"origin", b"https://x"),
        (b"access-control-request-method", b"GET"),
    ]
    assert run_asgi(middleware, preflight, Spy())[0]["status"] == 200
    plain_options = http_scope("/private", method="OPTIONS")
    assert run_asgi(middleware, plain_options, Spy())[0]["status"] == 401
    assert hits == ["/public/a", "/private"]


def websocket_scope(headers: list[tuple[bytes, bytes]], subprotocols: list[str]):
    return {
        "type": "websocket",
        "path": "/ws",
        "headers": headers,
        "subprotocols": subprotocols,
        "client": ("127.0.0.1", 1),
    }


def test_websocket_with_header_token_or_subprotocol(service):
    token, _ = issue_token(service)
    accepted = []

    async def app(scope, receive, send):
        accepted.append((scope["twofapi.principal"].client_id, scope["subprotocols"]))
        await send({"type": "websocket.accept"})

    async def receive():
        return {"type": "websocket.connect"}

    middleware = TwoFApiMiddleware(app, service=service)
    header = [(b"authorization", f"Bearer {token}".encode())]
    sent = run_asgi(middleware, websocket_scope(header, []), receive)
    assert sent == [{"type": "websocket.accept"}]

    sent = run_asgi(
        middleware, websocket_scope([], ["twofapi.bearer", token, "chat"]), receive
    )
    assert sent == [{"type": "websocket.accept", "subprotocol": "twofapi.bearer"}]
    assert accepted[1] == ("alice", ["twofapi.bearer", "chat"])

    refused = run_asgi(
        middleware, websocket_scope([], ["twofapi.bearer", "x.y.z"]), receive
    )
    assert refused == [{"type": "websocket.close", "code": 1008}]
    assert len(accepted) == 2


class SpyInput(io.RawIOBase):
    def __init__(self, total: int = 0) -> None:
        self.reads = 0
        self.left = total

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        size = self.left if size < 0 else min(size, self.left)
        self.left -= size
        return b"x" * size


def wsgi_environ(path: str, token: str | None, stream: Any, length: int = 0):
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": stream,
        "CONTENT_LENGTH": str(length),
    }
    if token:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return environ


def test_wsgi_guard_never_reads_input_and_streams_100_mb(service):
    token, _ = issue_token(service)
    seen = {}

    def app(environ, start_response):
        seen["principal"] = environ["twofapi.principal"]
        total = 0
        while chunk := environ["wsgi.input"].read(MB):
            total += len(chunk)
        seen["total"] = total
        start_response("200 OK", [])
        return iter([b"a", b"b"])

    middleware = TwoFApiWSGIMiddleware(app, service=service)
    refused_input = SpyInput(10)
    statuses = []
    middleware(
        wsgi_environ("/x", None, refused_input, 10), lambda s, h: statuses.append(s)
    )
    assert statuses == ["401 Unauthorized"] and refused_input.reads == 0

    tracemalloc.start()
    body = middleware(
        wsgi_environ("/up", token, SpyInput(100 * MB), 100 * MB),
        lambda s, h: statuses.append(s),
    )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert list(body) == [b"a", b"b"]
    assert seen["total"] == 100 * MB and seen["principal"].client_id == "alice"
    assert peak < 8 * MB


def test_revoked_and_rotated_tokens_die_even_when_cached(service):
    token, _ = issue_token(service)
    ctx = Context()
    assert service.authenticate(f"Bearer {token}", None, ctx).client_id == "alice"
    service.suspend("alice", service.settings.admin_secret, ctx)
    with pytest.raises(Exception, match="token"):
        service.authenticate(f"Bearer {token}", None, ctx)


# -- HEAD: headers only, from every answer of the middleware itself -----------


def _wsgi_head(service: TwoFApi, path: str) -> tuple[str, dict[str, str], bytes]:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        raise AssertionError("the app must not be reached")

    middleware = TwoFApiWSGIMiddleware(app, service=service)
    seen: list[Any] = []
    environ = {
        "REQUEST_METHOD": "HEAD",
        "PATH_INFO": path,
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(b""),
    }
    chunks = middleware(environ, lambda status, headers: seen.append((status, headers)))
    status, headers = seen[0]
    return status, {name.lower(): value for name, value in headers}, b"".join(chunks)


def _asgi_head(service: TwoFApi, path: str) -> tuple[int, dict[str, str], bytes]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app must not be reached")

    middleware = TwoFApiMiddleware(app, service=service)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "HEAD",
        "path": path,
        "headers": [],
        "client": ("127.0.0.1", 1),
    }
    asyncio.run(middleware(scope, receive, send))
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    headers = {name.decode(): value.decode() for name, value in start["headers"]}
    return start["status"], headers, body


@pytest.mark.parametrize(
    ("path", "status"),
    [("/guarded", 401), ("/v1/challenges", 405), ("/health", 200), ("/v1/nope", 401)],
)
def test_head_answers_carry_headers_and_no_body(
    service: TwoFApi, path: str, status: int
) -> None:
    wsgi_status, wsgi_headers, wsgi_body = _wsgi_head(service, path)
    asgi_status, asgi_headers, asgi_body = _asgi_head(service, path)

    assert int(wsgi_status.split()[0]) == asgi_status == status
    # No body, so a kept-alive connection reads the next answer intact; the
    # length is still the GET answer's.
    assert wsgi_body == asgi_body == b""
    assert int(wsgi_headers["content-length"]) > 0
    assert wsgi_headers["content-length"] == asgi_headers["content-length"]
