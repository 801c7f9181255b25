"""In-process figures, each run by ``run.py`` in a fresh interpreter.

``python benchmarks/inproc.py FIGURE [--size N] [--rounds R]`` prints JSON.

CPU is this process's own (``time.process_time``: every thread, user and
system); memory is RSS from /proc/self/statm after ``gc.collect()``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nacl.signing
import rbcl
from _common import (
    CREDENTIAL_B64,
    client_id,
    client_record,
    commitment,
    fake_argon2_hash,
    prove_auth,
    rss_bytes,
)

from twofapi_middleware import crypto, wire
from twofapi_middleware.asgi import TwoFApiMiddleware
from twofapi_middleware.constants import (
    GENERATOR_H,
    TRANSCRIPT_HASH_PREFIX,
)
from twofapi_middleware.models import ClientRecord, ClientStatus
from twofapi_middleware.settings import Settings
from twofapi_middleware.storage import MemoryStorage
from twofapi_middleware.testing import FakeClock
from twofapi_middleware.tokens import generate_private_key_pem

MB = 1024 * 1024
TAG = "2FApi-v1.0-Sigma"


def _cpu(fn: Callable[[], Any]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


# -- proof verification against its floor ---------------------------------


class ProofSet:
    """``size`` different valid /v1/verify proofs for one client."""

    def __init__(self, size: int) -> None:
        self.commitment = commitment(0)
        self.items = []
        for _ in range(size):
            nonce, binding = secrets.token_bytes(24), secrets.token_bytes(32)
            proof = prove_auth(0, nonce, binding, self.commitment)
            transcript = crypto.auth_transcript(
                self.commitment, proof[:32], client_id(0), nonce, binding
            )
            self.items.append(
                (wire.encode_b64(proof), nonce, binding, proof, transcript)
            )

    def ours(self) -> None:
        """What the service does: decode the field, bind the transcript, check."""
        c_point, name = self.commitment, client_id(0)
        for proof_b64, nonce, binding, _, _ in self.items:
            proof = wire.decode_b64(proof_b64, "proof", (96,))
            transcript = partial(
                crypto.auth_transcript,
                client_id=name,
                nonce=nonce,
                channel_binding=binding,
            )
            if (
                crypto.check_proof(c_point, proof, transcript)
                is not crypto.Verdict.VALID
            ):
                raise AssertionError("a valid proof was refused")

    def floor(self) -> None:
        """The bare rbcl calls the equation needs, plus the transcript hash."""
        c_point = self.commitment
        base = rbcl.crypto_scalarmult_ristretto255_base_allow_scalar_zero
        mul = rbcl.crypto_scalarmult_ristretto255
        add = rbcl.crypto_core_ristretto255_add
        reduce = rbcl.crypto_core_ristretto255_scalar_reduce
        sha512 = hashlib.sha512
        for _, _, _, proof, transcript in self.items:
            c = reduce(sha512(TRANSCRIPT_HASH_PREFIX + transcript).digest())
            s_term = base(proof[32:64])
            r_term = mul(proof[64:], GENERATOR_H)
            c_term = mul(c, c_point)
            add(add(s_term, r_term), c_term)


def verify_floor(size: int, rounds: int) -> dict[str, Any]:
    proofs = ProofSet(size)
    proofs.ours()  # warm up
    proofs.floor()
    ours_us, floor_us, ratios = [], [], []
    for round_no in range(rounds):
        # Alternate the order so neither side always runs first.
        if round_no % 2:
            floor = _cpu(proofs.floor)
            ours = _cpu(proofs.ours)
        else:
            ours = _cpu(proofs.ours)
            floor = _cpu(proofs.floor)
        ours_us.append(ours / size * 1e6)
        floor_us.append(floor / size * 1e6)
        ratios.append(ours / floor)
    return {
        "ours_us": statistics.median(ours_us),
        "floor_us": statistics.median(floor_us),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "proofs": size,
        "rounds": rounds,
    }


# -- the login flow, driven through the ASGI callable ----------------------


async def _hello(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"Hello, world!"})


class AsgiDriver:
    """Calls the middleware the way a server would, minus the server."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return messages.pop()

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"bench"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
        }
        await self.app(scope, receive, send)
        return sent[0]["status"], sent[1]["body"]


def _challenge_body(index: int, binding: bytes) -> bytes:
    return json.dumps(
        {
            "clientIdentifier": client_id(index),
            "credential": CREDENTIAL_B64,
            "channelBinding": wire.encode_b64(binding),
        },
        separators=(",", ":"),
    ).encode()


def _middleware(storage: MemoryStorage, clock: Any = None) -> TwoFApiMiddleware:
    settings = Settings(
        signing_key=generate_private_key_pem(),
        rate_limit_per_address=0,
        rate_limit_per_client=0,
        **({"clock": clock} if clock is not None else {}),
    )
    return TwoFApiMiddleware(_hello, settings, storage=storage)


def flow_cost(clients: int, rounds: int) -> dict[str, Any]:
    """Challenge + verify pairs through the ASGI app, against floor + signature.

    Each round times ``clients`` challenges, then (untimed) the proofs, then
    the verifies, and next to them, in alternating order, the verification
    floor and as many signatures: short rounds, so that a burst of noise on
    this shared machine lands on both sides of the ratio.
    """
    storage = MemoryStorage()
    for index in range(clients):
        storage.add_client(client_record(index))
    driver = AsgiDriver(_middleware(storage))
    proofs = ProofSet(clients)
    key = nacl.signing.SigningKey.generate()
    signing_input = b""

    async def pairs() -> tuple[float, float]:
        nonlocal signing_input
        bindings = [secrets.token_bytes(32) for _ in range(clients)]
        bodies = [_challenge_body(i, bindings[i]) for i in range(clients)]
        start = time.process_time()
        answers = [await driver.post("/v1/challenges", body) for body in bodies]
        challenge_cpu = time.process_time() - start

        verify_bodies = []
        for index, (status, body) in enumerate(answers):
            if status != 200:
                raise AssertionError(f"challenge answered {status}: {body!r}")
            challenge = json.loads(body)
            nonce = wire.decode_b64(challenge["nonce"], "nonce")
            proof = prove_auth(index, nonce, bindings[index], commitment(index))
            verify_bodies.append(
                json.dumps(
                    {
                        "clientIdentifier": client_id(index),
                        "challengeId": challenge["challengeId"],
                        "proof": wire.encode_b64(proof),
                        "channelBinding": wire.encode_b64(bindings[index]),
                        "domainSeparationTag": TAG,
                    },
                    separators=(",", ":"),
                ).encode()
            )
        start = time.process_time()
        answers = [await driver.post("/v1/verify", body) for body in verify_bodies]
        verify_cpu = time.process_time() - start
        for status, body in answers:
            if status != 200:
                raise AssertionError(f"verify answered {status}: {body!r}")
        token = json.loads(answers[-1][1])["accessToken"]
        signing_input = token.rpartition(".")[0].encode()
        return challenge_cpu, verify_cpu

    def sign_all() -> None:
        for _ in range(clients):
            key.sign(signing_input)

    def denominator() -> tuple[float, float]:
        return _cpu(proofs.floor), _cpu(sign_all)

    asyncio.run(pairs())  # warm up
    denominator()
    rows = []
    for round_no in range(rounds):
        if round_no % 2:
            floor_cpu, sign_cpu = denominator()
            challenge_cpu, verify_cpu = asyncio.run(pairs())
        else:
            challenge_cpu, verify_cpu = asyncio.run(pairs())
            floor_cpu, sign_cpu = denominator()
        rows.append((challenge_cpu, verify_cpu, floor_cpu, sign_cpu))

    def per_pair(column: int) -> float:
        return statistics.median(row[column] for row in rows) / clients * 1e6

    ratios = [(c + v) / (f + s) for c, v, f, s in rows]
    return {
        "challenge_us": per_pair(0),
        "verify_us": per_pair(1),
        "pair_us": statistics.median((c + v) / clients * 1e6 for c, v, _, _ in rows),
        "floor_us": per_pair(2),
        "sign_us": per_pair(3),
        "signed_bytes": len(signing_input),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "pairs_per_round": clients,
        "rounds": rounds,
    }


# -- memory -----------------------------------------------------------------


def memory_clients(count: int) -> dict[str, Any]:
    storage = MemoryStorage()
    gc.collect()
    before = rss_bytes()
    now = time.time()
    for index in range(count):
        storage.add_client(
            ClientRecord(
                client_id=client_id(index),
                reference_id=wire.encode_b64(secrets.token_bytes(16)),
                commitment=secrets.token_bytes(32),
                commitment_version=1,
                status=ClientStatus.ACTIVE,
                recovery_hash=fake_argon2_hash(),
                created_at=now,
                updated_at=now,
            )
        )
    gc.collect()
    added = rss_bytes() - before
    return {
        "clients": storage.client_count(),
        "rss_added_mb": added / MB,
        "bytes_per_client": added / count,
        "mb_per_100k": added / MB * 100_000 / count,
    }


def memory_challenges(requests: int, clients: int) -> dict[str, Any]:
    storage = MemoryStorage()
    for index in range(clients):
        # Challenges never look at the commitment; random bytes will do.
        storage.add_client(client_record(index, secrets.token_bytes(32)))
    clock = FakeClock()
    driver = AsgiDriver(_middleware(storage, clock))
    bindings = [wire.encode_b64(secrets.token_bytes(32)) for _ in range(16)]
    # One second every 20 requests: a client comes back every clients/20
    # seconds (500 s for 10,000), long after its last challenge expired.
    requests_per_second = 20
    checkpoints: list[dict[str, float]] = []

    async def issue(first: int, count: int) -> None:
        for n in range(first, first + count):
            index = n % clients
            body = (
                f'{{"clientIdentifier":"{client_id(index)}",'
                f'"credential":"{CREDENTIAL_B64}",'
                f'"channelBinding":"{bindings[n % 16]}"}}'
            ).encode()
            status, answer = await driver.post("/v1/challenges", body)
            if status != 200:
                raise AssertionError(f"challenge answered {status}: {answer!r}")
            if n % requests_per_second == 0:
                clock.advance(1.0)

    gc.collect()
    before = rss_bytes()
    clock_start = clock()
    step = max(requests // 10, 1)
    done = 0
    started = time.process_time()
    while done < requests:
        count = min(step, requests - done)
        asyncio.run(issue(done, count))
        done += count
        gc.collect()
        checkpoints.append(
            {
                "requests": done,
                "rss_growth_mb": (rss_bytes() - before) / MB,
                "stored_challenges": storage.challenge_count(),
            }
        )
    cpu = time.process_time() - started
    return {
        "requests": requests,
        "clients": clients,
        "rss_growth_mb": checkpoints[-1]["rss_growth_mb"],
        "rss_growth_after_first_tenth_mb": (
            checkpoints[-1]["rss_growth_mb"] - checkpoints[0]["rss_growth_mb"]
        ),
        "stored_challenges": storage.challenge_count(),
        "clock_advanced_seconds": clock() - clock_start,
        "cpu_us_per_request": cpu / requests * 1e6,
        "checkpoints": checkpoints,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "figure", choices=("verify-floor", "flow-cost", "mem-clients", "mem-challenges")
    )
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--clients", type=int, default=10_000)
    args = parser.parse_args()
    if args.figure == "verify-floor":
        result = verify_floor(args.size, args.rounds)
    elif args.figure == "flow-cost":
        result = flow_cost(args.size, args.rounds)
    elif args.figure == "mem-clients":
        result = memory_clients(args.size)
    else:
        result = memory_challenges(args.size, args.clients)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
