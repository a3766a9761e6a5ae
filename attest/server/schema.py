"""JSON Schemas of the API's bodies, for the OpenAPI document (/v1/openapi.json).

The handlers check bodies themselves (attest.server.bodies); these describe the same
shapes to clients and to tests that hold answers against the document.
"""

from __future__ import annotations

from typing import Any

from attest.artifact.model import MAX_TTL_S

JWS = {"type": "string", "description": "A compact JWS: the authorization artifact."}

CHALLENGE_REQUEST: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {"ttl": {"type": "integer", "minimum": 1, "maximum": MAX_TTL_S,
                           "description": "Seconds the nonce is usable."}},
}
CHALLENGE: dict[str, Any] = {
    "type": "object", "required": ["nonce", "expires"],
    "properties": {"nonce": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$",
                             "description": "base64url, single use: the eat_nonce claim"},
                   "expires": {"type": "integer", "description": "Unix time"}},
}
VERIFY_REQUEST: dict[str, Any] = {
    "type": "object", "required": ["artifact"], "additionalProperties": False,
    "properties": {"artifact": JWS},
}
BATCH_REQUEST: dict[str, Any] = {
    "type": "object", "required": ["artifacts"], "additionalProperties": False,
    "properties": {"artifacts": {"type": "array", "items": JWS, "minItems": 1}},
}
DENIAL: dict[str, Any] = {
    "type": "object", "required": ["reason", "message"],
    "properties": {"reason": {"type": "string",
                              "description": "a reason code: `attest docs reasons`"},
                   "message": {"type": "string"}},
}
DECISION: dict[str, Any] = {
    "type": "object",
    "required": ["accepted", "reasons", "denials", "jti", "host", "audit_index", "result"],
    "properties": {
        "accepted": {"type": "boolean"},
        "reasons": {"type": "array", "items": {"type": "string"}},
        "denials": {"type": "array", "items": DENIAL},
        "jti": {"type": ["string", "null"]},
        "subject": {"type": ["string", "null"]},
        "host": {"type": ["string", "null"]},
        "facts": {"type": "object"},
        "audit_index": {"type": ["integer", "null"],
                        "description": "The decision's entry in the audit log."},
        "artifact_sha256": {"type": ["string", "null"]},
        "result": {"type": "string", "description": "The attestation result: an EAR JWT "
                   "(ES256) signed by the key at /v1/keys, with the audit receipt."},
    },
}
# An enrollment's decision: the same shape, without an attestation result (it attests
# no artifact; the audit index names its entry).
ENROLLMENT_DECISION: dict[str, Any] = {
    **DECISION, "required": [name for name in DECISION["required"] if name != "result"],
    "properties": {name: value for name, value in DECISION["properties"].items()
                   if name != "result"},
}
BATCH: dict[str, Any] = {
    "type": "object", "required": ["decisions"],
    "properties": {"decisions": {"type": "array", "items": DECISION}},
}
HEALTH: dict[str, Any] = {
    "type": "object", "required": ["status"],
    "properties": {"status": {"type": "string"}, "version": {"type": "string"},
                   "policy": {"type": "object"}},
}
ERROR: dict[str, Any] = {
    "type": "object", "required": ["error"],
    "properties": {"error": {
        "type": "object", "required": ["status", "code", "message"],
        "properties": {"status": {"type": "integer"}, "code": {"type": "string"},
                       "message": {"type": "string"}}}},
}
# The answer of a route that needs an administrator's bearer token, without a valid one.
SECURED: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid bearer token",
          "content": {"application/json": {"schema": ERROR}}}}


def request_body(body: dict[str, Any], *, required: bool = True,
                 jose: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": body}}
    if jose:
        content["application/jose"] = {"schema": JWS}
    return {"requestBody": {"required": required, "content": content}}


def responses(ok: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    error = {"content": {"application/json": {"schema": ERROR}}}
    return {200: {"description": "OK", "content": {"application/json": {"schema": ok}}},
            400: {"description": "Not JSON", **error},
            413: {"description": "Too large", **error},
            422: {"description": "Not the expected shape", **error},
            500: {"description": "Internal error", **error}}
