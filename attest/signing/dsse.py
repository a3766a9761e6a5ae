"""DSSE (Dead Simple Signing Envelope, secure-systems-lab/dsse, protocol v1): the
pre-authentication encoding a signature covers, and the envelope's JSON form.

Facts from the DSSE specification: PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP
LEN(body) SP body, LEN being the decimal byte length with no leading zeros; the envelope
is {"payloadType", "payload" (standard base64), "signatures": [{"keyid", "sig"}]} and
each "sig" is the base64 of the raw signature bytes. attest's ECDSA signatures are DER
(ASN.1 SEQUENCE of r, s): what `openssl dgst -verify` and most DSSE libraries take.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from attest.errors import EvidenceError
from attest.reasons import Reason

# media types that may name a payload: printable ASCII, RFC 6838-ish, bounded
_PAYLOAD_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+\-/;= ]{0,126}")
_KEYID = re.compile(r"[0-9a-f]{1,128}")
MAX_SIGNATURE_BYTES = 80  # a DER ECDSA P-256 signature is at most 72 bytes


def pae(payload_type: str, payload: bytes) -> bytes:
    """The bytes a DSSE signature is over (the spec's PAE)."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class Signature:
    keyid: str  # attest: the signing key's TPM name, hex
    sig: bytes  # DER ECDSA


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def pae(self) -> bytes:
        return pae(self.payload_type, self.payload)

    def to_json(self) -> dict[str, Any]:
        return {"payloadType": self.payload_type, "payload": b64(self.payload),
                "signatures": [{"keyid": s.keyid, "sig": b64(s.sig)} for s in self.signatures]}

    @classmethod
    def from_json(cls, data: Any, *, max_payload: int) -> Envelope:
        """Strict: exactly these members, canonical base64, one signature (attest signs with
        one key; an envelope with more is not one attest made)."""
        obj = exact_object(data, "envelope", {"payloadType", "payload", "signatures"})
        kind = obj["payloadType"]
        if not isinstance(kind, str):
            raise malformed("envelope.payloadType is not a media type attest accepts")
        check_payload_type(kind)
        payload = unb64(obj["payload"], "envelope.payload", max_payload)
        sigs = obj["signatures"]
        if not isinstance(sigs, list) or len(sigs) != 1:
            raise malformed("envelope.signatures must hold exactly one signature")
        entry = exact_object(sigs[0], "envelope.signatures[0]", {"keyid", "sig"})
        keyid = entry["keyid"]
        if not isinstance(keyid, str) or not _KEYID.fullmatch(keyid):
            raise malformed("envelope.signatures[0].keyid is not lowercase hex")
        sig = unb64(entry["sig"], "envelope.signatures[0].sig", MAX_SIGNATURE_BYTES)
        return cls(kind, payload, (Signature(keyid, sig),))


def check_payload_type(payload_type: str) -> None:
    """Raise EvidenceError(malformed_artifact) unless ``payload_type`` is a media type an
    envelope may carry (what :meth:`Envelope.from_json` accepts)."""
    if not _PAYLOAD_TYPE.fullmatch(payload_type):
        raise malformed("envelope.payloadType is not a media type attest accepts")


def malformed(message: str) -> EvidenceError:
    return EvidenceError(message, reason=Reason.MALFORMED_ARTIFACT)


def exact_object(data: Any, what: str, members: set[str]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise malformed(f"{what} is not a JSON object")
    if set(data) != members:
        extra, missing = sorted(set(data) - members), sorted(members - set(data))
        raise malformed(f"{what}: unexpected members {extra[:5]!r}, missing {missing!r}")
    return data


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(value: Any, what: str, limit: int) -> bytes:
    """Standard base64, padded and canonical: one text per byte string, so a changed
    character never decodes to the same bytes (the byte-flip test relies on it)."""
    if not isinstance(value, str) or len(value) > 4 * ((limit + 2) // 3):
        raise malformed(f"{what} is not base64 of at most {limit} bytes")
    try:
        # strict_mode refuses what b64decode(validate=True) refuses (a character outside
        # the alphabet, padding out of place), without its regex pass over the text; a
        # non-ASCII str is a ValueError.
        raw = binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        raise malformed(f"{what} is not standard base64") from None
    # The decoder ignores unused bits: only the one encoding of ``raw`` is taken.
    if binascii.b2a_base64(raw, newline=False) != value.encode("ascii"):
        raise malformed(f"{what} is not canonical base64")
    if len(raw) > limit:
        raise malformed(f"{what} is over {limit} bytes")
    return raw
