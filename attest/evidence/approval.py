"""An authority's approval of PCR values, as a document a verifier can authenticate.

A key made with ``--authority`` signs under any PCR policy its authority ever
approved: the TPM checks the authority's signature over
``aHash = H(approvedPolicy || policyRef)`` and nothing else, so an old approval
(firmware v1 after v2 shipped) keeps working when a host rolls back. The TPM
cannot be told to forget one. So an approval is also a document with an
identity and an order, and a verifier checks it:

- ``serial``: set by the authority, increasing per authority and policyRef; a
  verifier's ``key_policy.min_approval_serial`` retires every older approval.
- ``not_after``: an optional expiry (Unix seconds, the verifier's clock).
- the id: SHA-256 of the canonical body (below), hex; what
  ``key_policy.revoked_approvals`` and ``attest revoke --approval`` name.

The TPM's signature covers only approvedPolicy and policyRef, not the serial:
putting the serial into policyRef would change every key's authPolicy, which
is fixed at creation. So the same authority key signs the document a second
time: ``document_signature`` over ``H(DOCUMENT_LABEL || body)``, where the body
is the canonical JSON (sorted keys, no spaces, ASCII only) of every member but
the two signatures. The label keeps one signature from standing for the other.

Everything here is pure (no TPM stack): the host signs with
:func:`attest.tpm.keys.approve`, a verifier parses with :func:`parse_approval`
and checks with :func:`verify_approval` against the key the policy names.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from attest import strictjson
from attest.errors import EvidenceError, UsageError
from attest.evidence import tpmpolicy as policy_digests
from attest.evidence.pcrs import DIGEST_SIZES, PCRSelection, PCRValues
from attest.evidence.signatures import verify_tpm_signature
from attest.evidence.structures import Public, parse_public_tpm2b, parse_signature
from attest.reasons import Reason

FORMAT = "attest-approval/1"
DOCUMENT_LABEL = b"attest approval document\0"
# An approval holds one public key, two signatures and at most 24 PCR values per bank:
# a few KiB even for RSA-4096. Anything larger is not one.
MAX_APPROVAL_BYTES = 16 << 10
MAX_SERIAL = 2**53 - 1  # JSON integers a verifier in any language reads exactly
MAX_POLICY_REF_BYTES = 64  # TPM2B_NONCE with SHA-256 sessions (policyRef, TPM 2.0 Part 3)
_MEMBERS = frozenset({"format", "authority_public", "pcrs", "values", "policy_ref",
                      "approved_policy", "serial", "not_after", "signature",
                      "document_signature"})
_SIGNATURES = ("signature", "document_signature")
_HEX = re.compile(r"(?:[0-9a-f]{2})*")
_VALUE_KEY = re.compile(r"(sha1|sha256|sha384|sha512):(0|[1-9][0-9]?)")
_APPROVAL_ID = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Approval:
    """An authority's signed approval of one PCR policy, with its serial and expiry."""

    authority_public: bytes  # TPM2B_PUBLIC of the authority key
    selection: PCRSelection
    values: dict[tuple[str, int], bytes]
    policy_ref: bytes
    signature: bytes  # TPMT_SIGNATURE over H(approvedPolicy || policyRef): for the TPM
    serial: int = 0
    not_after: int | None = None
    document_signature: bytes = b""  # TPMT_SIGNATURE over H(DOCUMENT_LABEL || body)

    @cached_property
    def approved_policy(self) -> bytes:
        """PolicyPCR(selection, values) + PolicyAuthValue: what the TPM session must reach."""
        return policy_digests.pcr_auth_policy(self.selection, self.values)

    def body(self) -> bytes:
        """The canonical JSON the document signature covers: all but the signatures."""
        members = {k: v for k, v in self._json().items() if k not in _SIGNATURES}
        return json.dumps(members, sort_keys=True, separators=(",", ":")).encode("ascii")

    @cached_property
    def id(self) -> str:
        """The approval's identity: SHA-256 of its body, hex (independent of signatures)."""
        return hashlib.sha256(self.body()).hexdigest()

    def document_digest(self) -> bytes:
        return hashlib.sha256(DOCUMENT_LABEL + self.body()).digest()

    def _json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "authority_public": self.authority_public.hex(),
            "pcrs": str(self.selection),
            "values": {f"{bank}:{index}": value.hex()
                       for (bank, index), value in sorted(self.values.items())},
            "policy_ref": self.policy_ref.hex(),
            "approved_policy": self.approved_policy.hex(),
            "serial": self.serial,
            "not_after": self.not_after,
            "signature": self.signature.hex(),
            "document_signature": self.document_signature.hex(),
        }

    def to_bytes(self) -> bytes:
        """The canonical JSON of the whole approval: what an artifact's evidence carries."""
        return json.dumps(self._json(), sort_keys=True, separators=(",", ":")).encode("ascii")

    def to_json(self) -> str:
        """The approval file `attest policy approve` writes (indented for people)."""
        return json.dumps(self._json(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Approval:
        """An approval file, strictly; UsageError when it is not one."""
        try:
            return parse_approval(text.encode() if isinstance(text, str) else text)
        except EvidenceError as exc:
            raise UsageError(f"not an approval file: {exc.message}",
                             hint="approve again with `attest policy approve`") from None


def parse_approval(data: bytes) -> Approval:
    """An approval from its JSON bytes (hostile input: bounded, every member checked).

    Raises EvidenceError (malformed_artifact) on anything but a well-formed approval;
    signatures are not checked here (see :func:`verify_approval`).
    """
    if not isinstance(data, bytes) or len(data) > MAX_APPROVAL_BYTES:
        raise _malformed(f"more than {MAX_APPROVAL_BYTES} bytes")
    try:
        obj = strictjson.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _malformed(f"not JSON: {exc}") from None
    if not isinstance(obj, dict) or set(obj) != _MEMBERS:
        found = sorted(obj) if isinstance(obj, dict) else []
        raise _malformed(f"expected the members {', '.join(sorted(_MEMBERS))}; found "
                         f"{', '.join(map(repr, found[:12])) or 'none'}"[:400])
    if obj["format"] != FORMAT:
        raise _malformed(f"format is not {FORMAT!r}")
    selection = _selection(obj["pcrs"])
    values = _values(obj["values"], selection)
    not_after = obj["not_after"]
    if not_after is not None:
        not_after = _integer(not_after, "not_after")
    approval = Approval(
        authority_public=_hex(obj["authority_public"], "authority_public", 1024),
        selection=selection, values=values,
        policy_ref=_hex(obj["policy_ref"], "policy_ref", MAX_POLICY_REF_BYTES),
        signature=_hex(obj["signature"], "signature", 1024),
        serial=_integer(obj["serial"], "serial"), not_after=not_after,
        document_signature=_hex(obj["document_signature"], "document_signature", 1024),
    )
    if _hex(obj["approved_policy"], "approved_policy", 64) != approval.approved_policy:
        raise _malformed("approved_policy is not the PolicyPCR digest of its values")
    return approval


def verify_approval(approval: Approval, authority: Public, policy_ref: bytes) -> None:
    """Raise EvidenceError (key_policy_mismatch) unless ``authority`` signed both the
    approval the TPM checks and its document, for ``policy_ref``."""
    try:
        named = parse_public_tpm2b(approval.authority_public)
    except EvidenceError:
        raise _mismatch("its authority_public is not a TPM2B_PUBLIC") from None
    if named.name != authority.name:
        raise _mismatch("it is signed by another authority than the policy's")
    if approval.policy_ref != policy_ref:
        raise _mismatch(f"it is for policyRef {approval.policy_ref.hex() or '(empty)'}, not "
                        f"the policy's {policy_ref.hex() or '(empty)'}")
    for what, message, signature in (
        ("signature", approval.approved_policy + approval.policy_ref, approval.signature),
        ("document signature", DOCUMENT_LABEL + approval.body(), approval.document_signature),
    ):
        try:
            verify_tpm_signature(message, parse_signature(signature, Reason.KEY_POLICY_MISMATCH),
                                 authority, reason=Reason.KEY_POLICY_MISMATCH)
        except EvidenceError as exc:
            raise _mismatch(f"its {what} is not the authority's: {exc.message}") from None


def check_approval_id(text: str) -> str:
    """An approval id as written in a policy or on the command line, or ValueError."""
    if not _APPROVAL_ID.fullmatch(text):
        raise ValueError("an approval id is 64 lowercase hex digits (SHA-256; "
                         "`attest policy approve` prints it)")
    return text


def _selection(text: Any) -> PCRSelection:
    if not isinstance(text, str) or len(text) > 256:
        raise _malformed("pcrs is not a PCR list")
    try:
        selection = PCRSelection.parse(text)
    except UsageError as exc:
        raise _malformed(f"pcrs: {exc.message}") from None
    if str(selection) != text or not len(selection):
        raise _malformed(f"pcrs is not written canonically ({str(selection)!r})")
    return selection


def _values(obj: Any, selection: PCRSelection) -> dict[tuple[str, int], bytes]:
    if not isinstance(obj, dict):
        raise _malformed("values is not an object")
    values: dict[tuple[str, int], bytes] = {}
    for key, value in obj.items():
        match = _VALUE_KEY.fullmatch(key) if isinstance(key, str) else None
        if match is None:
            raise _malformed(f"values has a key that is not BANK:PCR: {str(key)[:40]!r}")
        bank, index = match.group(1), int(match.group(2))
        size = DIGEST_SIZES[bank]
        values[(bank, index)] = _hex(value, f"values[{key}]", size, exact=True)
    if set(values) != set(selection):
        raise _malformed("values do not name exactly the PCRs of pcrs")
    return values


def _hex(value: Any, what: str, limit: int, *, exact: bool = False) -> bytes:
    if not isinstance(value, str) or len(value) > 2 * limit or not _HEX.fullmatch(value):
        raise _malformed(f"{what} is not lowercase hex of at most {limit} bytes")
    raw = bytes.fromhex(value)
    if exact and len(raw) != limit:
        raise _malformed(f"{what} is not {limit} bytes")
    return raw


def _integer(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SERIAL:
        raise _malformed(f"{what} is not an integer 0-{MAX_SERIAL}")
    return value


def _malformed(message: str) -> EvidenceError:
    return EvidenceError(f"approval: {message}", reason=Reason.MALFORMED_ARTIFACT)


def _mismatch(message: str) -> EvidenceError:
    return EvidenceError(f"approval: {message}", reason=Reason.KEY_POLICY_MISMATCH)


def approved_for(approval: Approval, quoted: PCRValues) -> bool:
    """Whether the quoted values of the approval's PCRs reach its approved policy."""
    if any(key not in quoted for key in approval.selection):
        return False
    return policy_digests.pcr_auth_policy(approval.selection, quoted) == approval.approved_policy
