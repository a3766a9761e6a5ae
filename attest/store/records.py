"""What the store hands out and takes in: immutable values, no database handles."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum


class NonceState(Enum):
    UNKNOWN = "unknown"  # never issued by this store (or purged)
    USABLE = "usable"  # issued, unused, unexpired
    USED = "used"  # consumed by an accepted artifact; wins over EXPIRED
    EXPIRED = "expired"  # issued, never used, TTL passed


class RevocationKind(StrEnum):
    """What a revocation names; the value is what the ``revocations.kind`` column holds."""

    ARTIFACT = "jti"
    KEY = "key"  # a signing key, by its TPM name (the JWS kid), hex
    AK = "ak"  # an attestation key, by its TPM name, hex
    EK = "ek"  # a TPM, by its EK: SHA-256 of the EK's SubjectPublicKeyInfo, hex
    HOST = "host"
    # An authority's approval (attest.evidence.approval), by its id: SHA-256 hex.
    APPROVAL = "approval"


@dataclass(frozen=True)
class ApprovalUse:
    """The authority approval an artifact's key signed under, as the store keys it."""

    id: str  # SHA-256 of the approval's body, hex (what revocations name)
    authority: str  # the authority's TPM name, hex
    policy_ref: str  # hex
    serial: int


@dataclass(frozen=True)
class Revocation:
    kind: RevocationKind
    subject: str  # the jti, kid hex, AK name hex, EK id or host
    reason: str
    revoked_at: int
    cascaded_from: str | None = None  # for a descendant: the jti revoked directly


@dataclass(frozen=True)
class Enrollment:
    """An AK the verifier admitted for a host. ``revoked`` covers the AK, its EK and host."""

    host: str
    ak_name: bytes
    ak_public: bytes  # TPM2B_PUBLIC
    ak_qualified_name: bytes
    ek_certificate: bytes | None
    enrolled_at: int
    updated_at: int
    revoked: bool = False
    revocation_reason: str | None = None
    ek: str | None = None  # the EK id credential activation bound the AK to, when recorded
    # The verifier's MAC over the fields above that trust rests on (attest.audit.seals);
    # None: the row was not written by an audited `attest enroll`.
    seal: bytes | None = None


@dataclass(frozen=True)
class SeenClock:
    """A quote's clockInfo: clock in ms; reset/restart counts obfuscated for AKs under the SRK."""

    clock: int
    reset_count: int
    restart_count: int


@dataclass(frozen=True)
class EpochRecord:
    """An AK's current boot epoch as the store keeps it (table ``ak_epochs``).

    Clocks in milliseconds; ``last_time`` (ms since the Unix epoch) is the latest real
    time the TPM can have reached ``last_clock`` (see :mod:`attest.store.epochs`).
    """

    reset_count: int  # obfuscated: compare for equality only
    restart_count: int
    first_clock: int
    last_clock: int
    floor_clock: int | None  # the highest clock of the earlier epochs seen, if any
    last_time: int
    reset_allowed: bool  # `attest readmit` ran: the next TPM reset is allowed (deny_reset)
    reset_pending: bool  # this epoch is a TPM reset deny_reset refused, not yet re-admitted

    def same_epoch(self, reset_count: int, restart_count: int) -> bool:
        return (self.reset_count, self.restart_count) == (reset_count, restart_count)


@dataclass(frozen=True)
class ArtifactRecord:
    """An accepted artifact as the store keeps it.

    When passed to :meth:`Store.accept`, ``accepted_at``, the revocation fields,
    ``approval`` and ``seal`` are ignored: the store stamps ``now``, revocations live in
    their own table, the approval is the one ``accept`` is given, and only the audit
    log seals (attest.audit.seals).
    """

    jti: str
    sha256: str  # hex, of the JWS signing input (header.payload): what a child names
    parent_jti: str | None
    depth: int  # 0 for a root artifact
    exp: int
    host: str
    kid: str  # signing key name, hex
    ak_name: str  # AK name, hex (the iss claim)
    subject: str
    scope: str  # JSON text of the scope claim
    accepted_at: int = 0
    revoked: bool = False
    revocation_reason: str | None = None
    # The authority approval its key signed under (artifact_approvals), when recorded:
    # an approval revocation reaches the artifact's descendants through it.
    approval: str | None = None
    # The verifier's MAC over the fields above that lineage rests on (attest.audit.seals);
    # None: no audited acceptance wrote the row (or it predates seals).
    seal: bytes | None = None


@dataclass(frozen=True)
class Snapshot:
    """What a verifier reads of the store for one artifact, in one read transaction.

    See :meth:`attest.store.Store.snapshot`; fields not asked for are None (or False).
    """

    enrollment: Enrollment | None  # the AK's, when asked for; None also when not enrolled
    last_clock: SeenClock | None  # the AK's latest accepted quote clock
    nonce: NonceState | None  # the state of the nonce asked about
    jti_seen: bool  # whether the jti was accepted before, when asked
    # Revocations of the jti, the key (kid), the AK or the host: most specific first.
    revocations: tuple[Revocation, ...]
    parent: ArtifactRecord | None  # the parent asked about, as Store.artifact reads it
    parent_revocation: Revocation | None  # the nearest revocation of the parent's line
    # The highest approval serial accepted for this AK, authority and policyRef (when an
    # approval was asked about and one was accepted before).
    approval_serial: int | None = None
    epoch: EpochRecord | None = None  # the AK's current boot epoch (ak_epochs)
    nonce_issued_at: int | None = None  # when the nonce asked about was issued, if usable
    # The appraised runtime log prefixes of the count asked about (attest.store.prefixes).
    log_prefixes: tuple[LogPrefix, ...] = ()


@dataclass(frozen=True)
class LogPrefix:
    """An appraised prefix of an AK's runtime log in one boot epoch, under one policy
    (table ``log_prefixes``, attest.store.prefixes): the verifier replayed and appraised
    its ``count`` records (digest: attest.eventlog.prefix) to a quote of that epoch."""

    ak_name: str  # hex
    reset_count: int  # the quote's, obfuscated: compare for equality only
    restart_count: int
    policy_digest: str
    count: int
    digest: bytes
    pcr_values: tuple[tuple[str, bytes], ...]  # the runtime PCR after the prefix, by bank
    commands: frozenset[str]  # SHA-256 hex of the commands the prefix measured
    accepted_at: int = 0
    # The verifier's MAC over the fields above (attest.audit.seals); None: unsealed.
    seal: bytes | None = None
