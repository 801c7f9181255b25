"""What the client raises: one branch of the package's error tree.

::

    TwoFApiError
    └── ClientError                 anything the client raises on purpose
        ├── CredentialFileError     a credential file unsafe, unreadable or invalid
        ├── TransportFailed         the server could not be reached or answered
        ├── InvalidResponse         a 2xx answer that breaks the protocol
        └── ProblemResponse         a non-2xx answer, with its problem details
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from ..errors import TwoFApiError

_PROBLEM_PREFIX = "urn:2fapi:error:"


class ClientError(TwoFApiError):
    """Base class of every error the client raises on purpose."""


class CredentialFileError(ClientError):
    """A credential file is unsafe to use, cannot be read or is invalid."""


class TransportFailed(ClientError):
    """The request could not be sent, or its answer not received.

    The server may or may not have acted on it: a lost answer to an
    enrollment, a rotation or a recovery leaves the outcome unknown.
    """


class InvalidResponse(ClientError):
    """A success answer that does not carry what the protocol promises."""


class ProblemResponse(ClientError):
    """The server answered with a non-2xx status.

    ``type``, ``title`` and ``detail`` come from the RFC 9457 problem body
    when there is one; ``body`` is that body as parsed (empty otherwise).
    """

    def __init__(
        self,
        status: int,
        type: str,
        title: str,
        detail: str,
        *,
        body: dict[str, Any] | None = None,
        retry_after_seconds: int | None = None,
    ) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.body: dict[str, Any] = dict(body or {})
        self.retry_after_seconds = retry_after_seconds
        super().__init__(
            f"{status} {title}: {detail}" if detail else f"{status} {title}"
        )

    @property
    def code(self) -> str | None:
        """The 2FApi error code (``verification-refused``), if the type has one."""
        if self.type.startswith(_PROBLEM_PREFIX):
            return self.type[len(_PROBLEM_PREFIX) :]
        return None

    @classmethod
    def from_response(cls, response: httpx.Response) -> ProblemResponse:
        """Read the problem details of a non-2xx ``response``, if it has any."""
        body: dict[str, Any] = {}
        content_type = response.headers.get("content-type", "")
        if "json" in content_type:
            try:
                parsed = json.loads(response.content)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                body = parsed

        reason = response.reason_phrase or "HTTP error"
        return cls(
            response.status_code,
            _text(body, "type") or "about:blank",
            _text(body, "title") or reason,
            _text(body, "detail") or "",
            body=body,
            retry_after_seconds=_retry_after(response),
        )


def _text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    return value if isinstance(value, str) else None


def _retry_after(response: httpx.Response) -> int | None:
    value = response.headers.get("retry-after", "")
    return int(value) if value.isascii() and value.isdigit() else None
