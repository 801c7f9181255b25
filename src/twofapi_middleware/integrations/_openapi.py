"""The middleware's own endpoints as an OpenAPI 3.1 fragment.

The middleware answers these paths before the application sees them, so no
framework can describe them from its routes. :func:`add_endpoints` merges
them into an application's document: paths under the ``2FApi`` tag, schemas
prefixed ``TwoFApi``, the bearer scheme and the admin header scheme.
"""

from __future__ import annotations

from typing import Any

from ..constants import (
    AUTH_TAG,
    CHALLENGE_TTL_SECONDS,
    PROTOCOL_VERSION,
    TOKEN_TTL_SECONDS,
)

__all__ = ["ADMIN_SCHEME", "TAG", "add_endpoints", "bearer_scheme_object"]

TAG = "2FApi"
ADMIN_SCHEME = "TwoFApiAdmin"

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/TwoFApi{name}"}


def _b64(description: str) -> Schema:
    return {"type": "string", "contentEncoding": "base64", "description": description}


def _object(required: list[str], **properties: Schema) -> Schema:
    return {"type": "object", "required": required, "properties": properties}


_CLIENT_ID: Schema = {
    "type": "string",
    "pattern": "^[A-Za-z0-9._-]{1,128}$",
    "description": "The client's identifier.",
}
_TIME: Schema = {"type": "string", "format": "date-time"}
_WORDS: Schema = {
    "type": "array",
    "items": {"type": "string"},
    "description": "A BIP-39 English phrase, shown once.",
}

_SCHEMAS: dict[str, Schema] = {
    "Problem": _object(
        ["type", "title", "status", "detail", "instance"],
        type={"type": "string", "examples": ["urn:2fapi:error:unauthorized"]},
        title={"type": "string"},
        status={"type": "integer"},
        detail={"type": "string"},
        instance={"type": "string", "description": "The request id."},
    ),
    "Health": _object(
        ["status", "version"],
        status={"const": "ok"},
        version={"type": "string"},
    ),
    "Jwks": _object(["keys"], keys={"type": "array", "items": {"type": "object"}}),
    "EnrollRequest": _object(
        ["clientIdentifier", "commitment", "proofOfPossession"],
        clientIdentifier=_CLIENT_ID,
        commitment=_b64("C = s·G + r·H, 32 bytes."),
        proofOfPossession=_b64("Proof of knowledge of (s, r), 96 bytes."),
    ),
    "Enrollment": _object(
        ["referenceId", "clientIdentifier"],
        referenceId={"type": "string"},
        clientIdentifier=_CLIENT_ID,
        recoveryWords=_WORDS,
    ),
    "ChallengeRequest": _object(
        ["clientIdentifier", "credential", "channelBinding"],
        clientIdentifier=_CLIENT_ID,
        credential=_b64("The first factor, 1 to 1024 bytes."),
        channelBinding=_b64("32 or 48 bytes."),
        protocolVersion={"const": PROTOCOL_VERSION},
    ),
    "Challenge": _object(
        ["challengeId", "nonce", "channelBinding", "expiresAt", "protocolVersion"],
        challengeId={"type": "string"},
        nonce=_b64("24 bytes."),
        channelBinding=_b64("As sent."),
        expiresAt={**_TIME, "description": f"{CHALLENGE_TTL_SECONDS} s ahead."},
        protocolVersion={"const": PROTOCOL_VERSION},
    ),
    "VerifyRequest": _object(
        [
            "clientIdentifier",
            "challengeId",
            "proof",
            "channelBinding",
            "domainSeparationTag",
        ],
        clientIdentifier=_CLIENT_ID,
        challengeId={"type": "string"},
        proof=_b64("A || z_s || z_r, 96 bytes."),
        channelBinding=_b64("The challenge's binding."),
        domainSeparationTag={"const": AUTH_TAG},
        targetAudience={"type": "string"},
    ),
    "Token": _object(
        ["accessToken", "tokenType", "expiresAt", "expiresIn"],
        accessToken={"type": "string", "description": "An EdDSA JWT."},
        tokenType={"const": "Bearer"},
        expiresAt=_TIME,
        expiresIn={"const": TOKEN_TTL_SECONDS},
    ),
    "RotateRequest": _object(
        ["currentProof", "newCommitment", "newCommitmentProof"],
        currentProof=_b64("Proof over the current commitment, 96 bytes."),
        newCommitment=_b64("32 bytes."),
        newCommitmentProof=_b64("Proof over the new commitment, 96 bytes."),
    ),
    "Rotation": _object(["rotatedAt"], rotatedAt=_TIME),
    "RecoverRequest": _object(
        ["recoveryWords", "newCommitment", "newCommitmentProof"],
        recoveryWords=_WORDS,
        newCommitment=_b64("32 bytes."),
        newCommitmentProof=_b64("Proof of possession, 96 bytes."),
    ),
    "ReactivateRequest": _object(
        ["newCommitment", "newCommitmentProof"],
        newCommitment=_b64("32 bytes."),
        newCommitmentProof=_b64("Reactivation proof, 96 bytes."),
    ),
    "Recovery": _object(
        ["clientIdentifier", "recoveryWords"],
        recovered={"type": "boolean"},
        reactivated={"type": "boolean"},
        clientIdentifier=_CLIENT_ID,
        recoveryWords=_WORDS,
    ),
}

_PROBLEM_CODES = {
    400: "Invalid request (validation-failed, malformed-body).",
    401: "Refused.",
    403: "Admin credential missing or wrong.",
    409: "Enrollment refused.",
    413: "Body over 64 KiB.",
    415: "Body is not application/json.",
    429: "Rate limited; see Retry-After.",
    503: "Storage unavailable; see Retry-After.",
}
_ID_PARAMETER: Schema = {
    "name": "clientIdentifier",
    "in": "path",
    "required": True,
    "schema": _CLIENT_ID,
}


def _operation(
    summary: str,
    ok: tuple[int, str | None],
    problems: tuple[int, ...],
    *,
    body: str | None = None,
    security: list[dict[str, list[str]]] | None = None,
    client_path: bool = False,
) -> Schema:
    status, answer = ok
    success: Schema = {"description": summary}
    if answer is not None:
        success["content"] = {"application/json": {"schema": _ref(answer)}}
    responses: dict[str, Schema] = {str(status): success}
    for code in problems:
        responses[str(code)] = {
            "description": _PROBLEM_CODES[code],
            "content": {"application/problem+json": {"schema": _ref("Problem")}},
        }
    operation: Schema = {"tags": [TAG], "summary": summary, "responses": responses}
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    if security is not None:
        operation["security"] = security
    if client_path:
        operation["parameters"] = [_ID_PARAMETER]
    return operation


def _paths(bearer_scheme: str) -> dict[str, Schema]:
    bearer: list[dict[str, list[str]]] = [{bearer_scheme: []}]
    admin: list[dict[str, list[str]]] = [{ADMIN_SCHEME: []}]
    body_errors = (400, 413, 415, 429)
    return {
        "/health": {"get": _operation("Liveness", (200, "Health"), ())},
        "/.well-known/jwks.json": {
            "get": _operation("Token verification keys", (200, "Jwks"), ())
        },
        "/v1/clients": {
            "post": _operation(
                "Enroll a commitment",
                (201, "Enrollment"),
                (*body_errors, 409),
                body="EnrollRequest",
            )
        },
        "/v1/challenges": {
            "post": _operation(
                "Ask for a login challenge",
                (200, "Challenge"),
                (*body_errors, 401),
                body="ChallengeRequest",
            )
        },
        "/v1/verify": {
            "post": _operation(
                "Prove knowledge of the commitment; get a token",
                (200, "Token"),
                (*body_errors, 401),
                body="VerifyRequest",
            )
        },
        "/v1/clients/{clientIdentifier}": {
            "delete": _operation(
                "Revoke a client (admin)",
                (204, None),
                (400, 403, 429),
                security=admin,
                client_path=True,
            )
        },
        "/v1/clients/{clientIdentifier}/commitment": {
            "put": _operation(
                "Rotate the commitment",
                (200, "Rotation"),
                (*body_errors, 401),
                body="RotateRequest",
                security=bearer,
                client_path=True,
            )
        },
        "/v1/clients/{clientIdentifier}/suspend": {
            "post": _operation(
                "Suspend a client (admin)",
                (204, None),
                (400, 403, 429),
                security=admin,
                client_path=True,
            )
        },
        "/v1/clients/{clientIdentifier}/recover": {
            "post": _operation(
                "Replace the commitment with the recovery phrase",
                (200, "Recovery"),
                (*body_errors, 401),
                body="RecoverRequest",
                client_path=True,
            )
        },
        "/v1/clients/{clientIdentifier}/reactivate": {
            "post": _operation(
                "Reactivate a client (admin)",
                (200, "Recovery"),
                (*body_errors, 401, 403),
                body="ReactivateRequest",
                security=admin,
                client_path=True,
            )
        },
    }


def bearer_scheme_object(description: str | None = None) -> Schema:
    """The OpenAPI security scheme of 2FApi access tokens."""
    scheme: Schema = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    if description:
        scheme["description"] = description
    return scheme


def add_endpoints(document: dict[str, Any], *, bearer_scheme: str) -> None:
    """Merge the endpoints into ``document``; the app's own entries win."""
    paths = document.setdefault("paths", {})
    for path, item in _paths(bearer_scheme).items():
        paths.setdefault(path, item)

    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name, schema in _SCHEMAS.items():
        schemas.setdefault(f"TwoFApi{name}", schema)
    schemes = components.setdefault("securitySchemes", {})
    schemes.setdefault(bearer_scheme, bearer_scheme_object())
    schemes.setdefault(
        ADMIN_SCHEME,
        {"type": "apiKey", "in": "header", "name": "X-Admin-Identity"},
    )

    tags = document.setdefault("tags", [])
    if not any(tag.get("name") == TAG for tag in tags):
        tags.append({"name": TAG, "description": "Zero-knowledge proof login."})
