"""HTTP conventions of PROTOCOL.md sections 5 to 7 and 9, on both adapters.

Headers of the middleware's own answers, methods, the static endpoints, the
JWKS, indistinguishable refusals, which error wins, the guard on every path
the middleware does not own, the verify table, token claims, leeway and
channel binding.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from helpers import (
    ADMIN,
    CREDENTIAL,
    PROBLEM,
    Api,
    Reply,
    assert_problem,
    auth_proof,
    b64,
    bearer,
    enroll,
    enroll_body,
    issue_challenge,
    login,
    reactivation_body,
    recovery_body,
    rotation_bodies,
    verify_body,
)
from twofapi_middleware import crypto
from twofapi_middleware.constants import (
    AUTH_TAG,
    GROUP_ORDER,
    MAX_BODY_BYTES,
    REQUEST_ID_PATTERN,
)
from twofapi_middleware.errors import StorageUnavailable
from twofapi_middleware.tokens import VerificationKey
from twofapi_middleware.wire import iso_time

JSON = "application/json"
REALM = 'Bearer realm="2fapi"'
INVALID_TOKEN = 'Bearer realm="2fapi", error="invalid_token"'

OWNED = {
    "/health": ("GET",),
    "/.well-known/jwks.json": ("GET",),
    "/v1/clients": ("POST",),
    "/v1/challenges": ("POST",),
    "/v1/verify": ("POST",),
    "/v1/clients/alice": ("DELETE",),
    "/v1/clients/alice/commitment": ("PUT",),
    "/v1/clients/alice/suspend": ("POST",),
    "/v1/clients/alice/recover": ("POST",),
    "/v1/clients/alice/reactivate": ("POST",),
}


def allowed(methods: tuple[str, ...]) -> set[str]:
    extra = {"HEAD"} if "GET" in methods else set()
    return {*methods, *extra, "OPTIONS"}


def allow_header(reply: Reply) -> set[str]:
    return {part.strip() for part in reply.headers["allow"].split(",")}


def b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def without_instance(reply: Reply) -> tuple[int, dict[str, str], dict[str, Any]]:
    headers = {k: v for k, v in reply.headers.items() if k != "x-request-id"}
    body = dict(reply.json)
    body.pop("instance")
    return reply.status, headers, body


def record_of(api: Api, client_id: str) -> Any:
    record = api.storage.get_client(client_id)
    assert record is not None
    return record


@dataclass
class World:
    """``alice`` enrolled and logged in; ``bob`` enrolled."""

    api: Api
    opening: crypto.Opening
    words: list[str]
    token: str
    binding: bytes
    bob: crypto.Opening


@pytest.fixture
def world(api: Api) -> World:
    opening, _, words = enroll(api, "alice")
    bob, _, _ = enroll(api, "bob")
    token, binding = login(api, "alice", opening)
    return World(api, opening, words, token, binding, bob)


# -- headers of every middleware answer ---------------------------------------

Call = Callable[[World, dict[str, str]], Reply]


def _verify_ok(w: World, h: dict[str, str]) -> Reply:
    challenge, binding = issue_challenge(w.api, "alice")
    body = verify_body(w.opening, "alice", challenge, binding)
    return w.api.post("/v1/verify", body, headers=h)


def _verify_refused(w: World, h: dict[str, str]) -> Reply:
    challenge, binding = issue_challenge(w.api, "alice")
    body = verify_body(w.bob, "alice", challenge, binding)
    return w.api.post("/v1/verify", body, headers=h)


def _rotate(w: World, h: dict[str, str]) -> Reply:
    body = rotation_bodies(w.opening, crypto.Opening.generate())
    return w.api.put(
        "/v1/clients/alice/commitment", body, headers={**h, **bearer(w.token)}
    )


def _rotate_refused(w: World, h: dict[str, str]) -> Reply:
    body = rotation_bodies(w.bob, crypto.Opening.generate())
    return w.api.put(
        "/v1/clients/alice/commitment", body, headers={**h, **bearer(w.token)}
    )


def _challenge(client_id: str) -> Call:
    def call(w: World, h: dict[str, str]) -> Reply:
        body = {
            "clientIdentifier": client_id,
            "credential": CREDENTIAL,
            "channelBinding": b64(bytes(32)),
        }
        return w.api.post("/v1/challenges", body, headers=h)

    return call


MIDDLEWARE_ANSWERS: list[tuple[str, int, Call]] = [
    ("health", 200, lambda w, h: w.api.get("/health", headers=h)),
    ("health HEAD", 200, lambda w, h: w.api.head("/health", headers=h)),
    ("jwks", 200, lambda w, h: w.api.get("/.well-known/jwks.json", headers=h)),
    ("jwks HEAD", 200, lambda w, h: w.api.head("/.well-known/jwks.json", headers=h)),
    (
        "enroll",
        201,
        lambda w, h: w.api.post(
            "/v1/clients", enroll_body(crypto.Opening.generate(), "carol"), headers=h
        ),
    ),
    (
        "enroll refused",
        409,
        lambda w, h: w.api.post(
            "/v1/clients", enroll_body(crypto.Opening.generate(), "alice"), headers=h
        ),
    ),
    ("challenge", 200, _challenge("alice")),
    ("challenge refused", 401, _challenge("nobody")),
    ("verify", 200, _verify_ok),
    ("verify refused", 401, _verify_refused),
    ("validation failed", 400, lambda w, h: w.api.post("/v1/verify", {}, headers=h)),
    (
        "malformed body",
        400,
        lambda w, h: w.api.post("/v1/verify", body=b"[", headers=h),
    ),
    (
        "unsupported version",
        400,
        lambda w, h: w.api.post(
            "/v1/challenges",
            {
                "clientIdentifier": "alice",
                "credential": CREDENTIAL,
                "channelBinding": b64(bytes(32)),
                "protocolVersion": "2.0",
            },
            headers=h,
        ),
    ),
    ("method not allowed", 405, lambda w, h: w.api.get("/v1/verify", headers=h)),
    (
        "payload too large",
        413,
        lambda w, h: w.api.post(
            "/v1/verify", body=b" " * (MAX_BODY_BYTES + 1), headers=h
        ),
    ),
    (
        "unsupported media type",
        415,
        lambda w, h: w.api.post("/v1/verify", {}, headers=h, content_type="text/plain"),
    ),
    ("guard without token", 401, lambda w, h: w.api.get("/v1/resources/x", headers=h)),
    (
        "guard with a bad token",
        401,
        lambda w, h: w.api.get("/v1/resources/x", headers={**h, **bearer("x.y.z")}),
    ),
    ("rotate", 200, _rotate),
    ("rotate refused", 401, _rotate_refused),
    (
        "rotate unauthorized",
        401,
        lambda w, h: w.api.put(
            "/v1/clients/alice/commitment",
            rotation_bodies(w.opening, crypto.Opening.generate()),
            headers=h,
        ),
    ),
    (
        "revoke",
        204,
        lambda w, h: w.api.delete("/v1/clients/bob", headers={**h, **ADMIN}),
    ),
    ("revoke forbidden", 403, lambda w, h: w.api.delete("/v1/clients/bob", headers=h)),
    (
        "suspend",
        204,
        lambda w, h: w.api.post("/v1/clients/bob/suspend", headers={**h, **ADMIN}),
    ),
    (
        "recover",
        200,
        lambda w, h: w.api.post(
            "/v1/clients/alice/recover",
            recovery_body(w.words, crypto.Opening.generate(), "alice"),
            headers=h,
        ),
    ),
    (
        "recover refused",
        401,
        lambda w, h: w.api.post(
            "/v1/clients/bob/recover",
            recovery_body(w.words, crypto.Opening.generate(), "bob"),
            headers=h,
        ),
    ),
    (
        "reactivate",
        200,
        lambda w, h: w.api.post(
            "/v1/clients/bob/reactivate",
            reactivation_body(crypto.Opening.generate()),
            headers={**h, **ADMIN},
        ),
    ),
    (
        "reactivate refused",
        401,
        lambda w, h: w.api.post(
            "/v1/clients/nobody/reactivate",
            reactivation_body(crypto.Opening.generate()),
            headers={**h, **ADMIN},
        ),
    ),
    ("options", 204, lambda w, h: w.api.options("/v1/verify", headers=h)),
]
ANSWER_IDS = [name for name, _, _ in MIDDLEWARE_ANSWERS]


def assert_middleware_headers(reply: Reply, request_id: str | None = None) -> None:
    headers = reply.headers
    assert headers.get("cache-control") == "no-store", headers
    assert headers.get("x-content-type-options") == "nosniff", headers
    assert REQUEST_ID_PATTERN.fullmatch(headers.get("x-request-id", "")), headers
    if request_id is not None:
        assert headers["x-request-id"] == request_id
    if reply.status == 204:
        assert reply.body == b""
    else:
        expected = JSON if reply.status < 400 else PROBLEM
        assert headers.get("content-type") == expected, headers
    if reply.status >= 400 and reply.body:  # HEAD answers may lose the body
        assert reply.json["instance"] == headers["x-request-id"]


@pytest.mark.parametrize(("name", "status", "call"), MIDDLEWARE_ANSWERS, ids=ANSWER_IDS)
def test_every_middleware_answer_carries_the_headers_and_echoes_the_request_id(
    world: World, name: str, status: int, call: Call
) -> None:
    request_id = "req-1.2:3_Z" + "x" * 117
    assert len(request_id) == 128

    reply = call(world, {"X-Request-Id": request_id})

    assert reply.status == status, reply
    assert_middleware_headers(reply, request_id)


BAD_REQUEST_IDS = ["a" * 129, "bad id", "bad/id", "bad;id", "bad@id", "{}", ""]


@pytest.mark.parametrize("request_id", BAD_REQUEST_IDS)
@pytest.mark.parametrize(
    ("name", "status", "call"),
    [MIDDLEWARE_ANSWERS[0], MIDDLEWARE_ANSWERS[10], MIDDLEWARE_ANSWERS[-1]],
    ids=["health", "problem", "options"],
)
def test_a_malformed_request_id_is_replaced(
    world: World, name: str, status: int, call: Call, request_id: str
) -> None:
    reply = call(world, {"X-Request-Id": request_id})

    assert reply.status == status, reply
    assert_middleware_headers(reply)
    assert reply.headers["x-request-id"] != request_id


def test_request_ids_are_fresh_for_each_request(api: Api) -> None:
    seen = {api.get("/health").headers["x-request-id"] for _ in range(20)}
    assert len(seen) == 20


def test_the_apps_own_answers_pass_through_untouched(world: World) -> None:
    headers = {**bearer(world.token), "X-Request-Id": "mine"}
    for path, status in (("/v1/resources/alice", 200), ("/v1/unknown", 404)):
        reply = world.api.get(path, headers=headers)
        assert reply.status == status, reply
        assert set(reply.headers) == {"content-type", "content-length"}, reply.headers
        assert reply.headers["content-type"] == JSON


# -- methods -------------------------------------------------------------------

WRONG_METHODS = [
    pytest.param(path, method, id=f"{method} {path}")
    for path, methods in OWNED.items()
    for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH")
    if method not in allowed(methods)
]


@pytest.mark.parametrize(("path", "method"), WRONG_METHODS)
def test_a_wrong_method_on_an_owned_path_is_a_405_with_allow(
    world: World, path: str, method: str
) -> None:
    before = record_of(world.api, "alice")

    reply = world.api.request(method, path, json={}, headers=ADMIN)

    assert reply.status == 405, reply
    assert allow_header(reply) == allowed(OWNED[path])
    assert_middleware_headers(reply)
    if method != "HEAD":
        assert_problem(reply, 405, "method-not-allowed")
    assert record_of(world.api, "alice") == before


@pytest.mark.parametrize("path", list(OWNED))
def test_options_is_a_204_with_allow(api: Api, path: str) -> None:
    reply = api.options(path)

    assert reply.status == 204, reply
    assert allow_header(reply) == allowed(OWNED[path])
    assert_middleware_headers(reply)


@pytest.mark.parametrize("path", ["/health", "/.well-known/jwks.json"])
def test_head_answers_like_get_without_a_body(api: Api, path: str) -> None:
    got = api.get(path)
    head = api.head(path)

    assert head.status == got.status == 200
    assert head.body == b""
    assert head.headers["content-length"] == str(len(got.body))
    assert head.headers["content-type"] == JSON
    assert_middleware_headers(head)


class _DownStorage:
    """A backend that is down: every call fails."""

    blocking = False

    def __getattr__(self, name: str) -> Any:
        raise StorageUnavailable(f"{name}: down")


def test_health_and_jwks_are_static_and_touch_no_storage(api: Api) -> None:
    api.service.storage = _DownStorage()  # type: ignore[assignment]

    health = api.get("/health")
    jwks = api.get("/.well-known/jwks.json")
    challenge = api.post(
        "/v1/challenges",
        {
            "clientIdentifier": "a",
            "credential": CREDENTIAL,
            "channelBinding": b64(bytes(32)),
        },
    )

    assert health.status == 200
    assert health.json == {"status": "ok", "version": "1.0"}
    assert jwks.status == 200
    assert_problem(challenge, 503, "storage-unavailable")
    assert int(challenge.headers["retry-after"]) >= 1


# -- JWKS and tokens -------------------------------------------------------------


def jwks_key(api: Api) -> tuple[dict[str, str], Ed25519PublicKey]:
    keys = api.get("/.well-known/jwks.json").json["keys"]
    assert len(keys) == 1
    key = keys[0]
    return key, Ed25519PublicKey.from_public_bytes(b64url_decode(key["x"]))


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638: SHA-256 of the required members, sorted, no whitespace."""
    members = {name: jwk[name] for name in ("crv", "kty", "x")}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_rfc8037_thumbprint_vector() -> None:
    # RFC 8037 appendix A.3.
    public = b64url_decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
    key = VerificationKey.from_public_bytes(public)
    assert key.kid == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_jwks_kid_is_the_rfc7638_thumbprint_and_verifies_tokens(world: World) -> None:
    key, public = jwks_key(world.api)

    assert key["kty"] == "OKP" and key["crv"] == "Ed25519"
    assert key["kid"] == thumbprint(key)
    assert "d" not in key
    header = jwt.get_unverified_header(world.token)
    assert header == {"alg": "EdDSA", "typ": "JWT", "kid": key["kid"]}
    claims = jwt.decode(
        world.token, public, algorithms=["EdDSA"], audience="default", issuer="2fapi"
    )
    assert claims["sub"] == "alice"
    forged = world.token[:-4] + ("AAAA" if world.token[-4:] != "AAAA" else "BBBB")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged, public, algorithms=["EdDSA"], audience="default")


@pytest.mark.parametrize("target", [None, "default", "other"])
def test_token_claims(make_api: Callable[..., Api], target: str | None) -> None:
    api = make_api(audiences=("default", "other"))
    opening, _, _ = enroll(api, "alice")
    challenge, binding = issue_challenge(api, "alice")
    extra = {} if target is None else {"targetAudience": target}
    now = api.clock()

    reply = api.post(
        "/v1/verify", verify_body(opening, "alice", challenge, binding, **extra)
    )

    assert reply.status == 200, reply
    answer = reply.json
    assert answer["tokenType"] == "Bearer"
    assert answer["expiresIn"] == 900
    key, public = jwks_key(api)
    token = answer["accessToken"]
    audience = target or "default"
    claims = jwt.decode(
        token, public, algorithms=["EdDSA"], audience=audience, issuer="2fapi"
    )
    assert set(claims) == {"iss", "sub", "aud", "iat", "exp", "jti", "cnf", "cv"}
    assert claims["iss"] == "2fapi"
    assert claims["sub"] == "alice"
    assert claims["aud"] == audience
    assert claims["iat"] == int(now)
    assert claims["exp"] == claims["iat"] + 900
    assert answer["expiresAt"] == iso_time(claims["exp"])
    assert len(claims["jti"]) == 22 and len(b64url_decode(claims["jti"])) == 16
    sha = hashlib.sha256(binding).digest()
    assert claims["cnf"] == {
        "cb#S256": base64.urlsafe_b64encode(sha).rstrip(b"=").decode()
    }
    assert claims["cv"] == 1
    assert jwt.get_unverified_header(token) == {
        "alg": "EdDSA",
        "typ": "JWT",
        "kid": key["kid"],
    }
    resource = api.get("/v1/resources/r1", headers=bearer(token))
    assert resource.json == {
        "resourceId": "r1",
        "clientIdentifier": "alice",
        "audience": audience,
        "data": {},
    }


def test_issuer_is_configurable(make_api: Callable[..., Api]) -> None:
    api = make_api(issuer="https://auth.example")
    opening, _, _ = enroll(api, "alice")
    token, _ = login(api, "alice", opening)

    assert jwt.decode(token, options={"verify_signature": False})["iss"] == (
        "https://auth.example"
    )


def test_token_ids_are_unique(world: World) -> None:
    tokens = [login(world.api, "alice", world.opening)[0] for _ in range(5)]
    ids = {jwt.decode(t, options={"verify_signature": False})["jti"] for t in tokens}
    assert len(ids) == 5


@pytest.mark.parametrize("leeway", [10, 0, 60])
def test_expiry_allows_the_configured_leeway(
    make_api: Callable[..., Api], leeway: int
) -> None:
    api = make_api(token_leeway_seconds=leeway)
    opening, _, _ = enroll(api, "alice")
    start = api.clock()
    token, _ = login(api, "alice", opening)
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]

    api.clock.set(exp + leeway - 0.5)
    assert api.get("/v1/resources/r", headers=bearer(token)).status == 200
    api.clock.set(exp + leeway)
    late = api.get("/v1/resources/r", headers=bearer(token))
    assert_problem(late, 401, "unauthorized")
    assert late.headers["www-authenticate"] == INVALID_TOKEN

    # A token from the future is refused beyond the leeway too.
    api.clock.set(int(start) - leeway)
    assert api.get("/v1/resources/r", headers=bearer(token)).status == 200
    api.clock.set(int(start) - leeway - 1)
    early = api.get("/v1/resources/r", headers=bearer(token))
    assert_problem(early, 401, "unauthorized")


def test_channel_binding_header(world: World) -> None:
    api, token = world.api, world.token
    good = api.get("/v1/resources/r", headers=bearer(token, world.binding))
    assert good.status == 200, good

    for value in [b64(secrets.token_bytes(32)), "not base64!", "AA=", b64(bytes(48))]:
        headers = {**bearer(token), "X-Channel-Binding": value}
        reply = api.get("/v1/resources/r", headers=headers)
        assert_problem(reply, 401, "unauthorized")
        assert reply.headers["www-authenticate"] == INVALID_TOKEN

    # Without the header, the default setting lets the token through.
    assert api.get("/v1/resources/r", headers=bearer(token)).status == 200


def test_require_channel_binding(make_api: Callable[..., Api]) -> None:
    api = make_api(require_channel_binding=True)
    opening, _, _ = enroll(api, "alice")
    token, binding = login(api, "alice", opening)

    missing = api.get("/v1/resources/r", headers=bearer(token))
    assert_problem(missing, 401, "unauthorized")
    assert missing.headers["www-authenticate"] == INVALID_TOKEN
    wrong = api.get("/v1/resources/r", headers=bearer(token, bytes(32)))
    assert_problem(wrong, 401, "unauthorized")
    assert api.get("/v1/resources/r", headers=bearer(token, binding)).status == 200


# -- the guard on every path the middleware does not own ------------------------

UNOWNED = [
    "/",
    "/healthz",
    "/health/",
    "/v1/unknown",
    "/v1/Clients",
    "/v1/clients/",
    "/v1/clients/alice/",
    "/v1/clients/alice/unknown",
    "/v1/clients/alice/commitment/x",
    "/v1/clients/alice/suspend/",
    "/v1/challenges/x",
    "/v1/verify/",
    "/.well-known/jwks.json/x",
    "/v1/resources/not an id",
]


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
@pytest.mark.parametrize("path", UNOWNED)
def test_unowned_paths_go_through_the_guard_to_the_app(
    world: World, path: str, method: str
) -> None:
    api = world.api
    body = b"{not json"

    anonymous = api.request(method, path, body=body, content_type="text/plain")
    assert_problem(anonymous, 401, "unauthorized")
    assert anonymous.headers["www-authenticate"] == REALM
    assert_middleware_headers(anonymous)

    forged = api.request(method, path, body=body, headers=bearer("a.b.c"))
    assert_problem(forged, 401, "unauthorized")
    assert forged.headers["www-authenticate"] == INVALID_TOKEN

    reply = api.request(
        method, path, body=body, headers=bearer(world.token), content_type="text/plain"
    )
    assert reply.status == 404, reply
    assert reply.json == {"error": "not found"}
    assert "x-request-id" not in reply.headers


def test_only_unauthorized_answers_carry_www_authenticate(world: World) -> None:
    for name, _, call in MIDDLEWARE_ANSWERS:
        reply = call(world, {})
        is_unauthorized = (
            reply.status == 401 and reply.json["type"] == "urn:2fapi:error:unauthorized"
        )
        assert ("www-authenticate" in reply.headers) == is_unauthorized, name


# -- refusals are indistinguishable ----------------------------------------------


def _fresh(api: Api, client_id: str, opening: crypto.Opening) -> dict[str, Any]:
    challenge, binding = issue_challenge(api, client_id)
    return verify_body(opening, client_id, challenge, binding)


def test_verification_refusals_are_indistinguishable(world: World) -> None:
    api, alice, bob = world.api, world.opening, world.bob
    replies = []

    body = _fresh(api, "alice", alice)
    body["challengeId"] = "unknownchallengeid0000"
    replies.append(api.post("/v1/verify", body))  # unknown challenge

    theirs = _fresh(api, "alice", alice)
    theirs["clientIdentifier"] = "bob"
    replies.append(api.post("/v1/verify", theirs))  # another client's

    body = _fresh(api, "alice", alice)
    body["channelBinding"] = b64(secrets.token_bytes(32))
    replies.append(api.post("/v1/verify", body))  # binding mismatch

    replies.append(api.post("/v1/verify", _fresh(api, "alice", bob)))  # wrong proof

    body = _fresh(api, "alice", alice)
    raw = base64.b64decode(body["proof"])
    body["proof"] = b64(raw[:32] + GROUP_ORDER.to_bytes(32, "little") + raw[64:])
    replies.append(api.post("/v1/verify", body))  # non-canonical

    body = _fresh(api, "alice", alice)
    api.clock.advance(120)
    replies.append(api.post("/v1/verify", body))  # expired

    body = _fresh(api, "alice", alice)
    assert api.post("/v1/verify", body).status == 200
    replies.append(api.post("/v1/verify", body))  # replay

    body = _fresh(api, "alice", alice)
    body["clientIdentifier"] = "nobody"
    replies.append(api.post("/v1/verify", body))  # unknown client

    for reply in replies:
        assert_problem(reply, 401, "verification-refused")
    shapes = [without_instance(reply) for reply in replies]
    assert all(shape == shapes[0] for shape in shapes), shapes
    assert len({reply.json["instance"] for reply in replies}) == len(replies)


def test_enrollment_refusals_are_indistinguishable(world: World) -> None:
    api = world.api
    replies = []

    replies.append(
        api.post("/v1/clients", enroll_body(crypto.Opening.generate(), "alice"))
    )

    body = enroll_body(crypto.Opening.generate(), "carol")
    body["proofOfPossession"] = enroll_body(crypto.Opening.generate(), "carol")[
        "proofOfPossession"
    ]
    replies.append(api.post("/v1/clients", body))  # bad proof

    proof = enroll_body(crypto.Opening.generate(), "carol")["proofOfPossession"]
    for commitment in (bytes(32), b"\xff" * 32, bytes(31) + b"\x80"):
        replies.append(
            api.post(
                "/v1/clients",
                {
                    "clientIdentifier": "carol",
                    "commitment": b64(commitment),
                    "proofOfPossession": proof,
                },
            )
        )

    # Suspended and revoked identifiers, even with their own commitment.
    dave = crypto.Opening.generate()
    assert api.post("/v1/clients", enroll_body(dave, "dave")).status == 201
    assert api.post("/v1/clients/dave/suspend", headers=ADMIN).status == 204
    replies.append(api.post("/v1/clients", enroll_body(dave, "dave")))
    assert api.delete("/v1/clients/dave", headers=ADMIN).status == 204
    replies.append(api.post("/v1/clients", enroll_body(dave, "dave")))

    for reply in replies:
        assert_problem(reply, 409, "enrollment-refused")
    shapes = [without_instance(reply) for reply in replies]
    assert all(shape == shapes[0] for shape in shapes), shapes
    assert api.storage.get_client("carol") is None


def test_challenge_refusals_are_indistinguishable(make_api: Callable[..., Api]) -> None:
    good = b"good-first-factor"
    api = make_api(check_credential=lambda client_id, credential: credential == good)

    def ask(client_id: str, credential: bytes = good) -> Reply:
        return api.post(
            "/v1/challenges",
            {
                "clientIdentifier": client_id,
                "credential": b64(credential),
                "channelBinding": b64(secrets.token_bytes(32)),
            },
        )

    for name in ("suspended", "revoked", "locked", "alice"):
        enroll(api, name)
    assert api.post("/v1/clients/suspended/suspend", headers=ADMIN).status == 204
    assert api.delete("/v1/clients/revoked", headers=ADMIN).status == 204
    stranger = crypto.Opening.generate()
    for _ in range(3):
        reply = ask("locked")
        assert reply.status == 200
        body = verify_body(
            stranger,
            "locked",
            reply.json,
            base64.b64decode(reply.json["channelBinding"]),
        )
        assert api.post("/v1/verify", body).status == 401
    assert record_of(api, "locked").locked_until > api.clock()

    replies = [
        ask("nobody"),
        ask("suspended"),
        ask("revoked"),
        ask("locked"),
        ask("alice", b"wrong-first-factor"),
    ]

    for reply in replies:
        assert_problem(reply, 401, "challenge-refused")
    shapes = [without_instance(reply) for reply in replies]
    assert all(shape == shapes[0] for shape in shapes), shapes
    assert ask("alice").status == 200


# -- which error wins --------------------------------------------------------------


def test_error_precedence_413_429_415_400(make_api: Callable[..., Api]) -> None:
    api = make_api(rate_limit_per_address=2, rate_limit_per_client=0)
    oversize = b"[" * (MAX_BODY_BYTES + 1)

    for _ in range(2):
        assert_problem(api.post("/v1/verify", body=b"["), 400, "malformed-body")

    # Over the limit now: everything is a 429, except a body that is too large.
    reply = api.post("/v1/verify", body=oversize, content_type="text/plain")
    assert_problem(reply, 413, "payload-too-large")
    reply = api.post("/v1/verify", body=b"[", content_type="text/plain")
    assert_problem(reply, 429, "rate-limited")
    assert int(reply.headers["retry-after"]) >= 1
    reply = api.post("/v1/clients/bad*id/reactivate", body=b"[", content_type=None)
    assert_problem(reply, 429, "rate-limited")

    api.clock.advance(61)
    reply = api.post("/v1/verify", body=b"[", content_type="text/plain")
    assert_problem(reply, 415, "unsupported-media-type")
    reply = api.post("/v1/verify", body=b"[")
    assert_problem(reply, 400, "malformed-body")

    api.clock.advance(61)
    reply = api.post("/v1/clients/alice/reactivate", {"newCommitment": 1})
    assert_problem(reply, 400, "validation-failed", "newCommitment")
    reply = api.post("/v1/clients/bad*id/reactivate", {"newCommitment": 1})
    assert_problem(reply, 400, "validation-failed", "id")


def test_refused_requests_count_toward_the_rate_limit(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(rate_limit_per_address=4, rate_limit_per_client=0)

    assert api.post("/v1/verify", body=b"{}", content_type="text/plain").status == 415
    assert api.post("/v1/verify", body=b"[").status == 400
    assert api.post("/v1/verify", body=b" " * (MAX_BODY_BYTES + 1)).status == 413
    assert api.post("/v1/verify", {}).status == 400

    assert_problem(api.post("/v1/verify", {}), 429, "rate-limited")
    # /health is not a /v1 endpoint: never limited.
    assert api.get("/health").status == 200


def test_per_client_rate_limit_counts_per_endpoint(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(rate_limit_per_address=0, rate_limit_per_client=2)
    opening, _, _ = enroll(api, "alice")

    issue_challenge(api, "alice")
    challenge, binding = issue_challenge(api, "alice")
    assert_problem(
        api.post(
            "/v1/challenges",
            {
                "clientIdentifier": "alice",
                "credential": CREDENTIAL,
                "channelBinding": b64(bytes(32)),
            },
        ),
        429,
        "rate-limited",
    )
    # Another endpoint has its own budget; the pending challenge still works.
    reply = api.post("/v1/verify", verify_body(opening, "alice", challenge, binding))
    assert reply.status == 200, reply


# -- the verify table ---------------------------------------------------------------


def test_another_clients_challenge_stays_untouched(world: World) -> None:
    api = world.api
    challenge, binding = issue_challenge(api, "alice")
    nonce = base64.b64decode(challenge["nonce"])
    theirs = {
        "clientIdentifier": "bob",
        "challengeId": challenge["challengeId"],
        "proof": b64(auth_proof(world.bob, "bob", nonce, binding)),
        "channelBinding": b64(binding),
        "domainSeparationTag": AUTH_TAG,
    }

    assert_problem(api.post("/v1/verify", theirs), 401, "verification-refused")

    assert record_of(api, "bob").failed_attempts == 0
    assert record_of(api, "alice").failed_attempts == 0
    mine = verify_body(world.opening, "alice", challenge, binding)
    assert api.post("/v1/verify", mine).status == 200


def test_an_expired_challenge_is_refused_and_not_counted(world: World) -> None:
    api = world.api
    challenge, binding = issue_challenge(api, "alice")
    body = verify_body(world.opening, "alice", challenge, binding)

    api.clock.advance(120)
    assert_problem(api.post("/v1/verify", body), 401, "verification-refused")
    assert record_of(api, "alice").failed_attempts == 0

    challenge, binding = issue_challenge(api, "alice")
    api.clock.advance(119.9)
    body = verify_body(world.opening, "alice", challenge, binding)
    assert api.post("/v1/verify", body).status == 200


def test_a_challenge_is_used_once(world: World) -> None:
    api = world.api
    body = _fresh(api, "alice", world.opening)

    assert api.post("/v1/verify", body).status == 200
    assert_problem(api.post("/v1/verify", body), 401, "verification-refused")
    assert record_of(api, "alice").failed_attempts == 0


def test_a_new_challenge_withdraws_the_pending_one(world: World) -> None:
    api = world.api
    first = _fresh(api, "alice", world.opening)
    second = _fresh(api, "alice", world.opening)

    assert_problem(api.post("/v1/verify", first), 401, "verification-refused")
    assert api.post("/v1/verify", second).status == 200


def test_binding_mismatch_counts_and_spends_the_challenge(world: World) -> None:
    api = world.api
    challenge, binding = issue_challenge(api, "alice")
    other = secrets.token_bytes(32)
    # A proof that is right for the other binding: only the binding is wrong.
    mismatched = verify_body(world.opening, "alice", challenge, other)

    assert_problem(api.post("/v1/verify", mismatched), 401, "verification-refused")
    assert record_of(api, "alice").failed_attempts == 1

    right = verify_body(world.opening, "alice", challenge, binding)
    assert_problem(api.post("/v1/verify", right), 401, "verification-refused")
    assert record_of(api, "alice").failed_attempts == 1


def test_a_wrong_proof_counts_and_spends_the_challenge(world: World) -> None:
    api = world.api
    challenge, binding = issue_challenge(api, "alice")

    wrong = verify_body(world.bob, "alice", challenge, binding)
    assert_problem(api.post("/v1/verify", wrong), 401, "verification-refused")
    assert record_of(api, "alice").failed_attempts == 1

    right = verify_body(world.opening, "alice", challenge, binding)
    assert_problem(api.post("/v1/verify", right), 401, "verification-refused")

    # A success clears the count.
    assert api.post("/v1/verify", _fresh(api, "alice", world.opening)).status == 200
    assert record_of(api, "alice").failed_attempts == 0


def _non_canonical_scalar(proof: bytes) -> bytes:
    return proof[:32] + GROUP_ORDER.to_bytes(32, "little") + proof[64:]


def _non_canonical_r(proof: bytes) -> bytes:
    return proof[:64] + (GROUP_ORDER + 1).to_bytes(32, "little")


def _top_bit(proof: bytes) -> bytes:
    return proof[:31] + bytes([proof[31] | 0x80]) + proof[32:]


def _identity(proof: bytes) -> bytes:
    return bytes(32) + proof[32:]


def _not_a_point(proof: bytes) -> bytes:
    return b"\xff" * 31 + b"\x7f" + proof[32:]


@pytest.mark.parametrize(
    "spoil",
    [_non_canonical_scalar, _non_canonical_r, _top_bit, _identity, _not_a_point],
    ids=["z_s >= L", "z_r >= L", "A top bit", "A identity", "A not a point"],
)
def test_a_non_canonical_proof_does_not_count_but_spends_the_challenge(
    world: World, spoil: Callable[[bytes], bytes]
) -> None:
    api = world.api
    challenge, binding = issue_challenge(api, "alice")
    body = verify_body(world.opening, "alice", challenge, binding)
    spoiled = dict(body, proof=b64(spoil(base64.b64decode(body["proof"]))))

    assert_problem(api.post("/v1/verify", spoiled), 401, "verification-refused")
    assert record_of(api, "alice").failed_attempts == 0
    assert_problem(api.post("/v1/verify", body), 401, "verification-refused")


def test_a_suspended_client_gets_no_token_and_its_tokens_stop(world: World) -> None:
    api = world.api
    challenge, binding = issue_challenge(api, "alice")
    assert api.post("/v1/clients/alice/suspend", headers=ADMIN).status == 204

    body = verify_body(world.opening, "alice", challenge, binding)
    assert_problem(api.post("/v1/verify", body), 401, "verification-refused")
    assert record_of(api, "alice").failed_attempts == 0
    reply = api.get("/v1/resources/r", headers=bearer(world.token))
    assert_problem(reply, 401, "unauthorized")
    assert reply.headers["www-authenticate"] == INVALID_TOKEN
