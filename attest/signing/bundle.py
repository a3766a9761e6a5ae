"""The signature bundle: a DSSE envelope signed in a TPM, with the evidence that makes it
self-proving (docs/signing.md documents every field).

A bundle is one JSON object (UTF-8, strict: no duplicate or unknown member, canonical
base64, bounded sizes)::

    {"version": 1, "type": "attest-signature-bundle",
     "envelope": DSSE envelope (attest.signing.dsse), one signature, DER ECDSA P-256,
     "batch": null (unbatched) | {"root", "index", "size", "proof": [...]},
     "time": the host's clock (Unix seconds) when it signed,
     "key":   {"public": TPM2B_PUBLIC, "certify": TPMS_ATTEST, "certify_signature": TPMT_SIGNATURE},
     "quote": {"message": TPMS_ATTEST, "signature": TPMT_SIGNATURE, "bank", "pcrs": {index: hex}},
     "ak":    {"public": TPM2B_PUBLIC, "qualified_name": hex},
     "ek":    [EK ids (SHA-256 hex of each EK's SubjectPublicKeyInfo)],
     "runtime_log": CEL bytes, "boot_log": TCG log bytes | null,
     "approval": the authority's approval the key signed under (PolicyAuthorize keys) | null}

What the TPM signed: SHA-256(PAE) for an unbatched bundle; for a batched one, the batch
value over the Merkle root of the batch's PAE digests (attest.signing.batch). What the
quote's qualifyingData holds (:func:`quote_binding`): SHA-256 of a label, that signed
digest, the time, the EK ids, the logs, the approval and the key's name, so a quote
vouches for one signature (of one payload, or of one batch) by one key at one time, with
these logs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from attest import strictjson
from attest.signing.batch import Membership
from attest.signing.dsse import (
    Envelope,
    b64,
    exact_object,
    malformed,
    unb64,
)

VERSION = 1
BUNDLE_TYPE = "attest-signature-bundle"
QUOTE_LABEL = b"attest dsse signature quote v1\0"
MAX_BUNDLE_BYTES = 16 << 20
MAX_PAYLOAD_BYTES = 4 << 20  # a larger payload is signed as a statement naming its digest
MAX_LOG_BYTES = 8 << 20
MAX_TPM_BLOB = 2048  # TPMS_ATTEST with 24 PCRs selected, TPM2B_PUBLIC: well under
MAX_EKS = 8
_HEX = re.compile(r"(?:[0-9a-f]{2})*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# A PCR index as a key: "0".."23" exactly (one spelling per PCR), looked up, not matched.
_PCR_INDEX = {str(i): i for i in range(24)}
_PCR_VALUE = re.compile(r"[0-9a-f]{40,128}")
_TOP = {"version", "type", "envelope", "batch", "time", "key", "quote", "ak", "ek",
        "runtime_log", "boot_log", "approval"}
MAX_APPROVAL_BYTES = 16 << 10  # attest.evidence.approval's bound
MAX_TIME = 1 << 40
# A bundle holds a few dozen JSON values: at most 68 commas (its members, 24 PCRs, 8 EK
# ids, a 16-hash proof) and 11 objects or arrays. No string of a bundle may hold a ',',
# '[' or '{' (base64, hex, media types), so counting them bounds what the parser builds:
# 16 MiB of "[]," is 5.6 million lists (0.5 GB, seconds) before any check could refuse.
MAX_COMMAS = 128
MAX_CONTAINERS = 32


@dataclass(frozen=True)
class Bundle:
    envelope: Envelope
    batch: Membership | None  # attest.signing.batch: where its PAE sits in a signed batch
    time: int
    key_public: bytes  # TPM2B_PUBLIC of the signing key
    certify: bytes  # TPMS_ATTEST of the key's TPM2_Certify by the AK
    certify_signature: bytes  # TPMT_SIGNATURE
    quote: bytes  # TPMS_ATTEST of the quote
    quote_signature: bytes  # TPMT_SIGNATURE
    bank: str
    pcrs: dict[int, bytes]  # the quoted PCR values of ``bank``
    ak_public: bytes  # TPM2B_PUBLIC
    ak_qualified_name: bytes
    eks: tuple[str, ...]
    runtime_log: bytes
    boot_log: bytes | None
    approval: bytes | None = None  # JSON (attest.evidence.approval), authorize keys only

    @property
    def pae(self) -> bytes:
        return self.envelope.pae()

    @property
    def signature(self) -> bytes:
        return self.envelope.signatures[0].sig

    @property
    def keyid(self) -> str:
        return self.envelope.signatures[0].keyid

    def to_json(self) -> dict[str, Any]:
        return {**self.head_json(self.envelope, self.batch), **self.evidence_json()}

    @staticmethod
    def head_json(envelope: Envelope, batch: Membership | None) -> dict[str, Any]:
        """The members that differ between the bundles of one batch, in order."""
        return {"version": VERSION, "type": BUNDLE_TYPE, "envelope": envelope.to_json(),
                "batch": None if batch is None else batch.to_json()}

    def evidence_json(self) -> dict[str, Any]:
        """The members after ``batch``, in order: what the bundles of a batch share."""
        return {
            "time": self.time,
            "key": {"public": b64(self.key_public), "certify": b64(self.certify),
                    "certify_signature": b64(self.certify_signature)},
            "quote": {"message": b64(self.quote), "signature": b64(self.quote_signature),
                      "bank": self.bank,
                      "pcrs": {str(i): v.hex() for i, v in sorted(self.pcrs.items())}},
            "ak": {"public": b64(self.ak_public),
                   "qualified_name": self.ak_qualified_name.hex()},
            "ek": list(self.eks),
            "runtime_log": b64(self.runtime_log),
            "boot_log": None if self.boot_log is None else b64(self.boot_log),
            "approval": None if self.approval is None else b64(self.approval),
        }

    def to_bytes(self) -> bytes:
        return render(self.head_json(self.envelope, self.batch),
                      members_text(self.evidence_json()))

    @classmethod
    def from_bytes(cls, data: bytes) -> Bundle:
        """Parse a bundle; raises EvidenceError(malformed_artifact) on anything else, and
        BatchProofError (batch_proof_invalid) for a batch member that is not one."""
        if len(data) > MAX_BUNDLE_BYTES:
            raise malformed(f"a bundle is at most {MAX_BUNDLE_BYTES} bytes")
        if (data.count(b",") > MAX_COMMAS
                or data.count(b"[") + data.count(b"{") > MAX_CONTAINERS):
            raise malformed("the bundle holds more JSON values than a bundle has")
        try:
            obj = strictjson.loads(data)
        except (strictjson.StrictJSONError, ValueError, RecursionError):
            raise malformed("the bundle is not strict JSON (UTF-8, no duplicate member)") \
                from None
        top = exact_object(obj, "bundle", _TOP)
        if type(top["version"]) is not int or top["version"] != VERSION:
            raise malformed(f"bundle version {top['version']!r} is not {VERSION}")
        if top["type"] != BUNDLE_TYPE:
            raise malformed(f"the bundle's type is not {BUNDLE_TYPE!r}")
        envelope = Envelope.from_json(top["envelope"], max_payload=MAX_PAYLOAD_BYTES)
        # attest.signing.batch's own strict reading (bounds, hex, exact proof length):
        # a batch member that is not one raises BatchProofError (batch_proof_invalid).
        batch = None if top["batch"] is None else Membership.from_json(top["batch"])
        when = top["time"]
        if type(when) is not int or not 0 <= when < MAX_TIME:
            raise malformed("time is not Unix seconds")
        key = exact_object(top["key"], "key", {"public", "certify", "certify_signature"})
        quote = exact_object(top["quote"], "quote", {"message", "signature", "bank", "pcrs"})
        if quote["bank"] not in ("sha256", "sha384", "sha512", "sha1"):
            raise malformed("quote.bank is not a PCR bank")
        pcrs = quote["pcrs"]
        if not isinstance(pcrs, dict) or len(pcrs) > 24:
            raise malformed("quote.pcrs is not an object of at most 24 PCRs")
        values: dict[int, bytes] = {}
        for index, value in pcrs.items():
            number = _PCR_INDEX.get(index)
            if number is None:
                raise malformed("quote.pcrs: a key is not a PCR index 0-23")
            # Compiled once: re.fullmatch(text, ...) looks its pattern up per call.
            if not isinstance(value, str) or not _PCR_VALUE.fullmatch(value) \
                    or len(value) % 2:
                raise malformed("quote.pcrs: a value is not lowercase hex")
            values[number] = bytes.fromhex(value)
        ak = exact_object(top["ak"], "ak", {"public", "qualified_name"})
        qualified = ak["qualified_name"]
        if not isinstance(qualified, str) or len(qualified) > 140 \
                or not _HEX.fullmatch(qualified):
            raise malformed("ak.qualified_name is not lowercase hex")
        eks = top["ek"]
        if not isinstance(eks, list) or len(eks) > MAX_EKS \
                or not all(isinstance(e, str) and _SHA256.fullmatch(e) for e in eks):
            raise malformed("ek is not a list of SHA-256 hex EK ids")
        boot, approval = top["boot_log"], top["approval"]
        # The quote binds an absent log or approval as an empty one: present, each must
        # hold something, or one signed bundle would have a second reading ("" for null).
        if boot == "" or approval == "":
            raise malformed("boot_log and approval are null or not empty")
        return cls(
            envelope=envelope, batch=batch, time=when,
            key_public=unb64(key["public"], "key.public", MAX_TPM_BLOB),
            certify=unb64(key["certify"], "key.certify", MAX_TPM_BLOB),
            certify_signature=unb64(key["certify_signature"], "key.certify_signature",
                                    MAX_TPM_BLOB),
            quote=unb64(quote["message"], "quote.message", MAX_TPM_BLOB),
            quote_signature=unb64(quote["signature"], "quote.signature", MAX_TPM_BLOB),
            bank=quote["bank"], pcrs=values,
            ak_public=unb64(ak["public"], "ak.public", MAX_TPM_BLOB),
            ak_qualified_name=bytes.fromhex(qualified), eks=tuple(eks),
            runtime_log=unb64(top["runtime_log"], "runtime_log", MAX_LOG_BYTES),
            boot_log=None if boot is None else unb64(boot, "boot_log", MAX_LOG_BYTES),
            approval=None if approval is None else unb64(approval, "approval",
                                                          MAX_APPROVAL_BYTES))


# The order n of P-256's base point (SEC 2, secp256r1): (r, s) and (r, n - s) are both
# valid ECDSA signatures of one digest. Bundles carry the low-S one only, so a bundle's
# signature has one form and nobody can make a second valid bundle from a first.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def low_s(der: bytes) -> bytes:
    """The DER ECDSA P-256 signature ``der`` in its low-S form (s <= n/2)."""
    r, s = decode_dss_signature(der)
    return encode_dss_signature(r, P256_ORDER - s if s > P256_ORDER // 2 else s)


def members_text(members: dict[str, Any]) -> str:
    """Compact JSON of an object's members, without its braces."""
    return json.dumps(members, separators=(",", ":"))[1:-1]


def render(head: dict[str, Any], evidence: str) -> bytes:
    """A bundle's bytes: one line of compact JSON (ASCII: non-ASCII is escaped), the
    head's members then the evidence's (:func:`members_text`). Compact because a batch's
    bundles are made by the hundred and the indented encoder costs several times the
    C one; `jq .` shows one indented."""
    return ("{" + members_text(head) + "," + evidence + "}\n").encode("ascii")


def pae_digest(pae: bytes) -> bytes:
    """SHA-256 of the PAE: what the TPM signs for an unbatched bundle (and a batch leaf)."""
    return hashlib.sha256(pae).digest()


def quote_binding(signed: bytes, time: int, key_name: bytes, eks: Sequence[str],
                  runtime_log: bytes, boot_log: bytes | None,
                  approval: bytes | None = None) -> bytes:
    """The quote's qualifyingData: SHA-256 over QUOTE_LABEL, ``signed`` (32 bytes), the
    time (8 bytes, big-endian), then SHA-256 of each of: the EK ids (each followed by a
    NUL), the runtime log, the boot log, the approval (each empty when none), and last
    the signing key's TPM name. ``signed``: what the key signed, :func:`pae_digest`
    unbatched, the batch value (attest.signing.batch.batch_value) batched.

    Everything the quote does not otherwise sign is bound here, so that no field of a
    bundle goes unchecked: the logs' encodings (a replay checks their digests, not every
    byte of their records), the EK ids (the host's word, vouched for by its AK) and
    which approval the key signed under (the TPM proves only that it was one of the
    authority's)."""
    if len(signed) != 32 or not 0 <= time < MAX_TIME:
        raise ValueError("the signed digest is 32 bytes and the time Unix seconds")
    parts = (b"".join(e.encode("ascii") + b"\0" for e in eks), runtime_log, boot_log or b"",
             approval or b"")
    return hashlib.sha256(QUOTE_LABEL + signed + time.to_bytes(8, "big")
                          + b"".join(hashlib.sha256(p).digest() for p in parts)
                          + key_name).digest()
