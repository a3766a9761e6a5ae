"""Enrollment over the network: the verifier's half of credential activation, in two steps.

1. :meth:`Enroller.offer` (``POST /v1/enrollments``): the EK certificate must chain to
   the policy's EK roots (the same check every later verification makes of the stored
   certificate), the AK must be a TPM-bound restricted signing key; then a fresh secret
   is wrapped (MakeCredential) to the EK in the TCG template of the certificate's key
   and to the AK's name. Only the TPM holding that EK, with that AK loaded, unwraps it.
   The challenge is stored as a pending enrollment (attest.store.pending) with a hash of
   the secret, the verifier's seal, and a TTL.
2. :meth:`Enroller.activate` (``POST /v1/enrollments/{id}/activation``): the secret the
   TPM recovered, compared in constant time with the hash; then the AK is enrolled the
   way `attest enroll` enrolls (attest.audit.hooks.enroll_logged: the host-id rules,
   logged and sealed) in the transaction that consumes the pending row: single use.

Every refusal is a :class:`~attest.decision.Decision` with a named reason, logged in
the audit log as a denied enrollment. Nothing about a request raises except the service
being unable to work (the store out of reach: StoreUnavailable; a policy that offers no
enrollment: :class:`EnrollmentClosed`; no room for another challenge: :class:`Busy`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from attest.audit.entry import Entry, EntryKind, Outcome, fit
from attest.audit.hooks import enroll_logged
from attest.audit.log import AuditLog
from attest.decision import Decision, Denial
from attest.errors import AttestError, AuditUnavailable, EnvironmentProblem, EvidenceError
from attest.policy.model import EnrollmentMode, VerifierPolicy
from attest.policy.trust import TrustMaterial
from attest.reasons import Reason
from attest.store import Store
from attest.store import pending as pendings
from attest.store.errors import EnrollmentRefused
from attest.store.pending import PendingEnrollment, PendingFull, PendingGone
from attest.store.schema import MAX_HOST
from attest.verify.batch import said

if TYPE_CHECKING:
    from attest.evidence.structures import Public

SECRET_BYTES = 32
DEFAULT_TTL = 300
DEFAULT_CAP = 10_000
# A TPM needs one challenge at a time; a few allow a retry after a lost answer. The cap
# per EK keeps one EK certificate (they are public) from filling the table for all.
DEFAULT_CAP_PER_EK = 4
# Wrong secrets before a pending enrollment is dead: a guess never succeeds (256 bits),
# but a client that sends wrong ones is not the TPM and gets nothing more to try on.
MAX_ATTEMPTS = 3
ID_BYTES = 16

_SECRET_LABEL = b"attest enrollment secret v1\0"
_SEAL_LABEL = b"attest pending enrollment seal v1\0"


class EnrollmentClosed(AttestError):
    """The policy offers no enrollment over the network (403)."""


class Busy(AttestError):
    """No room for another pending enrollment (429): all of them, or this TPM's."""


@dataclass(frozen=True)
class EnrollmentRequest:
    """What a host sends: its host id, EK certificate (with intermediates to build the
    path), optionally its EK public (checked against the certificate, never used instead),
    and its AK public area (TPM2B_PUBLIC) and qualified name."""

    host: str
    ek_certificate: bytes
    ak_public: bytes
    ek_chain: tuple[bytes, ...] = ()
    ek_public: bytes | None = None
    ak_qualified_name: bytes = b""


@dataclass(frozen=True)
class Challenge:
    """The credential for the TPM (marshalled TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET)
    and the pending enrollment's id, usable until ``expires`` (epoch seconds)."""

    id: str
    credential_blob: bytes
    encrypted_secret: bytes
    expires: int

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "expires": self.expires,
                "credential_blob": base64.b64encode(self.credential_blob).decode(),
                "encrypted_secret": base64.b64encode(self.encrypted_secret).decode()}


def secret_hash(pending_id: str, secret: bytes) -> bytes:
    """What the store keeps of a secret: bound to its row, so no hash moves to another."""
    return hashlib.sha256(_SECRET_LABEL + _sized(pending_id.encode()) + secret).digest()


def _sized(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def seal_data(row: PendingEnrollment) -> bytes:
    """The fields a pending enrollment's seal covers: all but its use and attempts."""
    return _SEAL_LABEL + b"".join(_sized(part) for part in (
        row.id.encode(), row.host.encode(), row.ak_name.encode(), row.ak_public,
        row.ak_qualified_name, row.ek_certificate, row.ek.encode(), row.secret_hash,
        str(row.created_at).encode(), str(row.expires_at).encode()))


def host_id_ok(host: str) -> bool:
    """Whether ``host`` is a host id an enrollment may take (the store's rule: visible
    characters, no space at either end, 1 to MAX_HOST characters, UTF-8 text)."""
    if not 1 <= len(host) <= MAX_HOST or not host.isprintable() or host != host.strip():
        return False
    try:
        host.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _ak_name(ak_public: bytes) -> str:
    """The AK's name (hex) once it passes the AK checks; EvidenceError naming what fails."""
    from attest.evidence.ak import check_ak
    from attest.evidence.structures import parse_public_tpm2b

    try:
        ak = parse_public_tpm2b(ak_public)
    except EvidenceError as exc:
        raise EvidenceError(f"ak_public: {exc.message}",
                            reason=Reason.KEY_ATTRIBUTES_INVALID) from None
    check_ak(ak)
    return ak.name.hex()


class Enroller:
    """The two steps of network enrollment for one verifier (policy, store, audit log)."""

    def __init__(self, policy: VerifierPolicy, trust: TrustMaterial, store: Store,
                 log: AuditLog, *, verifier_id: str | None = None, ttl: int = DEFAULT_TTL,
                 cap: int = DEFAULT_CAP, cap_per_ek: int = DEFAULT_CAP_PER_EK,
                 clock: Callable[[], float]) -> None:
        if ttl < 1 or cap < 1 or cap_per_ek < 1:
            raise ValueError("the enrollment TTL and caps must be positive")
        self.policy = policy
        self.trust = trust
        self.store = store
        self.log = log
        self.verifier_id = verifier_id
        self.ttl = ttl
        self.cap = cap
        self.cap_per_ek = cap_per_ek
        self.clock = clock
        pendings.open_pending(store)

    # -- 1. the challenge ----------------------------------------------------------------
    def offer(self, request: EnrollmentRequest) -> Challenge | Decision:
        """The credential challenge for ``request``, or the denial (logged) saying why not.
        Raises EnrollmentClosed, Busy, or an EnvironmentProblem (the store)."""
        if self.policy.enrollment is not EnrollmentMode.STORE or not self.policy.ek_roots:
            # Without roots, activation proves only that an AK shares a TPM with an EK the
            # host chose: a software "TPM" would enroll. Over the network, never.
            raise EnrollmentClosed(
                "this verifier enrolls no host over the network: its policy "
                + ("trusts AKs by name (enrollment: policy)"
                   if self.policy.enrollment is not EnrollmentMode.STORE
                   else "names no ek_roots to check EK certificates against"))
        if not host_id_ok(request.host):
            raise ValueError("not a host id: check it with host_id_ok first")
        now = int(self.clock())
        ak_name: str | None = None
        try:
            ak_name = _ak_name(request.ak_public)
            ek_public, ek_identity = self._ek(request, now)
        except EvidenceError as exc:
            return self._denied(exc.reason, exc.message, request.host, ak_name, now)
        except EnvironmentProblem:
            raise
        except Exception as exc:  # noqa: BLE001 - fail closed: a denial, never a crash
            return self._denied(Reason.INTERNAL_ERROR, f"{type(exc).__name__}", request.host,
                                ak_name, now)
        from attest.evidence.credential import make_credential

        secret = secrets.token_bytes(SECRET_BYTES)
        credential = make_credential(ek_public, secret, bytes.fromhex(ak_name))
        pending_id = base64.urlsafe_b64encode(secrets.token_bytes(ID_BYTES)).rstrip(b"=").decode()
        row = PendingEnrollment(
            id=pending_id, host=request.host, ak_name=ak_name, ak_public=request.ak_public,
            ak_qualified_name=request.ak_qualified_name,
            ek_certificate=request.ek_certificate, ek=ek_identity,
            secret_hash=secret_hash(pending_id, secret), created_at=now,
            expires_at=now + self.ttl)
        row = replace(row, mac=self.log.seal_pending(seal_data(row)))
        try:
            pendings.add(self.store, row, now=now, cap=self.cap, cap_per_ek=self.cap_per_ek)
        except PendingFull as exc:
            raise Busy(str(exc), hint="retry after the pending enrollments expire "
                       f"({self.ttl} s)") from None
        except EnrollmentRefused as exc:
            reason = exc.reason if exc.reason is not None else Reason.ENROLLMENT_CONFLICT
            return self._denied(reason, exc.message, request.host, ak_name, now)
        return Challenge(pending_id, credential.credential_blob, credential.encrypted_secret,
                         row.expires_at)

    def _ek(self, request: EnrollmentRequest, now: int) -> tuple[Public, str]:
        from attest.evidence.ekcert import ek_id
        from attest.evidence.ektemplate import ek_public
        from attest.evidence.signatures import public_key
        from attest.evidence.structures import parse_public_tpm2b

        try:
            verified = self.trust.verify_ek_certificate(request.ek_certificate, now)
        except EvidenceError:
            if not request.ek_chain:
                raise
            # Every verification checks the stored certificate against the roots alone:
            # a chain that holds only through the host's intermediates would enroll an AK
            # that is then denied every time. Say so now.
            self.trust.verify_ek_certificate(request.ek_certificate, now, request.ek_chain)
            raise EvidenceError(
                "the EK certificate chains to the policy's ek_roots only through the "
                "intermediates sent: verifications check it against ek_roots alone",
                reason=Reason.EK_CHAIN_INVALID,
                hint="add the intermediate CA certificates to the policy's ek_roots") from None
        key = verified.leaf.public_key
        if request.ek_public is not None:
            stated = public_key(parse_public_tpm2b(request.ek_public), Reason.EK_CHAIN_INVALID)
            if ek_id(stated) != ek_id(key):
                raise EvidenceError("ek_public is not the key of the EK certificate",
                                    reason=Reason.EK_CHAIN_INVALID)
        # The EK the TPM derives for the certificate's key, never a key the host chose:
        # a TPM showing another TPM's certificate cannot activate.
        return ek_public(key), ek_id(key)

    # -- 2. the activation -------------------------------------------------------------
    def activate(self, pending_id: str, secret: bytes) -> Decision:
        """Enroll the pending enrollment ``pending_id`` if ``secret`` is its secret; the
        decision, denials logged. Raises an EnvironmentProblem when the store is gone."""
        now = int(self.clock())
        try:
            row = pendings.find(self.store, pending_id)
        except EnvironmentProblem:
            raise
        except AttestError as exc:  # a row of a type attest never writes (rowtypes)
            return self._denied(exc.reason or Reason.INTERNAL_ERROR, exc.message, None, None,
                                now)
        if row is None:
            return self._denied(Reason.ENROLLMENT_UNKNOWN, "no pending enrollment has this id "
                                "(never issued by this verifier, or expired and purged)",
                                None, None, now)
        try:
            sealed = hmac.compare_digest(row.mac, self.log.seal_pending(seal_data(row)))
        except AuditUnavailable as exc:
            return self._denied(Reason.AUDIT_UNAVAILABLE, said(exc), row.host, row.ak_name,
                                now)
        if not sealed:
            return self._denied(Reason.ENROLLMENT_UNKNOWN, "this pending enrollment was not "
                                "issued by this verifier (its seal does not match the row)",
                                row.host, row.ak_name, now)
        refused = self._usable(row, now)
        if refused is not None:
            return self._denied(*refused, row.host, row.ak_name, now)
        if not hmac.compare_digest(secret_hash(pending_id, secret), row.secret_hash):
            pendings.failed_attempt(self.store, pending_id)
            return self._denied(Reason.ACTIVATION_FAILED, "the secret is not the one wrapped "
                                "to the EK for this AK: the AK is not in the TPM that holds "
                                "the certified EK", row.host, row.ak_name, now)
        try:
            moved = enroll_logged(
                self.store, self.log, row.host, bytes.fromhex(row.ak_name), row.ak_public,
                row.ak_qualified_name, row.ek_certificate, ek=row.ek, move_host=False,
                now=now, verifier_id=self.verifier_id,
                before=lambda tx: pendings.consume(tx, pending_id, now))
        except PendingGone:
            again = pendings.find(self.store, pending_id)
            gone = (Reason.REPLAYED, "this pending enrollment was activated already")
            refused = gone if again is None else self._usable(again, now) or gone
            return self._denied(*refused, row.host, row.ak_name, now)
        except EnrollmentRefused as exc:
            reason = exc.reason if exc.reason is not None else Reason.ENROLLMENT_CONFLICT
            return self._denied(reason, exc.message, row.host, row.ak_name, now)
        except AuditUnavailable as exc:
            return self._denied(Reason.AUDIT_UNAVAILABLE, f"nothing was enrolled: {said(exc)}",
                                row.host, row.ak_name, now)
        assert moved is None  # noqa: S101 - move_host=False never moves
        return Decision(True, host=row.host, subject=f"ak:{row.ak_name}",
                        facts={"ak": row.ak_name, "ek": row.ek, "ek_chain": "verified"})

    def _usable(self, row: PendingEnrollment, now: int) -> tuple[Reason, str] | None:
        if row.used_at is not None:
            return Reason.REPLAYED, "this pending enrollment was activated already"
        if row.expires_at < now:
            return Reason.EXPIRED, "this pending enrollment expired: ask for a new one"
        if row.attempts >= MAX_ATTEMPTS:
            return (Reason.ACTIVATION_FAILED,
                    f"{row.attempts} wrong secrets: this pending enrollment is closed")
        return None

    # -- denials -----------------------------------------------------------------------
    def _denied(self, reason: Reason, message: str, host: str | None, ak_name: str | None,
                now: int) -> Decision:
        """The denial, logged as a denied enrollment; when the log can't take it, the
        denial says so too (it is still a denial)."""
        denials = [Denial(reason, message)]
        index = None
        try:
            index = self.log.record(Entry(
                kind=EntryKind.ENROLLMENT, decision=Outcome.DENIED, time=now,
                verifier=self.verifier_id, reasons=(reason.value,), host=fit(host),
                subject=None if ak_name is None else fit(f"ak:{ak_name}")))
        except AuditUnavailable as exc:
            denials.append(Denial(Reason.AUDIT_UNAVAILABLE, said(exc)))
        return Decision(False, tuple(denials), host=host,
                        subject=None if ak_name is None else f"ak:{ak_name}",
                        audit_index=index)
