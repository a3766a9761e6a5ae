"""Enrollment over HTTP: ``POST /v1/enrollments`` and ``POST /v1/enrollments/{id}/activation``.

The routes parse and bound the bodies; attest.verify.enrollment decides. Answers:

- a challenge: 201 ``{id, credential_blob, encrypted_secret, expires}`` (base64);
- an activation, accepted or denied, and a refused enrollment request (wrong CA, wrong
  AK attributes): 200 with the decision shape of ``/v1/verify``, every denial named and
  logged;
- a body that is not the expected shape: 400/413/422; a policy that offers no
  enrollment over the network (``enrollment: policy``, or no ``ek_roots``): 403; no
  room for another pending enrollment: 429 with Retry-After; the store out of reach: 503.

Hosts need no token here: the EK certificate and the credential activation speak for
them. Moving a host id to another TPM needs an administrator and is not offered here.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from attest.decision import Decision
from attest.server import schema
from attest.server.bodies import RequestRefused, json_object, only_members, read_body, unprocessable
from attest.verify.enrollment import (
    Busy,
    Challenge,
    Enroller,
    EnrollmentClosed,
    EnrollmentRequest,
    host_id_ok,
)

if TYPE_CHECKING:
    from attest.server.app import Service

API = "/v1"
# An EK certificate is 1-2 KiB; with a few intermediates and the publics, in base64.
ENROLL_BODY_BYTES = 64 * 1024
ACTIVATION_BODY_BYTES = 1024
MAX_CERTIFICATE_BYTES = 16 * 1024
MAX_CHAIN = 8
MAX_PUBLIC_BYTES = 1024  # a TPM2B_PUBLIC of an RSA-4096 key is well under
MAX_SECRET_BYTES = 64
MAX_NAME_BYTES = 66  # a TPM name: a 2-byte algorithm id and a digest of at most 64
_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_MEMBERS = {"host", "ek_certificate", "ek_chain", "ek_public", "ak_public",
            "ak_qualified_name"}

# The schema says what the handler enforces, so that a client (or a fuzzer) reading the
# document never sends a "valid" request the service refuses.
B64_PATTERN = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
B64 = {"type": "string", "contentEncoding": "base64", "pattern": B64_PATTERN,
       "description": "base64 (RFC 4648 section 4, with padding)"}
# Host ids over the network are ASCII (a DNS name in its xn-- form): visible characters,
# inner spaces allowed. Local `attest enroll` also takes other printable UTF-8.
HOST_PATTERN = "^[!-~](?:[ -~]*[!-~])?$"
_HOST = re.compile(HOST_PATTERN)


def _b64_field(limit: int, description: str, *, empty: bool = False) -> dict[str, Any]:
    """A base64 member of at most ``limit`` decoded bytes (at least one unless ``empty``)."""
    return {**B64, "minLength": 0 if empty else 4, "maxLength": 4 * (limit // 3),
            "description": description}
ENROLLMENT_REQUEST: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "required": ["host", "ek_certificate", "ak_public"],
    "properties": {
        "host": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": HOST_PATTERN,
                 "description": "The host id: visible ASCII characters, no space at either "
                 "end."},
        "ek_certificate": _b64_field(MAX_CERTIFICATE_BYTES,
                                     "The EK certificate (DER, as in NV)."),
        "ek_chain": {"type": "array", "maxItems": MAX_CHAIN,
                     "items": _b64_field(MAX_CERTIFICATE_BYTES, "A certificate"),
                     "description": "Intermediate CA certificates (DER or PEM)."},
        "ek_public": _b64_field(MAX_PUBLIC_BYTES, "The EK's TPM2B_PUBLIC: checked against "
                                "the certificate's key, never used instead of it."),
        "ak_public": _b64_field(MAX_PUBLIC_BYTES, "The AK's TPM2B_PUBLIC."),
        "ak_qualified_name": _b64_field(MAX_NAME_BYTES, "The AK's qualified name.",
                                        empty=True),
    },
}
CHALLENGE: dict[str, Any] = {
    "type": "object", "required": ["id", "credential_blob", "encrypted_secret", "expires"],
    "properties": {"id": {"type": "string"},
                   "credential_blob": {**B64, "description": "TPM2B_ID_OBJECT"},
                   "encrypted_secret": {**B64, "description": "TPM2B_ENCRYPTED_SECRET"},
                   "expires": {"type": "integer", "description": "Unix time"}},
}
ACTIVATION_REQUEST: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["secret"],
    "properties": {"secret": _b64_field(MAX_SECRET_BYTES,
                                        "What ActivateCredential returned.")},
}


def _responses(ok: int, body: dict[str, Any], *extra: int) -> dict[int | str, dict[str, Any]]:
    answers = schema.responses(schema.ENROLLMENT_DECISION)
    if ok != 200:
        answers[ok] = {"description": "The challenge",
                       "content": {"application/json": {"schema": body}}}
        answers[200] = {"description": "The enrollment is refused (a named denial)",
                        "content": {"application/json": {"schema": schema.ENROLLMENT_DECISION}}}
    error = {"content": {"application/json": {"schema": schema.ERROR}}}
    words = {403: "This verifier enrolls no host over the network",
             429: "No room for another pending enrollment",
             503: "The store is out of reach"}
    for status in (*extra, 503):
        answers[status] = {"description": words[status], **error}
    return answers


def mount(app: FastAPI, service: Service) -> Enroller:
    """Add the enrollment routes to ``app``, on ``service``'s policy, store and log."""
    enroller = Enroller(service.policy, service.verifier.trust, service.store, service.log,
                        verifier_id=service.verifier.verifier_id, clock=service.clock)

    @app.post(f"{API}/enrollments", tags=["enrollment"], status_code=201,
              openapi_extra=schema.request_body(ENROLLMENT_REQUEST),
              responses=_responses(201, CHALLENGE, 403, 429))
    async def enroll(request: Request) -> JSONResponse:
        """A credential challenge for a host's AK: the EK certificate checked against the
        policy's EK roots, the AK's attributes checked, then a secret wrapped to the EK
        and the AK's name (MakeCredential). 200 with a named denial when they don't hold."""
        wanted = _enrollment_request(json_object(await read_body(request, ENROLL_BODY_BYTES)))
        try:
            answer = await run_in_threadpool(enroller.offer, wanted)
        except EnrollmentClosed as exc:
            raise RequestRefused(403, "enrollment_closed", exc.message) from None
        except Busy as exc:
            refused = RequestRefused(429, "enrollment_busy", exc.message)
            return JSONResponse(refused.to_json(), status_code=429,
                                headers={"Retry-After": str(min(enroller.ttl, 3600))})
        if isinstance(answer, Challenge):
            return JSONResponse(answer.to_json(), status_code=201)
        return JSONResponse(_decision_json(answer))

    @app.post(f"{API}/enrollments/{{enrollment_id}}/activation", tags=["enrollment"],
              openapi_extra=schema.request_body(ACTIVATION_REQUEST),
              responses=_responses(200, schema.ENROLLMENT_DECISION))
    async def activate(enrollment_id: Annotated[str, Path(pattern=_ID.pattern.join("^$"))],
                       request: Request) -> JSONResponse:
        """The secret the TPM recovered (ActivateCredential): the AK is enrolled for the
        EK and host id of the challenge, once. Accepted or denied: 200."""
        if not _ID.fullmatch(enrollment_id):
            raise unprocessable("an enrollment id is 1 to 32 base64url characters")
        body = json_object(await read_body(request, ACTIVATION_BODY_BYTES))
        only_members(body, {"secret"})
        if "secret" not in body:
            raise unprocessable("the body needs the member secret")
        secret = _b64(body["secret"], "secret", MAX_SECRET_BYTES)
        decision = await run_in_threadpool(enroller.activate, enrollment_id, secret)
        return JSONResponse(_decision_json(decision))

    return enroller


def _enrollment_request(body: dict[str, Any]) -> EnrollmentRequest:
    only_members(body, _MEMBERS)
    for name in ("host", "ek_certificate", "ak_public"):
        if name not in body:
            raise unprocessable(f"the body needs the member {name}")
    host = body["host"]
    if not isinstance(host, str) or not _HOST.fullmatch(host) or not host_id_ok(host):
        raise unprocessable("host must be 1 to 255 visible ASCII characters, no space at an "
                            "end")
    chain = body.get("ek_chain", [])
    if not isinstance(chain, list) or len(chain) > MAX_CHAIN:
        raise unprocessable(f"ek_chain must be a list of at most {MAX_CHAIN} certificates")
    ek_public = body.get("ek_public")
    return EnrollmentRequest(
        host=host,
        ek_certificate=_b64(body["ek_certificate"], "ek_certificate", MAX_CERTIFICATE_BYTES),
        ak_public=_b64(body["ak_public"], "ak_public", MAX_PUBLIC_BYTES),
        ek_chain=tuple(_b64(item, f"ek_chain[{i}]", MAX_CERTIFICATE_BYTES)
                       for i, item in enumerate(chain)),
        ek_public=None if ek_public is None else _b64(ek_public, "ek_public",
                                                      MAX_PUBLIC_BYTES),
        ak_qualified_name=_b64(body.get("ak_qualified_name", ""), "ak_qualified_name",
                               MAX_NAME_BYTES, empty=True))


def _b64(value: object, what: str, limit: int, *, empty: bool = False) -> bytes:
    """Strict base64 (the standard alphabet, padded): 422 for anything else."""
    if not isinstance(value, str) or not value.isascii():
        raise unprocessable(f"{what} must be a base64 string")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise unprocessable(f"{what} is not base64 (RFC 4648, with padding)") from None
    if len(data) > limit or (not data and not empty):
        raise unprocessable(f"{what} must be 1 to {limit} bytes")
    return data


def _decision_json(decision: Decision) -> dict[str, Any]:
    return {**decision.to_json(), "artifact_sha256": None}
