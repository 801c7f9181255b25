"""Serve the Django notes example: ASGI with uvicorn, or WSGI with waitress.

    python examples/django_app/run.py --port 8000 [--storage URL] [--wsgi]

Other settings come from ``TWOFAPI_*`` environment variables.
"""

from __future__ import annotations

import argparse
import os
import socket


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free one")
    parser.add_argument(
        "--storage",
        default=os.environ.get("TWOFAPI_STORAGE_URL", "memory://"),
        help="2FApi storage URL (default memory://)",
    )
    parser.add_argument(
        "--wsgi", action="store_true", help="serve WSGI with waitress, not ASGI"
    )
    args = parser.parse_args(argv)

    os.environ["TWOFAPI_STORAGE_URL"] = args.storage
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notes_django.settings")

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.create_server((args.host, args.port), family=family)
    port = sock.getsockname()[1]
    shown = f"[{args.host}]" if ":" in args.host else args.host

    if args.wsgi:
        from notes_django.wsgi import application as wsgi_app
        from waitress import serve

        print(f"[2FApi] Listening on http://{shown}:{port}", flush=True)
        serve(wsgi_app, sockets=[sock], threads=8)
        return

    import uvicorn
    from notes_django.asgi import application

    print(f"[2FApi] Listening on http://{shown}:{port}", flush=True)
    config = uvicorn.Config(
        application,
        lifespan="off",
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # TWOFAPI_TRUSTED_PROXY_HOPS decides, not uvicorn
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
