"""JSON Schemas of the admin and operations answers (attest.server.admin, .ops), for the
OpenAPI document; the shapes the handlers build, described to clients and tests."""

from __future__ import annotations

from typing import Any

_PAGE_NEXT = {"description": "The next page's cursor; null on the last page."}

_HEX_NAME = {"type": "string", "pattern": "^(?:[0-9a-fA-F]{2})+$", "maxLength": 256,
             "description": "A TPM name, hex."}
_SHA256_HEX = {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}
# Text the store keeps: no NUL (PostgreSQL's text can't hold one).
_TEXT = "^[^\\x00]*$"
_SUBJECTS: dict[str, dict[str, Any]] = {
    "jti": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": _TEXT},
    "key": _HEX_NAME,
    "ak": _HEX_NAME,
    "host": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": _TEXT},
    "ek": _SHA256_HEX,
    "approval": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
}
REVOCATION_REQUEST: dict[str, Any] = {
    "description": "What to revoke: the subject's form depends on its kind.",
    "oneOf": [{
        "type": "object", "required": ["kind", "subject", "reason"],
        "additionalProperties": False,
        "properties": {
            "kind": {"const": kind},
            "subject": subject,
            "reason": {"type": "string", "minLength": 1, "maxLength": 1024,
                       "pattern": "^[^\\x00]*[^\\s\\x00][^\\x00]*$",
                       "description": "Why; recorded and shown in every denial."}}}
        for kind, subject in _SUBJECTS.items()],
}
REVOCATION: dict[str, Any] = {
    "type": "object", "required": ["revoked", "subjects", "cascade", "reason"],
    "properties": {"revoked": {"type": "string"},
                   "subjects": {"type": "array", "items": {"type": "string"}},
                   "cascade": {"type": "array", "items": {"type": "object"}},
                   "reason": {"type": "string"}},
}
REVOCATIONS: dict[str, Any] = {
    "type": "object", "required": ["revocations", "next"],
    "properties": {
        "revocations": {"type": "array", "items": {
            "type": "object",
            "required": ["id", "kind", "subject", "reason", "revoked_at", "cascaded_from"],
            "properties": {"id": {"type": "integer"}, "kind": {"type": "string"},
                           "subject": {"type": "string"}, "reason": {"type": "string"},
                           "revoked_at": {"type": "integer"},
                           "cascaded_from": {"type": ["string", "null"]}}}},
        "next": {"type": ["integer", "null"], **_PAGE_NEXT}},
}
HOSTS: dict[str, Any] = {
    "type": "object", "required": ["hosts", "next"],
    "properties": {
        "hosts": {"type": "array", "items": {
            "type": "object", "required": ["host", "state", "reasons", "last_decision"],
            "properties": {
                "host": {"type": "string"},
                "state": {"enum": ["trusted", "untrusted", "stale", "revoked"]},
                "reasons": {"type": "array", "items": {"type": "string"}},
                "last_decision": {"type": ["object", "null"]},
                "last_quote_at": {"type": ["integer", "null"]},
                "last_enrolled_at": {"type": ["integer", "null"]},
                "revocation": {"type": ["string", "null"]}}}},
        "next": {"type": ["string", "null"], **_PAGE_NEXT}},
}
AUDIT_ENTRIES: dict[str, Any] = {
    "type": "object", "required": ["entries", "next"],
    "properties": {
        "entries": {"type": "array", "items": {
            "type": "object", "required": ["index", "data"],
            "properties": {"index": {"type": "integer"},
                           "data": {"type": "string",
                                    "description": "The entry's canonical JSON."}}}},
        "next": {"type": ["integer", "null"], **_PAGE_NEXT}},
}
AUDIT_HEAD: dict[str, Any] = {
    "type": "object", "required": ["size", "signed_at", "checkpoint"],
    "properties": {"size": {"type": "integer"}, "signed_at": {"type": "integer"},
                   "checkpoint": {"type": "string", "description": "A signed note."},
                   "key": {"type": ["string", "null"]}},
}
PROOF: dict[str, Any] = {
    "type": "object", "required": ["type"],
    "properties": {"type": {"enum": ["inclusion", "consistency"]}},
    "description": "What `attest audit check-proof` checks offline (`attest docs audit`).",
}
READY: dict[str, Any] = {
    "type": "object", "required": ["status"], "properties": {"status": {"type": "string"}},
}
