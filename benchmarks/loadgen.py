"""Load generator, run as its own process so its CPU is never the server's.

``python benchmarks/loadgen.py SPEC.json`` prints one JSON line of results.

Raw keep-alive HTTP/1.1 over plain sockets, one thread per connection:

* ``get``: GET ``path``, request ``i`` carrying ``tokens[i % len(tokens)]``
  as its bearer token (no token when the list is empty);
* ``flow``: challenge, proof, verify, each thread working through its own
  slice of the clients (a new challenge withdraws a client's older one).
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CREDENTIAL_B64, client_id, commitment, prove_auth

TAG = "2FApi-v1.0-Sigma"


class Connection:
    """One keep-alive HTTP/1.1 connection; responses need Content-Length."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = self._connect()
        self.buffer = b""

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def request(self, data: bytes) -> tuple[int, bytes]:
        self.sock.sendall(data)
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        while len(rest) < length:
            rest += self._recv()
        body, self.buffer = rest[:length], rest[length:]
        if close:
            self.sock.close()
            self.sock, self.buffer = self._connect(), b""
        return status, body

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        return chunk

    def _fill(self) -> None:
        self.buffer += self._recv()

    def close(self) -> None:
        self.sock.close()


def _get(path: str, token: str | None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\n{auth}\r\n".encode()


def _post(path: str, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body, separators=(",", ":")).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: dict[int, int] = {}
        self.latencies: list[float] = []
        self.errors: list[str] = []

    def add(self, status: int, seconds: float) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self.latencies.append(seconds)


def _run_get(spec: dict[str, Any], tally: Tally) -> None:
    tokens: list[str] = spec.get("tokens") or []
    total = spec["requests"]
    counter = itertools.count()
    port, path = spec["port"], spec["path"]

    def worker() -> None:
        try:
            conn = Connection(port)
            while (i := next(counter)) < total:
                data = _get(path, tokens[i % len(tokens)] if tokens else None)
                start = time.perf_counter()
                status, _ = conn.request(data)
                tally.add(status, time.perf_counter() - start)
            conn.close()
        except Exception as error:  # reported, never hidden
            tally.errors.append(repr(error))

    _threads(spec["concurrency"], worker)


def _run_flow(spec: dict[str, Any], tally: Tally) -> None:
    first, count = spec["first_client"], spec["clients"]
    threads = spec["concurrency"]
    counter = itertools.count()
    total = spec["pairs"]
    slices = [list(range(first + t, first + count, threads)) for t in range(threads)]

    def worker(mine: list[int]) -> None:
        try:
            conn = Connection(spec["port"])
            for index in itertools.cycle(mine):
                if next(counter) >= total:
                    break
                binding = secrets.token_bytes(32)
                binding_b64 = base64.b64encode(binding).decode()
                name = client_id(index)
                start = time.perf_counter()
                status, body = conn.request(
                    _post(
                        "/v1/challenges",
                        {
                            "clientIdentifier": name,
                            "credential": CREDENTIAL_B64,
                            "channelBinding": binding_b64,
                        },
                    )
                )
                if status != 200:
                    tally.add(status, time.perf_counter() - start)
                    continue
                challenge = json.loads(body)
                nonce = base64.b64decode(challenge["nonce"])
                proof = prove_auth(index, nonce, binding, commitment(index))
                status, body = conn.request(
                    _post(
                        "/v1/verify",
                        {
                            "clientIdentifier": name,
                            "challengeId": challenge["challengeId"],
                            "proof": base64.b64encode(proof).decode(),
                            "channelBinding": binding_b64,
                            "domainSeparationTag": TAG,
                        },
                    )
                )
                tally.add(status, time.perf_counter() - start)
            conn.close()
        except Exception as error:
            tally.errors.append(repr(error))

    _threads(threads, lambda t: worker(slices[t]), pass_index=True)


def _threads(count: int, target: Any, pass_index: bool = False) -> None:
    threads = [
        threading.Thread(target=target, args=(t,) if pass_index else ())
        for t in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    tally = Tally()
    runner = _run_flow if spec["mode"] == "flow" else _run_get
    if spec["mode"] == "flow":  # commitments are known before the clock starts
        first = spec["first_client"]
        for index in range(first, first + spec["clients"]):
            commitment(index)
    # A go-signal on stdin lines the processes up before the clock starts.
    if spec.get("wait_for_go"):
        print("ready", flush=True)
        sys.stdin.readline()
    started = time.time()
    runner(spec, tally)
    finished = time.time()
    latencies = sorted(tally.latencies)

    def percentile(p: float) -> float | None:
        if not latencies:
            return None
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    print(
        json.dumps(
            {
                "started": started,
                "finished": finished,
                "completed": len(latencies),
                "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
                "errors": tally.errors[:5],
                "latency_ms_p50": percentile(0.50),
                "latency_ms_p99": percentile(0.99),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
