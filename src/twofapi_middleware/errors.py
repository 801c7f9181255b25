"""The one error tree of the package.

::

    TwoFApiError                      base of everything raised on purpose
    ├── ConfigurationError            bad settings; raised at start-up
    ├── SchemaError                   storage schema missing or outdated
    │   └── SchemaTooNew              written by a newer release; never migrate
    ├── StorageUnavailable            backend down or timed out (503)
    └── ProblemError                  an HTTP problem answer (RFC 9457)
        ├── ValidationFailed          400, names the bad field
        ├── MalformedBody             400
        ├── UnsupportedVersion        400
        ├── Unauthorized              401, guarded routes (RFC 6750)
        ├── ChallengeRefused          401
        ├── VerificationRefused       401
        ├── RotationRefused           401
        ├── RecoveryFailed            401
        ├── ReactivationFailed        401
        ├── Forbidden                 403
        ├── NotFound                  404
        ├── MethodNotAllowed          405, with ``Allow``
        ├── EnrollmentRefused         409
        ├── PayloadTooLarge           413
        ├── UnsupportedMediaType      415
        ├── RateLimited               429, with ``Retry-After``
        ├── StorageUnavailableProblem 503, with ``Retry-After``
        └── InternalError             500, never carries internals

Every refusal class has one fixed ``title`` and ``detail``: two refusals with
the same status differ only in ``instance``, so no answer tells which check
failed. Only :class:`ValidationFailed` names a field.
"""

from __future__ import annotations

from typing import ClassVar

from .constants import STORAGE_RETRY_AFTER_SECONDS, SUPPORTED_VERSIONS


class TwoFApiError(Exception):
    """Base class of every error the package raises on purpose."""


class ConfigurationError(TwoFApiError):
    """The settings cannot work; raised before serving anything."""


class SchemaError(TwoFApiError):
    """The storage schema is missing, outdated or newer than this code."""


class SchemaTooNew(SchemaError):
    """The storage schema is newer than this code: upgrade the package.

    Migrating cannot help, so ``twofapi migrate`` refuses to try.
    """


class StorageUnavailable(TwoFApiError):
    """The storage backend is down or timed out; wraps the driver's error."""


class ProblemError(TwoFApiError):
    """An error that becomes an ``application/problem+json`` answer."""

    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    default_detail: ClassVar[str] = "The server could not complete the request."

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.default_detail
        super().__init__(self.detail)

    @property
    def type(self) -> str:
        return f"urn:2fapi:error:{self.code}"

    def headers(self) -> list[tuple[str, str]]:
        """Extra response headers this problem requires."""
        return []

    def extra(self) -> dict[str, object]:
        """Extra members of the problem body."""
        return {}


class ValidationFailed(ProblemError):
    code = "validation-failed"
    status = 400
    title = "Validation failed"

    def __init__(self, field: str, reason: str = "is invalid") -> None:
        self.field = field
        super().__init__(f"Field '{field}' {reason}.")


class MalformedBody(ProblemError):
    code = "malformed-body"
    status = 400
    title = "Malformed body"
    default_detail = "The request body must be a JSON object."


class UnsupportedVersion(ProblemError):
    code = "unsupported-version"
    status = 400
    title = "Unsupported protocol version"
    default_detail = "Field 'protocolVersion' names a version this server lacks."

    def extra(self) -> dict[str, object]:
        return {"supportedVersions": list(SUPPORTED_VERSIONS)}


class Unauthorized(ProblemError):
    """A guarded route without a usable bearer token (RFC 6750)."""

    code = "unauthorized"
    status = 401
    title = "Unauthorized"
    default_detail = "A valid bearer token is required."

    def __init__(self, *, invalid_token: bool) -> None:
        self.invalid_token = invalid_token
        super().__init__()

    def headers(self) -> list[tuple[str, str]]:
        value = 'Bearer realm="2fapi"'
        if self.invalid_token:
            value += ', error="invalid_token"'
        return [("www-authenticate", value)]


class ChallengeRefused(ProblemError):
    code = "challenge-refused"
    status = 401
    title = "Challenge refused"
    default_detail = "No challenge can be issued for this request."


class VerificationRefused(ProblemError):
    code = "verification-refused"
    status = 401
    title = "Verification refused"
    default_detail = "The proof was not accepted."


class RotationRefused(ProblemError):
    code = "rotation-refused"
    status = 401
    title = "Rotation refused"
    default_detail = "The commitment was not rotated."


class RecoveryFailed(ProblemError):
    code = "recovery-failed"
    status = 401
    title = "Recovery failed"
    default_detail = "The client was not recovered."


class ReactivationFailed(ProblemError):
    code = "reactivation-failed"
    status = 401
    title = "Reactivation failed"
    default_detail = "The client was not reactivated."


class Forbidden(ProblemError):
    code = "forbidden"
    status = 403
    title = "Forbidden"
    default_detail = "A valid admin credential is required."


class NotFound(ProblemError):
    code = "not-found"
    status = 404
    title = "Not found"
    default_detail = "No such resource."


class MethodNotAllowed(ProblemError):
    code = "method-not-allowed"
    status = 405
    title = "Method not allowed"
    default_detail = "This path does not accept that method."

    def __init__(self, allowed: tuple[str, ...]) -> None:
        self.allowed = allowed
        super().__init__()

    def headers(self) -> list[tuple[str, str]]:
        return [("allow", ", ".join(self.allowed))]


class EnrollmentRefused(ProblemError):
    code = "enrollment-refused"
    status = 409
    title = "Enrollment refused"
    default_detail = "The client could not be enrolled."


class PayloadTooLarge(ProblemError):
    code = "payload-too-large"
    status = 413
    title = "Payload too large"
    default_detail = "The request body exceeds the size limit."


class UnsupportedMediaType(ProblemError):
    code = "unsupported-media-type"
    status = 415
    title = "Unsupported media type"
    default_detail = "The request body must be application/json."


class RateLimited(ProblemError):
    code = "rate-limited"
    status = 429
    title = "Too many requests"
    default_detail = "Too many requests; retry later."

    def __init__(self, retry_after_seconds: int) -> None:
        self.retry_after_seconds = max(1, retry_after_seconds)
        super().__init__()

    def headers(self) -> list[tuple[str, str]]:
        return [("retry-after", str(self.retry_after_seconds))]


class StorageUnavailableProblem(ProblemError):
    code = "storage-unavailable"
    status = 503
    title = "Storage unavailable"
    default_detail = "The storage backend is unavailable; retry later."

    def headers(self) -> list[tuple[str, str]]:
        return [("retry-after", str(STORAGE_RETRY_AFTER_SECONDS))]


class InternalError(ProblemError):
    """A bug. Its answer never carries internals."""
