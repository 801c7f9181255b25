"""ASGI middleware: mounts the 2FApi endpoints and guards the wrapped app.

It owns only the paths of PROTOCOL.md section 5. Every other HTTP or
WebSocket request must carry a valid bearer token, unless excluded; the app
then finds the client in ``scope["twofapi.principal"]`` (and Starlette's
``scope["user"]`` and ``scope["auth"]``). Lifespan and unknown scope types
pass straight through. On guarded routes the request body is never read,
so uploads and streamed responses flow untouched.

With ``guard=False`` it serves only its own endpoints and passes every
other request through, for integrations that guard after routing.

Storage calls run in a bounded thread pool when the backend blocks, so the
event loop never waits on the network.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .constants import MAX_BODY_BYTES
from .http import (
    Frontend,
    Request,
    Response,
    Route,
    content_length_too_large,
    match_route,
)
from .models import Principal
from .service import TwoFApi
from .settings import Settings
from .storage import Storage

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

T = TypeVar("T")

BEARER_SUBPROTOCOL = "twofapi.bearer"


class TwoFApiMiddleware:
    """Wrap an ASGI app: ``app = TwoFApiMiddleware(app, settings=...)``."""

    def __init__(
        self,
        app: ASGIApp,
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
        self._executor = ThreadPoolExecutor(
            max_workers=service.settings.storage_threads,
            thread_name_prefix="twofapi",
        )
        self._blocking = service.storage.blocking

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            route = match_route(scope["path"])
            if route is not None:
                await self._serve_endpoint(route, scope, receive, send)
                return
        elif kind != "websocket":
            await self.app(scope, receive, send)
            return
        if not self.guard:
            await self.app(scope, receive, send)
            return

        headers = _headers(scope)
        method = scope.get("method", "GET")
        if self.frontend.is_excluded(method, scope["path"], headers):
            await self.app(scope, receive, send)
            return
        if kind == "websocket":
            await self._guard_websocket(scope, headers, receive, send)
            return

        result = await self._run(
            self._blocking, self.frontend.authenticate, headers, _peer(scope)
        )
        if isinstance(result, Response):
            await _send_response(send, result, method)
            return
        await self.app(_with_principal(scope, result), receive, send)

    async def _guard_websocket(
        self, scope: Scope, headers: dict[str, str], receive: Receive, send: Send
    ) -> None:
        subprotocols = list(scope.get("subprotocols") or ())
        via_subprotocol = False
        if "authorization" not in headers and BEARER_SUBPROTOCOL in subprotocols:
            position = subprotocols.index(BEARER_SUBPROTOCOL)
            if position + 1 < len(subprotocols):
                token = subprotocols.pop(position + 1)
                headers = {**headers, "authorization": f"Bearer {token}"}
                via_subprotocol = True
        result = await self._run(
            self._blocking, self.frontend.authenticate, headers, _peer(scope)
        )
        if isinstance(result, Response):
            # Refused before accept: the server answers the handshake with 403.
            await send({"type": "websocket.close", "code": 1008})
            return
        scope = _with_principal(scope, result)
        scope["subprotocols"] = subprotocols

        async def send_accepting(message: Message) -> None:
            if (
                via_subprotocol
                and message["type"] == "websocket.accept"
                and not message.get("subprotocol")
            ):
                message = {**message, "subprotocol": BEARER_SUBPROTOCOL}
            await send(message)

        await self.app(scope, receive, send_accepting if via_subprotocol else send)

    async def _serve_endpoint(
        self, route: Route, scope: Scope, receive: Receive, send: Send
    ) -> None:
        headers = _headers(scope)
        body, too_large = b"", content_length_too_large(headers.get("content-length"))
        if not too_large and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            body, too_large = await _read_body(receive)
        request = Request(
            scope["method"], scope["path"], headers, body, _peer(scope), too_large
        )
        if self.frontend.needs_thread(route):
            response = await self._run(True, self.frontend.handle, route, request)
        else:
            response = self.frontend.handle(route, request)
        await _send_response(send, response, scope["method"])

    async def _run(self, in_thread: bool, fn: Callable[..., T], *args: Any) -> T:
        if not in_thread:
            return fn(*args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        key = name.decode("latin-1").lower()
        if key not in headers:
            headers[key] = value.decode("latin-1")
        else:
            # Repeated lines form one comma-separated list (RFC 9110 5.3):
            # for X-Forwarded-For the trusted entries are its last, and a
            # repeated Authorization or X-Admin-Identity becomes a value that
            # cannot pass, instead of "the first one wins".
            headers[key] += ", " + value.decode("latin-1")
    return headers


def _peer(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def _with_principal(scope: Scope, principal: Principal) -> Scope:
    scope = dict(scope)
    scope["twofapi.principal"] = principal
    scope["user"] = principal
    scope["auth"] = principal
    return scope


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        body: bytes = message.get("body", b"")  # the usual case: one message
        return (b"", True) if len(body) > MAX_BODY_BYTES else (body, False)
    return await _read_more_body(receive, message)


async def _read_more_body(receive: Receive, message: Message) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while True:
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
        message = await receive()
    return b"".join(chunks), False


async def _send_response(send: Send, response: Response, method: str) -> None:
    headers = []
    sized = False
    for name, value in response.headers:
        sized = sized or name == "content-length"
        headers.append((name.encode("latin-1"), value.encode("latin-1")))
    if not sized:
        headers.append((b"content-length", str(len(response.body)).encode()))
    await send(
        {"type": "http.response.start", "status": response.status, "headers": headers}
    )
    # HEAD: the GET answer's headers, no body, whatever the server would do.
    body = b"" if method == "HEAD" else response.body
    await send({"type": "http.response.body", "body": body})
