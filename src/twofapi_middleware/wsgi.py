"""WSGI middleware: mounts the 2FApi endpoints and guards the wrapped app.

The WSGI twin of :mod:`twofapi_middleware.asgi`: the same paths, the same
answers (both come from :mod:`twofapi_middleware.http`). The authenticated
client reaches the app as ``environ["twofapi.principal"]``. On guarded
routes ``wsgi.input`` is never touched.

With ``guard=False`` it only serves its own endpoints and leaves every other
request to the app: framework integrations that guard after routing (so
that per-view markers work) use it that way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .constants import MAX_BODY_BYTES
from .http import Frontend, Request, Response, content_length_too_large, match_route
from .service import TwoFApi
from .settings import Settings
from .storage import Storage

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class TwoFApiWSGIMiddleware:
    """Wrap a WSGI app: ``app.wsgi_app = TwoFApiWSGIMiddleware(app.wsgi_app)``."""

    def __init__(
        self,
        app: WSGIApp,
        settings: Settings | None = None,
        *,
        service: TwoFApi | None = None,
        storage: Storage | None = None,
        guard: bool = True,
    ) -> None:
        self.app = app
        if service is None:
            service = TwoFApi(settings or Settings.from_env(), storage)
        self.service = service
        self.frontend = Frontend(service)
        self.guard = guard

    def __call__(
        self, environ: Environ, start_response: StartResponse
    ) -> Iterable[bytes]:
        path = _path(environ)
        headers = _headers(environ)
        peer = environ.get("REMOTE_ADDR")
        method = environ.get("REQUEST_METHOD", "GET")
        route = match_route(path)
        if route is not None:
            too_large = content_length_too_large(headers.get("content-length"))
            body = b""
            if not too_large and method not in ("GET", "HEAD", "OPTIONS"):
                body, too_large = _read_body(environ)
            request = Request(method, path, headers, body, peer, too_large)
            response = self.frontend.handle(route, request)
            return _respond(start_response, response, method)

        if not self.guard or self.frontend.is_excluded(method, path, headers):
            return self.app(environ, start_response)
        result = self.frontend.authenticate(headers, peer)
        if isinstance(result, Response):
            return _respond(start_response, result, method)
        environ["twofapi.principal"] = result
        return self.app(environ, start_response)


def _path(environ: Environ) -> str:
    # PEP 3333 hands the path over as latin-1 code points of the raw bytes.
    raw = environ.get("PATH_INFO", "") or "/"
    try:
        return str(raw.encode("latin-1").decode("utf-8"))
    except (UnicodeEncodeError, UnicodeDecodeError):
        return str(raw)


def _headers(environ: Environ) -> dict[str, str]:
    headers = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = value
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    if environ.get("CONTENT_LENGTH"):
        headers["content-length"] = environ["CONTENT_LENGTH"]
    return headers


def _read_body(environ: Environ) -> tuple[bytes, bool]:
    stream = environ.get("wsgi.input")
    if stream is None:
        return b"", False
    length_header = environ.get("CONTENT_LENGTH") or ""
    if length_header.isdigit():
        wanted = int(length_header)
    elif environ.get("wsgi.input_terminated"):
        wanted = MAX_BODY_BYTES + 1
    else:
        return b"", False
    body = stream.read(min(wanted, MAX_BODY_BYTES + 1))
    if len(body) > MAX_BODY_BYTES:
        return b"", True
    return bytes(body), False


def _respond(
    start_response: StartResponse, response: Response, method: str
) -> list[bytes]:
    headers = list(response.headers)
    if not any(name == "content-length" for name, _ in headers):
        headers.append(("content-length", str(len(response.body))))
    reason = _REASONS.get(response.status, "Unknown")
    start_response(f"{response.status} {reason}", [(n.title(), v) for n, v in headers])
    # A HEAD answer has the headers of the GET one and no body: some WSGI
    # servers send what they are given, and a kept-alive connection would
    # read those bytes as the start of the next answer.
    return [] if method == "HEAD" else [response.body]
