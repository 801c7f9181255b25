"""The ``twofapi`` command walks a client through its whole life.

A real ``twofapi serve`` process on a SQLite file (migrated first with
``twofapi migrate``) is driven only through the command line: enroll, log
in, call a guarded route, rotate, revoke, reactivate, recover. The admin
secret comes from ``TWOFAPI_ADMIN_SECRET``, never from argv.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lifecycle_support import (
    ServerProcess,
    production_env,
    run_cli,
    start_server,
    stop_server,
)
from twofapi_middleware.client import Credential
from twofapi_middleware.testing import TEST_ADMIN_SECRET

WORDS = re.compile(r"^  ([a-z]+(?: [a-z]+){11})$", re.MULTILINE)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def storage_url(workdir: Path) -> str:
    return f"sqlite:///{workdir / 't.db'}"


@pytest.fixture(scope="module")
def server(workdir: Path, storage_url: str) -> Iterator[ServerProcess]:
    env = production_env(storage_url)
    migrated = run_cli("migrate", "--storage", storage_url, env=env, cwd=workdir)
    assert migrated.returncode == 0, migrated.stderr
    assert "migrated to schema version 1" in migrated.stdout
    again = run_cli("migrate", "--storage", storage_url, env=env, cwd=workdir)
    assert again.returncode == 0
    assert "already at schema version 1" in again.stdout

    process = start_server(storage_url, env)
    try:
        yield process
    finally:
        stop_server(process)


@pytest.fixture
def client_env() -> dict[str, str]:
    """A client's environment: no TWOFAPI_* variable at all."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TWOFAPI_")}


@pytest.fixture
def admin_env(client_env: dict[str, str]) -> dict[str, str]:
    return {**client_env, "TWOFAPI_ADMIN_SECRET": TEST_ADMIN_SECRET}


def twofapi(*args: str, env: dict[str, str], cwd: Path, stdin: str = "") -> str:
    """Run a command that must succeed; its standard output."""
    done = run_cli(*args, env=env, cwd=cwd, stdin=stdin)
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done.stdout


def refused(*args: str, env: dict[str, str], cwd: Path) -> str:
    """Run a command that must fail cleanly; its one error line."""
    done = run_cli(*args, env=env, cwd=cwd)
    assert done.returncode == 1, f"{args}: {done.stdout}{done.stderr}"
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("twofapi: error: ")
    return done.stderr


def words_in(output: str) -> str:
    found = WORDS.search(output)
    assert found, output
    return found.group(1)


def token_works(server: ServerProcess, token: str) -> int:
    response = httpx.get(
        f"{server.url}/v1/resources/doc",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    return response.status_code


def test_a_client_lives_its_whole_life_through_the_cli(
    server: ServerProcess,
    workdir: Path,
    client_env: dict[str, str],
    admin_env: dict[str, str],
) -> None:
    url = server.url
    cwd = workdir
    cred = "alice.json"

    # Enroll: a credential file of the owner only, and twelve words.
    out = twofapi(
        "client", "enroll", "--client-id", "alice", "--server", url,
        "--credential", cred, env=client_env, cwd=cwd,
    )  # fmt: skip
    assert "Enrolled alice" in out
    first_words = words_in(out)
    assert stat.S_IMODE((cwd / cred).stat().st_mode) == 0o600
    enrolled = Credential.load(cwd / cred)

    # Log in and call the guarded demo route.
    token = twofapi(
        "client", "login", "--credential", cred, "--print-token",
        env=client_env, cwd=cwd,
    ).strip()  # fmt: skip
    assert token.count(".") == 2
    assert token_works(server, token) == 200
    data = json.loads(
        twofapi(
            "client", "get", "/v1/resources/doc", "--credential", cred,
            env=client_env, cwd=cwd,
        )
    )  # fmt: skip
    assert data == {
        "resourceId": "doc",
        "clientIdentifier": "alice",
        "audience": "default",
        "data": {},
    }

    # Rotate: the file holds new secrets, the old token is dead.
    out = twofapi("client", "rotate", "--credential", cred, env=client_env, cwd=cwd)
    assert "Rotated alice" in out
    rotated = Credential.load(cwd / cred)
    assert rotated.commitment != enrolled.commitment
    assert not (cwd / f"{cred}.pending").exists()
    assert token_works(server, token) == 401
    token = twofapi(
        "client", "login", "--credential", cred, "--print-token",
        env=client_env, cwd=cwd,
    ).strip()  # fmt: skip
    assert token_works(server, token) == 200

    # Revoke: no more logins, the token dies.
    out = twofapi("admin", "revoke", "alice", "--server", url, env=admin_env, cwd=cwd)
    assert "Revoked alice" in out
    assert TEST_ADMIN_SECRET not in out
    assert token_works(server, token) == 401
    error = refused("client", "login", "--credential", cred, env=client_env, cwd=cwd)
    assert "401 Challenge refused" in error

    # Reactivate: a new credential file and new words from the admin.
    out = twofapi(
        "admin", "reactivate", "alice", "--server", url,
        "--credential", "alice-new.json", env=admin_env, cwd=cwd,
    )  # fmt: skip
    assert "Reactivated alice" in out
    admin_words = words_in(out)
    assert admin_words != first_words
    error = refused("client", "login", "--credential", cred, env=client_env, cwd=cwd)
    assert "401 Verification refused" in error  # the old secrets stay dead
    token = twofapi(
        "client", "login", "--credential", "alice-new.json", "--print-token",
        env=client_env, cwd=cwd,
    ).strip()  # fmt: skip
    assert token_works(server, token) == 200

    # Recover with the words on standard input.
    out = twofapi(
        "client", "recover", "--credential", "alice-new.json",
        env=client_env, cwd=cwd, stdin=admin_words + "\n",
    )  # fmt: skip
    assert "Recovered alice" in out
    recovered_words = words_in(out)
    assert recovered_words not in (first_words, admin_words)
    assert token_works(server, token) == 401
    twofapi(
        "client", "get", "/v1/resources/doc", "--credential", "alice-new.json",
        env=client_env, cwd=cwd,
    )  # fmt: skip

    # The spent phrases never work again.
    for spent in (first_words, admin_words):
        error = refused(
            "client", "recover", "--credential", "alice-new.json",
            "--words", spent, env=client_env, cwd=cwd,
        )  # fmt: skip
        assert "401 Recovery failed" in error
    assert not (cwd / "alice-new.json.pending").exists()


def test_suspension_and_a_lost_credential(
    server: ServerProcess,
    workdir: Path,
    client_env: dict[str, str],
    admin_env: dict[str, str],
) -> None:
    url, cwd = server.url, workdir
    out = twofapi(
        "client", "enroll", "--client-id", "bob", "--server", url,
        "--credential", "bob.json", env=client_env, cwd=cwd,
    )  # fmt: skip
    words = words_in(out)

    out = twofapi("admin", "suspend", "bob", "--server", url, env=admin_env, cwd=cwd)
    assert "Suspended bob" in out
    refused("client", "login", "--credential", "bob.json", env=client_env, cwd=cwd)

    # The credential is lost: the words alone bring the client back.
    (cwd / "bob.json").unlink()
    out = twofapi(
        "client", "recover", "--client-id", "bob", "--server", url,
        "--credential", "bob.json", "--words", words.upper(),
        env=client_env, cwd=cwd,
    )  # fmt: skip
    assert "Recovered bob" in out
    twofapi("client", "login", "--credential", "bob.json", env=client_env, cwd=cwd)


def test_admin_commands_need_the_right_secret(
    server: ServerProcess,
    workdir: Path,
    client_env: dict[str, str],
) -> None:
    url, cwd = server.url, workdir
    twofapi(
        "client", "enroll", "--client-id", "carol", "--server", url,
        "--credential", "carol.json", env=client_env, cwd=cwd,
    )  # fmt: skip

    missing = refused(
        "admin", "revoke", "carol", "--server", url, env=client_env, cwd=cwd
    )
    wrong_env = {**client_env, "TWOFAPI_ADMIN_SECRET": "x" * 40}
    wrong = refused(
        "admin", "suspend", "carol", "--server", url, env=wrong_env, cwd=cwd
    )

    assert "TWOFAPI_ADMIN_SECRET" in missing
    assert "403 Forbidden" in wrong
    assert "x" * 40 not in wrong
    twofapi("client", "login", "--credential", "carol.json", env=client_env, cwd=cwd)
