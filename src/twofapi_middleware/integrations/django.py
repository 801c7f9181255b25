"""Django: a middleware for ``settings.MIDDLEWARE``, a request user, decorators.

::

    MIDDLEWARE = [
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "twofapi_middleware.integrations.django.TwoFApiMiddleware",
    ]
    TWOFAPI = {"storage_url": "postgresql://...", "audiences": ["notes"]}

``TWOFAPI`` holds :class:`~twofapi_middleware.settings.Settings` fields
(or is a ``Settings``); ``TWOFAPI_*`` environment variables fill in what it
leaves out. One service per process serves the middleware and the DRF
authentication class; changing ``TWOFAPI`` in tests builds a new one.

The middleware answers ``/health``, the JWKS and the ``/v1`` endpoints
itself, before URL resolution and before any view middleware, so they need
no URLconf entry and no CSRF exemption. For the app's views it resolves the
view first: one marked :func:`twofapi_exempt` is open, one marked
:func:`twofapi_required` is guarded even under an excluded path, any other
is guarded unless the settings exclude its path. A guarded request gets the
client as ``request.auth`` and a :class:`TwoFApiUser` as ``request.user``,
and is exempt from CSRF checks: a bearer token is not sent by browsers on
their own, so a forged cross-site request cannot carry it. Elsewhere
``request.auth`` is None and ``request.user`` is left to
``AuthenticationMiddleware`` (``AnonymousUser`` without it). If that
middleware is used, list it before this one.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve

from ..constants import MAX_BODY_BYTES
from ..http import Frontend, Request, Response, content_length_too_large, match_route
from ..models import Principal
from ..service import TwoFApi
from ..settings import Settings
from . import mark_view, needs_guard, view_mark

__all__ = [
    "TwoFApiMiddleware",
    "TwoFApiUser",
    "get_frontend",
    "get_service",
    "twofapi_exempt",
    "twofapi_required",
]

V = TypeVar("V", bound=Callable[..., Any])
T = TypeVar("T")

_FIELDS = frozenset(field.name for field in dataclasses.fields(Settings))
_THIS = f"{__name__}.TwoFApiMiddleware"
_AUTHENTICATION = "django.contrib.auth.middleware.AuthenticationMiddleware"


def twofapi_exempt(view: V) -> V:
    """Open a view to requests without a token."""
    return mark_view(view, guard=False)


def twofapi_required(view: V) -> V:
    """Guard a view, even when its path is excluded in the settings."""
    return mark_view(view, guard=True)


class TwoFApiUser:
    """``request.user`` for a 2FApi client: authenticated, never in the database.

    It holds no permissions and is not staff; ``principal`` is the client.
    """

    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.username = principal.client_id

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_username(self) -> str:
        return self.username

    def __str__(self) -> str:
        return self.username

    def __repr__(self) -> str:
        return f"TwoFApiUser({self.username!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TwoFApiUser):
            return NotImplemented
        return self.principal.client_id == other.principal.client_id

    def __hash__(self) -> int:
        return hash(self.username)

    def has_perm(self, perm: str, obj: object = None) -> bool:
        return False

    def has_perms(self, perm_list: object, obj: object = None) -> bool:
        return False

    def has_module_perms(self, app_label: str) -> bool:
        return False

    def get_all_permissions(self, obj: object = None) -> set[str]:
        return set()

    def save(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError("a 2FApi client is not a database user")

    def delete(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError("a 2FApi client is not a database user")


# -- the process's service ---------------------------------------------------

_frontend: Frontend | None = None
_frontend_lock = threading.Lock()


def _settings_from_django() -> Settings:
    options = getattr(django_settings, "TWOFAPI", None) or {}
    if isinstance(options, Settings):
        return options
    if not isinstance(options, Mapping):
        raise ImproperlyConfigured("TWOFAPI must be a dict of 2FApi settings")
    unknown = sorted(set(options) - _FIELDS)
    if unknown:
        raise ImproperlyConfigured(f"unknown TWOFAPI settings: {', '.join(unknown)}")
    values: dict[str, Any] = {
        name: tuple(value) if isinstance(value, list) else value
        for name, value in options.items()
    }
    return Settings.from_env(None, **values)


def get_frontend() -> Frontend:
    """The HTTP frontend of this process's service, built on first use."""
    global _frontend
    frontend = _frontend
    if frontend is None:
        with _frontend_lock:
            if _frontend is None:
                _frontend = Frontend(TwoFApi(_settings_from_django()))
            frontend = _frontend
    return frontend


def get_service() -> TwoFApi:
    """This process's 2FApi service, as configured by ``settings.TWOFAPI``."""
    return get_frontend().service


def _reset(*, setting: str, **kwargs: Any) -> None:
    global _frontend
    if setting == "TWOFAPI":
        with _frontend_lock:
            _frontend = None


setting_changed.connect(_reset)


# -- the middleware ----------------------------------------------------------


class TwoFApiMiddleware:
    """Serves the 2FApi endpoints and guards the views (sync and async)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        middleware = list(getattr(django_settings, "MIDDLEWARE", ()))
        if (
            _THIS in middleware
            and _AUTHENTICATION in middleware
            and middleware.index(_AUTHENTICATION) > middleware.index(_THIS)
        ):
            raise ImproperlyConfigured(
                f"list {_AUTHENTICATION} before {_THIS}: it would replace the "
                "2FApi client in request.user"
            )
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
        get_frontend()  # configuration errors show at start-up

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self._acall(request)
        frontend = get_frontend()
        route = match_route(request.path_info)
        if route is not None:
            return _to_django(frontend.handle(route, _owned_request(request)), request)

        principal: Principal | None = None
        headers = _headers(request)
        if _guarded(frontend, request, headers):
            result = frontend.authenticate(headers, _peer(request))
            if isinstance(result, Response):
                return _to_django(result, request)
            principal = result
        _attach(request, principal)
        return self.get_response(request)

    async def _acall(self, request: HttpRequest) -> Any:
        frontend = _frontend
        if frontend is None:
            frontend = await _in_thread(get_frontend)
        route = match_route(request.path_info)
        if route is not None:
            owned = _owned_request(request)
            if frontend.needs_thread(route):
                answer = await _in_thread(frontend.handle, route, owned)
            else:
                answer = frontend.handle(route, owned)
            return _to_django(answer, request)

        principal: Principal | None = None
        headers = _headers(request)
        if _guarded(frontend, request, headers):
            peer = _peer(request)
            if frontend.service.storage.blocking:
                result = await _in_thread(frontend.authenticate, headers, peer)
            else:
                result = frontend.authenticate(headers, peer)
            if isinstance(result, Response):
                return _to_django(result, request)
            principal = result
        _attach(request, principal)
        return await self.get_response(request)


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    # The service is thread-safe: any worker thread will do.
    result: T = await sync_to_async(fn, thread_sensitive=False)(*args)
    return result


def _guarded(frontend: Frontend, request: HttpRequest, headers: dict[str, str]) -> bool:
    # Resolving here, before the view middleware, lets the markers decide
    # while CSRF checks can still be told about a bearer request.
    try:
        match = resolve(request.path_info, getattr(request, "urlconf", None))
        view: object = match.func
    except Resolver404:
        view = None
    method = request.method or "GET"
    return needs_guard(frontend, method, request.path_info, headers, view_mark(view))


def _attach(request: HttpRequest, principal: Principal | None) -> None:
    # Django's request has no declared slots for these: set them untyped.
    target: Any = request
    target.twofapi_principal = principal
    target.auth = principal
    if principal is None:
        if not hasattr(request, "user"):
            from django.contrib.auth.models import AnonymousUser

            target.user = AnonymousUser()
        return

    user = TwoFApiUser(principal)

    async def auser() -> TwoFApiUser:
        return user

    target.user = user
    target.auser = auser
    target._dont_enforce_csrf_checks = True


def _headers(request: HttpRequest) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items()}


def _peer(request: HttpRequest) -> str | None:
    address = request.META.get("REMOTE_ADDR")
    return str(address) if address else None


def _owned_request(request: HttpRequest) -> Request:
    headers = _headers(request)
    method = request.method or "GET"
    body, too_large = b"", content_length_too_large(headers.get("content-length"))
    if not too_large and method not in ("GET", "HEAD", "OPTIONS"):
        body = request.read(MAX_BODY_BYTES + 1)
        too_large = len(body) > MAX_BODY_BYTES
    return Request(method, request.path_info, headers, body, _peer(request), too_large)


def _to_django(response: Response, request: HttpRequest) -> HttpResponse:
    # HEAD: the GET answer's headers and no body; Django's handlers send
    # whatever body they are given, which would desync a kept-alive
    # connection under some WSGI servers.
    body = b"" if request.method == "HEAD" else response.body
    answer = HttpResponse(body, status=response.status)
    names = {name for name, _ in response.headers}
    if "content-type" not in names:
        del answer["Content-Type"]
    if "content-length" not in names:
        answer["Content-Length"] = str(len(response.body))
    for name, value in response.headers:
        answer[name] = value
    return answer
