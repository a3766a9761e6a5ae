"""Issuing an authorization artifact on the host's TPM.

1. Hold the runtime log's lock (no measurement may slip between the log that is
   shipped and the quote that vouches for it) and reconcile the log with its PCR.
2. Read the sealed PCRs and the runtime PCR, build the claims with those values,
   and quote them with qualifyingData = binding = SHA-256(JCS(claims)).
3. Attach the signing key's certification by the AK (made once per key, cached).
4. Sign the JWS inside the TPM with the PCR-bound key, in a policy session, still
   under the lock (an extend between PolicyPCR and Sign voids the session). When
   the sealed PCRs no longer satisfy the key's policy the TPM refuses, and so
   does issuance: there is no weaker key to fall back to.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attest.artifact import jws
from attest.artifact.model import (
    ALGORITHM,
    ARTIFACT_TYPE,
    CERTIFICATION_LABEL,
    MAX_ARTIFACT_BYTES,
    MAX_TTL_S,
    Claims,
    Evidence,
    Lineage,
    RuntimeLogBase,
    Scope,
    binding,
    new_jti,
)
from attest.errors import EnvironmentProblem, EventLogError, EvidenceError, UsageError
from attest.eventlog.cel import parse_cel
from attest.eventlog.prefix import records_of as prefix_records
from attest.evidence.approval import Approval
from attest.evidence.pcrs import PCRSelection, PCRValues
from attest.host.runtime.check import default_boot_log
from attest.host.runtime.log import (
    Reconciliation,
    RuntimeLog,
    append_measurement,
    log_pcr,
    reconcile,
    runtime_pcr,
)
from attest.host.runtime.prefixes import send_from
from attest.host.runtime.subjects import file_digests, resolve_executable
from attest.tpm import keys as signing
from attest.tpm.device import TPM
from attest.tpm.hierarchy import load_identity
from attest.tpm.pcr import read_pcrs
from attest.tpm.quote import create_quote

DEFAULT_TTL_S = 60
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Request:
    """What the caller asks to be authorized."""

    subject: str
    action: str
    argv: tuple[str, ...]
    resources: tuple[str, ...] = ()
    key_name: str = signing.DEFAULT_KEY
    nonce: str | None = None  # the verifier's challenge, base64url
    ttl: int = DEFAULT_TTL_S
    audience: str | None = None
    parent: bytes | None = None  # the parent artifact, as issued
    gov: Mapping[str, str] = field(default_factory=dict)
    policy_id: str | None = None
    policy_digest: str | None = None
    include_boot_log: bool = False
    # For a key made with --authority: the approvals to choose from. Issuance uses the
    # newest unexpired one for the PCR values the TPM holds, and the evidence carries it.
    approvals: tuple[Approval, ...] = ()
    # exec: SHA-256 (hex) of argv[0]'s executable when the caller has just measured it
    # (`attest run`), so that the artifact names the digest that was measured; without
    # it, issue() resolves argv[0] and hashes the file itself.
    executable_digest: str | None = None
    # Code-injecting environment variables `attest run` keeps: name -> SHA-256 hex.
    env: Mapping[str, str] = field(default_factory=dict)
    # The runtime log prefix the verifier acknowledged (attest.host.runtime.prefixes): the
    # artifact carries only the records after it, if the log still begins with it.
    log_base: RuntimeLogBase | None = None


def _lineage(parent: bytes | None) -> Lineage | None:
    if parent is None:
        return None
    parsed = jws.parse(parent)
    depth = parsed.claims.lineage.depth + 1 if parsed.claims.lineage else 1
    return Lineage(parsed.claims.jti, parsed.sha256, depth)


def _executable_digest(action: str, argv: Sequence[str], measured: str | None) -> str | None:
    if action != "exec":
        return None
    if not argv:
        raise UsageError("an exec authorization needs the command's argv")
    if measured is not None:
        if not _SHA256_HEX.fullmatch(measured):
            raise UsageError(f"not a SHA-256 digest (64 lowercase hex digits): {measured!r}")
        return measured
    return file_digests(resolve_executable(argv[0]), ["sha256"])["sha256"].hex()


def certification(tpm: TPM, home: Path, key: signing.SigningKey,
                  ak_name: bytes) -> tuple[bytes, bytes]:
    """The key's TPM2_Certify by the AK, made once and cached beside the key.

    It proves properties of the key, not freshness; its qualifyingData binds it to
    this key and AK so that it cannot be mistaken for another's.
    """
    folder = signing.key_dir(home, key.name)
    message_path, signature_path = folder / "certify.msg", folder / "certify.sig"
    qualifying = hashlib.sha256(CERTIFICATION_LABEL + key.tpm_name + ak_name).digest()
    if message_path.is_file() and signature_path.is_file():
        message = message_path.read_bytes()
        if qualifying in message:  # made for this key and AK (extraData sits in the body)
            return message, signature_path.read_bytes()
    identity = load_identity(home)
    message, signature = signing.certify(tpm, identity, key, qualifying)
    from attest.tpm.files import write_public

    write_public(message_path, message)
    write_public(signature_path, signature)
    return message, signature


def _check_text(request: Request) -> None:
    # Claims are JSON (and RFC 8785 for the binding): text only. An argument that is
    # not UTF-8 reaches Python as lone surrogates, which JSON cannot carry faithfully.
    fields = [request.subject, request.action, *request.argv, *request.resources,
              *request.gov.keys(), *request.gov.values()]
    for value in fields:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"{value.encode('utf-8', 'surrogateescape')!r} is not UTF-8 text; "
                             "an artifact can only name text") from None
    try:
        Scope.from_json({"action": request.action, "argv": list(request.argv)})
    except EvidenceError as exc:  # the verifier's bounds on argv: refuse before the TPM works
        raise UsageError(exc.message) from None


def issue(tpm: TPM, home: Path, request: Request, now: int, *,
          measuring: tuple[int, dict[str, Any]] | None = None) -> bytes:
    """Make, quote and sign an artifact for ``request``; returns its compact JWS bytes.

    ``measuring``: a PCR and a record's content to measure first (`attest run`: the
    command it is about to exec), under the same lock and the same reconciliation of
    the runtime log with its PCR, so nothing can come between the measurement and the
    quote, and the log is read and the PCR reconciled once.
    """
    _check_text(request)
    if not 0 < request.ttl <= MAX_TTL_S:
        raise UsageError(f"--ttl must be between 1 s and {MAX_TTL_S // 86400} days")
    identity = load_identity(home)
    key = signing.load_key(home, request.key_name)
    approval: Approval | None = None
    if key.kind == "authorize":
        if not request.approvals:
            raise UsageError(f"key {key.name!r} signs only under an authority's approval",
                             hint="pass --approval FILE")
        approval = signing.choose_approval(tpm, request.approvals, now)
    sealed = key.selection if approval is None else approval.selection
    approval_bytes = None if approval is None else approval.to_bytes()
    scope = Scope(request.action, request.argv,
                  _executable_digest(request.action, request.argv, request.executable_digest),
                  request.resources, dict(request.env))
    lineage = _lineage(request.parent)
    runtime = RuntimeLog(home)
    with runtime.locked():
        runtime_index = _runtime_index(runtime, measuring)
        reconciled = reconcile(tpm, runtime, runtime_index, repair=True)
        if measuring is not None:
            reconciled = append_measurement(tpm, runtime, runtime_index, measuring[1],
                                            reconciled)[1]
        banks = {bank for bank, _ in sealed.banks}
        selection = PCRSelection.of(
            {bank: [*(i for b, i in sealed if b == bank), runtime_index] for bank in banks})
        bank = sorted(banks)[0]
        certify_message, certify_signature = certification(tpm, home, key, identity.ak_name)
        boot_log = None
        if request.include_boot_log:
            path = default_boot_log()
            if path is None:
                raise UsageError("no boot log on this host (securityfs not mounted?)",
                                 hint="set ATTEST_BOOT_LOG, or drop --boot-log")
            boot_log = path.read_bytes()
        # The records after the prefix the verifier acknowledged, or the whole log.
        log_base, log_bytes = _to_send(runtime, reconciled, request.log_base)
        jti = new_jti(identity.ak_name.hex(), secrets.token_bytes(16))
        made: dict[str, Claims] = {}

        def claims_for(values: PCRValues) -> bytes:
            evidence = Evidence(b"", b"", key.public, certify_message, certify_signature,
                                identity.ak_public, log_bytes, boot_log, approval_bytes,
                                log_base)
            claims = Claims(
                iss=identity.ak_name.hex(), sub=request.subject, jti=jti,
                iat=now, nbf=now, exp=now + request.ttl, scope=scope, env_bank=bank,
                env_pcrs={i: v.hex() for (b, i), v in values.items() if b == bank},
                evidence=evidence, aud=request.audience, eat_nonce=request.nonce,
                policy_id=request.policy_id, policy_digest=request.policy_digest,
                lineage=lineage, gov=dict(request.gov))
            made["claims"] = claims
            return binding(claims)

        # The runtime PCR was just read to reconcile: read only the others (a value that
        # moved since only costs create_quote a second attempt).
        runtime_values = {(b, runtime_index): v for b, v in reconciled.values.items()
                          if (b, runtime_index) in selection}
        values: PCRValues | None = None
        if len(runtime_values) == len(banks):
            values = {**read_pcrs(tpm, PCRSelection.of(
                {b: [i for x, i in sealed if x == b] for b in banks})), **runtime_values}
        quote = create_quote(tpm, identity, selection, claims_for, values=values)
        evidence = Evidence(quote.message, quote.signature, key.public, certify_message,
                            certify_signature, identity.ak_public, log_bytes, boot_log,
                            approval_bytes, log_base)
        claims = dataclasses.replace(made["claims"], evidence=evidence)
        header = jws.Header(ALGORITHM, ARTIFACT_TYPE, key.tpm_name.hex())
        signing_input = jws.signing_input(header, claims)
        # Still under the lock: another attest process's measurement between PolicyPCR
        # and Sign would void the policy session (TPM_RC_PCR_CHANGED). Holding it a few
        # ms longer serializes concurrent runs instead of sending them into retries;
        # sign_digest retries for extenders outside attest.
        tss = signing.sign_digest(tpm, key, hashlib.sha256(signing_input).digest(), approval)
    return _emittable(jws.assemble(signing_input, signing.ecdsa_r_s(tss)), len(log_bytes))


def _runtime_index(runtime: RuntimeLog, measuring: tuple[int, dict[str, Any]] | None) -> int:
    if measuring is not None:
        return measuring[0]  # reconcile refuses it unless it is the log's PCR
    # The runtime PCR is quoted even before the first measurement: its reset value
    # is then what the (empty) log explains.
    index = log_pcr(runtime.read(allow_torn_tail=True).records)
    return runtime_pcr(allow_resettable=True) if index is None else index


def _to_send(runtime: RuntimeLog, reconciled: Reconciliation,
             known: RuntimeLogBase | None) -> tuple[RuntimeLogBase | None, bytes]:
    """The base and the runtime log bytes to send (prefixes.send_from), read from the
    known prefix's byte offset when reconcile's marks hold it: the records before it
    are neither read nor digested again. Otherwise from the whole log."""
    mark = None if known is None else next(
        (m for m in reconciled.marks if m.count == known.count and m.digest == known.digest),
        None)
    if known is not None and mark is not None and mark.offset <= reconciled.size:
        try:
            data = runtime.read_range(mark.offset, reconciled.size)
            framed = prefix_records(data)
            # The marks are the host's hint: the bytes after one must start with the
            # record that follows it (recnums count from 0 in attest's log), or the whole
            # log goes.
            first = parse_cel(framed[0]).records[0].recnum if framed else known.count
            if first == known.count:
                return known, data
        except (EventLogError, OSError):
            pass  # the full read below decides
    return send_from(runtime.load()[0], known)


def _emittable(artifact: bytes, log_size: int) -> bytes:
    """``artifact``, unless it is larger than any verifier accepts (every one would deny
    it malformed_artifact): then nothing is emitted, and the caller is told why."""
    if len(artifact) > MAX_ARTIFACT_BYTES:
        raise EnvironmentProblem(
            f"the artifact would be {len(artifact)} bytes, over the {MAX_ARTIFACT_BYTES} "
            f"bytes verifiers accept: the runtime log ({log_size} bytes sent) is too "
            "large to send whole",
            hint="send it from a prefix the verifier holds (attest run remembers it per "
                 "verifier; attest authorize --log-base COUNT:DIGEST), or reboot")
    return artifact
