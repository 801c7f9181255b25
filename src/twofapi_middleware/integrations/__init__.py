"""Framework integrations, one module per framework.

Each module imports its framework, so import only the one you use:

=====================  ==================================================
module                 gives
=====================  ==================================================
``.flask``             ``FlaskTwoFApi`` (``init_app``), ``current_principal``,
                       ``public``, ``login_required``
``.fastapi``           ``install``, ``twofapi_principal``,
                       ``CurrentPrincipal``, ``document_endpoints``
``.django``            ``TwoFApiMiddleware``, ``TwoFApiUser``,
                       ``twofapi_exempt``, ``twofapi_required``
``.drf``               ``TwoFApiAuthentication``
=====================  ==================================================

This package itself only holds what they share: the per-view markers and
the rule that decides whether a request is guarded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from ..http import Frontend

__all__ = ["GUARD_ATTRIBUTE", "is_preflight", "mark_view", "needs_guard", "view_mark"]

V = TypeVar("V")

GUARD_ATTRIBUTE = "twofapi_guard"
"""The attribute a view decorator sets: True guards the view, False opens it."""


def mark_view(view: V, *, guard: bool) -> V:
    """Set the guard marker on a view function or a class-based view."""
    setattr(view, GUARD_ATTRIBUTE, guard)
    return view


def view_mark(view: object) -> bool | None:
    """The marker of ``view``, or of the class behind it; None if unmarked."""
    # Class-based views (Flask's View, Django's View, DRF's APIView) keep
    # their class on the function ``as_view`` returns.
    for candidate in (view, getattr(view, "view_class", None)):
        marker = getattr(candidate, GUARD_ATTRIBUTE, None)
        if isinstance(marker, bool):
            return marker
    return None


def is_preflight(method: str, headers: Mapping[str, str]) -> bool:
    """A CORS preflight: browsers never send credentials with one."""
    return (
        method == "OPTIONS"
        and "origin" in headers
        and "access-control-request-method" in headers
    )


def needs_guard(
    frontend: Frontend,
    method: str,
    path: str,
    headers: Mapping[str, str],
    marker: bool | None,
) -> bool:
    """Whether a request to an application view must carry a valid token.

    A CORS preflight never does. Otherwise the view's own marker wins; an
    unmarked view is guarded unless the settings exclude its path.
    """
    if is_preflight(method, headers):
        return False
    if marker is not None:
        return marker
    return not frontend.is_excluded(method, path, headers)
