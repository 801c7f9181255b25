"""The storage protocol every backend implements.

Backends are small and dumb on purpose: they load and save value objects and
make three things atomic, which is all the core needs to be correct when many
workers share one store:

* ``add_client`` inserts only if the identifier is free (two concurrent
  enrollments give one client);
* ``replace_client`` is a compare-and-set on ``ClientRecord.revision``, so a
  read-modify-write of the core (a failure count, a lockout, a rotation)
  never loses an update: the loser re-reads and tries again;
* ``put_challenge`` and ``take_challenge`` keep at most one pending challenge
  per client and hand each one out at most once.

Expiry is always decided by the caller against stored times and the
application's clock; a backend's own TTLs and purges only reclaim space.
Every method may raise :class:`~twofapi_middleware.errors.StorageUnavailable`
and must wrap its driver's errors in it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..models import Challenge, ClientRecord

SCHEMA_VERSION = 1
"""The schema version this code reads and writes."""

# Space is reclaimed this long after expiry, so that a clock a little off
# between workers never loses a live challenge.
PURGE_GRACE_SECONDS = 60

# A migration waits this long for a concurrent one to finish and let go of
# the store's migration lock, then gives up as unavailable.
MIGRATION_LOCK_SECONDS = 300


@runtime_checkable
class Storage(Protocol):
    """Where clients, challenges and counters live."""

    blocking: bool
    """True when calls do network or disk I/O; ASGI then runs them off-loop."""

    shared: bool
    """True when several processes can share the store."""

    def check_schema(self) -> None:
        """Raise SchemaError unless the schema is exactly SCHEMA_VERSION."""

    def migrate(self) -> None:
        """Create or upgrade the schema to SCHEMA_VERSION; idempotent.

        Concurrent migrations of one store take turns under a lock.
        """

    def close(self) -> None:
        """Release connections."""

    def get_client(self, client_id: str) -> ClientRecord | None:
        """The stored record, or None."""

    def add_client(self, record: ClientRecord) -> ClientRecord:
        """Insert ``record`` unless the identifier exists; return what is stored."""

    def replace_client(self, record: ClientRecord, expected_revision: int) -> bool:
        """Store ``record`` iff the stored revision is ``expected_revision``."""

    def put_challenge(self, challenge: Challenge, now: float) -> None:
        """Store ``challenge``, withdrawing the client's earlier one."""

    def take_challenge(self, challenge_id: str, client_id: str) -> Challenge | None:
        """Remove and return the challenge if ``client_id`` owns it.

        Another client's challenge is left untouched and None is returned.
        """

    def withdraw_challenge(self, client_id: str) -> None:
        """Remove the client's pending challenge, if any."""

    def hit(self, key: str, window_seconds: int, now: float) -> tuple[int, float]:
        """Count one request in the fixed window holding ``now``.

        Returns the count in that window, this request included, and the
        time at which the window ends. Only a later window starts the count
        over: when the stored window ends later than ``now``'s, as it does
        for a worker whose clock lags, the request counts in the stored
        window and its end is returned.
        """

    def purge(self, now: float) -> None:
        """Reclaim space taken by expired challenges and old counters."""

    def challenge_count(self) -> int:
        """Number of stored challenges (for bounds checks and benchmarks)."""
