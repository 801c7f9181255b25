"""A client's secrets, and the owner-only file that keeps them.

The file is JSON::

    {"formatVersion": 1, "clientIdentifier": "alice",
     "s": "<b64>", "r": "<b64>", "commitment": "<b64>",
     "credential": "<b64 first factor>", "serverUrl": "http://..."}

``serverUrl`` is optional. Anyone who reads the file can log in as the
client, so it is created readable by its owner only, and a file that grants
its group or others any permission is refused on load, as ssh does for keys.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..constants import (
    CLIENT_ID_PATTERN,
    CREDENTIAL_MAX_BYTES,
    CREDENTIAL_MIN_BYTES,
    POINT_BYTES,
    SCALAR_BYTES,
)
from ..crypto import Opening, commit, is_canonical_scalar
from ._encoding import decode_b64, encode_b64
from ._errors import CredentialFileError

FILE_FORMAT_VERSION = 1
"""The version of the credential file format this code reads and writes."""

FIRST_FACTOR_BYTES = 32
"""Size of the random first factor made when none is given."""

_FILE_MODE = 0o600
_MAX_FILE_BYTES = 64 * 1024
_KEYS = frozenset(
    {"formatVersion", "clientIdentifier", "s", "r", "commitment", "credential"}
)
_OPTIONAL_KEYS = frozenset({"serverUrl"})


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class Credential:
    """Everything a client needs to log in; secret as a whole.

    ``opening`` holds the secret scalars behind ``commitment``.
    ``first_factor`` is the value sent as ``credential`` with each challenge
    request: random by default, or whatever the server's
    ``check_credential`` accepts, an API key say.
    """

    client_id: str
    opening: Opening
    commitment: bytes
    first_factor: bytes
    server_url: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.client_id, str) or not CLIENT_ID_PATTERN.fullmatch(
            self.client_id
        ):
            raise ValueError("client_id must be 1 to 128 of [A-Za-z0-9._-]")
        if not isinstance(self.opening, Opening):
            raise TypeError("opening must be an Opening")
        if not hmac.compare_digest(self.commitment, commit(self.opening)):
            raise ValueError("commitment does not match the opening")
        if not isinstance(self.first_factor, bytes):
            raise TypeError("first_factor must be bytes")
        size = len(self.first_factor)
        if not CREDENTIAL_MIN_BYTES <= size <= CREDENTIAL_MAX_BYTES:
            raise ValueError(
                f"first_factor must be {CREDENTIAL_MIN_BYTES} to "
                f"{CREDENTIAL_MAX_BYTES} bytes"
            )
        if self.server_url is not None and not _is_http_url(self.server_url):
            raise ValueError("server_url must be an http:// or https:// URL")

    def __repr__(self) -> str:
        return (
            f"Credential(client_id={self.client_id!r}, "
            f"commitment={self.commitment.hex()}, secrets=<redacted>)"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Credential):
            return NotImplemented
        # Evaluate every part, so the time taken does not tell which differs.
        same_secrets = (self.opening == other.opening) & hmac.compare_digest(
            self.first_factor, other.first_factor
        )
        return (
            same_secrets
            and self.client_id == other.client_id
            and self.server_url == other.server_url
        )

    def __hash__(self) -> int:
        return hash((self.client_id, self.commitment))

    @classmethod
    def generate(
        cls,
        client_id: str,
        first_factor: bytes | None = None,
        *,
        server_url: str | None = None,
    ) -> Credential:
        """A fresh credential; the first factor is random unless given."""
        opening = Opening.generate()
        if first_factor is None:
            first_factor = secrets.token_bytes(FIRST_FACTOR_BYTES)
        return cls(client_id, opening, commit(opening), first_factor, server_url)

    def successor(self) -> Credential:
        """New secrets for the same client, first factor and server.

        This is what a rotation or a recovery registers: the first factor
        (an API key, say) is the application's business and stays.
        """
        opening = Opening.generate()
        return Credential(
            self.client_id,
            opening,
            commit(opening),
            self.first_factor,
            self.server_url,
        )

    def to_json(self) -> dict[str, Any]:
        """The file's JSON object. It holds the secrets in clear."""
        data: dict[str, Any] = {
            "formatVersion": FILE_FORMAT_VERSION,
            "clientIdentifier": self.client_id,
            "s": encode_b64(self.opening.s),
            "r": encode_b64(self.opening.r),
            "commitment": encode_b64(self.commitment),
            "credential": encode_b64(self.first_factor),
        }
        if self.server_url is not None:
            data["serverUrl"] = self.server_url
        return data

    @classmethod
    def from_json(cls, data: object) -> Credential:
        """Parse the file's JSON object strictly; raise ``CredentialFileError``."""
        if not isinstance(data, dict):
            raise CredentialFileError("credential file must hold a JSON object")
        missing = sorted(_KEYS - data.keys())
        unknown = sorted(data.keys() - _KEYS - _OPTIONAL_KEYS)
        if missing or unknown:
            raise CredentialFileError(
                f"credential file fields: missing {missing}, unknown {unknown}"
            )
        version = data["formatVersion"]
        if type(version) is not int or version != FILE_FORMAT_VERSION:
            raise CredentialFileError(
                f"credential file format {version!r} is not {FILE_FORMAT_VERSION}"
            )
        client_id = data["clientIdentifier"]
        if not isinstance(client_id, str) or not CLIENT_ID_PATTERN.fullmatch(client_id):
            raise CredentialFileError("credential file: bad clientIdentifier")
        s = _field_bytes(data, "s", SCALAR_BYTES)
        r = _field_bytes(data, "r", SCALAR_BYTES)
        if not (is_canonical_scalar(s) and is_canonical_scalar(r)):
            raise CredentialFileError("credential file: s and r must be scalars < L")
        commitment = _field_bytes(data, "commitment", POINT_BYTES)
        first_factor = _field_bytes(data, "credential")
        server_url = data.get("serverUrl")
        if server_url is not None and not _is_http_url(server_url):
            raise CredentialFileError("credential file: serverUrl must be a URL")

        try:
            return cls(client_id, Opening(s, r), commitment, first_factor, server_url)
        except ValueError as error:
            raise CredentialFileError(f"credential file: {error}") from None

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Write the credential to ``path``, readable by its owner only.

        Refuses to replace an existing file unless ``overwrite``; then the
        new file is written beside it and moved into place atomically, so a
        crash leaves either the old credential or the new one.
        """
        content = (json.dumps(self.to_json(), indent=2) + "\n").encode("utf-8")
        write_private_file(path, content, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Credential:
        """Read a credential file; refuse one that others could read."""
        content = read_private_file(path)
        try:
            data = json.loads(content, object_pairs_hook=_refuse_duplicates)
        except (ValueError, RecursionError) as error:
            raise CredentialFileError(
                f"{path}: not a JSON credential: {error}"
            ) from None
        return cls.from_json(data)


def write_private_file(
    path: str | os.PathLike[str], content: bytes, *, overwrite: bool = False
) -> None:
    """Create ``path`` with mode 0600 and ``content``, durably.

    Without ``overwrite`` an existing file (or symlink) is an error
    (``FileExistsError``); with it, a temporary file in the same folder is
    renamed over the old one.
    """
    target = Path(path)
    if not overwrite:
        _write_new(target, content)
        return
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    _write_new(temporary, content)
    try:
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    sync_folder(target.parent)


def sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable, where the system allows it."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def read_private_file(path: str | os.PathLike[str]) -> bytes:
    """Read a small regular file that grants nobody but its owner access."""
    # O_NONBLOCK: a FIFO planted at the path must not hang the open.
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError:
        raise CredentialFileError(f"{path}: no such credential file") from None
    except OSError as error:
        raise CredentialFileError(f"{path}: cannot open: {error.strerror}") from None
    try:
        # Check the file actually opened, so a swap after the check is harmless.
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise CredentialFileError(f"{path}: not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if os.name == "posix" and mode & 0o077:
            raise CredentialFileError(
                f"{path}: permissions {mode:04o} let others access the secrets; "
                f"run: chmod 600 {path}"
            )
        chunks: list[bytes] = []
        size = 0
        while size <= _MAX_FILE_BYTES:
            chunk = os.read(descriptor, _MAX_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(descriptor)
    content = b"".join(chunks)
    if len(content) > _MAX_FILE_BYTES:
        raise CredentialFileError(f"{path}: too large for a credential file")
    return content


def _write_new(path: Path, content: bytes) -> None:
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
    descriptor = os.open(path, flags, _FILE_MODE)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        # A half-written file would block the next attempt and hold garbage.
        with contextlib.suppress(OSError):
            path.unlink()
        raise


def _is_http_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        url = urlsplit(value)
    except ValueError:
        return False
    return url.scheme in ("http", "https") and bool(url.hostname)


def _field_bytes(data: dict[str, Any], key: str, size: int | None = None) -> bytes:
    try:
        value = decode_b64(data[key])
    except ValueError:
        raise CredentialFileError(f"credential file: {key} is not base64") from None
    if size is not None and len(value) != size:
        raise CredentialFileError(f"credential file: {key} must be {size} bytes")
    return value


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"repeated key {key!r}")
        result[key] = value
    return result
