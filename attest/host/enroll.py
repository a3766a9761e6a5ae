"""`attest enroll --verifier URL`: the host's half of enrollment over HTTP.

Sends the EK certificate and the AK's public area, has the TPM activate the credential
the verifier wrapped to its EK and AK name, and sends back the secret it recovered
(docs/service.md, "Enrollment"). The verifier decides; everything it answers is
hostile input here: bounded (attest.host.http.post_json), checked for shape, and anything
but an acceptance is a refusal.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from attest.errors import EvidenceError, TPMError, UsageError
from attest.host.http import VerifierUnreachable, post_json
from attest.reasons import Reason

if TYPE_CHECKING:
    from pathlib import Path

    from attest.tpm.device import TPM
    from attest.tpm.hierarchy import HostIdentity

_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")  # what goes into the activation's path
MAX_CREDENTIAL_BYTES = 4096


@dataclass(frozen=True)
class Enrolled:
    """The verifier's acceptance: the host id, AK and EK it enrolled."""

    host: str
    ak: str
    ek: str | None


def enroll_remote(tpm: TPM, identity: HostIdentity, verifier_url: str, host: str, *,
                  cacert: Path | None = None, insecure: bool = False) -> Enrolled:
    """Enroll this host's AK with the verifier service at ``verifier_url`` as ``host``.

    Raises EvidenceError (exit 1) with the verifier's reason when it refuses,
    VerifierUnreachable (exit 3) when it does not answer as a verifier does.
    """
    from attest.tpm.hierarchy import EK_RSA, activate_credential, credential_refused

    ek = next((e for e in identity.eks if e.kind == EK_RSA.label), None)
    if ek is None or ek.certificate is None:
        raise UsageError("this host has no RSA EK certificate to enroll with",
                         hint="a verifier service enrolls only TPMs whose maker vouches for them")
    base = verifier_url.rstrip("/")

    def post(path: str, body: dict[str, object]) -> dict[str, object]:
        # Never retried: an offer writes a pending enrollment, an activation consumes it.
        return post_json(f"{base}{path}", json.dumps(body).encode(), cacert=cacert,
                         insecure=insecure)

    offered = post("/v1/enrollments", {
        "host": host, "ek_certificate": _b64(ek.certificate), "ek_public": _b64(ek.public),
        "ak_public": _b64(identity.ak_public),
        "ak_qualified_name": _b64(identity.ak_qualified_name)})
    _refused(offered, verifier_url)
    pending_id = offered.get("id")
    if not isinstance(pending_id, str) or not _ID.fullmatch(pending_id):
        raise VerifierUnreachable(f"the verifier at {verifier_url} answered no enrollment id")
    blob = _field(offered, "credential_blob", verifier_url)
    wrapped = _field(offered, "encrypted_secret", verifier_url)
    try:
        secret = activate_credential(tpm, identity, blob, wrapped, EK_RSA)
    except UsageError:
        raise VerifierUnreachable(f"the verifier at {verifier_url} sent no credential") from None
    except TPMError as exc:
        if not credential_refused(tpm, exc):
            raise
        # The TPM refused the credential: it was not made for this EK and AK.
        raise EvidenceError(f"credential activation failed ({exc.message}): the verifier's "
                            "credential is not for this TPM's EK and AK",
                            reason=Reason.ACTIVATION_FAILED) from None
    activated = post(f"/v1/enrollments/{pending_id}/activation", {"secret": _b64(secret)})
    _refused(activated, verifier_url)
    facts = activated.get("facts")
    if activated.get("accepted") is not True or activated.get("reasons") or not isinstance(
            facts, dict):
        raise VerifierUnreachable(f"the verifier at {verifier_url} sent no decision")
    ak, ek_id = facts.get("ak"), facts.get("ek")
    return Enrolled(host=str(activated.get("host")), ak=str(ak),
                    ek=ek_id if isinstance(ek_id, str) else None)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _field(answer: dict[str, object], name: str, url: str) -> bytes:
    value = answer.get(name)
    try:
        if not isinstance(value, str) or len(value) > MAX_CREDENTIAL_BYTES:
            raise ValueError(name)
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise VerifierUnreachable(f"the verifier at {url} sent no {name}") from None


# What the operator does about the service's errors that enrollment meets: the code is
# the service's, the advice is ours (the message is the service's and not trusted).
_ERROR_HINTS = {
    "enrollment_closed": "enrolling over HTTP needs the verifier's policy to say "
    "`enrollment: store` and name ek_roots (`attest docs service`, Enrollment); with "
    "`enrollment: policy` it trusts the AKs its trusted_aks lists instead",
    "enrollment_busy": "too many enrollments are pending at the verifier: try again shortly",
}


def _refused(answer: dict[str, object], url: str) -> None:
    """EvidenceError for a denial (its first reason), VerifierUnreachable for an error."""
    error = answer.get("error")
    if isinstance(error, dict):
        code, message = str(error.get("code"))[:64], str(error.get("message"))[:400]
        raise VerifierUnreachable(f"the verifier at {url} refused the request: {code}: "
                                  f"{message}", hint=_ERROR_HINTS.get(code))
    if answer.get("accepted") is not False:
        return
    denials = answer.get("denials")
    first = denials[0] if isinstance(denials, list) and denials else {}
    first = first if isinstance(first, dict) else {}
    try:
        reason = Reason(str(first.get("reason")))
    except ValueError:
        reason = Reason.INTERNAL_ERROR
    raise EvidenceError(f"the verifier refused the enrollment: {str(first.get('message'))[:400]}",
                        reason=reason)
