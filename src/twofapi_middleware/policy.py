"""Client state transitions and the lockout policy (PROTOCOL.md section 8).

Pure functions over :class:`~twofapi_middleware.models.ClientRecord`: no
storage, no clock, no randomness. The service reads a record, asks this
module for the next one, and stores it with a compare-and-set.

The state table, with what each event does::

    state \\ event  enroll   rotate  suspend    revoke    recover   reactivate
    (none)         active   401     204 -      204 -     401       401
    active         201/409  cv+1    suspended  revoked   cv+1      cv+1
    suspended      409      401     204 -      revoked   active+1  active+1
    revoked        409      401     204 -      204 -     401       active+1

A third lockout in a row suspends an active client, unless automatic
suspension is switched off, in which case each further lockout doubles, up to
a cap.
"""

from __future__ import annotations

from dataclasses import dataclass

from .models import ClientRecord, ClientStatus


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """The numbers of section 8; ``threshold == 0`` switches lockout off."""

    threshold: int = 3
    first_seconds: int = 3600
    max_seconds: int = 86400
    lockouts_before_suspension: int = 3
    recovery_attempts: int = 3

    def lockout_seconds(self, streak: int) -> int:
        """Duration of the ``streak``-th lockout in a row (1-based)."""
        doubled = self.first_seconds << min(max(streak - 1, 0), 32)
        return min(doubled, max(self.max_seconds, self.first_seconds))


@dataclass(frozen=True, slots=True)
class FailureOutcome:
    record: ClientRecord
    locked: bool = False
    suspended: bool = False


def register_failure(
    record: ClientRecord, now: float, policy: LockoutPolicy
) -> FailureOutcome:
    """Count one failed login; lock or suspend when the policy says so."""
    if policy.threshold == 0:
        return FailureOutcome(record.evolve(now, failed_attempts=0))
    failures = record.failed_attempts + 1
    if failures < policy.threshold:
        return FailureOutcome(record.evolve(now, failed_attempts=failures))

    streak = record.lockout_streak + 1
    limit = policy.lockouts_before_suspension
    if limit and streak >= limit and record.status is ClientStatus.ACTIVE:
        suspended = record.evolve(
            now,
            status=ClientStatus.SUSPENDED,
            failed_attempts=0,
            lockout_streak=0,
            locked_until=0.0,
        )
        return FailureOutcome(suspended, suspended=True)
    locked = record.evolve(
        now,
        failed_attempts=0,
        lockout_streak=streak,
        locked_until=now + policy.lockout_seconds(streak),
    )
    return FailureOutcome(locked, locked=True)


def register_success(record: ClientRecord, now: float) -> ClientRecord | None:
    """Clear the failure count and the run of lockouts; None if already clear."""
    if record.failed_attempts == 0 and record.lockout_streak == 0:
        return None
    return record.evolve(now, failed_attempts=0, lockout_streak=0)


def can_log_in(record: ClientRecord, now: float) -> bool:
    return record.status is ClientStatus.ACTIVE and not record.is_locked(now)


def suspend(record: ClientRecord, now: float) -> ClientRecord | None:
    """Active → suspended; anything else is unchanged (None)."""
    if record.status is not ClientStatus.ACTIVE:
        return None
    return record.evolve(now, status=ClientStatus.SUSPENDED)


def revoke(record: ClientRecord, now: float) -> ClientRecord | None:
    """Active or suspended → revoked; revoked is unchanged (None)."""
    if record.status is ClientStatus.REVOKED:
        return None
    return record.evolve(now, status=ClientStatus.REVOKED)


def can_rotate(record: ClientRecord) -> bool:
    return record.status is ClientStatus.ACTIVE


def rotate(record: ClientRecord, now: float, commitment: bytes) -> ClientRecord:
    return record.evolve(
        now,
        commitment=commitment,
        commitment_version=record.commitment_version + 1,
    )


def can_recover(record: ClientRecord, policy: LockoutPolicy) -> bool:
    """Phrase recovery is open to active and suspended clients, until too many
    wrong phrases in a row close it (an admin reactivation reopens it)."""
    if record.status is ClientStatus.REVOKED:
        return False
    limit = policy.recovery_attempts
    return not (limit and record.recovery_failures >= limit)


def register_recovery_failure(record: ClientRecord, now: float) -> ClientRecord:
    return record.evolve(now, recovery_failures=record.recovery_failures + 1)


def renew(
    record: ClientRecord, now: float, commitment: bytes, recovery_hash: str
) -> ClientRecord:
    """Recovery and reactivation: active, new commitment, counters cleared."""
    return record.evolve(
        now,
        status=ClientStatus.ACTIVE,
        commitment=commitment,
        commitment_version=record.commitment_version + 1,
        recovery_hash=recovery_hash,
        failed_attempts=0,
        lockout_streak=0,
        locked_until=0.0,
        recovery_failures=0,
    )
