"""Thin sync and async shells around the flows: they only send and receive.

Both colours have the same method names; the async one awaits them. Neither
holds any protocol logic, which lives in :mod:`._flow` once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Final, TypeVar

import httpx

from ._credential import Credential
from ._errors import InvalidResponse, TransportFailed
from ._flow import (
    AccessToken,
    AdminFlows,
    ClientFlows,
    EnrollmentResult,
    Flow,
    RecoveryResult,
)

T = TypeVar("T")
Shell = TypeVar("Shell", bound="_SyncShell")
AsyncShell = TypeVar("AsyncShell", bound="_AsyncShell")

DEFAULT_TIMEOUT_SECONDS: Final = 10.0
"""Timeout of the HTTP client a shell makes for itself."""


def _transport_failed(
    request: httpx.Request, error: httpx.RequestError
) -> TransportFailed:
    origin = f"{request.url.scheme}://{request.url.netloc.decode('ascii')}"
    reason = str(error) or type(error).__name__
    return TransportFailed(f"cannot reach {origin}: {reason}")


class _SyncShell:
    """Drives flows over an ``httpx.Client``."""

    def __init__(self, http: httpx.Client | None) -> None:
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=DEFAULT_TIMEOUT_SECONDS)

    def _run(self, flow: Flow[T]) -> T:
        try:
            request = next(flow)
            while True:
                try:
                    response = self._http.send(request)
                except httpx.RequestError as error:
                    raise _transport_failed(request, error) from error
                request = flow.send(response)
        except StopIteration as stop:
            result: T = stop.value
            return result

    def close(self) -> None:
        """Close the HTTP client, if the shell made it."""
        if self._owns_http:
            self._http.close()

    def __enter__(self: Shell) -> Shell:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class _AsyncShell:
    """Drives flows over an ``httpx.AsyncClient``."""

    def __init__(self, http: httpx.AsyncClient | None) -> None:
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=DEFAULT_TIMEOUT_SECONDS)

    async def _run(self, flow: Flow[T]) -> T:
        try:
            request = next(flow)
            while True:
                try:
                    response = await self._http.send(request)
                except httpx.RequestError as error:
                    raise _transport_failed(request, error) from error
                request = flow.send(response)
        except StopIteration as stop:
            result: T = stop.value
            return result

    async def aclose(self) -> None:
        """Close the HTTP client, if the shell made it."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self: AsyncShell) -> AsyncShell:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


class _ClientState:
    """What both client shells expose of the flows' state."""

    _flows: ClientFlows

    @property
    def base_url(self) -> str:
        """The server's URL, without a trailing slash."""
        return self._flows.base_url

    @property
    def credential(self) -> Credential:
        """The credential in use; a rotation or a recovery replaces it."""
        return self._flows.credential

    @property
    def token(self) -> AccessToken | None:
        """The current access token, if the client has logged in."""
        return self._flows.token


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise InvalidResponse(f"{response.status_code} answer is not JSON") from None


class TwoFApiClient(_ClientState, _SyncShell):
    """A 2FApi client over a blocking ``httpx.Client``.

    ``audience`` is asked for at every login unless :meth:`login` names
    another; ``clock`` (POSIX seconds) decides when a token is too old.
    Use one client per credential; after :meth:`rotate` or :meth:`recover`
    it holds the new credential, which the caller must save.
    """

    def __init__(
        self,
        base_url: str,
        credential: Credential,
        *,
        http: httpx.Client | None = None,
        audience: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._flows = ClientFlows(base_url, credential, audience=audience, clock=clock)
        super().__init__(http)

    def enroll(self) -> EnrollmentResult:
        """Register the credential's commitment (``POST /v1/clients``)."""
        return self._run(self._flows.enroll())

    def login(self, audience: str | None = None) -> AccessToken:
        """Get an access token by proving knowledge of the credential."""
        return self._run(self._flows.login(audience))

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call a guarded route; a non-2xx answer raises ``ProblemResponse``."""
        return self._run(self._flows.request(method, path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> Any:
        """GET a guarded route and return its JSON."""
        return _json(self.request("GET", path, **kwargs))

    def rotate(self, new_credential: Credential) -> datetime:
        """Replace the commitment; returns the server's ``rotatedAt``."""
        return self._run(self._flows.rotate(new_credential))

    def recover(
        self, words: str | Sequence[str], new_credential: Credential
    ) -> RecoveryResult:
        """Replace the commitment with the recovery phrase."""
        return self._run(self._flows.recover(words, new_credential))


class AsyncTwoFApiClient(_ClientState, _AsyncShell):
    """The same client over ``httpx.AsyncClient``; every call is awaited."""

    def __init__(
        self,
        base_url: str,
        credential: Credential,
        *,
        http: httpx.AsyncClient | None = None,
        audience: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._flows = ClientFlows(base_url, credential, audience=audience, clock=clock)
        super().__init__(http)

    async def enroll(self) -> EnrollmentResult:
        """Register the credential's commitment (``POST /v1/clients``)."""
        return await self._run(self._flows.enroll())

    async def login(self, audience: str | None = None) -> AccessToken:
        """Get an access token by proving knowledge of the credential."""
        return await self._run(self._flows.login(audience))

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call a guarded route; a non-2xx answer raises ``ProblemResponse``."""
        return await self._run(self._flows.request(method, path, **kwargs))

    async def get(self, path: str, **kwargs: Any) -> Any:
        """GET a guarded route and return its JSON."""
        return _json(await self.request("GET", path, **kwargs))

    async def rotate(self, new_credential: Credential) -> datetime:
        """Replace the commitment; returns the server's ``rotatedAt``."""
        return await self._run(self._flows.rotate(new_credential))

    async def recover(
        self, words: str | Sequence[str], new_credential: Credential
    ) -> RecoveryResult:
        """Replace the commitment with the recovery phrase."""
        return await self._run(self._flows.recover(words, new_credential))


class AdminClient(_SyncShell):
    """The admin calls, authenticated by the configured admin secret."""

    def __init__(
        self, base_url: str, admin_secret: str, *, http: httpx.Client | None = None
    ) -> None:
        self._flows = AdminFlows(base_url, admin_secret)
        super().__init__(http)

    def __repr__(self) -> str:
        return f"AdminClient({self._flows.base_url!r}, admin_secret=<redacted>)"

    def revoke(self, client_id: str) -> None:
        """Revoke a client for good; only reactivation brings it back."""
        self._run(self._flows.revoke(client_id))

    def suspend(self, client_id: str) -> None:
        """Suspend an active client."""
        self._run(self._flows.suspend(client_id))

    def reactivate(self, client_id: str, new_credential: Credential) -> RecoveryResult:
        """Make the client active again with ``new_credential``'s commitment."""
        return self._run(self._flows.reactivate(client_id, new_credential))


class AsyncAdminClient(_AsyncShell):
    """The admin calls over ``httpx.AsyncClient``."""

    def __init__(
        self,
        base_url: str,
        admin_secret: str,
        *,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._flows = AdminFlows(base_url, admin_secret)
        super().__init__(http)

    def __repr__(self) -> str:
        return f"AsyncAdminClient({self._flows.base_url!r}, admin_secret=<redacted>)"

    async def revoke(self, client_id: str) -> None:
        """Revoke a client for good; only reactivation brings it back."""
        await self._run(self._flows.revoke(client_id))

    async def suspend(self, client_id: str) -> None:
        """Suspend an active client."""
        await self._run(self._flows.suspend(client_id))

    async def reactivate(
        self, client_id: str, new_credential: Credential
    ) -> RecoveryResult:
        """Make the client active again with ``new_credential``'s commitment."""
        return await self._run(self._flows.reactivate(client_id, new_credential))
