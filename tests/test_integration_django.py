"""Django and DRF: the middleware, the request user, decorators, DRF auth.

Django is configured once per process, with the notes example's settings
(as ``test_examples`` does); these tests swap in their own URLconf.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django
import pytest

_EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "django_app"
if str(_EXAMPLE) not in sys.path:
    sys.path.insert(0, str(_EXAMPLE))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notes_django.settings")
django.setup()

from django.contrib.auth.models import AnonymousUser  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.http import HttpRequest, HttpResponse, JsonResponse  # noqa: E402
from django.test import AsyncClient, Client  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from django.urls import path  # noqa: E402
from django.views import View  # noqa: E402
from rest_framework.permissions import IsAuthenticated  # noqa: E402
from rest_framework.request import Request as DRFRequest  # noqa: E402
from rest_framework.response import Response as DRFResponse  # noqa: E402
from rest_framework.views import APIView  # noqa: E402
from werkzeug.test import Client as WerkzeugClient  # noqa: E402

from twofapi_middleware import (  # noqa: E402
    ConfigurationError,
    Principal,
    TwoFApiWSGIMiddleware,
)
from twofapi_middleware.client import Credential, proof_of_possession  # noqa: E402
from twofapi_middleware.integrations.django import (  # noqa: E402
    TwoFApiUser,
    get_service,
    twofapi_exempt,
    twofapi_required,
)
from twofapi_middleware.integrations.drf import TwoFApiAuthentication  # noqa: E402
from twofapi_middleware.testing import TEST_ADMIN_SECRET, issue_token  # noqa: E402

OURS = "twofapi_middleware.integrations.django.TwoFApiMiddleware"
CSRF = "django.middleware.csrf.CsrfViewMiddleware"
SESSION = "django.contrib.sessions.middleware.SessionMiddleware"
AUTHENTICATION = "django.contrib.auth.middleware.AuthenticationMiddleware"
FAST = {
    "argon2_memory_kib": 64,
    "argon2_time_cost": 1,
    "rate_limit_per_address": 0,
    "rate_limit_per_client": 0,
    "admin_secret": TEST_ADMIN_SECRET,
    "exclude_prefixes": ["/excluded/"],
}


# -- views and URLconf ---------------------------------------------------------------


def describe(request: HttpRequest) -> dict[str, Any]:
    user = request.user
    auth = request.auth  # type: ignore[attr-defined]
    return {
        "user": str(user),
        "user_type": type(user).__name__,
        "authenticated": user.is_authenticated,
        "anonymous": user.is_anonymous,
        "auth": auth.client_id if isinstance(auth, Principal) else auth,
    }


def me(request: HttpRequest) -> JsonResponse:
    return JsonResponse(describe(request))


async def async_me(request: HttpRequest) -> JsonResponse:
    return JsonResponse(describe(request))


def write(request: HttpRequest) -> JsonResponse:
    body = request.body
    return JsonResponse({"size": len(body), "head": body[:8].decode()})


@twofapi_exempt
def open_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(describe(request))


@twofapi_required
def excluded_but_required(request: HttpRequest) -> JsonResponse:
    return JsonResponse(describe(request))


@twofapi_exempt
class Status(View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse({"status": "up"})


class DRFMe(APIView):
    authentication_classes = [TwoFApiAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request: DRFRequest) -> DRFResponse:
        return DRFResponse(
            {"user": request.user.username, "auth": request.auth.client_id}
        )


urlpatterns = [
    path("me", me),
    path("async-me", async_me),
    path("write", write),
    path("open", open_view),
    path("status", Status.as_view()),
    path("excluded/page", me),
    path("excluded/required", excluded_but_required),
    path("drf/me", DRFMe.as_view()),
    path("excluded/drf/me", DRFMe.as_view()),
]

MIDDLEWARE = ["django.middleware.security.SecurityMiddleware", CSRF, OURS]


@pytest.fixture(autouse=True)
def configured() -> Iterator[None]:
    with override_settings(ROOT_URLCONF=__name__, TWOFAPI=FAST, MIDDLEWARE=MIDDLEWARE):
        yield


@pytest.fixture
def client() -> Client:
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def token() -> str:
    return issue_token(get_service(), "alice")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- the owned endpoints -------------------------------------------------------------


def test_endpoints_need_no_urlconf_and_no_csrf_exemption(client: Client) -> None:
    assert client.get("/health").json() == {"status": "ok", "version": "1.0"}
    assert "keys" in client.get("/.well-known/jwks.json").json()

    credential = Credential.generate("carol")
    enrolled = client.post(
        "/v1/clients",
        {
            "clientIdentifier": "carol",
            "commitment": base64.b64encode(credential.commitment).decode(),
            "proofOfPossession": base64.b64encode(
                proof_of_possession(credential)
            ).decode(),
        },
        content_type="application/json",
    )
    assert enrolled.status_code == 201
    assert enrolled["Location"] == "/v1/clients/carol"
    assert len(enrolled.json()["recoveryWords"]) == 12

    invalid = client.post("/v1/challenges", {}, content_type="application/json")
    assert invalid.status_code == 400
    assert invalid["Content-Type"] == "application/problem+json"
    assert client.post("/v1/clients", "x", content_type="text/plain").status_code == 415
    assert client.get("/v1/verify").status_code == 405
    revoked = client.delete(
        "/v1/clients/carol", HTTP_X_ADMIN_IDENTITY=TEST_ADMIN_SECRET
    )
    assert revoked.status_code == 204
    assert "Content-Type" not in revoked


def test_oversized_endpoint_bodies_are_refused(client: Client) -> None:
    big = json.dumps({"clientIdentifier": "x" * 70_000})
    reply = client.post("/v1/clients", big, content_type="application/json")
    assert reply.status_code == 413


# -- the guard and the request user --------------------------------------------------


def test_guarded_view_gets_a_user_and_the_principal(client: Client, token: str) -> None:
    refused = client.get("/me")
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"] == 'Bearer realm="2fapi"'

    assert client.get("/me", headers=bearer(token)).json() == {
        "user": "alice",
        "user_type": "TwoFApiUser",
        "authenticated": True,
        "anonymous": False,
        "auth": "alice",
    }


def test_the_user_holds_no_permissions() -> None:
    principal = Principal("alice", "default", 1, "jti", 0)
    user = TwoFApiUser(principal)
    assert user.is_authenticated and not user.is_anonymous
    assert user.is_active and not user.is_staff and not user.is_superuser
    assert not user.has_perm("notes.add_note")
    assert not user.has_perms(["notes.add_note"])
    assert not user.has_module_perms("notes")
    assert user.get_all_permissions() == set()
    assert user.get_username() == "alice" and user.pk is None
    assert user == TwoFApiUser(principal)
    with pytest.raises(NotImplementedError):
        user.save()


def test_excluded_views_get_an_anonymous_user(client: Client, token: str) -> None:
    for url in ("/open", "/excluded/page"):
        reply = client.get(url).json()
        assert reply["user_type"] == AnonymousUser.__name__
        assert reply["auth"] is None and reply["anonymous"] is True
    assert client.get("/status").json() == {"status": "up"}


def test_required_wins_over_an_excluded_path(client: Client, token: str) -> None:
    assert client.get("/excluded/required").status_code == 401
    assert client.get("/excluded/required", headers=bearer(token)).json()["auth"] == (
        "alice"
    )


def test_bearer_requests_skip_csrf_checks(client: Client, token: str) -> None:
    assert client.post("/open").status_code == 403  # CSRF is on
    assert client.post("/write", "abc", content_type="text/plain").status_code == 401
    reply = client.post(
        "/write", "abc", content_type="text/plain", headers=bearer(token)
    )
    assert reply.json() == {"size": 3, "head": "abc"}


def test_large_bodies_reach_the_view(client: Client, token: str) -> None:
    body = b"w" * (5 * 1024 * 1024)
    reply = client.post(
        "/write", body, content_type="application/octet-stream", headers=bearer(token)
    )
    assert reply.json() == {"size": len(body), "head": "w" * 8}


def test_unknown_urls_are_guarded(client: Client, token: str) -> None:
    assert client.get("/nowhere").status_code == 401
    assert client.get("/nowhere", headers=bearer(token)).status_code == 404


def test_cors_preflight_passes(client: Client) -> None:
    reply = client.options(
        "/me",
        headers={"Origin": "https://a.example", "Access-Control-Request-Method": "GET"},
    )
    assert reply.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic YTpi"}],
)
def test_refusals_match_the_wsgi_middleware(
    client: Client, headers: dict[str, str]
) -> None:
    headers = {**headers, "X-Request-Id": "req-3"}
    ours = client.get("/me", headers=headers)

    def inner(environ: Any, start_response: Any) -> list[bytes]:
        raise AssertionError("let through")

    middleware = TwoFApiWSGIMiddleware(inner, service=get_service())
    theirs = WerkzeugClient(middleware).get("/me", headers=headers)
    assert ours.status_code == theirs.status_code == 401
    assert ours.content == theirs.get_data()
    for name, value in theirs.headers.items():
        assert ours[name] == value, name


def test_with_authentication_middleware_before_ours(token: str) -> None:
    middleware = [SESSION, AUTHENTICATION, *MIDDLEWARE]
    with override_settings(
        MIDDLEWARE=middleware,
        SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
    ):
        client = Client()
        assert client.get("/me", headers=bearer(token)).json()["user_type"] == (
            "TwoFApiUser"
        )
        assert client.get("/open").json()["user"] == "AnonymousUser"


def test_authentication_middleware_after_ours_is_refused() -> None:
    middleware = [SESSION, *MIDDLEWARE, AUTHENTICATION]
    with override_settings(MIDDLEWARE=middleware), pytest.raises(ImproperlyConfigured):
        Client().get("/health")


# -- configuration -------------------------------------------------------------------


def test_settings_changes_build_a_new_service() -> None:
    first = get_service()
    assert first is get_service()
    with override_settings(TWOFAPI={**FAST, "issuer": "other"}):
        assert get_service().settings.issuer == "other"
    assert get_service().settings.issuer == "2fapi"


@pytest.mark.parametrize(
    "value", [{"storage": "memory://"}, {"token_leeway_seconds": 900}, ["x"]]
)
def test_bad_settings_are_refused(value: Any) -> None:
    refused = pytest.raises((ImproperlyConfigured, ConfigurationError))
    with override_settings(TWOFAPI=value), refused:
        get_service()


# -- async ---------------------------------------------------------------------------


def test_async_requests(token: str) -> None:
    async def scenario() -> None:
        client = AsyncClient(enforce_csrf_checks=True)
        assert (await client.get("/async-me")).status_code == 401
        for url in ("/me", "/async-me"):
            reply = await client.get(url, headers=bearer(token))
            assert reply.json()["auth"] == "alice"
        reply = await client.post(
            "/write",
            b"v" * (5 * 1024 * 1024),
            content_type="application/octet-stream",
            headers=bearer(token),
        )
        assert reply.json() == {"size": 5 * 1024 * 1024, "head": "v" * 8}
        assert (await client.get("/open")).json()["anonymous"] is True
        assert (await client.get("/health")).status_code == 200
        invalid = await client.post("/v1/verify", {}, content_type="application/json")
        assert invalid.status_code == 400

    asyncio.run(scenario())


# -- DRF -----------------------------------------------------------------------------


def test_drf_uses_the_middleware_principal(client: Client, token: str) -> None:
    reply = client.get("/drf/me", headers=bearer(token))
    assert reply.json() == {"user": "alice", "auth": "alice"}


def test_drf_authenticates_on_excluded_routes(client: Client, token: str) -> None:
    reply = client.get("/excluded/drf/me", headers=bearer(token))
    assert reply.json() == {"user": "alice", "auth": "alice"}

    missing = client.get("/excluded/drf/me")
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"] == 'Bearer realm="2fapi"'

    bad = client.get("/excluded/drf/me", headers=bearer("nope"))
    assert bad.status_code == 401
    assert bad["WWW-Authenticate"] == 'Bearer realm="2fapi", error="invalid_token"'

    other_scheme = client.get("/excluded/drf/me", headers={"Authorization": "Basic x"})
    assert other_scheme.status_code == 401
