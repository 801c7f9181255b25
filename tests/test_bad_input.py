"""Bad input on every field of every body endpoint, on both adapters.

PROTOCOL.md sections 1, 5 and 9: every malformed field is a 400
``validation-failed`` naming it, every malformed body a 400
``malformed-body`` (or 413, 415), the first bad field in the listed order is
the one named, and a 4xx found before the work starts changes no state.

Each case starts from a scene: ``alice`` enrolled, holding a token, with a
live challenge. The bad request is otherwise a *valid* one, so a server that
let the bad field through would do real work (enroll, rotate, recover,
reactivate, take the challenge). Afterwards alice's stored record is
unchanged and the live challenge still verifies.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from mnemonic import Mnemonic

from helpers import (
    ADMIN,
    Api,
    Reply,
    assert_problem,
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
from twofapi_middleware.constants import MAX_BODY_BYTES
from twofapi_middleware.models import ClientRecord

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
MISSING: Any = object()

# -- the scene ---------------------------------------------------------------


@dataclass
class Scene:
    api: Api
    opening: crypto.Opening
    words: list[str]
    token: str
    token_binding: bytes
    challenge: dict[str, Any]
    binding: bytes
    record: ClientRecord

    def assert_untouched(self) -> None:
        """Nothing changed: same record, no new client, the challenge lives."""
        api = self.api
        assert api.storage.get_client("alice") == self.record
        assert api.storage.get_client("bob") is None
        body = verify_body(self.opening, "alice", self.challenge, self.binding)
        reply = api.post("/v1/verify", body)
        assert reply.status == 200, reply


@pytest.fixture
def scene(api: Api) -> Scene:
    opening, _, words = enroll(api, "alice")
    token, token_binding = login(api, "alice", opening)
    challenge, binding = issue_challenge(api, "alice")
    record = api.storage.get_client("alice")
    assert record is not None
    return Scene(api, opening, words, token, token_binding, challenge, binding, record)


# -- the endpoints, each with a valid request and its fields in order ----------


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # "{id}" stands for the client identifier
    fields: tuple[tuple[str, str], ...]  # (name, kind), in validation order
    build: Callable[[Scene], tuple[dict[str, Any], dict[str, str]]]

    def send(
        self,
        scene: Scene,
        body: Any = MISSING,
        *,
        client_id: str = "alice",
        raw: bytes | None = None,
        content_type: str | None = "application/json",
        credentials: bool = True,
    ) -> Reply:
        valid, headers = self.build(scene)
        path = self.path.replace("{id}", client_id)
        if raw is None:
            raw = json.dumps(valid if body is MISSING else body).encode()
        return scene.api.request(
            self.method,
            path,
            body=raw,
            headers=headers if credentials else {},
            content_type=content_type,
        )


def _enroll(scene: Scene) -> tuple[dict[str, Any], dict[str, str]]:
    return enroll_body(crypto.Opening.generate(), "bob"), {}


def _challenges(scene: Scene) -> tuple[dict[str, Any], dict[str, str]]:
    body = {
        "clientIdentifier": "alice",
        "credential": b64(secrets.token_bytes(16)),
        "channelBinding": b64(secrets.token_bytes(32)),
        "protocolVersion": "1.0",
    }
    return body, {}


def _verify(scene: Scene) -> tuple[dict[str, Any], dict[str, str]]:
    body = verify_body(
        scene.opening,
        "alice",
        scene.challenge,
        scene.binding,
        targetAudience="default",
    )
    return body, {}


def _rotate(scene: Scene) -> tuple[dict[str, Any], dict[str, str]]:
    body = rotation_bodies(scene.opening, crypto.Opening.generate())
    return body, bearer(scene.token, scene.token_binding)


def _recover(scene: Scene) -> tuple[dict[str, Any], dict[str, str]]:
    return recovery_body(scene.words, crypto.Opening.generate(), "alice"), {}


def _reactivate(scene: Scene) -> tuple[dict[str, Any], dict[str, str]]:
    return reactivation_body(crypto.Opening.generate()), dict(ADMIN)


ENDPOINTS = {
    "enroll": Endpoint(
        "POST",
        "/v1/clients",
        (
            ("clientIdentifier", "identifier"),
            ("commitment", "b64:32"),
            ("proofOfPossession", "b64:96"),
        ),
        _enroll,
    ),
    "challenges": Endpoint(
        "POST",
        "/v1/challenges",
        (
            ("clientIdentifier", "identifier"),
            ("credential", "credential"),
            ("channelBinding", "binding"),
            ("protocolVersion", "version"),
        ),
        _challenges,
    ),
    "verify": Endpoint(
        "POST",
        "/v1/verify",
        (
            ("clientIdentifier", "identifier"),
            ("challengeId", "challenge"),
            ("proof", "b64:96"),
            ("channelBinding", "binding"),
            ("domainSeparationTag", "tag"),
            ("targetAudience", "audience"),
        ),
        _verify,
    ),
    "rotate": Endpoint(
        "PUT",
        "/v1/clients/{id}/commitment",
        (
            ("currentProof", "b64:96"),
            ("newCommitment", "b64:32"),
            ("newCommitmentProof", "b64:96"),
        ),
        _rotate,
    ),
    "recover": Endpoint(
        "POST",
        "/v1/clients/{id}/recover",
        (
            ("recoveryWords", "words"),
            ("newCommitment", "b64:32"),
            ("newCommitmentProof", "b64:96"),
        ),
        _recover,
    ),
    "reactivate": Endpoint(
        "POST",
        "/v1/clients/{id}/reactivate",
        (("newCommitment", "b64:32"), ("newCommitmentProof", "b64:96")),
        _reactivate,
    ),
}

# -- bad values, as transforms of the valid one --------------------------------

Transform = Callable[[Any], Any]

WRONG_TYPES: list[tuple[str, Transform]] = [
    ("number", lambda v: 12345),
    ("null", lambda v: None),
    ("list", lambda v: [v]),
    ("object", lambda v: {"value": v}),
    ("bool", lambda v: True),
]


def _decoded(value: str) -> bytes:
    return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)


def _with_trailing_bits(value: str) -> str:
    body = value.rstrip("=")
    last = _ALPHABET.index(body[-1])
    return body[:-1] + _ALPHABET[last | 1] + value[len(body) :]


def _url_safe(size: int, plus: str, slash: str) -> Transform:
    data = (b"\xfb\xff\xbf" * 400)[:size]  # standard alphabet: "+/+/..."
    encoded = base64.b64encode(data).decode().replace("+", plus).replace("/", slash)
    return lambda v: encoded


def _bad_padding(size: int) -> list[tuple[str, Transform]]:
    canonical = -size % 3
    cases = []
    for count in (1, 2, 3):
        if count != canonical:
            cases.append(
                (f"padding x{count}", lambda v, n=count: v.rstrip("=") + "=" * n)
            )
    return cases


def _length_4k_plus_1(value: str) -> str:
    body = value.rstrip("=")
    return body + "A" * ((1 - len(body)) % 4)


def b64_cases(
    size: int, wrong_sizes: tuple[int, ...], *, exact: bool = True
) -> list[tuple[str, Transform]]:
    """Bad base64 spellings of a valid ``size``-byte value, and wrong sizes."""
    cases: list[tuple[str, Transform]] = [
        ("space inside", lambda v: v[:4] + " " + v[4:]),
        ("leading space", lambda v: " " + v),
        ("trailing newline", lambda v: v + "\n"),
        ("junk *", lambda v: v[:4] + "*" + v[5:]),
        ("junk inside a valid one", lambda v: v[:4] + "*" + v[4:]),
        ("url-safe -", _url_safe(size, "-", "A")),
        ("url-safe _", _url_safe(size, "A", "_")),
        ("non-ascii", lambda v: v[:4] + "é" + v[5:]),
        ("AA=", lambda v: "AA="),
        ("A===", lambda v: "A==="),
        ("AB== trailing bits", lambda v: "AB=="),
        ("padding inside", lambda v: v[:4] + "=" + v[4:]),
        ("length 4k+1", _length_4k_plus_1),
        ("empty", lambda v: ""),
        *_bad_padding(size),
    ]
    if size % 3:
        cases.append(("non-zero trailing bits", _with_trailing_bits))
    for wrong in wrong_sizes:
        cases.append((f"decodes to {wrong} bytes", lambda v, n=wrong: b64(b"\x01" * n)))
    if exact:
        cases.append(("one byte short", lambda v: b64(_decoded(v)[:-1])))
        cases.append(("one byte long", lambda v: b64(_decoded(v) + b"\x00")))
    return cases


IDENTIFIER_CASES: list[tuple[str, Transform]] = [
    ("empty", lambda v: ""),
    ("129 characters", lambda v: "a" * 129),
    ("trailing newline", lambda v: v + "\n"),
    ("trailing space", lambda v: v + " "),
    ("leading space", lambda v: " " + v),
    ("non-ascii", lambda v: v[:-1] + "é"),
    ("fullwidth letter", lambda v: "\uff41" + v[1:]),
    ("space inside", lambda v: v[:2] + " " + v[2:]),
    ("junk *", lambda v: v + "*"),
    ("slash", lambda v: v + "/x"),
    ("nul", lambda v: v + "\x00"),
]

CHALLENGE_ID_CASES: list[tuple[str, Transform]] = [
    ("empty", lambda v: ""),
    ("129 characters", lambda v: "a" * 129),
    ("trailing newline", lambda v: v + "\n"),
    ("padding", lambda v: v + "="),
    ("standard alphabet +", lambda v: v[:-1] + "+"),
    ("standard alphabet /", lambda v: v[:-1] + "/"),
    ("dot", lambda v: v[:-1] + "."),
    ("non-ascii", lambda v: v[:-1] + "é"),
    ("space inside", lambda v: v[:3] + " " + v[3:]),
]

TAG_CASES: list[tuple[str, Transform]] = [
    ("empty", lambda v: ""),
    ("the reference's other tag", lambda v: "2FApi-Sigma-v1"),
    ("trailing newline", lambda v: v + "\n"),
    ("lowercase", lambda v: v.lower()),
    ("leading space", lambda v: " " + v),
    ("nul", lambda v: v + "\x00"),
]

AUDIENCE_CASES: list[tuple[str, Transform]] = [
    ("empty", lambda v: ""),
    ("unknown", lambda v: "other"),
    ("trailing newline", lambda v: v + "\n"),
    ("uppercase", lambda v: v.upper()),
]

WORD_CASES: list[tuple[str, Transform]] = [
    ("one string", lambda v: " ".join(v)),
    ("11 words", lambda v: v[:11]),
    ("13 words", lambda v: [*v, v[0]]),
    ("empty list", lambda v: []),
    ("a number inside", lambda v: [*v[:11], 7]),
    ("a null inside", lambda v: [*v[:11], None]),
    ("a word outside the list", lambda v: [*v[:11], "notaword"]),
    ("a trailing newline", lambda v: [*v[:11], v[11] + "\n"]),
    ("bad checksum", lambda v: _with_bad_checksum(v)),
]


def _with_bad_checksum(words: list[str]) -> list[str]:
    """The phrase with a last word that fails the checksum.

    Any last word passes it for one phrase in sixteen, so the word is
    checked, not guessed.
    """
    mnemonic = Mnemonic("english")
    for word in mnemonic.wordlist:
        candidate = [*words[:11], word]
        if not mnemonic.check(" ".join(candidate)):
            return candidate
    raise AssertionError("every last word passes the checksum")


VERSION_STRINGS: list[tuple[str, Transform]] = [
    ("2.0", lambda v: "2.0"),
    ("1", lambda v: "1"),
    ("trailing newline", lambda v: "1.0\n"),
    ("empty", lambda v: ""),
]


def _cases_for(kind: str) -> list[tuple[str, Transform, str]]:
    """(label, transform, expected code) for one kind of field."""
    optional = kind in ("version", "audience")
    cases: list[tuple[str, Transform]] = [] if optional else [("missing", MISSING)]
    cases += WRONG_TYPES
    if kind == "identifier":
        cases += IDENTIFIER_CASES
    elif kind == "challenge":
        cases += CHALLENGE_ID_CASES
    elif kind == "tag":
        cases += TAG_CASES
    elif kind == "audience":
        cases += AUDIENCE_CASES
    elif kind == "words":
        cases += WORD_CASES
    elif kind == "credential":
        cases += b64_cases(16, (0, 1025), exact=False)
    elif kind == "binding":
        cases += b64_cases(32, (0, 16, 31, 33, 47, 49, 64))
    elif kind.startswith("b64:"):
        size = int(kind[4:])
        cases += b64_cases(size, (0, size * 2))
    result = [(label, fn, "validation-failed") for label, fn in cases]
    if kind == "version":
        result += [(label, fn, "unsupported-version") for label, fn in VERSION_STRINGS]
    return result


FIELD_CASES = [
    pytest.param(
        endpoint_name,
        field_name,
        transform,
        code,
        id=f"{endpoint_name}-{field_name}-{label}",
    )
    for endpoint_name, endpoint in ENDPOINTS.items()
    for field_name, kind in endpoint.fields
    for label, transform, code in _cases_for(kind)
]


@pytest.mark.parametrize(
    ("endpoint_name", "field_name", "transform", "code"), FIELD_CASES
)
def test_bad_field_is_named_and_changes_nothing(
    scene: Scene, endpoint_name: str, field_name: str, transform: Any, code: str
) -> None:
    endpoint = ENDPOINTS[endpoint_name]
    body, _ = endpoint.build(scene)
    if transform is MISSING:
        del body[field_name]
    else:
        body[field_name] = transform(body[field_name])

    reply = endpoint.send(scene, body)

    if code == "validation-failed":
        problem = assert_problem(reply, 400, code, field_name)
        others = [name for name, _ in endpoint.fields if name != field_name]
        assert not any(f"'{name}'" in problem["detail"] for name in others)
    else:
        problem = assert_problem(reply, 400, code)
        assert problem["supportedVersions"] == ["1.0"]
    scene.assert_untouched()


@pytest.mark.parametrize("endpoint_name", list(ENDPOINTS))
def test_first_bad_field_in_the_listed_order_is_named(
    scene: Scene, endpoint_name: str
) -> None:
    endpoint = ENDPOINTS[endpoint_name]
    names = [name for name, _ in endpoint.fields]

    for position, expected in enumerate(names):
        body, _ = endpoint.build(scene)
        for name in names[position:]:
            body[name] = 12345
        reply = endpoint.send(scene, body)
        problem = assert_problem(reply, 400, "validation-failed", expected)
        assert not any(
            f"'{name}'" in problem["detail"] for name in names[1:] if name != expected
        )
    scene.assert_untouched()


# -- the {id} path segment -----------------------------------------------------

ID_SEGMENT_CASES = [
    ("129 characters", "a" * 129),
    ("trailing newline", "alice\n"),
    ("trailing space", "alice "),
    ("non-ascii", "alicé"),
    ("junk *", "alice*"),
    ("colon", "ali:ce"),
    ("plus", "ali+ce"),
    ("equals", "alice="),
    ("nul", "alice\x00"),
]

PATH_ENDPOINTS = {
    "revoke": ("DELETE", "/v1/clients/{id}"),
    "suspend": ("POST", "/v1/clients/{id}/suspend"),
    "rotate": ("PUT", "/v1/clients/{id}/commitment"),
    "recover": ("POST", "/v1/clients/{id}/recover"),
    "reactivate": ("POST", "/v1/clients/{id}/reactivate"),
}


@pytest.mark.parametrize("credentials", [True, False], ids=["credentials", "none"])
@pytest.mark.parametrize(("label", "client_id"), ID_SEGMENT_CASES)
@pytest.mark.parametrize("endpoint_name", list(PATH_ENDPOINTS))
def test_bad_id_segment_is_a_400_before_403_and_401(
    scene: Scene, endpoint_name: str, label: str, client_id: str, credentials: bool
) -> None:
    method, path = PATH_ENDPOINTS[endpoint_name]
    path = path.replace("{id}", client_id)
    if endpoint_name in ENDPOINTS:
        body, headers = ENDPOINTS[endpoint_name].build(scene)
        raw: bytes | None = json.dumps(body).encode()
    else:
        headers, raw = dict(ADMIN), None
    if endpoint_name == "rotate":
        headers = bearer(scene.token, scene.token_binding)

    reply = scene.api.request(
        method, path, body=raw, headers=headers if credentials else {}
    )

    assert_problem(reply, 400, "validation-failed", "id")
    scene.assert_untouched()


@pytest.mark.parametrize("endpoint_name", ["rotate", "recover", "reactivate"])
def test_bad_id_segment_is_named_before_the_body_fields(
    scene: Scene, endpoint_name: str
) -> None:
    endpoint = ENDPOINTS[endpoint_name]
    body = {name: 12345 for name, _ in endpoint.fields}

    reply = endpoint.send(scene, body, client_id="alice\n")

    assert_problem(reply, 400, "validation-failed", "id")
    scene.assert_untouched()


@pytest.mark.parametrize("endpoint_name", ["rotate", "reactivate"])
def test_400_wins_over_401_and_403(scene: Scene, endpoint_name: str) -> None:
    endpoint = ENDPOINTS[endpoint_name]
    body, _ = endpoint.build(scene)
    body["newCommitment"] = "*"

    reply = endpoint.send(scene, body, credentials=False)

    assert_problem(reply, 400, "validation-failed", "newCommitment")
    scene.assert_untouched()


# -- bodies that are not a usable JSON object -------------------------------------


def _valid_text(scene: Scene, endpoint: Endpoint) -> str:
    body, _ = endpoint.build(scene)
    return json.dumps(body)


def _with_extra(scene: Scene, endpoint: Endpoint, extra: str) -> bytes:
    text = _valid_text(scene, endpoint)
    return (text[:-1] + ', "extra": ' + extra + "}").encode()


def _repeated_key(scene: Scene, endpoint: Endpoint) -> bytes:
    body, _ = endpoint.build(scene)
    first = next(iter(body))
    text = json.dumps(body)
    return (
        "{" + json.dumps(first) + ": " + json.dumps(body[first]) + ", " + text[1:]
    ).encode()


def _nested(depth: int) -> Callable[[Scene, Endpoint], bytes]:
    def build(scene: Scene, endpoint: Endpoint) -> bytes:
        return _with_extra(scene, endpoint, "[" * depth + "]" * depth)

    return build


def _not_utf8(scene: Scene, endpoint: Endpoint) -> bytes:
    return _with_extra(scene, endpoint, '"caf\xe9"').replace(
        "café".encode(), b"caf\xe9"
    )


MALFORMED_BODIES: list[tuple[str, Callable[[Scene, Endpoint], bytes]]] = [
    ("array", lambda s, e: b"[" + _valid_text(s, e).encode() + b"]"),
    ("empty array", lambda s, e: b"[]"),
    ("string", lambda s, e: json.dumps(_valid_text(s, e)).encode()),
    ("number", lambda s, e: b"42"),
    ("null", lambda s, e: b"null"),
    ("true", lambda s, e: b"true"),
    ("repeated key", _repeated_key),
    ("NaN", lambda s, e: _with_extra(s, e, "NaN")),
    ("Infinity", lambda s, e: _with_extra(s, e, "Infinity")),
    ("-Infinity", lambda s, e: _with_extra(s, e, "-Infinity")),
    ("33 levels deep", _nested(32)),
    ("30,000 levels deep", _nested(30_000)),
    ("30,000 levels unclosed", lambda s, e: b'{"a": ' + b"[" * 30_000),
    ("5,000-digit integer", lambda s, e: _with_extra(s, e, "1" + "0" * 4999)),
    ("negative 5,000-digit integer", lambda s, e: _with_extra(s, e, "-" + "9" * 5000)),
    ("latin-1 byte", _not_utf8),
    (
        "overlong utf-8",
        lambda s, e: _with_extra(s, e, '"x"').replace(b'"x"', b'"\xc0\xaf"'),
    ),
    ("utf-16", lambda s, e: _valid_text(s, e).encode("utf-16")),
    ("form encoded", lambda s, e: b"clientIdentifier=alice"),
    ("truncated", lambda s, e: _valid_text(s, e)[:-1].encode()),
    ("trailing garbage", lambda s, e: _valid_text(s, e).encode() + b"x"),
    ("two objects", lambda s, e: _valid_text(s, e).encode() * 2),
    ("single quotes", lambda s, e: _valid_text(s, e).replace('"', "'").encode()),
    ("empty", lambda s, e: b""),
    ("whitespace", lambda s, e: b"  \n"),
]


@pytest.mark.parametrize(
    ("label", "make_body"),
    MALFORMED_BODIES,
    ids=[label for label, _ in MALFORMED_BODIES],
)
@pytest.mark.parametrize("endpoint_name", list(ENDPOINTS))
def test_malformed_body_is_a_400_and_changes_nothing(
    scene: Scene, endpoint_name: str, label: str, make_body: Any
) -> None:
    endpoint = ENDPOINTS[endpoint_name]
    raw = make_body(scene, endpoint)
    assert len(raw) <= MAX_BODY_BYTES

    reply = endpoint.send(scene, raw=raw)

    problem = assert_problem(reply, 400, "malformed-body")
    assert "Field" not in problem["detail"]
    scene.assert_untouched()


@pytest.mark.parametrize("endpoint_name", list(ENDPOINTS))
def test_nesting_within_32_levels_is_accepted(scene: Scene, endpoint_name: str) -> None:
    # The object itself is level 1; 31 arrays inside it make 32.
    endpoint = ENDPOINTS[endpoint_name]
    body, _ = endpoint.build(scene)
    first = next(iter(body))
    body[first] = 12345
    nested: list[Any] = []
    for _ in range(30):
        nested = [nested]
    body["extra"] = nested
    raw = json.dumps(body).encode()

    reply = endpoint.send(scene, raw=raw)

    # Parsed fine: the answer is about the first field, not the body.
    assert_problem(reply, 400, "validation-failed", first)
    scene.assert_untouched()


CONTENT_TYPES = [
    "text/plain",
    None,
    "application/json; charset=latin-1",
    "application/json; charset=utf-16",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/jsonx",
    "application/json-patch+json",
    "application/problem+json",
    "application/json; foo=bar",
    "",
]


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
@pytest.mark.parametrize("endpoint_name", list(ENDPOINTS))
def test_wrong_content_type_is_a_415_and_changes_nothing(
    scene: Scene, endpoint_name: str, content_type: str | None
) -> None:
    reply = ENDPOINTS[endpoint_name].send(scene, content_type=content_type)

    assert_problem(reply, 415, "unsupported-media-type")
    scene.assert_untouched()


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        'application/json; charset="utf-8"',
        "Application/JSON",
    ],
)
def test_json_content_types_are_accepted(scene: Scene, content_type: str) -> None:
    body = verify_body(scene.opening, "alice", scene.challenge, scene.binding)

    reply = scene.api.post("/v1/verify", body, content_type=content_type)

    assert reply.status == 200, reply


@pytest.mark.parametrize("endpoint_name", list(ENDPOINTS))
def test_body_over_64_kib_is_a_413_and_changes_nothing(
    scene: Scene, endpoint_name: str
) -> None:
    endpoint = ENDPOINTS[endpoint_name]
    text = _valid_text(scene, endpoint)
    filler = MAX_BODY_BYTES + 1 - len(text) - len(', "extra": ""')
    raw = _with_extra(scene, endpoint, json.dumps("x" * filler))
    assert len(raw) == MAX_BODY_BYTES + 1

    reply = endpoint.send(scene, raw=raw)

    assert_problem(reply, 413, "payload-too-large")
    scene.assert_untouched()


def test_100000_levels_deep_is_refused_without_a_crash(scene: Scene) -> None:
    endpoint = ENDPOINTS["verify"]
    for raw in (b"[" * 100_000 + b"]" * 100_000, b"{" + b'"a":{' * 100_000):
        reply = endpoint.send(scene, raw=raw)
        assert_problem(reply, 413, "payload-too-large")
    scene.assert_untouched()


def test_body_of_exactly_64_kib_is_read(scene: Scene) -> None:
    endpoint = ENDPOINTS["verify"]
    text = _valid_text(scene, endpoint)
    filler = MAX_BODY_BYTES - len(text) - len(', "extra": ""')
    raw = _with_extra(scene, endpoint, json.dumps("x" * filler))
    assert len(raw) == MAX_BODY_BYTES

    reply = endpoint.send(scene, raw=raw)

    assert reply.status == 200, reply


def test_identifier_of_128_characters_is_accepted(api: Api) -> None:
    client_id = "A1._-" * 25 + "xyz"
    assert len(client_id) == 128

    opening, _, _ = enroll(api, client_id)
    login(api, client_id, opening)
