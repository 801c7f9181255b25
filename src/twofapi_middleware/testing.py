"""Helpers for testing applications that use twofapi_middleware.

:class:`FakeClock` replaces the application's clock, so expiry, lockouts and
rate-limit windows can be driven without sleeping, on every storage backend.
:func:`fast_settings` gives settings for test suites: cheap Argon2, rate
limits off, a fixed admin secret.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .settings import Settings

TEST_ADMIN_SECRET = "test-admin-secret-0123456789abcdef"


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


def fast_settings(**overrides: Any) -> Settings:
    """Settings for tests: cheap Argon2, no rate limits, an admin secret.

    Never use these in production: the Argon2 parameters are deliberately
    weak so that suites run fast.
    """
    values: dict[str, Any] = {
        "argon2_memory_kib": 64,
        "argon2_time_cost": 1,
        "rate_limit_per_address": 0,
        "rate_limit_per_client": 0,
        "admin_secret": TEST_ADMIN_SECRET,
    }
    values.update(overrides)
    return Settings(**values)
