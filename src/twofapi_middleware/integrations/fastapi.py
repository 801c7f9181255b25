"""FastAPI and Starlette: the ASGI middleware, a bearer dependency, OpenAPI.

::

    from twofapi_middleware.integrations.fastapi import CurrentPrincipal, install

    app = FastAPI()
    install(app, Settings.from_env(exclude_prefixes=("/public/",)))

    @app.get("/me")
    def me(principal: CurrentPrincipal) -> dict[str, str]:
        return {"client": principal.client_id}

:func:`install` adds :class:`~twofapi_middleware.asgi.TwoFApiMiddleware`,
which serves the 2FApi endpoints and guards every HTTP and WebSocket route
(the interactive docs and the OpenAPI document are excluded by default),
and documents the endpoints in the app's OpenAPI document.

:data:`twofapi_principal` is a dependency that hands a view the
authenticated :class:`~twofapi_middleware.models.Principal`. It is an HTTP
bearer security scheme, so the OpenAPI document lists it and the docs'
Authorize button sends the token. On a route the middleware guarded, it
only reads the principal from the scope. On an excluded route it checks the
token itself, with the same answers as the middleware.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import WebSocketException
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response as StarletteResponse
from starlette.status import WS_1008_POLICY_VIOLATION

from ..asgi import TwoFApiMiddleware
from ..errors import Unauthorized
from ..http import Frontend, Response, problem_response, request_id_from
from ..models import Principal
from ..service import TwoFApi
from ..settings import Settings
from ..storage import Storage
from ._openapi import add_endpoints

__all__ = [
    "SCHEME_NAME",
    "CurrentPrincipal",
    "TwoFApiBearer",
    "TwoFApiRefusal",
    "docs_paths",
    "document_endpoints",
    "install",
    "optional_principal",
    "twofapi_principal",
]

SCHEME_NAME = "TwoFApiBearer"
"""The name of the bearer scheme in the OpenAPI document."""

_DESCRIPTION = (
    "An access token from POST /v1/verify. Send it as `Authorization: Bearer <token>`."
)


class TwoFApiRefusal(HTTPException):
    """A refused token, carrying the middleware's own answer."""

    def __init__(self, response: Response) -> None:
        self.response = response
        # Without the app's handler FastAPI renders its own body: keep only
        # the headers that still hold for it.
        headers = {
            name: value
            for name, value in response.headers
            if name in ("www-authenticate", "retry-after")
        }
        super().__init__(response.status, "Unauthorized", headers)


async def _render_refusal(request: Request, error: Exception) -> StarletteResponse:
    if not isinstance(error, TwoFApiRefusal):  # registered for that class only
        raise error
    answer = error.response
    return StarletteResponse(answer.body, answer.status, dict(answer.headers))


class TwoFApiBearer(SecurityBase):
    """A dependency returning the authenticated client.

    With ``auto_error=False`` a request without any token gets ``None``
    instead of a 401; a token that is present but bad is still refused.
    """

    def __init__(
        self,
        *,
        scheme_name: str = SCHEME_NAME,
        description: str | None = _DESCRIPTION,
        auto_error: bool = True,
    ) -> None:
        self.model = HTTPBearerModel(bearerFormat="JWT", description=description)
        self.scheme_name = scheme_name
        self.auto_error = auto_error

    async def __call__(self, connection: HTTPConnection) -> Principal | None:
        principal = connection.scope.get("twofapi.principal")
        if isinstance(principal, Principal):
            return principal

        headers = {name: value for name, value in connection.headers.items()}
        if "authorization" not in headers and not self.auto_error:
            return None
        frontend: Frontend | None = getattr(connection.app.state, "twofapi", None)
        if frontend is None:
            result: Principal | Response = problem_response(
                Unauthorized(invalid_token=False), request_id_from(headers)
            )
        else:
            peer = connection.client.host if connection.client else None
            result = await _authenticate(frontend, headers, peer)

        if isinstance(result, Principal):
            connection.scope["twofapi.principal"] = result
            return result
        if connection.scope["type"] == "websocket":
            raise WebSocketException(WS_1008_POLICY_VIOLATION)
        raise TwoFApiRefusal(result)


async def _authenticate(
    frontend: Frontend, headers: dict[str, str], peer: str | None
) -> Principal | Response:
    if frontend.service.storage.blocking:
        return await run_in_threadpool(frontend.authenticate, headers, peer)
    return frontend.authenticate(headers, peer)


twofapi_principal = TwoFApiBearer()
"""``Depends(twofapi_principal)``: the client, or a 401."""

optional_principal = TwoFApiBearer(auto_error=False)
"""``Depends(optional_principal)``: the client, or None without a token."""

CurrentPrincipal = Annotated[Principal, Depends(twofapi_principal)]
"""A view parameter annotated with this receives the authenticated client."""


def docs_paths(app: Starlette) -> tuple[str, ...]:
    """The app's docs and OpenAPI routes: /docs, /redoc, /openapi.json..."""
    names = ("docs_url", "redoc_url", "openapi_url", "swagger_ui_oauth2_redirect_url")
    found = (getattr(app, name, None) for name in names)
    return tuple(path for path in found if isinstance(path, str) and path)


def document_endpoints(app: FastAPI, *, scheme_name: str = SCHEME_NAME) -> None:
    """Add the middleware's endpoints to the app's OpenAPI document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            add_endpoints(document, bearer_scheme=scheme_name)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(
    app: Starlette,
    settings: Settings | None = None,
    *,
    service: TwoFApi | None = None,
    storage: Storage | None = None,
    exclude_docs: bool = True,
) -> TwoFApi:
    """Guard ``app``, mount the endpoints and document them; return the service.

    ``settings`` default to ``Settings.from_env()``. With ``exclude_docs``
    the docs routes are added to ``exclude_paths``; a ``service`` passed in
    keeps its own settings.
    """
    if service is None:
        settings = settings or Settings.from_env()
        if exclude_docs:
            settings = settings.replace(
                exclude_paths=(*settings.exclude_paths, *docs_paths(app))
            )
        service = TwoFApi(settings, storage)

    app.add_middleware(TwoFApiMiddleware, service=service)
    app.add_exception_handler(TwoFApiRefusal, _render_refusal)
    app.state.twofapi = Frontend(service)
    if isinstance(app, FastAPI):
        document_endpoints(app)
    return service
