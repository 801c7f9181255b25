"""Shared pieces of the benchmark: deterministic clients, CPU and RSS probes.

Every process of a run (the driver, the servers, the load generators)
derives the same clients from their index, so nobody has to ship secrets
around: client ``i`` is ``bench-000i`` with an opening hashed from ``i``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import socket
import time
from functools import cache
from pathlib import Path

import rbcl

from twofapi_middleware import crypto
from twofapi_middleware.models import ClientRecord, ClientStatus

CLIENT_PREFIX = "bench-"
CREDENTIAL_B64 = base64.b64encode(b"benchmark-api-key").decode("ascii")
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def client_id(index: int) -> str:
    return f"{CLIENT_PREFIX}{index:06d}"


def opening(index: int) -> crypto.Opening:
    """The secret scalars of client ``index``, the same in every process."""

    def scalar(label: bytes) -> bytes:
        digest = hashlib.sha512(label + str(index).encode()).digest()
        return bytes(rbcl.crypto_core_ristretto255_scalar_reduce(digest))

    return crypto.Opening(scalar(b"bench-s:"), scalar(b"bench-r:"))


@cache
def commitment(index: int) -> bytes:
    return crypto.commit(opening(index))


def fake_argon2_hash() -> str:
    """A string shaped and sized like a real Argon2id PHC hash."""

    def b64(size: int) -> str:
        return base64.b64encode(secrets.token_bytes(size)).decode().rstrip("=")

    return f"$argon2id$v=19$m=19456,t=2,p=1${b64(16)}${b64(32)}"


def client_record(index: int, commitment_bytes: bytes | None = None) -> ClientRecord:
    now = time.time()
    return ClientRecord(
        client_id=client_id(index),
        reference_id=base64.b64encode(secrets.token_bytes(16)).decode(),
        commitment=commitment(index) if commitment_bytes is None else commitment_bytes,
        commitment_version=1,
        status=ClientStatus.ACTIVE,
        recovery_hash=fake_argon2_hash(),
        created_at=now,
        updated_at=now,
    )


def prove_auth(
    index: int, nonce: bytes, binding: bytes, commitment_bytes: bytes
) -> bytes:
    """A /v1/verify proof for client ``index``, reusing its known commitment.

    The same arithmetic as :func:`crypto.prove`, without recomputing C on
    every call (load generators are CPU-bound on a two-core machine).
    """
    secret = opening(index)
    k_s = crypto.random_scalar()
    k_r = crypto.random_scalar()
    announcement = crypto.commit(crypto.Opening(k_s, k_r))
    transcript = crypto.auth_transcript(
        commitment_bytes, announcement, client_id(index), nonce, binding
    )
    c = crypto.challenge_scalar(transcript)
    mul = rbcl.crypto_core_ristretto255_scalar_mul
    add = rbcl.crypto_core_ristretto255_scalar_add
    z_s = add(k_s, mul(c, secret.s))
    z_r = add(k_r, mul(c, secret.r))
    return announcement + bytes(z_s) + bytes(z_r)


# -- process accounting ----------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name is in parentheses and may hold spaces.
    return raw[raw.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid``, from /proc/<pid>/stat."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (uvicorn's worker processes)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if int(_stat_fields(int(entry))[1]) == pid:
                found.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found


def tree_cpu_seconds(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def rss_bytes() -> int:
    """Resident set size of this process."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


# -- networking --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(port: int, path: str, timeout: float = 60.0) -> None:
    """Wait until something answers HTTP on 127.0.0.1:``port``."""
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(request)
                if sock.recv(64).startswith(b"HTTP/1."):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"nothing answered on port {port} within {timeout:.0f} s")
