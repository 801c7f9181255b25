"""The Flask extension: configuration, the guard after routing, the proxy."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from flask import Blueprint, Flask, g, request
from flask.views import MethodView
from werkzeug.test import Client

from twofapi_middleware import ConfigurationError, Principal, TwoFApiWSGIMiddleware
from twofapi_middleware.integrations.flask import (
    FlaskTwoFApi,
    current_principal,
    login_required,
    public,
    settings_from_config,
)
from twofapi_middleware.testing import TEST_ADMIN_SECRET, issue_token

FAST = {
    "TWOFAPI_ARGON2_MEMORY_KIB": 64,
    "TWOFAPI_ARGON2_TIME_COST": "1",
    "TWOFAPI_RATE_LIMIT_PER_ADDRESS": "0",
    "TWOFAPI_RATE_LIMIT_PER_CLIENT": 0,
    "TWOFAPI_ADMIN_SECRET": TEST_ADMIN_SECRET,
}


def make_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(FAST, **config)
    seen: dict[str, Any] = {}
    app.extensions["seen"] = seen

    @app.before_request
    def early_hook() -> None:
        # Registered before the extension, yet it runs after the guard.
        seen["hook"] = g.get("twofapi_principal")

    FlaskTwoFApi(app)

    @app.get("/me")
    def me() -> Any:
        return {
            "client": current_principal.client_id,
            "g": g.twofapi_principal.client_id,
            "environ": request.environ["twofapi.principal"].client_id,
        }

    @app.post("/echo")
    def echo() -> Any:
        data = request.get_data()
        return {"size": len(data), "head": data[:16].decode()}

    @app.get("/open")
    @public
    def open_view() -> Any:
        return {"authenticated": bool(current_principal)}

    @app.get("/docs/guarded")
    @login_required
    def guarded_docs() -> Any:
        return {"client": current_principal.client_id}

    @app.get("/docs/page")
    def docs_page() -> Any:
        return {"page": True}

    @public
    class Status(MethodView):
        def get(self) -> Any:
            return {"status": "up"}

    app.add_url_rule("/status", view_func=Status.as_view("status"))

    blueprint = Blueprint("api", __name__, url_prefix="/api")

    @blueprint.get("/items")
    def items() -> Any:
        return {"items": [], "client": current_principal.client_id}

    app.register_blueprint(blueprint)
    return app


@pytest.fixture
def app() -> Flask:
    return make_app(TWOFAPI_EXCLUDE_PREFIXES="/docs/")


@pytest.fixture
def token(app: Flask) -> str:
    with app.app_context():
        return issue_token(FlaskTwoFApi.service(), "alice")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- configuration ---------------------------------------------------------------


def test_config_strings_are_read_like_environment_variables() -> None:
    settings = settings_from_config(
        {
            "TWOFAPI_AUDIENCES": "notes, admin",
            "TWOFAPI_RATE_LIMIT_PER_ADDRESS": "7",
            "TWOFAPI_REQUIRE_CHANNEL_BINDING": "true",
            "TWOFAPI_EXCLUDE_PATHS": ["/a", "/b"],
            "TWOFAPI_TOKEN_LEEWAY_SECONDS": 30,
            "TWOFAPI_ACCEPT_ANY_PROOF": False,
            "SECRET_KEY": "not ours",
        }
    )
    assert settings.audiences == ("notes", "admin")
    assert settings.rate_limit_per_address == 7
    assert settings.require_channel_binding is True
    assert settings.exclude_paths == ("/a", "/b")
    assert settings.token_leeway_seconds == 30


def test_the_environment_fills_in_and_the_config_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TWOFAPI_ISSUER", "from-env")
    monkeypatch.setenv("TWOFAPI_TEST_SOMETHING", "not a setting, ignored")
    assert settings_from_config({}).issuer == "from-env"
    assert settings_from_config({"TWOFAPI_ISSUER": "mine"}).issuer == "mine"


@pytest.mark.parametrize(
    "config",
    [
        {"TWOFAPI_EXCLUDE_PATH": "/typo"},
        {"TWOFAPI_RATE_LIMIT_PER_ADDRESS": "many"},
        {"TWOFAPI_TOKEN_LEEWAY_SECONDS": 600},
    ],
)
def test_bad_config_is_refused(config: dict[str, Any]) -> None:
    app = Flask(__name__)
    app.config.update(config)
    with pytest.raises(ConfigurationError):
        FlaskTwoFApi(app)


def test_init_app_later_and_settings_given() -> None:
    twofapi = FlaskTwoFApi()
    first, second = Flask("first"), Flask("second")
    first.config.update(FAST)
    second.config.update(FAST, TWOFAPI_ISSUER="second")
    twofapi.init_app(first)
    twofapi.init_app(second)
    assert FlaskTwoFApi.service(first) is not FlaskTwoFApi.service(second)
    assert FlaskTwoFApi.service(second).settings.issuer == "second"
    assert first.test_client().get("/health").json == {"status": "ok", "version": "1.0"}

    with pytest.raises(RuntimeError):
        FlaskTwoFApi.service(Flask("bare"))


# -- the mounted endpoints ---------------------------------------------------------


def test_endpoints_are_served_by_the_middleware(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/health").status_code == 200
    assert "keys" in client.get("/.well-known/jwks.json").json
    refused = client.post("/v1/clients", json={"clientIdentifier": "bad id"})
    assert refused.status_code == 400
    assert refused.json["type"] == "urn:2fapi:error:validation-failed"
    wrong_method = client.get("/v1/verify")
    assert wrong_method.status_code == 405
    assert app.extensions["seen"] == {}  # Flask never saw these requests


# -- the guard ---------------------------------------------------------------------


def test_views_are_guarded_and_get_the_principal(app: Flask, token: str) -> None:
    client = app.test_client()
    assert client.get("/me").status_code == 401
    assert client.get("/api/items").status_code == 401

    reply = client.get("/me", headers=bearer(token))
    assert reply.status_code == 200
    assert reply.json == {"client": "alice", "g": "alice", "environ": "alice"}
    assert client.get("/api/items", headers=bearer(token)).json["client"] == "alice"
    assert isinstance(app.extensions["seen"]["hook"], Principal)


def test_large_bodies_reach_guarded_views(app: Flask, token: str) -> None:
    client = app.test_client()
    body = b"x" * (5 * 1024 * 1024)
    reply = client.post("/echo", data=body, headers=bearer(token))
    assert reply.json == {"size": len(body), "head": "x" * 16}

    def stream() -> Iterable[bytes]:
        yield from (b"y" * 65536 for _ in range(32))

    # What a server hands over for a chunked request: no length, a stream
    # that ends, and ``wsgi.input_terminated``.
    streamed = client.post(
        "/echo",
        headers={**bearer(token), "Transfer-Encoding": "chunked"},
        environ_overrides={
            "wsgi.input": _Stream(stream()),
            "wsgi.input_terminated": True,
            "CONTENT_LENGTH": "",
        },
    )
    assert streamed.json == {"size": 32 * 65536, "head": "y" * 16}


class _Stream:
    """A file-like body without a length, as a chunked request gives."""

    def __init__(self, parts: Iterable[bytes]) -> None:
        self._parts = iter(parts)
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            part = next(self._parts, None)
            if part is None:
                break
            self._buffer += part
        if size < 0:
            size = len(self._buffer)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def readline(self, size: int = -1) -> bytes:
        return self.read(size)


def test_markers_and_exclusions(app: Flask, token: str) -> None:
    client = app.test_client()
    assert client.get("/open").json == {"authenticated": False}
    assert client.get("/status").json == {"status": "up"}
    assert client.get("/docs/page").json == {"page": True}
    assert client.get("/docs/guarded").status_code == 401
    assert client.get("/docs/guarded", headers=bearer(token)).json == {
        "client": "alice"
    }


def test_unknown_urls_are_guarded_before_they_are_missing(
    app: Flask, token: str
) -> None:
    client = app.test_client()
    assert client.get("/nowhere").status_code == 401
    assert client.get("/nowhere", headers=bearer(token)).status_code == 404
    assert client.post("/open").status_code == 401  # 405 only with a token
    assert client.post("/open", headers=bearer(token)).status_code == 405


def test_cors_preflight_passes(app: Flask) -> None:
    reply = app.test_client().options(
        "/me",
        headers={"Origin": "https://a.example", "Access-Control-Request-Method": "GET"},
    )
    assert reply.status_code == 200


def test_current_principal_outside_a_guarded_request() -> None:
    assert not current_principal
    with pytest.raises(RuntimeError):
        _ = current_principal.client_id


# -- the 401s are the middleware's ---------------------------------------------------


def _wsgi_401(app: Flask, headers: dict[str, str]) -> Any:
    service = FlaskTwoFApi.service(app)

    def inner(environ: Any, start_response: Any) -> list[bytes]:
        raise AssertionError("the middleware let the request through")

    return Client(TwoFApiWSGIMiddleware(inner, service=service)).get(
        "/me", headers=headers
    )


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic YTpi"},
        {"Authorization": "Bearer x", "X-Channel-Binding": "***"},
    ],
)
def test_refusals_are_identical_to_the_wsgi_middleware(
    app: Flask, headers: dict[str, str]
) -> None:
    headers = {**headers, "X-Request-Id": "req-1"}
    ours = app.test_client().get("/me", headers=headers)
    theirs = _wsgi_401(app, headers)
    assert ours.status_code == theirs.status_code == 401
    assert ours.get_data() == theirs.get_data()
    assert sorted(ours.headers.items()) == sorted(theirs.headers.items())
    assert ours.headers["Content-Type"] == "application/problem+json"
    assert ours.headers["WWW-Authenticate"].startswith('Bearer realm="2fapi"')


def test_a_revoked_client_is_refused_at_once(app: Flask, token: str) -> None:
    client = app.test_client()
    assert client.get("/me", headers=bearer(token)).status_code == 200
    revoked = client.delete(
        "/v1/clients/alice", headers={"X-Admin-Identity": TEST_ADMIN_SECRET}
    )
    assert revoked.status_code == 204
    refused = client.get("/me", headers=bearer(token))
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
