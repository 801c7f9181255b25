"""In-process storage: fast, thread-safe, and gone when the process exits.

One lock guards everything; each operation is a few dictionary steps, so the
lock is held for microseconds. Stored challenges are bounded by the number
of clients (one pending challenge each) and expired ones are reclaimed as
issuing goes on, a slice at a time, so memory stays flat under any load.
"""

from __future__ import annotations

import math
import threading
from collections import deque

from ..models import Challenge, ClientRecord
from .base import PURGE_GRACE_SECONDS, SCHEMA_VERSION

# Each put looks at this many of the oldest challenges, so reclaiming costs
# a bounded step per issue and keeps up with any rate of issuing.
_RECLAIM_SLICE = 4


class MemoryStorage:
    """Storage in this process's memory (``memory://``)."""

    blocking = False
    shared = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, ClientRecord] = {}
        self._challenges: dict[str, Challenge] = {}
        self._pending: dict[str, str] = {}  # client id -> challenge id
        self._issued: deque[str] = deque()  # challenge ids, oldest first
        self._counters: dict[str, tuple[float, int]] = {}  # key -> (end, count)
        self._next_counter_purge = 0.0

    def check_schema(self) -> None:
        """Memory needs no schema; always at SCHEMA_VERSION."""

    def migrate(self) -> None:
        """Nothing to migrate."""

    def close(self) -> None:
        """Nothing to release."""

    @property
    def schema_version(self) -> int:
        return SCHEMA_VERSION

    def get_client(self, client_id: str) -> ClientRecord | None:
        return self._clients.get(client_id)

    def add_client(self, record: ClientRecord) -> ClientRecord:
        with self._lock:
            return self._clients.setdefault(record.client_id, record)

    def replace_client(self, record: ClientRecord, expected_revision: int) -> bool:
        with self._lock:
            current = self._clients.get(record.client_id)
            if current is None or current.revision != expected_revision:
                return False
            self._clients[record.client_id] = record
            return True

    def put_challenge(self, challenge: Challenge, now: float) -> None:
        with self._lock:
            self._reclaim(now)
            earlier = self._pending.get(challenge.client_id)
            if earlier is not None:
                self._challenges.pop(earlier, None)
            self._challenges[challenge.challenge_id] = challenge
            self._pending[challenge.client_id] = challenge.challenge_id
            self._issued.append(challenge.challenge_id)

    def _reclaim(self, now: float) -> None:
        """Drop a slice of the oldest challenges: expired ones, and the ids
        of those already taken or withdrawn. Stops at a live one; issue
        order is expiry order, as every challenge lives equally long."""
        horizon = now - PURGE_GRACE_SECONDS
        issued = self._issued
        for _ in range(_RECLAIM_SLICE):
            if not issued:
                return
            oldest = self._challenges.get(issued[0])
            if oldest is not None:
                if oldest.expires_at >= horizon:
                    return
                del self._challenges[oldest.challenge_id]
                if self._pending.get(oldest.client_id) == oldest.challenge_id:
                    del self._pending[oldest.client_id]
            issued.popleft()

    def take_challenge(self, challenge_id: str, client_id: str) -> Challenge | None:
        with self._lock:
            challenge = self._challenges.get(challenge_id)
            if challenge is None or challenge.client_id != client_id:
                return None
            del self._challenges[challenge_id]
            if self._pending.get(client_id) == challenge_id:
                del self._pending[client_id]
            return challenge

    def withdraw_challenge(self, client_id: str) -> None:
        with self._lock:
            earlier = self._pending.pop(client_id, None)
            if earlier is not None:
                self._challenges.pop(earlier, None)

    def hit(self, key: str, window_seconds: int, now: float) -> tuple[int, float]:
        end = (math.floor(now / window_seconds) + 1) * window_seconds
        with self._lock:
            if now >= self._next_counter_purge:
                self._purge_counters(now)
                self._next_counter_purge = now + window_seconds
            stored_end, count = self._counters.get(key, (end, 0))
            if end > stored_end:
                stored_end, count = end, 0
            count += 1
            self._counters[key] = (stored_end, count)
        return count, stored_end

    def purge(self, now: float) -> None:
        horizon = now - PURGE_GRACE_SECONDS
        with self._lock:
            expired = [
                challenge
                for challenge in self._challenges.values()
                if challenge.expires_at < horizon
            ]
            for challenge in expired:
                del self._challenges[challenge.challenge_id]
                if self._pending.get(challenge.client_id) == challenge.challenge_id:
                    del self._pending[challenge.client_id]
            self._purge_counters(now)

    def _purge_counters(self, now: float) -> None:
        stale = [key for key, (end, _) in self._counters.items() if end <= now]
        for key in stale:
            del self._counters[key]

    def challenge_count(self) -> int:
        return len(self._challenges)

    def client_count(self) -> int:
        return len(self._clients)
