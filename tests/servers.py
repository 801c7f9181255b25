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
from pathlib import Path
from typing import Any

import httpx

import twofapi_middleware
from twofapi_middleware.testing import TEST_ADMIN_SECRET
from twofapi_middleware.tokens import generate_private_key_pem

# What a server prints once it listens: the 2FApi banner, or the WSGI test
# server's line.
_LISTENING = re.compile(r"(?:\[2FApi\] Listening on|WSGI on) (http://\S+)")

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
    _stop(server.process)


def _stop(process: subprocess.Popen[Any]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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


# -- one server process of any kind, for the end-to-end suites -----------------


def dev_env(**settings: str) -> dict[str, str]:
    """This environment without TWOFAPI_* settings, plus ``settings``.

    The package's source comes first on PYTHONPATH, so a server process runs
    the code under test even where it is not installed.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWOFAPI_")}
    source = str(Path(twofapi_middleware.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


@contextmanager
def running_process(
    command: list[str], folder: Path, env: dict[str, str]
) -> Iterator[str]:
    """Run ``command`` until the block ends; yields the URL it prints.

    The server must print ``[2FApi] Listening on URL`` (or ``WSGI on URL``)
    and then answer ``GET /health``; its standard error is kept in
    ``folder`` and shown if it does not start.
    """
    errors = (folder / "stderr.txt").open("wb")
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=errors, env=env, cwd=folder
    )
    found: list[str] = []

    def read_banner() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            match = _LISTENING.search(raw.decode("utf-8", "replace"))
            if match:
                found.append(match.group(1))
                break
        for _ in process.stdout:  # keep the pipe drained
            pass

    threading.Thread(target=read_banner, daemon=True).start()
    try:
        deadline = time.monotonic() + 30
        while not found and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if not found:
            errors.flush()
            log = (folder / "stderr.txt").read_text(errors="replace")
            raise AssertionError(f"{command[-3:]} did not start; stderr:\n{log}")
        while httpx.get(f"{found[0]}/health", timeout=10).status_code != 200:
            if time.monotonic() > deadline:
                raise AssertionError(f"{found[0]} never became healthy")
            time.sleep(0.05)
        yield found[0]
    finally:
        _stop(process)
        errors.close()
