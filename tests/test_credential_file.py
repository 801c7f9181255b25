"""The credential value object and its owner-only file."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from twofapi_middleware import crypto
from twofapi_middleware.client import Credential, CredentialFileError
from twofapi_middleware.client._encoding import decode_b64, encode_b64
from twofapi_middleware.constants import GROUP_ORDER

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


@pytest.fixture
def credential() -> Credential:
    return Credential.generate("alice", server_url="http://127.0.0.1:3000")


@pytest.fixture
def lax_umask() -> Iterator[None]:
    """A umask that would leave new files world-readable."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _write(path: Path, data: Any, mode: int = 0o600) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    path.chmod(mode)
    return path


# -- the value object ----------------------------------------------------------


def test_generate_makes_a_consistent_credential() -> None:
    credential = Credential.generate("svc.billing_v2")

    assert credential.client_id == "svc.billing_v2"
    assert credential.commitment == crypto.commit(credential.opening)
    assert len(credential.first_factor) == 32
    assert credential.server_url is None


def test_generate_keeps_a_given_first_factor() -> None:
    credential = Credential.generate("alice", b"api-key-123")

    assert credential.first_factor == b"api-key-123"


def test_repr_and_str_hide_the_secrets(credential: Credential) -> None:
    shown = repr(credential) + str(credential)

    for secret in (
        credential.opening.s,
        credential.opening.r,
        credential.first_factor,
    ):
        assert secret.hex() not in shown
        assert encode_b64(secret) not in shown
    assert "alice" in shown
    assert "redacted" in shown


def test_equality_covers_the_secrets(credential: Credential) -> None:
    same = Credential(
        credential.client_id,
        credential.opening,
        credential.commitment,
        credential.first_factor,
        credential.server_url,
    )
    other_factor = Credential(
        credential.client_id, credential.opening, credential.commitment, b"x"
    )

    assert same == credential
    assert hash(same) == hash(credential)
    assert other_factor != credential
    assert Credential.generate("alice") != credential


def test_successor_keeps_client_first_factor_and_server(
    credential: Credential,
) -> None:
    successor = credential.successor()

    assert successor.client_id == credential.client_id
    assert successor.first_factor == credential.first_factor
    assert successor.server_url == credential.server_url
    assert successor.commitment != credential.commitment


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"client_id": "bad id"}, ValueError),
        ({"client_id": "alice\n"}, ValueError),
        ({"client_id": "x" * 129}, ValueError),
        ({"commitment": bytes(32)}, ValueError),
        ({"first_factor": b""}, ValueError),
        ({"first_factor": b"x" * 1025}, ValueError),
        ({"first_factor": "text"}, TypeError),
        ({"server_url": "ftp://example.com"}, ValueError),
        ({"opening": "not an opening"}, TypeError),
    ],
)
def test_construction_validates(
    credential: Credential, change: dict[str, Any], error: type[Exception]
) -> None:
    fields: dict[str, Any] = {
        "client_id": credential.client_id,
        "opening": credential.opening,
        "commitment": credential.commitment,
        "first_factor": credential.first_factor,
    }
    fields.update(change)

    with pytest.raises(error):
        Credential(**fields)


# -- saving --------------------------------------------------------------------


@posix_only
def test_save_creates_an_owner_only_file(
    tmp_path: Path, credential: Credential, lax_umask: None
) -> None:
    path = tmp_path / "credential.json"

    credential.save(path)

    assert _mode(path) == 0o600
    assert Credential.load(path) == credential


def test_saved_file_has_the_documented_format(
    tmp_path: Path, credential: Credential
) -> None:
    path = tmp_path / "credential.json"
    credential.save(path)

    data = json.loads(path.read_text())

    assert data == {
        "formatVersion": 1,
        "clientIdentifier": "alice",
        "s": encode_b64(credential.opening.s),
        "r": encode_b64(credential.opening.r),
        "commitment": encode_b64(credential.commitment),
        "credential": encode_b64(credential.first_factor),
        "serverUrl": "http://127.0.0.1:3000",
    }


def test_server_url_is_optional(tmp_path: Path) -> None:
    credential = Credential.generate("bob")
    path = tmp_path / "bob.json"
    credential.save(path)

    assert "serverUrl" not in json.loads(path.read_text())
    assert Credential.load(path).server_url is None


def test_save_refuses_to_overwrite(tmp_path: Path, credential: Credential) -> None:
    path = tmp_path / "credential.json"
    path.write_text("precious")

    with pytest.raises(FileExistsError):
        credential.save(path)

    assert path.read_text() == "precious"


@posix_only
def test_save_refuses_a_symlink_even_to_nowhere(
    tmp_path: Path, credential: Credential
) -> None:
    path = tmp_path / "credential.json"
    path.symlink_to(tmp_path / "elsewhere.json")

    with pytest.raises(FileExistsError):
        credential.save(path)

    assert not (tmp_path / "elsewhere.json").exists()


@posix_only
def test_overwrite_replaces_atomically_with_an_owner_only_file(
    tmp_path: Path, credential: Credential, lax_umask: None
) -> None:
    path = _write(tmp_path / "credential.json", "old", mode=0o644)
    new = credential.successor()

    new.save(path, overwrite=True)

    assert Credential.load(path) == new
    assert _mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["credential.json"]


def test_failed_overwrite_leaves_the_old_file_and_no_litter(
    tmp_path: Path, credential: Credential, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "credential.json"
    credential.save(path)
    before = path.read_bytes()

    def broken_replace(source: object, target: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        credential.successor().save(path, overwrite=True)

    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["credential.json"]


# -- loading -------------------------------------------------------------------


@posix_only
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o666, 0o610, 0o601])
def test_load_refuses_a_file_others_can_access(
    tmp_path: Path, credential: Credential, mode: int
) -> None:
    path = tmp_path / "credential.json"
    credential.save(path)
    path.chmod(mode)

    with pytest.raises(CredentialFileError, match="chmod 600"):
        Credential.load(path)


@posix_only
@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_load_accepts_owner_only_modes(
    tmp_path: Path, credential: Credential, mode: int
) -> None:
    path = tmp_path / "credential.json"
    credential.save(path)
    path.chmod(mode)

    assert Credential.load(path) == credential


def test_load_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CredentialFileError, match="no such credential file"):
        Credential.load(tmp_path / "missing.json")


def test_load_refuses_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir(mode=0o700)

    with pytest.raises(CredentialFileError):
        Credential.load(folder)


def test_load_refuses_a_huge_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "huge.json", " " * (65 * 1024))

    with pytest.raises(CredentialFileError, match="too large"):
        Credential.load(path)


def _scalar_b64(value: int) -> str:
    return encode_b64(value.to_bytes(32, "little"))


def _corruptions() -> list[tuple[str, Callable[[dict[str, Any]], Any]]]:
    def with_(key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
        return lambda data: {**data, key: value}

    def without(key: str) -> Callable[[dict[str, Any]], Any]:
        return lambda data: {k: v for k, v in data.items() if k != key}

    return [
        ("not an object", lambda data: [data]),
        ("missing s", without("s")),
        ("missing credential", without("credential")),
        ("missing version", without("formatVersion")),
        ("unknown field", with_("comment", "hi")),
        ("version 2", with_("formatVersion", 2)),
        ("version as text", with_("formatVersion", "1")),
        ("version as bool", with_("formatVersion", True)),
        ("version as float", with_("formatVersion", 1.0)),
        ("client id with newline", with_("clientIdentifier", "alice\n")),
        ("client id with space", with_("clientIdentifier", "al ice")),
        ("client id empty", with_("clientIdentifier", "")),
        ("client id a number", with_("clientIdentifier", 7)),
        ("s not canonical", with_("s", _scalar_b64(GROUP_ORDER))),
        ("r all ones", with_("r", encode_b64(b"\xff" * 32))),
        ("s short", with_("s", encode_b64(bytes(31)))),
        ("s with whitespace", lambda d: {**d, "s": d["s"][:4] + " " + d["s"][4:]}),
        (
            "s base64url",
            with_(
                "s",
                encode_b64(b"\xfb" * 31 + b"\x00").replace("+", "-").replace("/", "_"),
            ),
        ),
        ("s padding too long", lambda d: {**d, "s": d["s"] + "="}),
        ("s not a string", with_("s", 12)),
        ("commitment short", with_("commitment", encode_b64(bytes(16)))),
        (
            "commitment of another opening",
            with_("commitment", encode_b64(Credential.generate("x").commitment)),
        ),
        ("credential empty", with_("credential", "")),
        ("credential too long", with_("credential", encode_b64(b"k" * 1025))),
        ("credential trailing bits", with_("credential", "QR==")),
        ("server URL not http", with_("serverUrl", "file:///etc/passwd")),
        ("server URL not a string", with_("serverUrl", 3000)),
    ]


@pytest.mark.parametrize(
    "corrupt", [c for _, c in _corruptions()], ids=[n for n, _ in _corruptions()]
)
def test_load_validates_every_field(
    tmp_path: Path, credential: Credential, corrupt: Callable[[dict[str, Any]], Any]
) -> None:
    path = _write(tmp_path / "credential.json", corrupt(credential.to_json()))

    with pytest.raises(CredentialFileError):
        Credential.load(path)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        '{"formatVersion": 1, "formatVersion": 1}',
        "[" * 100_000,
        "\xff",
    ],
    ids=["empty", "truncated", "repeated key", "deep", "not utf-8"],
)
def test_load_refuses_what_is_not_a_json_object(tmp_path: Path, text: str) -> None:
    path = tmp_path / "credential.json"
    path.write_bytes(text.encode("latin-1"))
    path.chmod(0o600)

    with pytest.raises(CredentialFileError):
        Credential.load(path)


def test_load_accepts_unpadded_base64(tmp_path: Path, credential: Credential) -> None:
    data = {
        key: value.rstrip("=") if key in ("s", "r", "commitment") else value
        for key, value in credential.to_json().items()
    }
    path = _write(tmp_path / "credential.json", data)

    assert Credential.load(path) == credential


# -- the base64 rules (PROTOCOL.md section 1) -----------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", b""), ("AAA", b"\x00\x00"), ("AAA=", b"\x00\x00"), ("/+8=", b"\xff\xef")],
)
def test_decode_b64_accepts(text: str, expected: bytes) -> None:
    assert decode_b64(text) == expected


@pytest.mark.parametrize(
    "text", ["AA=", "A", "A===", "AAA==", "AB==", "AA AA", "AA\n", "-_8=", "A=AA", 5]
)
def test_decode_b64_refuses(text: object) -> None:
    with pytest.raises(ValueError):
        decode_b64(text)
