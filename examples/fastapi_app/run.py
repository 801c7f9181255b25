"""Serve the FastAPI notes example with uvicorn.

    python examples/fastapi_app/run.py --port 8000 [--storage URL]

Other settings come from ``TWOFAPI_*`` environment variables.
"""

from __future__ import annotations

import argparse
import os
import socket

import uvicorn
from notes_fastapi import create_app

from twofapi_middleware import Settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free one")
    parser.add_argument(
        "--storage",
        default=os.environ.get("TWOFAPI_STORAGE_URL", "memory://"),
        help="2FApi storage URL (default memory://)",
    )
    args = parser.parse_args(argv)

    app = create_app(Settings.from_env(storage_url=args.storage))

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.create_server((args.host, args.port), family=family)
    port = sock.getsockname()[1]
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"[2FApi] Listening on http://{shown}:{port}", flush=True)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # TWOFAPI_TRUSTED_PROXY_HOPS decides, not uvicorn
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
