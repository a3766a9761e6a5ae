"""The verifier policy: what a verifier trusts and what it lets artifacts do.

The classes mirror the sections of the policy file (YAML, read by
:func:`attest.policy.load_policy`); each attribute's documentation names its
key, its default and what the verifier does with it. Instances are frozen and
checked by the loader: build them by loading a file, not by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from types import MappingProxyType

from attest.eventlog.appraise import ReferenceValues
from attest.eventlog.sources import LogSources
from attest.evidence import tpmpolicy as policy_digests
from attest.evidence.pcrs import PCRSelection
from attest.evidence.structures import parse_public_tpm2b
from attest.patterns import shell_match

POLICY_VERSION = 1
DEFAULT_SEALED_PCRS = (0, 1, 2, 3, 4, 5, 6, 7)
DEFAULT_RUNTIME_PCR = 15
# Signing keys are created with a SHA-256 policy session (attest.tpm.keys).
KEY_POLICY_SESSION_HASH = "sha256"


class EnrollmentMode(StrEnum):
    """Where the verifier learns which AKs (hosts) it trusts (key ``enrollment``)."""

    STORE = "store"
    """Enrollment records in the verifier's store, made by credential activation
    against an EK whose certificate chains to ``ek_roots``."""
    POLICY = "policy"
    """The ``trusted_aks`` list in the policy itself: for offline verifiers."""


class NonceMode(StrEnum):
    """Whether an artifact must carry a verifier's challenge (key ``freshness.nonce``)."""

    REQUIRED = "required"
    """Interactive: ``eat_nonce`` must be a nonce this verifier issued, unused and unexpired."""
    OPTIONAL = "optional"
    """A nonce, when present, is checked as above; without one, time-based freshness applies."""
    FORBIDDEN = "forbidden"
    """Time-based only: an artifact carrying a nonce is refused."""


class KeyPolicyKind(StrEnum):
    """How signing keys are bound to the platform state (key ``key_policy.kind``)."""

    PCR = "pcr"
    """authPolicy = PolicyPCR(sealed PCRs, their values) + PolicyAuthValue."""
    AUTHORIZE = "authorize"
    """authPolicy = PolicyAuthorize(authority, policyRef): the authority approves PCR values."""


@dataclass(frozen=True)
class TrustedAK:
    """One entry of ``trusted_aks``: an AK the verifier trusts without an enrollment record.

    Attributes:
        host: ``host``, required. The host id the AK stands for; rules match it
            (``rules[].hosts``) and decisions and the audit log name it.
        ak_public: ``ak_public``, required. The AK's TPM2B_PUBLIC, as hex
            (``attest`` writes it at provisioning). It must be a TPM-bound
            restricted signing key; artifacts name the AK by its TPM name.
        ak_qualified_name: ``ak_qualified_name``, optional. The AK's qualified
            name (hex TPM2B_NAME content), which quotes carry as
            ``qualifiedSigner``; when given, a quote must carry exactly it.
    """

    host: str
    ak_public: bytes
    ak_qualified_name: bytes | None = None

    @cached_property
    def name(self) -> bytes:
        """The AK's TPM name (nameAlg || H(TPMT_PUBLIC)): what artifacts name as ``iss``."""
        return parse_public_tpm2b(self.ak_public).name


@dataclass(frozen=True)
class PCRPolicy:
    """Section ``pcrs``: which PCRs a quote must cover.

    Attributes:
        bank: ``pcrs.bank``, default ``sha256``; one of sha1, sha256, sha384,
            sha512. The PCR bank quoted, sealed to and replayed.
        sealed: ``pcrs.sealed``, default ``[0, 1, 2, 3, 4, 5, 6, 7]`` (the boot
            chain). The PCRs signing keys are sealed to: when one changes, the
            key stops signing. With ``key_policy.kind: pcr`` it may not be empty.
        runtime: ``pcrs.runtime``, default ``15``; 0-23, not one of
            ``sealed``, and not 16 or 23 (software can reset them, and a reset
            PCR's log starts over clean). The PCR every runtime measurement extends; quoted, its
            log replayed and appraised, but never sealed to (each measurement
            changes it).

    A quote must cover ``sealed`` and ``runtime`` (:attr:`required`).
    """

    bank: str = "sha256"
    sealed: tuple[int, ...] = DEFAULT_SEALED_PCRS
    runtime: int = DEFAULT_RUNTIME_PCR

    @cached_property
    def sealed_selection(self) -> PCRSelection:
        """The sealed PCRs in ``bank``: the selection of a ``pcr`` key's PolicyPCR."""
        return PCRSelection.of({self.bank: self.sealed})

    @cached_property
    def required(self) -> PCRSelection:
        """The PCRs every quote must cover: the sealed ones and the runtime PCR."""
        return PCRSelection.of({self.bank: (*self.sealed, self.runtime)})


@dataclass(frozen=True)
class KeyPolicy:
    """Section ``key_policy`` (required): the authPolicy every signing key must have.

    A verifier compares it with the authPolicy in the key's certified
    TPM2B_PUBLIC (``key_policy_mismatch`` when they differ): this is what
    proves the key signs only in the sealed platform state.

    Attributes:
        kind: ``key_policy.kind``, default ``pcr``; ``pcr`` or ``authorize``.
        sealed_values: ``key_policy.sealed_values``, required with kind
            ``pcr`` and refused with ``authorize``. A mapping from each PCR in
            ``pcrs.sealed`` (and no other) to its hex value in ``pcrs.bank``:
            the values keys were sealed to.
        authority_pem: with kind ``authorize``, the authority's public key,
            written inline as ``key_policy.authority`` (a PEM block) or as
            ``key_policy.authority_file`` (a path to a PEM file, relative to the
            policy file's folder); exactly one of the two. ECC P-256 or RSA
            (2048 bits or more).
        authority_name: the TPM name of that key (computed, not written).
        policy_ref: ``key_policy.policy_ref``, default empty; hex, kind
            ``authorize`` only. The policyRef bound into keys at creation.
        min_approval_serial: ``key_policy.min_approval_serial``, default ``0``,
            kind ``authorize`` only. Artifacts signed under an approval with a
            lower serial are denied (``key_policy_mismatch``): raise it when an
            update ships, and every older approval stops counting, on every host.
        revoked_approvals: ``key_policy.revoked_approvals``, default none, kind
            ``authorize`` only. Ids of approvals (64 hex digits, as ``attest policy
            approve`` prints them) that are denied whatever their serial.

    With kind ``authorize`` an artifact must carry the approval its key signed
    under, signed by the authority (both its TPM signature and its document
    signature), for ``policy_ref``, for exactly the sealed PCRs, unexpired,
    not retired by the two settings above nor revoked in the store
    (``attest revoke --approval``), and approving the sealed PCR values the
    quote shows (see docs/verification.md).
    """

    kind: KeyPolicyKind = KeyPolicyKind.PCR
    sealed_values: Mapping[int, bytes] = field(default_factory=lambda: MappingProxyType({}))
    authority_pem: bytes | None = None
    authority_name: bytes | None = None
    policy_ref: bytes = b""
    min_approval_serial: int = 0
    revoked_approvals: frozenset[str] = frozenset()

    def expected_digest(self, pcrs: PCRPolicy) -> bytes:
        """The authPolicy a signing key must carry under this policy (SHA-256 session)."""
        if self.kind is KeyPolicyKind.AUTHORIZE:
            if self.authority_name is None:
                raise ValueError("an authorize key policy needs the authority's name")
            return policy_digests.policy_authorize(
                policy_digests.initial(KEY_POLICY_SESSION_HASH), self.authority_name,
                self.policy_ref, KEY_POLICY_SESSION_HASH)
        values = {(pcrs.bank, index): value for index, value in self.sealed_values.items()}
        return policy_digests.pcr_auth_policy(pcrs.sealed_selection, values,
                                              KEY_POLICY_SESSION_HASH)


@dataclass(frozen=True)
class Freshness:
    """Section ``freshness``: how recent the evidence must be.

    Attributes:
        nonce: ``freshness.nonce``, default ``required``; ``required``
            (interactive: a challenge from ``attest challenge``), ``optional``
            or ``forbidden`` (time-based). See :class:`NonceMode`.
        max_age: ``freshness.max_age``, default ``300s``, in seconds. How old
            an artifact's ``iat`` may be when it is verified (``stale_evidence``).
        clock_skew: ``freshness.clock_skew``, default ``30s``, in seconds. The
            tolerance between host and verifier clocks, applied to ``iat``,
            ``nbf`` and ``exp``.
        deny_reset: ``freshness.deny_reset``, default ``false``. When true, a
            TPM reboot (a changed resetCount, or restartCount: a TPM Restart
            after Shutdown(STATE) resets the PCRs too, against the last quote
            seen from that AK) is a denial (``tpm_reset``) until an administrator
            re-admits the host; when false it starts a new boot epoch.
        report_max_age: ``freshness.report_max_age``, default unset, in seconds.
            When set, continuous attestation is on: a host must have an accepted
            report (``POST /v1/reports``) at most this old, else its artifacts are
            denied ``host_stale``; a host whose last report showed an unexpected
            measurement is denied ``host_untrusted`` (attest.server.reports).

    Durations are whole seconds (``300``) or a number with a unit: ``90s``,
    ``5m``, ``1h``, ``2d``, or a sum such as ``1h30m``.
    """

    nonce: NonceMode = NonceMode.REQUIRED
    max_age: int = 300
    clock_skew: int = 30
    deny_reset: bool = False
    report_max_age: int | None = None


@dataclass(frozen=True)
class ArtifactLimits:
    """Section ``artifacts``: limits on artifacts themselves.

    Attributes:
        max_lifetime: ``artifacts.max_lifetime``, default ``600s``, in seconds.
            ``exp - iat`` may not exceed it.
        single_use: ``artifacts.single_use``, default ``true``. Each ``jti`` is
            accepted once (``replayed`` afterwards).
    """

    max_lifetime: int = 600
    single_use: bool = True


@dataclass(frozen=True)
class LineageLimits:
    """Section ``lineage``: how artifacts may derive from one another.

    Attributes:
        max_depth: ``lineage.max_depth``, default ``3``, 0 or more. The deepest
            chain of parents an artifact may have; ``0`` forbids child artifacts.
    """

    max_depth: int = 3


@dataclass(frozen=True)
class Rule:
    """One entry of ``rules``: what some subjects may do on some hosts.

    Every list is required and holds at least one shell-style pattern
    (Python's ``fnmatch``, case-sensitive): ``*`` matches any run of
    characters, ``?`` one character, ``[abc]`` / ``[!abc]`` a set; write
    ``[*]``, ``[?]`` or ``[[]`` for the literal character.

    Attributes:
        subjects: ``rules[].subjects``: patterns over the artifact's ``sub``.
        actions: ``rules[].actions``: patterns over ``scope.action`` (``exec``).
        argv: ``rules[].argv``: patterns over ``scope.argv`` **joined with single
            spaces** into one string. A pattern applies to that whole string:
            ``*`` also matches spaces, so ``/usr/bin/backup --full *`` allows
            ``/usr/bin/backup --full /a /b`` (any further arguments), and
            arguments containing spaces can't be told from several arguments.
            Anchor patterns at both ends to allow exactly one command line.
        hosts: ``rules[].hosts``: patterns over the host id of the AK that
            quoted (its enrollment record, or ``trusted_aks[].host``).
    """

    subjects: tuple[str, ...]
    actions: tuple[str, ...]
    argv: tuple[str, ...]
    hosts: tuple[str, ...]

    def matches(self, subject: str, action: str, argv: Sequence[str], host: str) -> bool:
        command_line = " ".join(argv)
        return (_any(self.subjects, subject) and _any(self.actions, action)
                and _any(self.argv, command_line) and _any(self.hosts, host))


def _any(patterns: tuple[str, ...], value: str) -> bool:
    return any(shell_match(value, pattern) for pattern in patterns)


@dataclass(frozen=True)
class ExecutablePolicy:
    """Section ``executables``: which executables an ``exec`` artifact may name.

    Either the word ``any`` (an explicit opt-out: no executable is appraised) or a
    list of ``{name, digests}``: ``digests`` are SHA-256 hex digests of executable
    files (what ``scope.executable_digest`` holds), ``name`` says what they are
    (a path, for people and messages; matching is by digest). ``attest policy init
    --from-host`` writes the commands the host has measured. An artifact whose
    ``scope.executable_digest`` no entry allows is denied
    (``reference_value_mismatch``), and so is one naming an executable its runtime
    log never measured (``eventlog_mismatch``). A policy without the section
    denies every ``exec`` artifact: appraising executables is the default.

    Attributes:
        any: the ``any`` opt-out.
        allowed: SHA-256 digest (bytes) -> the names it was listed under.
    """

    any: bool = False
    allowed: Mapping[bytes, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class VerifierPolicy:
    """A loaded policy file.

    Attributes:
        id: ``id``, required. The policy's id (1-128 of letters, digits, ``.``,
            ``_``, ``:``, ``-``); with :attr:`digest` it goes into the
            ``policy`` claim of artifacts issued under it.
        digest: SHA-256 of the policy file's bytes, hex (computed): any edit of
            the file, comments included, changes it.
        key_policy: section ``key_policy`` (required); see :class:`KeyPolicy`.
        rules: ``rules``, required, at least one; see :class:`Rule`. An
            artifact must match one of them.
        version: ``version``, required; must be ``1``.
        ek_roots: ``ek_roots``, default none. Files or folders of PEM/DER
            certificates trusted as EK manufacturer roots, each relative to the
            policy file's folder (or absolute); every path must exist. Used to
            check EK certificates at enrollment.
        enrollment: ``enrollment``, default ``store``; see :class:`EnrollmentMode`.
        trusted_aks: ``trusted_aks``, required (non-empty) with ``enrollment:
            policy`` and refused with ``store``; see :class:`TrustedAK`.
        pcrs: section ``pcrs``; see :class:`PCRPolicy`.
        reference: section ``reference``, default none (no appraisal). The
            allowed measurements, in the form of
            :meth:`attest.eventlog.appraise.ReferenceValues.from_dict`; its
            ``bank`` defaults to, and must equal, ``pcrs.bank``, since only that
            bank's log digests are checked against the quote.
        freshness: section ``freshness``; see :class:`Freshness`.
        artifacts: section ``artifacts``; see :class:`ArtifactLimits`.
        lineage: section ``lineage``; see :class:`LineageLimits`.
        executables: section ``executables``, default none (every ``exec``
            artifact is denied); see :class:`ExecutablePolicy`.
        keep_env: ``keep_env``, default ``[]``. The code-injecting environment
            variables (``LD_PRELOAD``, ``BASH_ENV``, ...) an artifact's
            ``scope.env`` may name (``attest run --keep-env``); any other is
            denied (``policy_mismatch``). An entry is a name (any value) or
            ``{name, values}``: SHA-256 hex digests of the only values allowed.
        keep_env_values: for the names written ``{name, values}``, those
            digests (lowercase hex); a name absent here may keep any value.
        path: the file the policy was loaded from (absolute), if any.
    """

    id: str
    digest: str
    key_policy: KeyPolicy
    rules: tuple[Rule, ...]
    version: int = POLICY_VERSION
    ek_roots: tuple[Path, ...] = ()
    enrollment: EnrollmentMode = EnrollmentMode.STORE
    trusted_aks: tuple[TrustedAK, ...] = ()
    pcrs: PCRPolicy = PCRPolicy()
    reference: ReferenceValues | None = None
    freshness: Freshness = Freshness()
    artifacts: ArtifactLimits = ArtifactLimits()
    lineage: LineageLimits = LineageLimits()
    path: Path | None = None
    executables: ExecutablePolicy | None = None
    keep_env: tuple[str, ...] = ()
    keep_env_values: Mapping[str, frozenset[str]] = field(
        default_factory=lambda: MappingProxyType({}))

    @property
    def required_pcrs(self) -> PCRSelection:
        """The PCRs a quote must cover: ``pcrs.sealed`` plus ``pcrs.runtime``."""
        return self.pcrs.required

    def expected_key_policy_digest(self) -> bytes:
        """The authPolicy every signing key must carry (see :class:`KeyPolicy`)."""
        return self._key_policy_digest

    @cached_property
    def _key_policy_digest(self) -> bytes:
        return self.key_policy.expected_digest(self.pcrs)

    @cached_property
    def log_sources(self) -> LogSources:
        """Which log explains which PCR: the runtime log the runtime PCR, the boot log
        the PCRs ``reference.boot`` appraises (none: no boot log is accepted)."""
        boot = frozenset() if self.reference is None else self.reference.boot_appraised_pcrs
        return LogSources(self.pcrs.runtime, boot,
                          frozenset((*self.pcrs.sealed, self.pcrs.runtime)))

    @property
    def wants_boot_log(self) -> bool:
        """Whether artifacts must carry the boot log (and whether they may)."""
        return self.log_sources.wants_boot_log

    def match_rule(self, subject: str, action: str, argv: Sequence[str],
                   host: str) -> Rule | None:
        """The first rule (in file order) allowing this request, or None: deny."""
        for rule in self.rules:
            if rule.matches(subject, action, argv, host):
                return rule
        return None

    def trusted_ak(self, name: bytes) -> TrustedAK | None:
        """The ``trusted_aks`` entry whose AK has this TPM name, if any."""
        return self._trusted_by_name.get(bytes(name))

    @cached_property
    def _trusted_by_name(self) -> Mapping[bytes, TrustedAK]:
        return MappingProxyType({ak.name: ak for ak in self.trusted_aks})
