"""The HTTP face of the service, shared by the ASGI and WSGI adapters.

Sans-I/O: the adapters read the request (the body only on the paths this
module owns, and never more than the limit), build a :class:`Request`, and
write back the :class:`Response` they are given. Everything about status
codes, headers and problem bodies is decided here, once.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from . import wire
from .constants import (
    CLIENT_ID_PATTERN,
    MAX_BODY_BYTES,
    REQUEST_ID_PATTERN,
    SERVICE_VERSION,
)
from .errors import (
    InternalError,
    MethodNotAllowed,
    PayloadTooLarge,
    ProblemError,
    RateLimited,
    StorageUnavailable,
    StorageUnavailableProblem,
    UnsupportedMediaType,
)
from .models import Principal
from .service import Context, TwoFApi

logger = logging.getLogger(__name__)

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
_HEALTH_BODY = wire.dump_json({"status": "ok", "version": SERVICE_VERSION})


class Request(NamedTuple):
    """What the adapters hand over: header names lowercased, first value.

    A named tuple: immutable, and built for every request at a third of a
    frozen dataclass's cost.
    """

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes = b""
    peer: str | None = None
    body_too_large: bool = False


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Route:
    """One owned path: its methods, and which of them do Argon2 work."""

    name: str
    methods: tuple[str, ...]
    heavy: bool = False
    client_id: str | None = None

    @property
    def allowed(self) -> tuple[str, ...]:
        extra = ("HEAD",) if "GET" in self.methods else ()
        return (*self.methods, *extra, "OPTIONS")


_STATIC_ROUTES = {
    "/health": Route("health", ("GET",)),
    "/.well-known/jwks.json": Route("jwks", ("GET",)),
    "/v1/clients": Route("enroll", ("POST",), heavy=True),
    "/v1/challenges": Route("challenges", ("POST",)),
    "/v1/verify": Route("verify", ("POST",)),
}
_CLIENT_ROUTE = re.compile(
    r"/v1/clients/([^/]+)(/commitment|/suspend|/recover|/reactivate)?"
)
_CLIENT_ROUTES = {
    None: Route("revoke", ("DELETE",)),
    "/commitment": Route("rotate", ("PUT",)),
    "/suspend": Route("suspend", ("POST",)),
    "/recover": Route("recover", ("POST",), heavy=True),
    "/reactivate": Route("reactivate", ("POST",), heavy=True),
}
_BODYLESS = frozenset({"health", "jwks", "revoke", "suspend"})


def match_route(path: str) -> Route | None:
    """The owned route at ``path``, or None for the wrapped app's paths."""
    route = _STATIC_ROUTES.get(path)
    if route is not None:
        return route
    if not path.startswith("/v1/clients/"):
        return None
    found = _CLIENT_ROUTE.fullmatch(path)
    if found is None:
        return None
    base = _CLIENT_ROUTES[found.group(2)]
    return Route(base.name, base.methods, base.heavy, found.group(1))


class _RequestIds:
    """New request ids: a random prefix per process and a counter.

    Request ids correlate logs and problem bodies; they are no secret (a
    client may send its own), so they need no system call each, which
    cost more than the rest of a request's bookkeeping. Forked workers
    draw a prefix of their own.
    """

    def __init__(self) -> None:
        self._reseed()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count()

    def new(self) -> str:
        return f"{self._prefix}{next(self._counter) % 2**64:016x}"


_REQUEST_IDS = _RequestIds()


def request_id_from(headers: Mapping[str, str]) -> str:
    incoming = headers.get("x-request-id")
    if incoming is not None and REQUEST_ID_PATTERN.fullmatch(incoming):
        return incoming
    return _REQUEST_IDS.new()


def source_address(
    peer: str | None, headers: Mapping[str, str], hops: int
) -> str | None:
    """The client's address: the peer, or the ``hops``-th forwarded one.

    Only entries appended by trusted proxies (counted from the right) are
    believed, so a spoofed ``X-Forwarded-For`` never buys new attempts.
    """
    if hops <= 0:
        return peer
    forwarded = [part.strip() for part in headers.get("x-forwarded-for", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if len(forwarded) < hops:
        return peer
    # Anything but an address (junk, a 300-character string) is not believed:
    # it would become an unbounded rate-limit key and a false audit record.
    try:
        return str(ipaddress.ip_address(forwarded[-hops]))
    except ValueError:
        return peer


def _plain(path: str) -> bool:
    """No dot segments, no empty ones: a path an app cannot read otherwise.

    An excluded prefix must not open ``/public/../admin`` to an app or a
    proxy that normalises the path after the guard has looked at it.
    """
    segments = path.split("/")[1:]
    return all(segment not in ("", ".", "..") for segment in segments[:-1]) and (
        segments[-1:] != [".."] and segments[-1:] != ["."]
    )


def problem_response(error: ProblemError, request_id: str) -> Response:
    body: dict[str, Any] = {
        "type": error.type,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "instance": request_id,
    }
    body.update(error.extra())
    return Response(
        error.status,
        [*_common_headers(PROBLEM_JSON, request_id), *error.headers()],
        wire.dump_json(body),
    )


def json_response(status: int, body: bytes, request_id: str) -> Response:
    return Response(status, _common_headers(JSON, request_id), body)


def _common_headers(content_type: str, request_id: str) -> list[tuple[str, str]]:
    return [
        ("content-type", content_type),
        ("x-request-id", request_id),
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
    ]


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media, _, params = content_type.partition(";")
    if media.strip().lower() != JSON:
        return False
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if not name.strip():
            continue
        if name.strip().lower() != "charset":
            return False
        if value.strip().strip('"').lower() != "utf-8":
            return False
    return True


class Frontend:
    """Maps HTTP requests to the service and results to responses."""

    def __init__(self, service: TwoFApi) -> None:
        self.service = service
        self.settings = service.settings
        # When the current storage outage began (monotonic), or None.
        self._outage_since: float | None = None
        self._outage_lock = threading.Lock()

    # -- guard -----------------------------------------------------------

    def is_excluded(self, method: str, path: str, headers: Mapping[str, str]) -> bool:
        """Excluded paths, and CORS preflights, pass through unguarded."""
        settings = self.settings
        if path in settings.exclude_paths:
            return True
        if settings.exclude_prefixes and _plain(path):
            for prefix in settings.exclude_prefixes:
                # "/public" excludes "/public" and "/public/...", never
                # "/publicity" or "/public-admin".
                base = prefix.rstrip("/")
                if path == base or path.startswith(base + "/"):
                    return True
        return (
            method == "OPTIONS"
            and "origin" in headers
            and "access-control-request-method" in headers
        )

    def authenticate(
        self, headers: Mapping[str, str], peer: str | None
    ) -> Principal | Response:
        """The principal, or the 401 (or 503) response to send instead."""
        # The audit event of a refusal names the request id its answer carries.
        request_id = request_id_from(headers)
        ctx = Context(
            request_id,
            source_address(peer, headers, self.settings.trusted_proxy_hops),
        )
        started = time.monotonic()
        try:
            principal = self.service.authenticate(
                headers.get("authorization"), headers.get("x-channel-binding"), ctx
            )
        except Exception as error:
            return self._error_response(error, request_id)
        self._storage_ok(started)
        return principal

    # -- owned endpoints -------------------------------------------------

    def needs_thread(self, route: Route) -> bool:
        """Whether the ASGI adapter should run this route off the event loop."""
        return route.heavy or self.service.storage.blocking

    def handle(self, route: Route, request: Request) -> Response:
        request_id = request_id_from(request.headers)
        started = time.monotonic()
        try:
            response = self._dispatch(route, request, request_id)
        except Exception as error:
            return self._error_response(error, request_id)
        if route.name not in ("health", "jwks"):
            self._storage_ok(started)
        return response

    def _dispatch(self, route: Route, request: Request, request_id: str) -> Response:
        method = request.method
        if method == "OPTIONS":
            allow = ("allow", ", ".join(route.allowed))
            return Response(204, [allow, *_common_headers(JSON, request_id)[1:]])
        lookup = "GET" if method == "HEAD" and "GET" in route.methods else method
        if lookup not in route.methods:
            raise MethodNotAllowed(route.allowed)
        if route.name == "health":
            return json_response(200, _HEALTH_BODY, request_id)
        if route.name == "jwks":
            body = wire.dump_json(self.service.jwks())
            return json_response(200, body, request_id)

        headers = request.headers
        ctx = Context(
            request_id,
            source_address(request.peer, headers, self.settings.trusted_proxy_hops),
        )
        if request.body_too_large:
            # Every request counts toward the limits, but 413 wins over 429
            # (and needs no storage to be decided).
            with contextlib.suppress(RateLimited, StorageUnavailable):
                self.service.rate_limit(route.name, _rate_key(route, None), ctx)
            raise PayloadTooLarge
        has_body = route.name not in _BODYLESS or bool(request.body)
        parsed: dict[str, Any] | None = None
        parse_error: ProblemError | None = None
        if has_body:
            try:
                parsed = wire.parse_json_object(request.body)
            except ProblemError as error:
                parse_error = error
        self.service.rate_limit(route.name, _rate_key(route, parsed), ctx)
        if has_body and not _is_json(headers.get("content-type")):
            raise UnsupportedMediaType
        if parse_error is not None:
            raise parse_error
        if route.client_id is not None:
            wire.require_client_id(route.client_id, "id")
        return self._call(route, parsed or {}, headers, ctx, request_id)

    def _call(
        self,
        route: Route,
        body: dict[str, Any],
        headers: Mapping[str, str],
        ctx: Context,
        request_id: str,
    ) -> Response:
        service = self.service
        client_id = route.client_id or ""
        admin = headers.get("x-admin-identity")
        name = route.name
        if name == "enroll":
            answer, _ = service.enroll(body, ctx)
            response = json_response(201, wire.dump_json(answer), request_id)
            location = f"/v1/clients/{answer['clientIdentifier']}"
            response.headers.append(("location", location))
            return response
        if name == "challenges":
            return json_response(
                200, wire.dump_json(service.issue_challenge(body, ctx)), request_id
            )
        if name == "verify":
            return json_response(
                200, wire.dump_json(service.verify(body, ctx)), request_id
            )
        if name == "rotate":
            credentials = (
                headers.get("authorization"),
                headers.get("x-channel-binding"),
            )
            answer = service.rotate(client_id, body, credentials, ctx)
            return json_response(200, wire.dump_json(answer), request_id)
        if name == "revoke":
            service.revoke(client_id, admin, ctx)
            return Response(204, _common_headers(JSON, request_id)[1:])
        if name == "suspend":
            service.suspend(client_id, admin, ctx)
            return Response(204, _common_headers(JSON, request_id)[1:])
        if name == "recover":
            return json_response(
                200, wire.dump_json(service.recover(client_id, body, ctx)), request_id
            )
        answer = service.reactivate(client_id, body, admin, ctx)
        return json_response(200, wire.dump_json(answer), request_id)

    # -- failures --------------------------------------------------------

    def _error_response(self, error: Exception, request_id: str) -> Response:
        if isinstance(error, StorageUnavailable):
            self._storage_down(error)
            return problem_response(StorageUnavailableProblem(), request_id)
        if isinstance(error, ProblemError):
            return problem_response(error, request_id)
        logger.error(
            "internal error (request %s): %s",
            request_id,
            type(error).__name__,
            exc_info=error,
        )
        return problem_response(InternalError(), request_id)

    def _storage_down(self, error: StorageUnavailable) -> None:
        with self._outage_lock:
            if self._outage_since is not None:
                return
            self._outage_since = time.monotonic()
        logger.warning("storage unavailable: %s; answering 503 until it is back", error)

    def _storage_ok(self, started: float) -> None:
        """A request that began after the outage did succeed: it is over.

        Requests already in flight when the store went away may still
        succeed; they say nothing about whether it is back.
        """
        since = self._outage_since
        if since is None or started <= since:
            return
        with self._outage_lock:
            if self._outage_since is None or started <= self._outage_since:
                return
            self._outage_since = None
        logger.info("storage is back")


def _rate_key(route: Route, body: dict[str, Any] | None) -> str | None:
    if route.client_id is not None:
        return route.client_id
    candidate = body.get("clientIdentifier") if body else None
    if isinstance(candidate, str) and CLIENT_ID_PATTERN.fullmatch(candidate):
        return candidate
    return None


def content_length_too_large(value: str | None) -> bool:
    """Whether a Content-Length header already announces too large a body."""
    if value is None:
        return False
    try:
        return int(value) > MAX_BODY_BYTES
    except ValueError:
        return False
