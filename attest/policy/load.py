"""Read a policy file into a :class:`VerifierPolicy`, or say exactly where it is wrong.

Every error is a :class:`attest.errors.PolicyError` naming the file, the line
and column, and the key path (``policy.yaml:12:12: freshness.max_age: ...``).
Unknown keys, duplicate keys, aliases and YAML tags are refused. Paths in the
file (``ek_roots``, ``key_policy.authority_file``) are relative to the file's
folder; they must exist when the policy is loaded.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

import yaml

from attest.durations import DURATION_SYNTAX, parse_duration
from attest.errors import EvidenceError, MalformedInput, PolicyError
from attest.eventlog.appraise import BOOT_APPLICATIONS_PCR, SECURE_BOOT_PCR, ReferenceValues
from attest.evidence.ak import check_ak
from attest.evidence.approval import MAX_POLICY_REF_BYTES, MAX_SERIAL, check_approval_id
from attest.evidence.pcrs import DIGEST_SIZES, HASH_NAMES, PCR_COUNT, RESETTABLE_PCRS
from attest.evidence.structures import parse_public_tpm2b
from attest.hexdigits import parse_hex
from attest.inputfile import MAX_KEY_BYTES, MAX_POLICY_BYTES, read_at_most
from attest.policy import values
from attest.policy.authority import authority_name
from attest.policy.model import (
    POLICY_VERSION,
    ArtifactLimits,
    EnrollmentMode,
    ExecutablePolicy,
    Freshness,
    KeyPolicy,
    KeyPolicyKind,
    LineageLimits,
    NonceMode,
    PCRPolicy,
    Rule,
    TrustedAK,
    VerifierPolicy,
)
from attest.policy.yamltree import INT, Fields, Located, compose

T = TypeVar("T")

_TOP = ("version", "id", "ek_roots", "enrollment", "trusted_aks", "pcrs", "key_policy",
        "reference", "executables", "keep_env", "freshness", "artifacts", "lineage",
        "rules")
_EXECUTABLE = ("name", "digests")
_KEPT_VARIABLE = ("name", "values")
# What `executables` may say instead of a list: appraise no executable at all.
EXECUTABLES_ANY = "any"
_PCRS = ("bank", "sealed", "runtime")
_KEY_POLICY = ("kind", "sealed_values", "authority", "authority_file", "policy_ref",
               "min_approval_serial", "revoked_approvals")
_KEY_POLICY_FOR = {
    KeyPolicyKind.PCR: ("sealed_values",),
    KeyPolicyKind.AUTHORIZE: ("authority", "authority_file", "policy_ref",
                              "min_approval_serial", "revoked_approvals"),
}
_FRESHNESS = ("nonce", "max_age", "clock_skew", "deny_reset", "report_max_age")
_ARTIFACTS = ("max_lifetime", "single_use")
_LINEAGE = ("max_depth",)
_TRUSTED_AK = ("host", "ak_public", "ak_qualified_name")
_RULE = ("subjects", "actions", "argv", "hosts")
# The start of ReferenceValues.from_dict's messages: the path of the value at fault.
_REFERENCE_PATH = re.compile(r"^reference(?:\.[A-Za-z_]+|\[[^\]]*\])*")


def load_policy(path: str | Path) -> VerifierPolicy:
    """Load the policy file at ``path``; PolicyError (exit 2) names what is wrong and where."""
    file = Path(path)
    try:
        data = read_at_most(file, MAX_POLICY_BYTES)
    except OSError as exc:
        raise PolicyError(f"cannot read the policy: {exc.strerror}", file=str(path),
                          line=1) from None
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyError(f"the policy holds more than {MAX_POLICY_BYTES} bytes: not one",
                          file=str(path), line=1)
    return parse_policy(data, source=str(path), base_dir=file.resolve().parent,
                        path=file.resolve())


def parse_policy(data: bytes, *, source: str = "<policy>", base_dir: str | Path = ".",
                 path: Path | None = None) -> VerifierPolicy:
    """A policy from the file's bytes; ``source`` names it in errors, ``base_dir`` anchors
    its relative paths. The policy's digest is the SHA-256 of ``data``."""
    return _read(compose(data, source), base=Path(base_dir).resolve(),
                 digest=hashlib.sha256(data).hexdigest(), path=path, check_paths=True)


def check_rendered(text: str) -> VerifierPolicy:
    """Load a policy text just written, without reading or checking the paths it names."""
    data = text.encode()
    return _read(compose(data, "<rendered policy>"), base=Path(".").resolve(),
                 digest=hashlib.sha256(data).hexdigest(), path=None, check_paths=False)


def _read(root: Located, *, base: Path, digest: str, path: Path | None,
          check_paths: bool) -> VerifierPolicy:
    # Sections are read in the order a policy file lists them, so the first error
    # reported is usually the first in the file.
    top = root.mapping(_TOP)
    version_at = top.require("version", hint=f"a policy starts with `version: {POLICY_VERSION}`")
    if version_at.integer(0) != POLICY_VERSION:
        raise version_at.error(f"this attest reads policy version {POLICY_VERSION} only")
    policy_id = _checked(top.require("id", hint="name the policy, e.g. `id: prod-web`"),
                         values.check_policy_id)
    ek_roots = _ek_roots(top.get("ek_roots"), base, check_paths)
    enrollment = _optional(top.get("enrollment"), lambda at: at.choice(EnrollmentMode),
                           EnrollmentMode.STORE)
    trusted_aks = _trusted_aks(top, enrollment)
    pcrs = _pcrs(top.get("pcrs"))
    key_policy = _key_policy(top.require(
        "key_policy", hint="the authPolicy signing keys must have; see `kind: pcr`"),
        pcrs, base, check_paths)
    reference = _reference(top.get("reference"), pcrs)
    executables = _executables(top.get("executables"))
    keep_env, keep_env_values = _keep_env(top.get("keep_env"))
    freshness = _freshness(top.get("freshness"))
    artifacts = _artifacts(top.get("artifacts"))
    lineage = _lineage(top.get("lineage"))
    rules = _rules(top.require(
        "rules", hint="add at least one rule; without rules every artifact is denied"))
    return VerifierPolicy(
        id=policy_id, digest=digest, key_policy=key_policy, rules=rules,
        version=POLICY_VERSION, ek_roots=ek_roots, enrollment=enrollment,
        trusted_aks=trusted_aks, pcrs=pcrs, reference=reference, freshness=freshness,
        artifacts=artifacts, lineage=lineage, path=path, executables=executables,
        keep_env=keep_env, keep_env_values=keep_env_values,
    )


# --- helpers -------------------------------------------------------------------


def _optional(at: Located | None, read: Callable[[Located], T], default: T) -> T:
    return default if at is None else read(at)


def _checked(at: Located, check: Callable[[str], T]) -> T:
    """Read a string and run a values.* check on it, placing its complaint at the value."""
    text = at.string()
    try:
        return check(text)
    except ValueError as exc:
        raise at.error(str(exc)) from None


def _hex(at: Located, *, what: str, size: int | None = None) -> bytes:
    try:
        return parse_hex(at.text(f"{what} as hex digits"), size=size, what=what)
    except ValueError as exc:
        raise at.error(str(exc)) from None


def _duration(at: Located, *, positive: bool) -> int:
    # Read as written: YAML would turn 1:30 into 90 and 0x10 into 16.
    try:
        seconds = parse_duration(at.text(DURATION_SYNTAX))
    except ValueError as exc:
        raise at.error(str(exc)) from None
    if positive and seconds == 0:
        raise at.error("must be longer than 0s")
    return seconds


def _section(at: Located | None, keys: tuple[str, ...]) -> Fields | None:
    return None if at is None else at.mapping(keys)


# --- sections ------------------------------------------------------------------


def _pcrs(at: Located | None) -> PCRPolicy:
    if at is None:
        return PCRPolicy()
    section = at.mapping(_PCRS)
    default = PCRPolicy()
    bank = default.bank
    if (bank_at := section.get("bank")) is not None:
        bank = bank_at.string()
        if bank not in DIGEST_SIZES:
            raise bank_at.error(f"expected one of {' | '.join(DIGEST_SIZES)}")
    sealed = default.sealed
    if (sealed_at := section.get("sealed")) is not None:
        sealed = _pcr_list(sealed_at)
    reset = sorted(RESETTABLE_PCRS.intersection(sealed))
    if reset and sealed_at is not None:
        raise sealed_at.error(
            f"PCR {reset[0]} can be reset (TPM2_PCR_Reset from locality 0) by any local user "
            "within one boot",
            hint="a key sealed to it, or an approval of it, holds for whatever state the host "
                 "resets it to; seal PCRs that only a reboot resets")
    runtime = default.runtime
    if (runtime_at := section.get("runtime")) is not None:
        runtime = runtime_at.integer(0, PCR_COUNT - 1)
    if runtime in RESETTABLE_PCRS:
        raise (runtime_at or at).error(
            f"PCR {runtime} can be reset (TPM2_PCR_Reset from locality 0) by any local user "
            "within one boot: a host could run a command the reference values refuse, reset "
            "the PCR and measure a clean history again, and its log would explain the quote",
            hint="its log could start over without a reboot, invisible to boot epochs and "
                 "deny_reset; use a PCR only a reboot resets (15, the default)")
    if runtime in sealed:
        raise (runtime_at or sealed_at or at).error(
            f"PCR {runtime} is both sealed and the runtime PCR",
            hint="every runtime measurement changes the runtime PCR, so a key sealed to it "
                 "would stop signing after the first one")
    return PCRPolicy(bank=bank, sealed=sealed, runtime=runtime)


def _pcr_list(at: Located) -> tuple[int, ...]:
    seen: set[int] = set()
    for item in at.items(what="a list of PCR numbers"):
        index = item.integer(0, PCR_COUNT - 1)
        if index in seen:
            raise item.error(f"PCR {index} is listed twice")
        seen.add(index)
    return tuple(sorted(seen))


def _key_policy(at: Located, pcrs: PCRPolicy, base: Path, check_paths: bool) -> KeyPolicy:
    section = at.mapping(_KEY_POLICY)
    kind = _optional(section.get("kind"), lambda k: k.choice(KeyPolicyKind), KeyPolicyKind.PCR)
    for key in _KEY_POLICY:
        if key in section and key != "kind" and key not in _KEY_POLICY_FOR[kind]:
            raise section.key(key).error(f"not used with kind: {kind.value}")
    if kind is KeyPolicyKind.PCR:
        if not pcrs.sealed:
            raise at.error("a pcr key policy needs sealed PCRs; pcrs.sealed is empty")
        return KeyPolicy(kind=kind, sealed_values=_sealed_values(
            section.require("sealed_values", hint="the value of each sealed PCR, e.g. "
                            "`\"0\": <hex>`; `attest policy init --from-host` writes them"),
            pcrs))
    pem = _authority_pem(section, at, base, check_paths)
    try:
        name = authority_name(pem)
    except MalformedInput as exc:
        where = section.get("authority") or section.get("authority_file") or at
        raise where.error(exc.message) from None
    policy_ref = b""
    if (ref_at := section.get("policy_ref")) is not None:
        policy_ref = _hex(ref_at, what="a policyRef")
    if len(policy_ref) > MAX_POLICY_REF_BYTES:
        raise section.key("policy_ref").error(
            f"a policyRef is at most {MAX_POLICY_REF_BYTES} bytes")
    min_serial = _optional(section.get("min_approval_serial"),
                           lambda at: at.integer(0, MAX_SERIAL), 0)
    revoked: frozenset[str] = _optional(section.get("revoked_approvals"), _approval_ids,
                                        frozenset())
    return KeyPolicy(kind=kind, authority_pem=pem, authority_name=name, policy_ref=policy_ref,
                     min_approval_serial=min_serial, revoked_approvals=revoked)


def _approval_ids(at: Located) -> frozenset[str]:
    return frozenset(_checked(item, check_approval_id)
                     for item in at.items(what="a list of approval ids"))


def _sealed_values(at: Located, pcrs: PCRPolicy) -> MappingProxyType[int, bytes]:
    size = DIGEST_SIZES[pcrs.bank]
    found: dict[int, bytes] = {}
    for key, value in at.pairs(what="a mapping of PCR numbers to hex values"):
        index = key.integer(0, PCR_COUNT - 1) if key.node.tag == INT else \
            _pcr_key(key)
        if index in found:
            raise key.error(f"PCR {index} is given twice")
        if index not in pcrs.sealed:
            raise key.error(f"PCR {index} is not in pcrs.sealed",
                            hint="list it in pcrs.sealed or remove it here")
        found[index] = _hex(value, what=f"a {pcrs.bank} PCR value", size=size)
    missing = [str(index) for index in pcrs.sealed if index not in found]
    if missing:
        raise at.error(f"no value for sealed PCR {', '.join(missing)}")
    return MappingProxyType(dict(sorted(found.items())))


def _pcr_key(key: Located) -> int:
    text = key.string("a PCR number")
    if not (text.isdigit() and text.isascii() and 0 <= int(text) < PCR_COUNT):
        raise key.error(f"expected a PCR number 0-{PCR_COUNT - 1}")
    return int(text)


def _authority_pem(section: Fields, at: Located, base: Path, check_paths: bool) -> bytes:
    inline, file = section.get("authority"), section.get("authority_file")
    if inline is not None and file is not None:
        raise section.key("authority_file").error("give authority or authority_file, not both")
    if inline is not None:
        return inline.string("a PEM public key").encode()
    if file is None:
        raise at.error("an authorize key policy needs the authority's public key",
                       hint="add `authority: |` with the PEM, or `authority_file: PATH`")
    if not check_paths:
        raise file.error("authority_file is not read here; write the key inline")
    target = base / file.string("a path")
    try:
        pem = read_at_most(target, MAX_KEY_BYTES)
    except ValueError:  # not an OSError: a NUL byte in the path
        raise file.error("the path holds a NUL byte") from None
    except OSError as exc:
        raise file.error(f"cannot read {target}: {exc.strerror}") from None
    if len(pem) > MAX_KEY_BYTES:
        raise file.error(f"{target} holds more than {MAX_KEY_BYTES} bytes: not a public key")
    return pem


def _ek_roots(at: Located | None, base: Path, check_paths: bool) -> tuple[Path, ...]:
    if at is None:
        return ()
    roots: list[Path] = []
    for item in at.items(what="a list of certificate files or folders"):
        root = base / item.string("a path")
        try:
            missing = check_paths and not root.exists()
        except OSError as exc:  # a name longer than the OS allows (ENAMETOOLONG)
            raise item.error(f"{str(root)[:200]}: {exc.strerror}") from None
        if missing:
            raise item.error(f"{root} does not exist",
                             hint="paths are relative to the policy file's folder")
        roots.append(root)
    return tuple(roots)


def _trusted_aks(top: Fields, enrollment: EnrollmentMode) -> tuple[TrustedAK, ...]:
    at = top.get("trusted_aks")
    if enrollment is EnrollmentMode.STORE:
        if at is not None:
            raise top.key("trusted_aks").error(
                "only read with enrollment: policy",
                hint="set `enrollment: policy` to trust these AKs, or remove the list")
        return ()
    if at is None:
        raise PolicyError("required with enrollment: policy", file=top.owner.source,
                          line=top.key("enrollment").line, column=top.key("enrollment").column,
                          path="trusted_aks", hint="list the AKs to trust, or use "
                          "`enrollment: store`")
    entries = at.items(what="a list of trusted AKs")
    if not entries:
        raise at.error("enrollment: policy needs at least one trusted AK")
    aks: list[TrustedAK] = []
    names: dict[bytes, int] = {}
    for entry in entries:
        ak = _trusted_ak(entry)
        if ak.name in names:
            raise entry.error(f"the same AK as on line {names[ak.name]}")
        names[ak.name] = entry.line
        aks.append(ak)
    return tuple(aks)


def _trusted_ak(at: Located) -> TrustedAK:
    fields = at.mapping(_TRUSTED_AK)
    host = _checked(fields.require("host"), values.check_host_id)
    public_at = fields.require("ak_public", hint="the AK's TPM2B_PUBLIC as hex")
    public = _hex(public_at, what="a TPM2B_PUBLIC")
    try:
        check_ak(parse_public_tpm2b(public))
    except EvidenceError as exc:
        raise public_at.error(f"not an AK's public area: {exc.message}") from None
    qualified = None
    if (qualified_at := fields.get("ak_qualified_name")) is not None:
        qualified = _hex(qualified_at, what="a TPM name")
        alg = int.from_bytes(qualified[:2], "big") if len(qualified) >= 2 else -1
        if alg not in HASH_NAMES or len(qualified) != 2 + DIGEST_SIZES[HASH_NAMES[alg]]:
            raise qualified_at.error("not a TPM name (nameAlg followed by a digest of its size)")
    return TrustedAK(host=host, ak_public=public, ak_qualified_name=qualified)


def _reference(at: Located | None, pcrs: PCRPolicy) -> ReferenceValues | None:
    if at is None:
        return None
    data = at.plain(numbers_as_text=True)
    if not isinstance(data, dict):
        raise at.error("expected a mapping with bank, runtime and boot")
    bank = data.setdefault("bank", pcrs.bank)
    if bank != pcrs.bank:
        raise at.find("bank").error(
            f"reference values in {bank} but the quote covers {pcrs.bank}",
            hint="only the quoted bank's log digests are checked against the TPM; "
                 "remove reference.bank or make it pcrs.bank")
    try:
        reference = ReferenceValues.from_dict(data)
    except MalformedInput as exc:
        raise _reference_error(at, exc.message) from None
    _check_boot_appraisal(at, reference, pcrs)
    return reference


def _check_boot_appraisal(at: Located, reference: ReferenceValues, pcrs: PCRPolicy) -> None:
    """Refuse boot appraisal of a PCR the quote need not cover, or of the runtime PCR.

    Only a quoted PCR's log is replayed against the TPM; anything else in the boot
    log is the host's word. The runtime PCR is explained by the runtime log alone.
    """
    where = {SECURE_BOOT_PCR: "boot.secure_boot", BOOT_APPLICATIONS_PCR: "boot.boot_applications"}
    for pcr in sorted(reference.boot_appraised_pcrs):
        if reference.boot_pcrs is not None and pcr in reference.boot_pcrs:
            node = at.find(f"boot.pcrs.{pcr}")
        else:
            node = at.find(where[pcr])
        if pcr == pcrs.runtime:
            raise node.error(f"PCR {pcr} is the runtime PCR: the runtime log explains it, and "
                             "reference.runtime appraises it, not reference.boot",
                             hint="choose another pcrs.runtime, or drop this boot reference")
        if pcr in RESETTABLE_PCRS:
            raise node.error(f"PCR {pcr} can be reset from locality 0: software resets it and "
                             "extends it to any value its log shows, so it says nothing of "
                             "the boot", hint="drop this boot reference")
        if pcr not in pcrs.sealed:
            raise node.error(f"appraises PCR {pcr}, which quotes need not cover "
                             f"(pcrs.sealed is {', '.join(map(str, pcrs.sealed)) or 'empty'})",
                             hint=f"add {pcr} to pcrs.sealed, or drop this boot reference: a "
                                  "log for an unquoted PCR is the host's word only")


def _reference_error(at: Located, message: str) -> PolicyError:
    """Place a ReferenceValues complaint at the value it names, else at ``reference``."""
    match = _REFERENCE_PATH.match(message)
    if match is None:
        return at.error(message)
    path = match.group()
    detail = message[match.end():].lstrip(": ") or message
    where = at.find(path[len("reference"):])
    # from_dict names unknown keys only in its text; point at the first of them.
    unknown = re.match(r"unknown key\(s\) ([^,;]+)", detail)
    if unknown:
        where = where.find(unknown.group(1))
        path = where.path
    return PolicyError(detail, file=where.source, line=where.line, column=where.column,
                       path=path)


def _executables(at: Located | None) -> ExecutablePolicy | None:
    if at is None:
        return None
    if isinstance(at.node, yaml.ScalarNode):
        if at.text(f"{EXECUTABLES_ANY!r} or a list") != EXECUTABLES_ANY:
            raise at.error(f"expected {EXECUTABLES_ANY!r} or a list of {{name, digests}}",
                           hint="`executables: any` appraises no executable")
        return ExecutablePolicy(any=True)
    allowed: dict[bytes, tuple[str, ...]] = {}
    for entry in at.items(what=f"{EXECUTABLES_ANY!r} or a list of {{name, digests}}"):
        fields = entry.mapping(_EXECUTABLE)
        name = fields.require("name", hint="the executable's path, for people").string()
        if not name:
            raise entry.error("name may not be empty")
        digests = fields.require("digests", hint="SHA-256 hex digests of the file")
        items = digests.items(what="a list of SHA-256 hex digests")
        if not items:
            raise digests.error("an empty list allows nothing; remove the entry")
        for item in items:
            digest = _hex(item, what="a SHA-256 digest", size=32)
            allowed[digest] = (*allowed.get(digest, ()), name)
    return ExecutablePolicy(allowed=MappingProxyType(allowed))


def _keep_env(at: Located | None) -> tuple[tuple[str, ...], Mapping[str, frozenset[str]]]:
    """The names an artifact may keep, and for those written ``{name, values}`` the
    SHA-256 digests (hex) of the only values it may keep them with."""
    if at is None:
        return (), MappingProxyType({})
    names: list[str] = []
    values: dict[str, frozenset[str]] = {}
    for item in at.items(what="a list of names or {name, values}"):
        if isinstance(item.node, yaml.MappingNode):
            fields = item.mapping(_KEPT_VARIABLE)
            name_at = fields.require("name", hint="the variable's name")
            name = name_at.string("a variable name")
            listed = fields.require("values", hint="SHA-256 hex digests of allowed values")
            digests = listed.items(what="a list of SHA-256 hex digests")
            if not digests:
                raise listed.error("an empty list allows nothing; remove the entry")
            values[name] = frozenset({
                _hex(digest, what="a SHA-256 digest", size=32).hex() for digest in digests})
        else:
            name_at = item
            name = item.string("a variable name")
        if not name or "=" in name or not name.isprintable():
            raise name_at.error("not an environment variable name")
        if name in names:
            raise name_at.error(f"{name} is listed twice", hint="list each variable once")
        names.append(name)
    return tuple(names), MappingProxyType(values)


def _freshness(at: Located | None) -> Freshness:
    section = _section(at, _FRESHNESS)
    if section is None:
        return Freshness()
    default = Freshness()
    return Freshness(
        nonce=_optional(section.get("nonce"), lambda n: n.choice(NonceMode), default.nonce),
        max_age=_optional(section.get("max_age"), lambda d: _duration(d, positive=True),
                          default.max_age),
        clock_skew=_optional(section.get("clock_skew"), lambda d: _duration(d, positive=False),
                             default.clock_skew),
        deny_reset=_optional(section.get("deny_reset"), Located.boolean, default.deny_reset),
        report_max_age=_optional(section.get("report_max_age"),
                                 lambda d: _duration(d, positive=True), None),
    )


def _artifacts(at: Located | None) -> ArtifactLimits:
    section = _section(at, _ARTIFACTS)
    if section is None:
        return ArtifactLimits()
    default = ArtifactLimits()
    return ArtifactLimits(
        max_lifetime=_optional(section.get("max_lifetime"),
                               lambda d: _duration(d, positive=True), default.max_lifetime),
        single_use=_optional(section.get("single_use"), Located.boolean, default.single_use),
    )


def _lineage(at: Located | None) -> LineageLimits:
    section = _section(at, _LINEAGE)
    if section is None:
        return LineageLimits()
    return LineageLimits(max_depth=_optional(section.get("max_depth"),
                                             lambda d: d.integer(0), LineageLimits().max_depth))


def _rules(at: Located) -> tuple[Rule, ...]:
    entries = at.items(what="a list of rules")
    if not entries:
        raise at.error("at least one rule is needed; without rules every artifact is denied")
    return tuple(_rule(entry) for entry in entries)


def _rule(at: Located) -> Rule:
    fields = at.mapping(_RULE)
    patterns = {
        name: _patterns(fields.require(name, hint="write [\"*\"] to allow any"))
        for name in _RULE
    }
    return Rule(**patterns)


def _patterns(at: Located) -> tuple[str, ...]:
    items = at.items(what="a list of patterns")
    if not items:
        raise at.error("an empty list matches nothing; write [\"*\"] to allow any")
    return tuple(_checked(item, values.check_pattern) for item in items)
