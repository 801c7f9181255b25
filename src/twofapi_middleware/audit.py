"""Audit events: one frozen event per security-relevant step.

By default events go to the ``twofapi_middleware.audit`` logger at INFO,
which has no handler of its own: the application decides where they go.
Events never carry secrets, proofs, tokens, recovery words or the admin
secret; only identifiers, the request id, the source address and the time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .models import AuditEvent

audit_logger = logging.getLogger("twofapi_middleware.audit")

ENROLLED = "enrolled"
ENROLLMENT_REFUSED = "enrollment_refused"
CHALLENGE_ISSUED = "challenge_issued"
CHALLENGE_REFUSED = "challenge_refused"
VERIFIED = "verified"
VERIFICATION_REFUSED = "verification_refused"
TOKEN_ISSUED = "token_issued"
ACCESS_DENIED = "access_denied"
ROTATED = "rotated"
ROTATION_REFUSED = "rotation_refused"
REVOKED = "revoked"
SUSPENDED = "suspended"
RECOVERED = "recovered"
RECOVERY_REFUSED = "recovery_refused"
REACTIVATED = "reactivated"
REACTIVATION_REFUSED = "reactivation_refused"
LOCKED_OUT = "locked_out"
RATE_LIMITED = "rate_limited"
ADMIN_REFUSED = "admin_refused"


def log_event(event: AuditEvent) -> None:
    """The default hook: one INFO record, the event attached as ``extra``."""
    if audit_logger.isEnabledFor(logging.INFO):
        audit_logger.info(
            "%s client=%s outcome=%s request=%s source=%s",
            event.kind,
            event.client_id,
            event.outcome,
            event.request_id,
            event.source_address,
            extra={"twofapi_event": event},
        )


AuditSink = Callable[[AuditEvent], None]
