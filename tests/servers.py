"""Real server processes for the multi-process suites."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from twofapi_middleware.testing import TEST_ADMIN_SECRET
from twofapi_middleware.tokens import generate_private_key_pem

_LISTENING = re.compile(r"\[2FApi\] Listening on (http://\S+)")

SERVE = (
    "import sys; from twofapi_middleware.server import run_serve; "
    "run_serve(storage_url=sys.argv[1], port=0, process_header=True)"
)


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[str]


def server_env(**extra: str) -> dict[str, str]:
    """A production environment with cheap Argon2 and no rate limits."""
    env = dict(os.environ)
    env.update(
        TWOFAPI_ENV="production",
        TWOFAPI_SIGNING_KEY=generate_private_key_pem(),
        TWOFAPI_ADMIN_SECRET=TEST_ADMIN_SECRET,
        TWOFAPI_RATE_LIMIT_PER_ADDRESS="0",
        TWOFAPI_RATE_LIMIT_PER_CLIENT="0",
        TWOFAPI_ARGON2_MEMORY_KIB="64",
        TWOFAPI_ARGON2_TIME_COST="1",
    )
    env.update(extra)
    return env


def start_server(storage_url: str, env: dict[str, str]) -> ServerProcess:
    """Start ``run_serve`` and wait for its banner and its health check."""
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE, storage_url],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    deadline = time.time() + 30
    url = None
    seen = []
    while time.time() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        found = _LISTENING.search(line)
        if found:
            url = found.group(1)
            break
    if url is None:
        process.kill()
        raise AssertionError("server did not start:\n" + "".join(seen))
    # Keep draining the output so a chatty server never blocks on the pipe.
    threading.Thread(target=process.stdout.read, daemon=True).start()
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return ServerProcess(url, process)
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"server at {url} never became healthy")


def stop_server(server: ServerProcess) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@contextmanager
def running_servers(
    storage_url: str, count: int, env: dict[str, str]
) -> Iterator[list[ServerProcess]]:
    servers: list[ServerProcess] = []
    try:
        for _ in range(count):
            servers.append(start_server(storage_url, env))
        yield servers
    finally:
        for server in servers:
            stop_server(server)
