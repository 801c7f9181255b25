"""Django REST framework: an authentication class for 2FApi bearer tokens.

::

    REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": [
            "twofapi_middleware.integrations.drf.TwoFApiAuthentication",
        ],
    }

Behind :class:`~twofapi_middleware.integrations.django.TwoFApiMiddleware`
it hands DRF the client the middleware already checked. On routes the
middleware lets through (or without the middleware) it checks a
``Bearer`` token itself with the same service; without one it lets the
next authentication class try. ``request.user`` is then a
:class:`~twofapi_middleware.integrations.django.TwoFApiUser` and
``request.auth`` the :class:`~twofapi_middleware.models.Principal`. Refusals
are DRF's 401, with a ``WWW-Authenticate: Bearer`` challenge.
"""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed

from ..http import Response
from ..models import Principal
from .django import TwoFApiUser, get_frontend

__all__ = ["TwoFApiAuthentication"]

_CHALLENGE = 'Bearer realm="2fapi"'
_REFUSED_FLAG = "_twofapi_token_refused"


class TwoFApiAuthentication(BaseAuthentication):  # type: ignore[misc]
    """DRF authentication by 2FApi access token."""

    def authenticate(self, request: Any) -> tuple[TwoFApiUser, Principal] | None:
        django_request = request._request
        principal = getattr(django_request, "twofapi_principal", None)
        if isinstance(principal, Principal):
            return TwoFApiUser(principal), principal

        authorization = request.META.get("HTTP_AUTHORIZATION", "")
        if authorization.split(" ", 1)[0].lower() != "bearer":
            return None
        headers = {name.lower(): value for name, value in request.headers.items()}
        result = get_frontend().authenticate(headers, request.META.get("REMOTE_ADDR"))
        if isinstance(result, Response):
            setattr(django_request, _REFUSED_FLAG, True)
            raise AuthenticationFailed("The access token was not accepted.")
        django_request.twofapi_principal = result
        return TwoFApiUser(result), result

    def authenticate_header(self, request: Any) -> str:
        if getattr(request._request, _REFUSED_FLAG, False):
            return f'{_CHALLENGE}, error="invalid_token"'
        return _CHALLENGE
