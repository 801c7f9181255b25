"""FastAPI and Starlette: install, the bearer dependency, OpenAPI, WebSockets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import Depends, FastAPI, Request, WebSocket
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from twofapi_middleware import Principal, TwoFApiMiddleware
from twofapi_middleware.integrations.fastapi import (
    SCHEME_NAME,
    CurrentPrincipal,
    install,
    optional_principal,
    twofapi_principal,
)
from twofapi_middleware.service import TwoFApi
from twofapi_middleware.testing import fast_settings, issue_token

DOCS = ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect")


def make_app() -> tuple[FastAPI, TwoFApi]:
    app = FastAPI()
    service = install(app, fast_settings(exclude_prefixes=("/public/",)))

    @app.get("/me")
    def me(principal: CurrentPrincipal) -> dict[str, str]:
        return {"client": principal.client_id}

    @app.get("/scope")
    def scope(request: Request) -> dict[str, Any]:
        return {
            "user": request.user.display_name,
            "auth": request.auth.client_id,
            "principal": request.scope["twofapi.principal"].client_id,
        }

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, Any]:
        size, head = 0, b""
        async for chunk in request.stream():
            head = head or chunk[:8]
            size += len(chunk)
        return {"size": size, "head": head.decode()}

    @app.get("/public/hello")
    def hello() -> dict[str, str]:
        return {"message": "hello"}

    @app.get("/public/whoami")
    def whoami(principal: Principal = Depends(twofapi_principal)) -> dict[str, str]:
        return {"client": principal.client_id}

    @app.get("/public/maybe")
    def maybe(principal: Principal | None = Depends(optional_principal)) -> Any:
        return {"client": principal.client_id if principal else None}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, principal: CurrentPrincipal) -> None:
        await websocket.accept()
        await websocket.send_json({"client": principal.client_id})
        await websocket.close()

    @app.websocket("/public/ws")
    async def public_ws(websocket: WebSocket, principal: CurrentPrincipal) -> None:
        await websocket.accept()
        await websocket.send_json({"client": principal.client_id})
        await websocket.close()

    return app, service


@pytest.fixture
def app_service() -> tuple[FastAPI, TwoFApi]:
    return make_app()


@pytest.fixture
def client(app_service: tuple[FastAPI, TwoFApi]) -> Iterator[TestClient]:
    with TestClient(app_service[0]) as client:
        yield client


@pytest.fixture
def token(app_service: tuple[FastAPI, TwoFApi]) -> str:
    return issue_token(app_service[1], "alice")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- HTTP ----------------------------------------------------------------------------


def test_endpoints_and_guard(client: TestClient, token: str) -> None:
    assert client.get("/health").json() == {"status": "ok", "version": "1.0"}
    assert client.post("/v1/verify", json={}).status_code == 400

    refused = client.get("/me")
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["www-authenticate"] == 'Bearer realm="2fapi"'
    assert client.get("/me", headers=bearer(token)).json() == {"client": "alice"}
    assert client.get("/scope", headers=bearer(token)).json() == {
        "user": "alice",
        "auth": "alice",
        "principal": "alice",
    }


def test_docs_routes_are_open(client: TestClient) -> None:
    for path in DOCS:
        assert client.get(path).status_code == 200, path


def test_docs_stay_guarded_when_asked() -> None:
    app = FastAPI()
    service = install(app, fast_settings(), exclude_docs=False)
    token = issue_token(service, "alice")
    with TestClient(app) as client:
        assert client.get("/docs").status_code == 401
        assert client.get("/openapi.json").status_code == 401
        assert client.get("/openapi.json", headers=bearer(token)).status_code == 200


def test_request_bodies_reach_the_view_intact(client: TestClient, token: str) -> None:
    body = b"z" * (5 * 1024 * 1024)
    reply = client.post("/echo", content=body, headers=bearer(token))
    assert reply.json() == {"size": len(body), "head": "z" * 8}

    def chunks() -> Iterator[bytes]:
        yield from (b"q" * 100_000 for _ in range(60))

    reply = client.post("/echo", content=chunks(), headers=bearer(token))
    assert reply.request.headers["transfer-encoding"] == "chunked"
    assert reply.json() == {"size": 6_000_000, "head": "q" * 8}


def test_dependency_on_an_excluded_route(client: TestClient, token: str) -> None:
    assert client.get("/public/hello").json() == {"message": "hello"}
    assert client.get("/public/whoami", headers=bearer(token)).json() == {
        "client": "alice"
    }
    assert client.get("/public/maybe").json() == {"client": None}
    assert client.get("/public/maybe", headers=bearer(token)).json() == {
        "client": "alice"
    }
    # A token that is there but bad is refused even where one is optional.
    bad = client.get("/public/maybe", headers=bearer("nope"))
    assert bad.status_code == 401


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}])
def test_dependency_refusals_match_the_middleware(
    client: TestClient, headers: dict[str, str]
) -> None:
    headers = {**headers, "X-Request-Id": "req-7"}
    ours = client.get("/public/whoami", headers=headers)
    theirs = client.get("/me", headers=headers)
    assert ours.status_code == theirs.status_code == 401
    assert ours.content == theirs.content
    assert ours.headers == theirs.headers


def test_dependency_without_install_is_a_plain_401() -> None:
    app = FastAPI()

    @app.get("/me")
    def me(principal: CurrentPrincipal) -> dict[str, str]:
        return {"client": principal.client_id}

    with TestClient(app) as client:
        reply = client.get("/me")
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"] == 'Bearer realm="2fapi"'


def test_plain_starlette_app() -> None:
    async def me(request: StarletteRequest) -> JSONResponse:
        return JSONResponse({"client": request.user.identity})

    app = Starlette(routes=[Route("/me", me)])
    service = install(app, fast_settings())
    token = issue_token(service, "bob")
    with TestClient(app) as client:
        assert client.get("/me").status_code == 401
        assert client.get("/me", headers=bearer(token)).json() == {"client": "bob"}


# -- OpenAPI -------------------------------------------------------------------------


def test_openapi_documents_the_scheme_and_the_endpoints(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes[SCHEME_NAME]["type"] == "http"
    assert schemes[SCHEME_NAME]["scheme"] == "bearer"
    assert schemes["TwoFApiAdmin"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-Admin-Identity",
    }
    assert document["paths"]["/me"]["get"]["security"] == [{SCHEME_NAME: []}]

    paths = document["paths"]
    for path in (
        "/health",
        "/.well-known/jwks.json",
        "/v1/clients",
        "/v1/challenges",
        "/v1/verify",
        "/v1/clients/{clientIdentifier}",
        "/v1/clients/{clientIdentifier}/commitment",
        "/v1/clients/{clientIdentifier}/suspend",
        "/v1/clients/{clientIdentifier}/recover",
        "/v1/clients/{clientIdentifier}/reactivate",
    ):
        assert path in paths, path
    verify = paths["/v1/verify"]["post"]
    body_schema = verify["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema == {"$ref": "#/components/schemas/TwoFApiVerifyRequest"}
    assert set(verify["responses"]) >= {"200", "400", "401", "429"}
    rotate = paths["/v1/clients/{clientIdentifier}/commitment"]["put"]
    assert rotate["security"] == [{SCHEME_NAME: []}]
    assert paths["/v1/clients/{clientIdentifier}"]["delete"]["security"] == [
        {"TwoFApiAdmin": []}
    ]

    schemas = document["components"]["schemas"]
    for reference in _references(document):
        name = reference.rsplit("/", 1)[-1]
        assert name in schemas, reference
    assert schemas["TwoFApiVerifyRequest"]["required"][0] == "clientIdentifier"


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def test_swagger_authorize_sends_the_token(client: TestClient, token: str) -> None:
    # Swagger UI's Authorize button puts the token of an http bearer scheme
    # in the Authorization header of every "try it out" call.
    page = client.get("/docs")
    assert "/openapi.json" in page.text
    assert client.get("/me", headers=bearer(token)).status_code == 200


# -- WebSockets ----------------------------------------------------------------------


def test_websocket_with_the_authorization_header(
    client: TestClient, token: str
) -> None:
    with client.websocket_connect("/ws", headers=bearer(token)) as websocket:
        assert websocket.accepted_subprotocol is None
        assert websocket.receive_json() == {"client": "alice"}


def test_websocket_with_the_bearer_subprotocol(client: TestClient, token: str) -> None:
    with client.websocket_connect(
        "/ws", subprotocols=["twofapi.bearer", token]
    ) as websocket:
        assert websocket.accepted_subprotocol == "twofapi.bearer"
        assert websocket.receive_json() == {"client": "alice"}


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"headers": {"Authorization": "Bearer nope"}},
        {"subprotocols": ["twofapi.bearer", "nope"]},
        {"subprotocols": ["twofapi.bearer"]},
    ],
)
def test_refused_websocket_is_closed_before_accept(
    client: TestClient, options: dict[str, Any]
) -> None:
    refused = pytest.raises(WebSocketDisconnect)
    with refused as closed, client.websocket_connect("/ws", **options):
        pass  # pragma: no cover - never accepted
    assert closed.value.code == 1008


def test_websocket_dependency_on_an_excluded_route(
    client: TestClient, token: str
) -> None:
    with client.websocket_connect("/public/ws", headers=bearer(token)) as websocket:
        assert websocket.receive_json() == {"client": "alice"}
    refused = pytest.raises(WebSocketDisconnect)
    with refused as closed, client.websocket_connect("/public/ws"):
        pass  # pragma: no cover - never accepted
    assert closed.value.code == 1008


def test_install_returns_the_middleware_service(
    app_service: tuple[FastAPI, TwoFApi],
) -> None:
    app, service = app_service
    assert any(m.cls is TwoFApiMiddleware for m in app.user_middleware)
    assert "/docs" in service.settings.exclude_paths
    assert "/public/" in service.settings.exclude_prefixes
