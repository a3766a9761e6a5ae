"""Write a commented policy file: what ``attest policy init --from-host`` produces.

The text is built line by line rather than dumped, so that each field can carry
a comment saying what it does; every value is emitted in a form the loader
reads back exactly, and the result is loaded once before it is returned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import yaml

from attest.durations import format_duration
from attest.errors import PolicyError, UsageError
from attest.policy.load import check_rendered
from attest.policy.model import (
    DEFAULT_RUNTIME_PCR,
    POLICY_VERSION,
    EnrollmentMode,
    NonceMode,
    Rule,
    TrustedAK,
)


def render_policy(
    *,
    policy_id: str,
    sealed_values: Mapping[int, bytes],
    bank: str = "sha256",
    runtime_pcr: int = DEFAULT_RUNTIME_PCR,
    ek_roots: Sequence[str | Path] = (),
    trusted_aks: Sequence[TrustedAK] = (),
    runtime_reference: Mapping[str, Iterable[bytes]] | None = None,
    systemd_reference: Iterable[bytes] | None = None,
    executables: Mapping[str, Iterable[bytes]] | Literal["any"] | None = None,
    keep_env: Sequence[str] = (),
    authority_pem: bytes | None = None,
    policy_ref: bytes = b"",
    min_approval_serial: int = 0,
    revoked_approvals: Sequence[str] = (),
    sealed_pcrs: Sequence[int] | None = None,
    nonce: NonceMode = NonceMode.REQUIRED,
    max_age: int = 300,
    clock_skew: int = 30,
    deny_reset: bool = False,
    report_max_age: int | None = None,
    max_lifetime: int = 600,
    single_use: bool = True,
    max_depth: int = 3,
    rules: Sequence[Rule] | None = None,
    header: str | None = None,
) -> str:
    """A commented policy file (YAML text) that :func:`attest.policy.load_policy` reads back.

    Args:
        policy_id: the policy's ``id``.
        sealed_values: sealed PCR index -> its current value in ``bank``. With
            a PCR key policy (no ``authority_pem``) these become
            ``key_policy.sealed_values`` and their indices ``pcrs.sealed``.
        bank: ``pcrs.bank``.
        runtime_pcr: ``pcrs.runtime``.
        ek_roots: ``ek_roots`` entries, written as given: relative to the
            folder the policy will be written to, or absolute.
        trusted_aks: AKs to trust offline; when given, ``enrollment: policy``
            and these AKs, otherwise ``enrollment: store``.
        runtime_reference: measurement name (or path) -> allowed digests in
            ``bank``, written as ``reference.runtime``; ``None`` leaves the
            reference section out (nothing appraised), an empty mapping allows
            no runtime measurement at all.
        systemd_reference: the digests (in ``bank``) of systemd's records on the
            runtime PCR, written as ``reference.systemd``; ``None`` leaves it out.
        executables: executable path -> allowed SHA-256 digests, written as
            ``executables``; ``"any"`` writes the explicit opt-out; ``None``
            leaves the section out (every ``exec`` artifact is then denied); an
            empty mapping is written as a comment and denies them too.
        keep_env: ``keep_env``: code-injecting variables an artifact may keep.
        authority_pem: an authority's PEM public key: ``key_policy.kind:
            authorize`` with the key inline, instead of ``kind: pcr``.
        policy_ref: ``key_policy.policy_ref`` (authorize only).
        min_approval_serial, revoked_approvals: ``key_policy.min_approval_serial``
            and ``key_policy.revoked_approvals`` (authorize only).
        sealed_pcrs: ``pcrs.sealed``; defaults to the indices of
            ``sealed_values`` (give it with ``authority_pem``, whose keys are
            not sealed to values named here).
        nonce, max_age, clock_skew, deny_reset, report_max_age: section ``freshness``
            (durations in seconds).
        max_lifetime, single_use: section ``artifacts``.
        max_depth: ``lineage.max_depth``.
        rules: ``rules``; by default one rule letting any subject ``exec``
            anything on the trusted hosts (any host with ``enrollment: store``).
        header: text for the comment at the top (e.g. which host it came from).

    Raises UsageError when the values do not make a policy that loads.
    """
    sealed = sorted(sealed_values if sealed_pcrs is None else sealed_pcrs)
    if rules is None:
        hosts = tuple(dict.fromkeys(ak.host for ak in trusted_aks)) or ("*",)
        rules = (Rule(subjects=("*",), actions=("exec",), argv=("*",), hosts=hosts),)
    out = _Lines()
    out.comment("attest verifier policy. Every key is explained by `attest docs policy`; unknown")
    out.comment("keys are an error. Durations: whole seconds or 90s, 5m, 1h, 1h30m.")
    for line in (header or "").splitlines():
        out.comment(line)
    out.blank()
    out.add(f"version: {POLICY_VERSION}", "the policy file format; must be 1")
    out.add(f"id: {_q(policy_id)}", "artifacts issued with --policy name it; another id is denied")
    out.blank()
    _trust(out, ek_roots, trusted_aks)
    out.blank()
    out.comment("Quotes must cover the sealed PCRs and the runtime PCR, in this bank.")
    out.add("pcrs:")
    out.add(f"  bank: {bank}", "sha1 | sha256 | sha384 | sha512")
    out.add(f"  sealed: [{', '.join(map(str, sealed))}]",
            "the boot chain signing keys are sealed to")
    out.add(f"  runtime: {runtime_pcr}",
            "every measurement extends it; quoted and appraised, never sealed")
    out.blank()
    _key_policy(out, sealed_values, sealed, authority_pem, policy_ref)
    if authority_pem is not None:
        _approvals(out, min_approval_serial, revoked_approvals)
    if runtime_reference is not None:
        out.blank()
        _reference(out, bank, runtime_reference, systemd_reference)
    _executables(out, executables, keep_env)
    out.blank()
    out.add("freshness:")
    out.add(f"  nonce: {nonce.value}",
            "required: a challenge from `attest challenge`; optional | forbidden: time-based")
    out.add(f"  max_age: {format_duration(max_age)}", "oldest iat accepted")
    out.add(f"  clock_skew: {format_duration(clock_skew)}",
            "tolerated host/verifier clock difference")
    out.add(f"  deny_reset: {_bool(deny_reset)}",
            "true: a TPM reboot (resetCount or restartCount change) is denied "
            "until re-admitted")
    if report_max_age is not None:
        out.add(f"  report_max_age: {format_duration(report_max_age)}",
                "continuous attestation: a host's artifacts need a report this recent")
    out.blank()
    out.add("artifacts:")
    out.add(f"  max_lifetime: {format_duration(max_lifetime)}", "exp - iat may not exceed it")
    out.add(f"  single_use: {_bool(single_use)}", "each jti is accepted once")
    out.blank()
    out.add("lineage:")
    out.add(f"  max_depth: {max_depth}", "longest chain of parent artifacts; 0: no children")
    out.blank()
    _rules(out, rules)
    text = out.text()
    try:
        check_rendered(text)
    except PolicyError as exc:
        raise UsageError(f"the policy would not load: {exc.path or 'policy'}: {exc.detail}",
                         hint=exc.hint) from None
    return text


class _Lines:
    def __init__(self) -> None:
        self._lines: list[str] = []

    def add(self, line: str, comment: str | None = None) -> None:
        self._lines.append(f"{line}  # {comment}" if comment else line)

    def comment(self, text: str, indent: str = "") -> None:
        self._lines.append(f"{indent}# {text}".rstrip())

    def blank(self) -> None:
        self._lines.append("")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def _q(text: str) -> str:
    """A double-quoted YAML scalar: read back as exactly ``text``, whatever it holds."""
    dumped: str = yaml.safe_dump(text, default_style='"', width=1 << 30, allow_unicode=True)
    return dumped.strip()


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _trust(out: _Lines, ek_roots: Sequence[str | Path], trusted_aks: Sequence[TrustedAK]) -> None:
    out.comment("EK manufacturer roots (PEM/DER files or folders, relative to this file).")
    out.add(f"ek_roots: [{', '.join(_q(str(root)) for root in ek_roots)}]")
    if not trusted_aks:
        out.add(f"enrollment: {EnrollmentMode.STORE.value}",
                "AKs come from enrollment records in the verifier's store")
        return
    out.add(f"enrollment: {EnrollmentMode.POLICY.value}",
            "AKs come from trusted_aks below, not from the store")
    out.add("trusted_aks:")
    for ak in trusted_aks:
        out.add(f"  - host: {_q(ak.host)}", "the host id rules match")
        out.add(f"    ak_public: {_q(ak.ak_public.hex())}", "TPM2B_PUBLIC of its AK")
        if ak.ak_qualified_name is not None:
            out.add(f"    ak_qualified_name: {_q(ak.ak_qualified_name.hex())}",
                    "what its quotes carry as qualifiedSigner")


def _key_policy(out: _Lines, sealed_values: Mapping[int, bytes], sealed: Sequence[int],
                authority_pem: bytes | None, policy_ref: bytes) -> None:
    out.comment("The authPolicy every signing key must have (checked in its certification).")
    out.add("key_policy:")
    if authority_pem is None:
        out.add("  kind: pcr", "PolicyPCR(sealed PCRs = these values) + PolicyAuthValue")
        out.add("  sealed_values:", "the sealed PCRs' values when the key was made")
        for index in sealed:
            value = sealed_values.get(index)
            if value is None:
                raise UsageError(f"no value for sealed PCR {index}")
            out.add(f"    {_q(str(index))}: {_q(value.hex())}")
        return
    pem = authority_pem.decode("ascii", errors="replace").strip()
    if not pem.isascii() or "\ufffd" in pem:
        raise UsageError("the authority key is not a PEM text")
    out.add("  kind: authorize", "PolicyAuthorize: the authority approves PCR values")
    out.add("  authority: |", "the authority's public key")
    for line in pem.splitlines():
        out.add(f"    {line.strip()}")
    out.add(f"  policy_ref: {_q(policy_ref.hex())}", "bound into keys at creation (hex)")


def _approvals(out: _Lines, min_serial: int, revoked: Sequence[str]) -> None:
    out.add(f"  min_approval_serial: {min_serial}",
            "approvals with a lower serial are denied (raise it when an update ships)")
    out.add(f"  revoked_approvals: [{', '.join(_q(i) for i in revoked)}]",
            "approval ids denied whatever their serial")


def _reference(out: _Lines, bank: str, runtime: Mapping[str, Iterable[bytes]],
               systemd: Iterable[bytes] | None = None) -> None:
    out.comment("Reference values: every runtime measurement must be one of these.")
    out.add("reference:")
    out.add(f"  bank: {bank}", "the digests below are in this bank (= pcrs.bank)")
    if systemd is not None:
        extended = list(dict.fromkeys(systemd))
        out.add(f"  systemd: [{', '.join(_q(d.hex()) for d in extended)}]",
                "what systemd extended into the runtime PCR (`attest docs measurement`)")
    if not runtime:
        out.add("  runtime: []", "no runtime measurement is allowed yet")
        return
    out.add("  runtime:", "measurement name or path -> allowed digests")
    for name, digests in runtime.items():
        out.add(f"    - name: {_q(name)}")
        out.add(f"      digests: [{', '.join(_q(d.hex()) for d in digests)}]")


def _executables(out: _Lines, executables: Mapping[str, Iterable[bytes]] | Literal["any"] | None,
                 keep_env: Sequence[str]) -> None:
    if keep_env:
        out.blank()
        out.add(f"keep_env: {_list(keep_env)}",
                "injecting variables (LD_PRELOAD, ...) `attest run --keep-env` may keep")
    if executables is None:
        return
    out.blank()
    out.comment("Executables an exec artifact may name (scope.executable_digest, SHA-256);")
    out.comment("each must also be measured in the runtime log. `executables: any` opts out.")
    if executables == "any":
        out.add("executables: any", "no executable is appraised")
        return
    if not executables:
        out.comment("executables: none measured yet: every exec artifact is denied until "
                    "some are listed")
        return
    out.add("executables:")
    for name, digests in executables.items():
        out.add(f"  - name: {_q(name)}")
        out.add(f"    digests: [{', '.join(_q(d.hex()) for d in digests)}]")


def _rules(out: _Lines, rules: Sequence[Rule]) -> None:
    out.comment("Rules: an artifact must match one. Shell-style patterns (* ? [..]); argv")
    out.comment("patterns match the arguments joined with single spaces, and * spans spaces.")
    out.add("rules:")
    for rule in rules:
        out.add(f"  - subjects: {_list(rule.subjects)}", "who asks (sub)")
        out.add(f"    actions: {_list(rule.actions)}", "scope.action")
        out.add(f"    argv: {_list(rule.argv)}", "the command line")
        out.add(f"    hosts: {_list(rule.hosts)}", "host ids")


def _list(patterns: Sequence[str]) -> str:
    return "[" + ", ".join(_q(p) for p in patterns) + "]"
