"""The servers under test, started by ``run.py`` as separate processes.

``python benchmarks/apps.py --server uvicorn --app guarded --port 8000``

Apps: ``hello`` (a bare hello-world app, the baseline), ``guarded`` (the
same app behind the 2FApi middleware) and, for ASGI, ``lag`` (``guarded``
plus a ticker task measuring how late the event loop wakes up, read and
reset at ``GET /__bench/lag``). Configuration travels in ``BENCH_*``
variables so that uvicorn's worker processes, which import
:func:`asgi_factory` by name, see it too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import client_record

from twofapi_middleware.asgi import TwoFApiMiddleware
from twofapi_middleware.settings import Settings
from twofapi_middleware.storage import open_storage
from twofapi_middleware.wsgi import TwoFApiWSGIMiddleware

HELLO = b"Hello, world!"
_HELLO_HEADERS = [
    (b"content-type", b"text/plain"),
    (b"content-length", str(len(HELLO)).encode()),
]


async def hello_asgi(scope: Any, receive: Any, send: Any) -> None:
    """The baseline: the smallest useful ASGI app."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send(
        {"type": "http.response.start", "status": 200, "headers": _HELLO_HEADERS}
    )
    await send({"type": "http.response.body", "body": HELLO})


def hello_wsgi(environ: Any, start_response: Any) -> list[bytes]:
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))],
    )
    return [HELLO]


def _settings() -> Settings:
    return Settings(
        storage_url=os.environ.get("BENCH_STORAGE", "memory://"),
        signing_key=os.environ["BENCH_SIGNING_KEY"],
        rate_limit_per_address=0,
        rate_limit_per_client=0,
    )


def _storage() -> Any:
    url = os.environ.get("BENCH_STORAGE", "memory://")
    storage = open_storage(url)
    seed = int(os.environ.get("BENCH_SEED_CLIENTS", "0"))
    if url.startswith("memory://"):
        # Per-process storage: each server seeds its own (run.py seeds the
        # shared stores once, before the workers start).
        for index in range(seed):
            storage.add_client(client_record(index))
    if os.environ.get("BENCH_FORCE_INLINE") == "1":
        # For the event-loop figure only: pretend the store does no I/O, so
        # the middleware calls it on the loop, to show what offloading buys.
        storage.blocking = False
    return storage


class LagProbe:
    """Wraps an app; a ticker task records how late each wake-up comes."""

    def __init__(self, app: Any, interval: float = 0.005) -> None:
        self.app = app
        self.interval = interval
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.interval)
            self.lags.append(loop.time() - start - self.interval)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self._task = asyncio.get_running_loop().create_task(self._tick())
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self._task is not None:
                        self._task.cancel()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "http" and scope["path"] == "/__bench/lag":
            lags, self.lags = self.lags, []
            body = json.dumps(lags).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def asgi_factory() -> Any:
    """The app named by ``BENCH_APP``; uvicorn workers import this."""
    kind = os.environ["BENCH_APP"]
    if kind == "hello":
        return hello_asgi
    guarded = TwoFApiMiddleware(hello_asgi, _settings(), storage=_storage())
    if kind == "guarded":
        return guarded
    if kind == "lag":
        return LagProbe(guarded)
    raise SystemExit(f"unknown BENCH_APP {kind!r}")


def wsgi_app() -> Any:
    if os.environ["BENCH_APP"] == "hello":
        return hello_wsgi
    return TwoFApiWSGIMiddleware(hello_wsgi, _settings(), storage=_storage())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", choices=("uvicorn", "waitress"), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    if args.server == "waitress":
        import waitress

        waitress.serve(
            wsgi_app(),
            host="127.0.0.1",
            port=args.port,
            threads=args.threads,
            connection_limit=1000,
            _quiet=True,
        )
        return

    import uvicorn

    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": args.port,
        "log_level": "warning",
        "access_log": False,
        "lifespan": "on",
        "http": "auto",
        "loop": "auto",
        "backlog": 2048,
    }
    if args.workers > 1:
        uvicorn.run(
            "apps:asgi_factory",
            factory=True,
            workers=args.workers,
            app_dir=str(Path(__file__).resolve().parent),
            **options,
        )
    else:
        uvicorn.run(asgi_factory(), **options)


if __name__ == "__main__":
    main()
