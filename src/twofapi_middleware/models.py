"""Value objects shared by the core, the storage backends and the adapters.

Every object is a frozen dataclass. Times are POSIX seconds as ``float``,
always read from the application's clock by the caller, never inside.
"""

from __future__ import annotations

import dataclasses
import enum
import hmac
from dataclasses import dataclass, field
from typing import Any


class ClientStatus(enum.StrEnum):
    """The lifecycle state of an enrolled client (PROTOCOL.md section 8)."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """Everything the server keeps about one client.

    Nothing here lets its holder log in: the commitment is public by design
    and the recovery phrase is kept only as an Argon2id hash.

    ``revision`` is bumped by every write; storage backends replace a record
    only when the stored revision is the one the writer read, which makes
    every read-modify-write of the core lose no update.
    """

    client_id: str
    reference_id: str
    commitment: bytes
    commitment_version: int
    status: ClientStatus
    recovery_hash: str
    created_at: float
    updated_at: float
    failed_attempts: int = 0
    lockout_streak: int = 0
    locked_until: float = 0.0
    recovery_failures: int = 0
    revision: int = 1

    def is_locked(self, now: float) -> bool:
        return now < self.locked_until

    def evolve(self, now: float, **changes: Any) -> ClientRecord:
        """A copy with ``changes`` applied, the next revision and ``now``."""
        return dataclasses.replace(
            self, revision=self.revision + 1, updated_at=now, **changes
        )

    def __repr__(self) -> str:
        return (
            f"ClientRecord(client_id={self.client_id!r}, "
            f"status={self.status.value}, cv={self.commitment_version}, "
            f"revision={self.revision})"
        )


@dataclass(frozen=True, slots=True)
class Challenge:
    """A single-use login challenge, owned by one client."""

    challenge_id: str
    client_id: str
    nonce: bytes
    channel_binding: bytes
    commitment_version: int
    expires_at: float

    def is_expired(self, now: float) -> bool:
        return now >= self.expires_at

    def binding_matches(self, channel_binding: bytes) -> bool:
        return hmac.compare_digest(self.channel_binding, channel_binding)


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated client, as the wrapped application sees it."""

    client_id: str
    audience: str
    commitment_version: int
    token_id: str
    expires_at: int
    scopes: tuple[str, ...] = ()
    claims: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # Starlette's ``scope["user"]`` protocol.
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.client_id

    @property
    def identity(self) -> str:
        return self.client_id


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One security-relevant step, handed to the audit hook.

    It never holds secrets, proofs, tokens or recovery words.
    """

    kind: str
    client_id: str | None
    request_id: str | None
    source_address: str | None
    at: float
    outcome: str = "ok"
    details: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["details"] = dict(self.details)
        return data
