"""The demo application and the servers behind ``twofapi dev`` and ``serve``.

The demo app serves ``GET /v1/resources/{id}`` (PROTOCOL.md section 6)
behind the ASGI middleware; uvicorn runs it.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

from .asgi import Receive, Scope, Send, TwoFApiMiddleware
from .constants import CLIENT_ID_PATTERN
from .errors import ConfigurationError
from .settings import Settings
from .storage import open_storage, redact_url, scheme_of
from .wire import dump_json

DEFAULT_SERVE_STORAGE = "sqlite:///./twofapi.db"
_PROCESS_HEADER_ENV = "TWOFAPI_PROCESS_HEADER"


async def demo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The protected demo resource: ``GET /v1/resources/{id}``."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    prefix = "/v1/resources/"
    resource_id = path[len(prefix) :] if path.startswith(prefix) else None
    principal = scope.get("twofapi.principal")
    if (
        scope["method"] in ("GET", "HEAD")
        and resource_id is not None
        and CLIENT_ID_PATTERN.fullmatch(resource_id)
        and principal is not None
    ):
        status, body = (
            200,
            {
                "resourceId": resource_id,
                "clientIdentifier": principal.client_id,
                "audience": principal.audience,
                "data": {},
            },
        )
    else:
        status, body = 404, {"error": "not found"}
    payload = dump_json(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class _ProcessHeader:
    """Names the serving process on every response (multi-worker tests)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.value = str(os.getpid()).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def named(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"x-served-by", self.value)]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, named if scope["type"] == "http" else send)


def create_app(settings: Settings | None = None) -> Any:
    """The demo app wrapped by the middleware, from ``TWOFAPI_*`` settings."""
    app: Any = TwoFApiMiddleware(demo_app, settings or Settings.from_env())
    if os.environ.get(_PROCESS_HEADER_ENV) == "1":
        app = _ProcessHeader(app)
    return app


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _banner(host: str, port: int) -> None:
    shown = f"[{host}]" if ":" in host else host
    print(f"[2FApi] Listening on http://{shown}:{port}", flush=True)
    print(f"[2FApi] Health: http://{shown}:{port}/health", flush=True)


def run_dev(
    *, host: str = "127.0.0.1", port: int = 3000, accept_any_proof: bool = False
) -> None:
    """``twofapi dev``: the demo app, in memory.

    ``TWOFAPI_ENV`` is honoured, so a machine set to production refuses
    ``--accept-any-proof`` here too; the storage is always ``memory://``.
    """
    import uvicorn

    settings = Settings.from_env(
        storage_url="memory://", accept_any_proof=accept_any_proof
    )
    app = create_app(settings)
    sock = _bind(host, port)
    _banner(host, sock.getsockname()[1])
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="on",
        access_log=False,
        # The middleware reads X-Forwarded-For itself, as far as
        # TWOFAPI_TRUSTED_PROXY_HOPS trusts it; uvicorn's own rewriting of
        # the peer would let anybody behind a local proxy pick an address.
        proxy_headers=False,
    )
    uvicorn.Server(config).run(sockets=[sock])


def run_serve(
    *,
    storage_url: str | None = None,
    host: str = "127.0.0.1",
    port: int = 3000,
    workers: int = 1,
    process_header: bool = False,
) -> None:
    """``twofapi serve``: the demo app with production settings."""
    import uvicorn

    url = storage_url or os.environ.get("TWOFAPI_STORAGE_URL") or DEFAULT_SERVE_STORAGE
    if workers > 1 and scheme_of(url) == "memory":
        raise ConfigurationError(
            "memory:// is per process: several workers need sqlite, postgresql, "
            "mysql or redis storage"
        )
    os.environ["TWOFAPI_STORAGE_URL"] = url
    os.environ.setdefault("TWOFAPI_ENV", "production")
    if process_header:
        os.environ[_PROCESS_HEADER_ENV] = "1"
    # Fail here, once, with a clear message, rather than in every worker.
    settings = Settings.from_env()
    _preflight(settings)
    sock = _bind(host, port)
    _banner(host, sock.getsockname()[1])
    print(f"[2FApi] Storage: {redact_url(url)}; workers: {workers}", flush=True)
    config = uvicorn.Config(
        "twofapi_middleware.server:create_app",
        factory=True,
        workers=workers,
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # see run_dev
    )
    server = uvicorn.Server(config)
    if workers > 1:
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, sockets=[sock]).run()
    else:
        server.run(sockets=[sock])
    sys.exit(0)


def _preflight(settings: Settings) -> None:
    from .service import TwoFApi

    storage = open_storage(settings.storage_url)
    try:
        TwoFApi(settings, storage)
    finally:
        storage.close()
