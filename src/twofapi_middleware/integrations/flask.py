"""Flask: the 2FApi endpoints and a guard on every view, with opt-outs.

::

    from twofapi_middleware.integrations.flask import (
        FlaskTwoFApi, current_principal, public,
    )

    app = Flask(__name__)
    app.config["TWOFAPI_STORAGE_URL"] = "redis://localhost:6379/0"
    twofapi = FlaskTwoFApi(app)          # or FlaskTwoFApi() + init_app(app)

    @app.get("/me")
    def me():
        return {"client": current_principal.client_id}

    @app.get("/status")
    @public
    def status():
        return {"ok": True}

The extension wraps ``app.wsgi_app`` with the WSGI middleware, which serves
``/health``, the JWKS and the ``/v1`` endpoints and guards nothing itself.
The guard runs as the first ``before_request`` hook, after routing, so it
knows the view: a view marked :func:`public` is open, one marked
:func:`login_required` is guarded even under an excluded path, and any other
is guarded unless ``TWOFAPI_EXCLUDE_PATHS`` or ``TWOFAPI_EXCLUDE_PREFIXES``
cover it. Unknown URLs and Flask's ``static`` view are guarded too (a
missing token is a 401 before it is a 404); exclude ``/static/`` to serve
files openly. Refusals are the middleware's own 401 (or 503) answers.

Configuration comes from ``app.config``: every ``TWOFAPI_<FIELD>`` key sets
the :class:`~twofapi_middleware.settings.Settings` field of that name.
String values are read as the environment variables of the same name are
(``"60"``, ``"true"``, ``"a,b"``); other values are taken as they are.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from flask import Flask, current_app, g, request
from flask import Response as FlaskResponse
from werkzeug.local import LocalProxy

from ..errors import ConfigurationError
from ..http import Frontend, Response
from ..models import Principal
from ..service import TwoFApi
from ..settings import Settings
from ..storage import Storage
from ..wsgi import TwoFApiWSGIMiddleware
from . import mark_view, needs_guard, view_mark

__all__ = [
    "EXTENSION_KEY",
    "FlaskTwoFApi",
    "current_principal",
    "login_required",
    "public",
    "settings_from_config",
]

V = TypeVar("V", bound=Callable[..., Any])

EXTENSION_KEY = "twofapi"
"""Where the extension keeps its middleware in ``app.extensions``."""

_PREFIX = "TWOFAPI_"
_FIELDS = {field.name for field in dataclasses.fields(Settings)}
# Read from a file by Settings.from_env rather than mapped onto a field.
_FILE_VARIABLES = frozenset({"TWOFAPI_VERIFICATION_KEYS_FILE"})


def public(view: V) -> V:
    """Open a view to requests without a token."""
    return mark_view(view, guard=False)


def login_required(view: V) -> V:
    """Guard a view, even when its path is excluded in the settings."""
    return mark_view(view, guard=True)


def settings_from_config(config: Mapping[str, Any]) -> Settings:
    """Settings from the ``TWOFAPI_*`` keys of a Flask config.

    The process's ``TWOFAPI_*`` environment variables fill in what the config
    leaves out, as everywhere else; only the config's own keys must all be
    known settings.
    """
    environ = {k: v for k, v in os.environ.items() if k.startswith(_PREFIX)}
    overrides: dict[str, Any] = {}
    for key, value in config.items():
        if not key.startswith(_PREFIX):
            continue
        name = key[len(_PREFIX) :].lower()
        if key in _FILE_VARIABLES:
            environ[key] = str(value)
        elif name not in _FIELDS:
            # A misspelt key would silently leave a route unguarded.
            raise ConfigurationError(f"unknown 2FApi setting {key}")
        elif isinstance(value, str):
            environ[key] = value
        else:
            overrides[name] = tuple(value) if isinstance(value, list) else value
    return Settings.from_env(environ=environ, **overrides)


class FlaskTwoFApi:
    """The Flask extension: ``FlaskTwoFApi(app)`` or ``init_app(app)`` later.

    ``settings`` and ``storage``, when given, are used instead of the
    app's config; a service is built for each app the extension is
    initialised on.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        settings: Settings | None = None,
        storage: Storage | None = None,
    ) -> None:
        self._settings = settings
        self._storage = storage
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Mount the endpoints on ``app`` and guard its views."""
        settings = self._settings or settings_from_config(app.config)
        service = TwoFApi(settings, self._storage)
        middleware = TwoFApiWSGIMiddleware(app.wsgi_app, service=service, guard=False)
        app.wsgi_app = middleware  # type: ignore[method-assign]
        app.extensions[EXTENSION_KEY] = middleware
        # First of the app's hooks, so that none of them runs unguarded.
        app.before_request_funcs.setdefault(None, []).insert(0, _guard)

    @staticmethod
    def service(app: Flask | None = None) -> TwoFApi:
        """The service of ``app`` (default: the current app)."""
        return _middleware(app).service


def _middleware(app: Flask | None = None) -> TwoFApiWSGIMiddleware:
    target = app if app is not None else current_app
    try:
        middleware: TwoFApiWSGIMiddleware = target.extensions[EXTENSION_KEY]
    except KeyError:
        raise RuntimeError("FlaskTwoFApi is not initialised on this app") from None
    return middleware


def _guard() -> FlaskResponse | None:
    frontend: Frontend = _middleware().frontend
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        headers.setdefault(name.lower(), value)
    endpoint = request.endpoint
    view = current_app.view_functions.get(endpoint) if endpoint else None
    if not needs_guard(
        frontend, request.method, request.path, headers, view_mark(view)
    ):
        return None

    result = frontend.authenticate(headers, request.remote_addr)
    if isinstance(result, Response):
        # Named as the WSGI middleware names them, so the answers match.
        named = [(name.title(), value) for name, value in result.headers]
        return FlaskResponse(result.body, status=result.status, headers=named)
    g.twofapi_principal = result
    request.environ["twofapi.principal"] = result
    return None


def _current() -> Principal:
    principal: Principal | None = g.get("twofapi_principal")
    if principal is None:
        raise RuntimeError("no authenticated 2FApi client in this request")
    return principal


current_principal: Principal = LocalProxy(_current)  # type: ignore[assignment]
"""The authenticated client of the current request.

Falsy on views that let requests through without a token; reading an
attribute there raises ``RuntimeError``.
"""
