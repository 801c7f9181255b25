"""The ``twofapi`` command: parsing, keys, file modes and error lines.

Client commands run here against a scripted server behind
``httpx.MockTransport``; ``test_client_flow.py`` runs them against a live
``twofapi dev``.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from twofapi_middleware import cli
from twofapi_middleware.cli import build_parser, main
from twofapi_middleware.client import AdminClient, Credential, TwoFApiClient

WORDS = " ".join(["zoo"] * 11 + ["wrong"])
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def lax_umask() -> Iterator[None]:
    previous = os.umask(0)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _one_error_line(err: str) -> str:
    assert err.startswith("twofapi: error: ")
    assert err.count("\n") == 1
    assert "Traceback" not in err
    return err


# -- keygen --------------------------------------------------------------------


def test_keygen_prints_an_ed25519_pkcs8_pem(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _run(capsys, "keygen")

    assert status == 0
    assert out.startswith("-----BEGIN PRIVATE KEY-----\n")
    key = serialization.load_pem_private_key(out.encode(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    _, again, _ = _run(capsys, "keygen")
    assert again != out


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_keygen_output_file_is_owner_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lax_umask: None
) -> None:
    path = tmp_path / "signing.pem"

    status, out, _ = _run(capsys, "keygen", "--output", str(path))

    assert status == 0
    assert "-----BEGIN" not in out
    assert _mode(path) == 0o600
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)

    status, _, err = _run(capsys, "keygen", "--output", str(path))
    assert status == 1
    assert "already exists" in _one_error_line(err)
    assert serialization.load_pem_private_key(path.read_bytes(), None) is not None


# -- parsing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["dev"], {"host": "127.0.0.1", "port": 3000, "accept_any_proof": False}),
        (
            ["dev", "--host", "0.0.0.0", "--port", "0", "--accept-any-proof"],
            {"host": "0.0.0.0", "port": 0, "accept_any_proof": True},
        ),
        (["serve"], {"storage": None, "workers": 1, "port": 3000}),
        (
            ["serve", "--storage", "redis://r", "--workers", "4", "--port", "80"],
            {"storage": "redis://r", "workers": 4, "port": 80},
        ),
        (["migrate", "--storage", "memory://"], {"storage": "memory://"}),
        (["keygen"], {"output": None}),
        (
            ["client", "enroll", "--client-id", "svc.billing_v2"],
            {
                "client_id": "svc.billing_v2",
                "server": None,
                "credential": Path("twofapi-credential.json"),
            },
        ),
        (
            ["client", "login", "--server", "https://api.example", "--print-token"],
            {"server": "https://api.example", "print_token": True, "audience": None},
        ),
        (["client", "get", "/v1/resources/x"], {"path": "/v1/resources/x"}),
        (
            ["client", "rotate", "--credential", "c.json"],
            {"credential": Path("c.json")},
        ),
        (["client", "recover", "--words", WORDS], {"words": WORDS, "client_id": None}),
        (
            ["admin", "revoke", "bob"],
            {"client_id": "bob", "server": "http://127.0.0.1:3000"},
        ),
        (
            ["admin", "reactivate", "bob", "--credential", "bob.json"],
            {"client_id": "bob", "credential": Path("bob.json")},
        ),
    ],
)
def test_parsing(argv: list[str], expected: dict[str, Any]) -> None:
    args = build_parser().parse_args(argv)

    assert {key: getattr(args, key) for key in expected} == expected


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nonsense"],
        ["migrate"],
        ["dev", "--port", "70000"],
        ["dev", "--port", "http"],
        ["serve", "--workers", "0"],
        ["client"],
        ["client", "enroll"],
        ["client", "enroll", "--client-id", "has space"],
        ["client", "enroll", "--client-id", "x" * 129],
        ["client", "login", "--server", "ftp://example.com"],
        ["client", "login", "--server", "example.com"],
        ["client", "get"],
        ["admin", "revoke"],
        ["admin", "revoke", "bad/id"],
        ["admin", "revoke", "bob", "--admin-secret", "s3cret"],
        ["admin", "reactivate", "bob"],
    ],
)
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)

    assert caught.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


# -- server commands -------------------------------------------------------------


def test_dev_and_serve_call_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    server = pytest.importorskip("twofapi_middleware.server")
    calls: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(server, "run_dev", lambda **kw: calls.append(("dev", kw)))
    monkeypatch.setattr(server, "run_serve", lambda **kw: calls.append(("serve", kw)))

    assert main(["dev", "--port", "0", "--accept-any-proof"]) == 0
    assert main(["serve", "--storage", "sqlite:///x.db", "--workers", "2"]) == 0

    assert calls == [
        ("dev", {"host": "127.0.0.1", "port": 0, "accept_any_proof": True}),
        (
            "serve",
            {
                "storage_url": "sqlite:///x.db",
                "host": "127.0.0.1",
                "port": 3000,
                "workers": 2,
            },
        ),
    ]


def test_missing_server_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "twofapi_middleware.server", None)

    status, _, err = _run(capsys, "dev")

    assert status == 1
    assert "server is not available" in _one_error_line(err)


def test_migrate_reports_what_it_did(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("sqlalchemy")
    url = f"sqlite:///{tmp_path / 'twofapi.db'}"

    status, out, _ = _run(capsys, "migrate", "--storage", url)
    assert status == 0
    assert "migrated to schema version" in out

    status, out, _ = _run(capsys, "migrate", "--storage", url)
    assert status == 0
    assert "already at schema version" in out


def test_migrate_refuses_a_newer_schema_without_migrating(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sa = pytest.importorskip("sqlalchemy")
    from twofapi_middleware.storage.migrations import VERSION_TABLE
    from twofapi_middleware.storage.sql import SQLStorage

    url = f"sqlite:///{tmp_path / 'twofapi.db'}"
    assert main(["migrate", "--storage", url]) == 0
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        newer = f"UPDATE {VERSION_TABLE} SET version_num = '9999'"
        connection.execute(sa.text(newer))
    engine.dispose()
    capsys.readouterr()
    migrated: list[object] = []
    monkeypatch.setattr(SQLStorage, "migrate", migrated.append)

    status, out, err = _run(capsys, "migrate", "--storage", url)

    assert status == 1
    assert out == ""
    line = _one_error_line(err)
    assert "revision 9999, newer than this code" in line
    assert "upgrade twofapi-middleware" in line
    assert migrated == []


def test_migrate_with_a_bad_url_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = _run(capsys, "migrate", "--storage", "gopher://x")

    assert status == 1
    assert "gopher" in _one_error_line(err)


# -- client commands against a scripted server -----------------------------------


class Script:
    """Answers the client's calls; ``rotation`` decides the PUT's fate."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.rotation: Callable[[httpx.Request], httpx.Response] = lambda r: (
            httpx.Response(200, json={"rotatedAt": "2026-03-27T14:00:00.000Z"})
        )
        self.enrollment = httpx.Response(
            201,
            json={"referenceId": "ref-1", "recoveryWords": WORDS.split()},
        )

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.paths.append(f"{request.method} {path}")
        if path == "/v1/clients":
            return self.enrollment
        if path == "/v1/challenges":
            nonce = base64.b64encode(bytes(24)).decode()
            return httpx.Response(200, json={"challengeId": "c1", "nonce": nonce})
        if path == "/v1/verify":
            return httpx.Response(
                200,
                json={
                    "accessToken": "header.payload.signature",
                    "tokenType": "Bearer",
                    "expiresAt": "2099-01-01T00:00:00.000Z",
                    "expiresIn": 900,
                },
            )
        if path.endswith("/commitment"):
            return self.rotation(request)
        if path.endswith("/recover"):
            return httpx.Response(
                200,
                json={"clientIdentifier": "alice", "recoveryWords": ["new"] * 12},
            )
        if path.endswith("/reactivate"):
            return httpx.Response(
                200, json={"clientIdentifier": "bob", "recoveryWords": ["re"] * 12}
            )
        return httpx.Response(200, json={"path": path})


def refusal(status: int, code: str) -> httpx.Response:
    return httpx.Response(
        status,
        json={"type": f"urn:2fapi:error:{code}", "title": code, "detail": "no"},
        headers={"content-type": "application/problem+json"},
    )


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Iterator[Script]:
    script = Script()
    http = httpx.Client(transport=httpx.MockTransport(script))
    monkeypatch.setattr(
        cli, "TwoFApiClient", functools.partial(TwoFApiClient, http=http)
    )
    monkeypatch.setattr(cli, "AdminClient", functools.partial(AdminClient, http=http))
    yield script
    http.close()


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, Credential]:
    credential = Credential.generate("alice", b"api-key")
    path = tmp_path / "cred.json"
    credential.save(path)
    return path, credential


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_enroll_saves_an_owner_only_file_and_prints_the_words_once(
    script: Script, tmp_path: Path, capsys: pytest.CaptureFixture[str], lax_umask: None
) -> None:
    path = tmp_path / "cred.json"

    status, out, _ = _run(
        capsys, "client", "enroll", "--client-id", "alice", "--credential", str(path)
    )

    assert status == 0
    assert _mode(path) == 0o600
    assert out.count(WORDS) == 1
    credential = Credential.load(path)
    assert credential.server_url == "http://127.0.0.1:3000"
    assert len(credential.first_factor) == 32


def test_enroll_takes_the_first_factor_from_the_environment(
    script: Script,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "cred.json"
    monkeypatch.setenv("MY_API_KEY", "key-123")

    status, _, _ = _run(
        capsys,
        "client",
        "enroll",
        "--client-id",
        "alice",
        "--credential",
        str(path),
        "--first-factor-env",
        "MY_API_KEY",
    )

    assert status == 0
    assert Credential.load(path).first_factor == b"key-123"


def test_refused_enrollment_removes_the_new_file(
    script: Script, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script.enrollment = refusal(409, "enrollment-refused")
    path = tmp_path / "cred.json"

    status, _, err = _run(
        capsys, "client", "enroll", "--client-id", "alice", "--credential", str(path)
    )

    assert status == 1
    assert "409" in _one_error_line(err)
    assert not path.exists()


def test_enroll_again_reuses_the_file_of_the_same_client(
    script: Script, saved: tuple[Path, Credential], capsys: pytest.CaptureFixture[str]
) -> None:
    path, credential = saved
    script.enrollment = httpx.Response(201, json={"referenceId": "ref-1"})

    status, out, _ = _run(
        capsys, "client", "enroll", "--client-id", "alice", "--credential", str(path)
    )

    assert status == 0
    assert "already enrolled" in out
    assert Credential.load(path) == credential


def test_enroll_never_overwrites_another_clients_file(
    script: Script, saved: tuple[Path, Credential], capsys: pytest.CaptureFixture[str]
) -> None:
    path, credential = saved

    status, _, err = _run(
        capsys, "client", "enroll", "--client-id", "bob", "--credential", str(path)
    )

    assert status == 1
    assert "'alice'" in _one_error_line(err)
    assert Credential.load(path) == credential
    assert script.paths == []


def test_login_hides_the_token_unless_asked(
    script: Script, saved: tuple[Path, Credential], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = saved

    status, out, _ = _run(capsys, "client", "login", "--credential", str(path))
    assert status == 0
    assert "Logged in as alice" in out
    assert "header.payload.signature" not in out

    status, out, err = _run(
        capsys, "client", "login", "--credential", str(path), "--print-token"
    )
    assert status == 0
    assert out == "header.payload.signature\n"
    assert "Logged in as alice" in err


def test_get_prints_json(
    script: Script, saved: tuple[Path, Credential], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = saved

    status, out, _ = _run(
        capsys, "client", "get", "/v1/resources/x", "--credential", str(path)
    )

    assert status == 0
    assert json.loads(out) == {"path": "/v1/resources/x"}


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_accepted_rotation_replaces_the_file(
    script: Script,
    saved: tuple[Path, Credential],
    capsys: pytest.CaptureFixture[str],
    lax_umask: None,
) -> None:
    path, before = saved

    status, _, _ = _run(capsys, "client", "rotate", "--credential", str(path))

    assert status == 0
    after = Credential.load(path)
    assert after.commitment != before.commitment
    assert (after.client_id, after.first_factor) == ("alice", b"api-key")
    assert _mode(path) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["cred.json"]


def test_refused_rotation_keeps_the_file(
    script: Script, saved: tuple[Path, Credential], capsys: pytest.CaptureFixture[str]
) -> None:
    path, before = saved
    script.rotation = lambda request: refusal(401, "rotation-refused")

    status, _, err = _run(capsys, "client", "rotate", "--credential", str(path))

    assert status == 1
    assert "401" in _one_error_line(err)
    assert Credential.load(path) == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["cred.json"]


def _lost(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadError("connection reset", request=request)


@pytest.mark.parametrize(
    "outcome",
    [_lost, lambda request: refusal(502, "bad-gateway")],
    ids=["answer lost", "gateway error"],
)
def test_rotation_with_unknown_outcome_keeps_both_credentials(
    script: Script,
    saved: tuple[Path, Credential],
    capsys: pytest.CaptureFixture[str],
    outcome: Handler,
) -> None:
    path, before = saved
    script.rotation = outcome

    status, _, err = _run(capsys, "client", "rotate", "--credential", str(path))

    assert status == 1
    assert "cred.json.pending" in _one_error_line(err)
    assert Credential.load(path) == before
    pending = Credential.load(path.with_name("cred.json.pending"))
    assert pending.commitment != before.commitment

    # A second attempt must not destroy the pending credential.
    status, _, err = _run(capsys, "client", "rotate", "--credential", str(path))
    assert status == 1
    assert "interrupted" in _one_error_line(err)
    assert Credential.load(path.with_name("cred.json.pending")) == pending
    assert script.paths.count("PUT /v1/clients/alice/commitment") == 1


def test_recover_reads_words_from_stdin_and_saves(
    script: Script,
    saved: tuple[Path, Credential],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, before = saved
    monkeypatch.setattr(sys, "stdin", io.StringIO(WORDS + "\n"))

    status, out, _ = _run(capsys, "client", "recover", "--credential", str(path))

    assert status == 0
    assert " ".join(["new"] * 12) in out
    after = Credential.load(path)
    assert after.commitment != before.commitment
    assert after.first_factor == before.first_factor


def test_recover_without_a_file_needs_the_client_id(
    script: Script, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "lost.json"
    argv = ["client", "recover", "--credential", str(path), "--words", WORDS]

    status, _, err = _run(capsys, *argv)
    assert status == 1
    assert "--client-id" in _one_error_line(err)

    status, _, _ = _run(capsys, *argv, "--client-id", "alice")
    assert status == 0
    assert Credential.load(path).client_id == "alice"


# -- admin commands --------------------------------------------------------------


def test_admin_secret_comes_only_from_the_environment(
    script: Script, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TWOFAPI_ADMIN_SECRET", raising=False)

    status, _, err = _run(capsys, "admin", "revoke", "bob")
    assert status == 1
    assert "TWOFAPI_ADMIN_SECRET" in _one_error_line(err)
    assert script.paths == []

    monkeypatch.setenv("TWOFAPI_ADMIN_SECRET", "s" * 40)
    status, out, _ = _run(capsys, "admin", "suspend", "bob")
    assert status == 0
    assert out == "Suspended bob (if it existed and was active).\n"


def test_admin_reactivate_writes_a_new_owner_only_file(
    script: Script,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TWOFAPI_ADMIN_SECRET", "s" * 40)
    path = tmp_path / "bob.json"
    argv = ["admin", "reactivate", "bob", "--credential", str(path)]

    status, out, _ = _run(capsys, *argv)
    assert status == 0
    assert " ".join(["re"] * 12) in out
    assert _mode(path) == 0o600
    assert Credential.load(path).client_id == "bob"

    status, _, err = _run(capsys, *argv)
    assert status == 1
    assert "already exists" in _one_error_line(err)


# -- expected errors are one line ------------------------------------------------


def test_missing_credential_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "none.json"

    status, _, err = _run(capsys, "client", "login", "--credential", str(path))

    assert status == 1
    assert "no such credential file" in _one_error_line(err)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_credential_file_readable_by_others(
    saved: tuple[Path, Credential], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = saved
    path.chmod(0o644)

    status, _, err = _run(capsys, "client", "login", "--credential", str(path))

    assert status == 1
    assert "chmod 600" in _one_error_line(err)


def test_migrate_of_memory_says_there_is_nothing_to_migrate(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["migrate", "--storage", "memory://"]) == 0

    assert "nothing to migrate" in capsys.readouterr().out
