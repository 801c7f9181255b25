"""Helpers for testing applications that use twofapi_middleware.

:class:`FakeClock` replaces the application's clock, so expiry, lockouts and
rate-limit windows can be driven without sleeping, on every storage backend.
"""

from __future__ import annotations

import threading
import time


class FakeClock:
    """A clock that only moves when told to. Thread-safe."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward and return the new time."""
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, now: float) -> None:
        with self._lock:
            self._now = now
