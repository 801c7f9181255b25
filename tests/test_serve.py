"""``twofapi serve`` on real stores: schema checks and surviving a restart.

Everything runs through the command line, as an operator would: migrate,
serve, enroll with the CLI client, restart, log in again with only the saved
credential file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time

import httpx
import pytest

from twofapi_middleware.storage import open_storage

CLI = [sys.executable, "-m", "twofapi_middleware.cli"]
LISTENING = re.compile(r"\[2FApi\] Listening on (http://\S+)")

STORES = {
    "sqlite": None,  # a file under tmp_path
    "postgresql": os.environ.get(
        "TWOFAPI_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test"
    ),
    "redis": os.environ.get("TWOFAPI_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
}


def cli(*args: str, env: dict[str, str], stdin: str | None = None):
    return subprocess.run(
        [*CLI, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


class Served:
    def __init__(self, storage_url: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [*CLI, "serve", "--storage", storage_url, "--port", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        lines = []
        deadline = time.time() + 30
        self.url = ""
        while time.time() < deadline and not self.url:
            line = self.process.stdout.readline()
            if not line:
                break
            lines.append(line)
            found = LISTENING.search(line)
            if found:
                self.url = found.group(1)
        if not self.url:
            self.stop()
            raise AssertionError("serve did not start:\n" + "".join(lines))
        threading.Thread(target=self.process.stdout.read, daemon=True).start()
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError("serve never became healthy")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def env(tmp_path):
    key = cli("keygen", env=dict(os.environ))
    assert key.returncode == 0, key.stderr
    key_file = tmp_path / "signing.pem"
    key_file.write_text(key.stdout)
    values = dict(os.environ)
    values.update(
        TWOFAPI_SIGNING_KEY_FILE=str(key_file),
        TWOFAPI_ADMIN_SECRET="operator-secret-0123456789abcdefXYZ",
        TWOFAPI_ARGON2_MEMORY_KIB="64",
        TWOFAPI_ARGON2_TIME_COST="1",
    )
    values.pop("TWOFAPI_STORAGE_URL", None)
    return values


@pytest.fixture(params=list(STORES), ids=list(STORES))
def store_url(request, tmp_path):
    url = STORES[request.param] or f"sqlite:///{tmp_path}/serve.db"
    yield url


def test_server_refuses_an_unmigrated_store(env, tmp_path):
    url = f"sqlite:///{tmp_path}/empty.db"
    result = subprocess.run(
        [*CLI, "serve", "--storage", url, "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "twofapi migrate" in result.stdout + result.stderr
    # Refusing leaves nothing behind: no empty database file to trip over.
    assert not (tmp_path / "empty.db").exists()


def test_migrate_twice_changes_nothing(env, tmp_path):
    url = f"sqlite:///{tmp_path}/twice.db"
    first = cli("migrate", "--storage", url, env=env)
    second = cli("migrate", "--storage", url, env=env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr
    assert "nothing to do" in second.stdout


def test_client_logs_in_after_a_restart_with_only_its_file(env, store_url, tmp_path):
    if not store_url.startswith("sqlite"):
        open_storage(store_url).migrate()
    assert cli("migrate", "--storage", store_url, env=env).returncode == 0
    credential = tmp_path / "client.json"
    client_id = f"restart-{os.urandom(4).hex()}"

    server = Served(store_url, env)
    try:
        enrolled = cli(
            "client",
            "enroll",
            "--server",
            server.url,
            "--credential",
            str(credential),
            "--client-id",
            client_id,
            env=env,
        )
        assert enrolled.returncode == 0, enrolled.stderr
    finally:
        server.stop()
    assert oct(credential.stat().st_mode & 0o777) == "0o600"

    server = Served(store_url, env)
    try:
        fetched = cli(
            "client",
            "get",
            "/v1/resources/after-restart",
            "--server",
            server.url,
            "--credential",
            str(credential),
            env=env,
        )
        assert fetched.returncode == 0, fetched.stderr
        assert client_id in fetched.stdout and "after-restart" in fetched.stdout
    finally:
        server.stop()


def test_several_workers_refuse_memory(env):
    result = cli(
        "serve", "--storage", "memory://", "--workers", "2", "--port", "0", env=env
    )
    assert result.returncode != 0
    assert "memory://" in result.stderr + result.stdout
