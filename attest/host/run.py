"""Attest before execution: measure, authorize, verify; the caller execs only on acceptance.

``attest run -- CMD ARGS...`` is this module plus an exec. The executable that
is measured is the one that runs: its bytes are copied once into a sealed memfd,
hashed from there, and that memfd is what the caller execs (see
attest.host.runtime.executable), so neither PATH nor a swap or rewrite of the file
can change what runs. CMD gets the environment without the variables that
inject code (attest.host.runtime.environment), except those the artifact names.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from attest.artifact import jws
from attest.artifact.model import RuntimeLogBase, check_b64url
from attest.decision import Decision, Denial
from attest.errors import EvidenceError, UsageError
from attest.host.http import VerifierUnreachable, post_json
from attest.host.issue import Request, issue
from attest.host.runtime import checkpoint as checkpoints
from attest.host.runtime import subjects
from attest.host.runtime.environment import kept_variables, scrubbed
from attest.host.runtime.executable import SealedExecutable, seal_executable
from attest.host.runtime.log import RuntimeLog, runtime_pcr
from attest.host.runtime.prefixes import (
    PrefixMemory,
    acknowledged,
    fits_one_artifact,
    segments,
    send_from,
)
from attest.reasons import Reason
from attest.tpm.device import TPM
from attest.tpm.pcr import active_banks

if TYPE_CHECKING:  # run_local imports them: a remote run needs neither (nor SQLAlchemy)
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

    from attest.audit.note import VerifierKey
    from attest.policy.model import VerifierPolicy
    from attest.store import Store

SendSegment = Callable[[RuntimeLogBase | None, bytes], RuntimeLogBase | Denial]
"""Hands the verifier a segment of the runtime log after a base (attest.verify.segments)."""


@dataclass(frozen=True)
class Prepared:
    """What was measured and authorized: the sealed bytes to exec, the environment to
    give them (kept variables named in the artifact), and the artifact."""

    executable: SealedExecutable
    env: dict[str, str]
    artifact: bytes
    request: Request  # what was issued: issued again, whole, after log_prefix_unknown


@dataclass(frozen=True)
class Authorized:
    decision: Decision
    executable: SealedExecutable
    env: dict[str, str]
    artifact: bytes

    def exec(self, argv: list[str]) -> NoReturn:
        """Become CMD: the sealed bytes that were measured, in the scrubbed environment."""
        self.executable.exec(argv, self.env)


def default_subject() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def prepare(tpm: TPM, home: Path, argv: list[str], *, subject: str, key_name: str,
            nonce: str | None, ttl: int, policy_id: str | None = None,
            policy_digest: str | None = None, include_boot_log: bool = False,
            keep_env: Sequence[str] = (),
            environ: Mapping[str, str] | None = None, verifier: str | None = None,
            send_segment: SendSegment | None = None,
            sealed: SealedExecutable | None = None) -> Prepared:
    """Seal and measure the command's executable and argv, then issue an artifact for
    exactly them; the caller execs :attr:`Prepared.executable` and nothing else.
    ``verifier`` names the verifier (attest.host.runtime.prefixes): the runtime log is sent
    from the prefix it acknowledged last in this boot, if any; with ``send_segment``, a
    log too large for one artifact goes to the verifier in segments first. ``sealed``:
    argv[0] already sealed (by the host agent, from its client's descriptor); taken."""
    environ = os.environ if environ is None else environ
    kept = kept_variables(environ, keep_env)
    # SHA-256 always: the artifact names the executable by it, whatever banks are active.
    banks = sorted({*active_banks(tpm), "sha256"})
    if sealed is None:
        sealed = seal_executable(argv[0], banks)
    elif "sha256" not in sealed.digests or not set(banks) <= set(sealed.digests):
        sealed.close()
        raise UsageError("the sealed executable was not hashed in every active bank")
    try:
        # argv as asked: the record's argv_digest is then the digest of scope.argv.
        content = subjects.command_content(argv, active_banks(tpm), executable=sealed.path,
                                           measured=dict(sealed.digests))
        pcr = runtime_pcr()
        # What the verifier holds is settled first (segments go over the network, not
        # under the log's lock); the one record measured next rides in the artifact.
        known = (None if verifier is None
                 else PrefixMemory(home).get(verifier, RuntimeLog(home).read_epoch()))
        if send_segment is not None:
            known = segmented(home, known, send_segment)
        request = Request(subject=subject, action="exec", argv=tuple(argv), key_name=key_name,
                          nonce=nonce, ttl=ttl, policy_id=policy_id,
                          policy_digest=policy_digest, include_boot_log=include_boot_log,
                          executable_digest=sealed.digests["sha256"].hex(), env=kept,
                          log_base=known)
        # Measure and issue under one lock, with one reconciliation of the log and PCR.
        artifact = issue(tpm, home, request, int(time.time()), measuring=(pcr, content))
    except BaseException:
        sealed.close()
        raise
    return Prepared(sealed, scrubbed(environ, kept), artifact, request)


def segmented(home: Path, known: RuntimeLogBase | None,
              send_segment: SendSegment) -> RuntimeLogBase | None:
    """The base to issue from: ``known`` when the log after it fits one artifact; else
    the log sent in segments from record 0, and the prefix the last one reached. Raises
    EvidenceError with the verifier's reason when it refuses a segment."""
    from attest.verify.segments import SEGMENT_BYTES

    runtime = RuntimeLog(home)
    with runtime.locked():  # whole records: no append half written
        # The size after the known prefix from the checkpoint's marks, without reading
        # the log (a hint: issuance reads from the mark, or sends the whole log).
        try:
            size = runtime.path.stat().st_size
        except FileNotFoundError:
            size = 0
        mark = checkpoints.load(home)
        offset = 0 if known is None else next(
            (m.offset for m in (mark.marks if mark is not None else ())
             if m.count == known.count and m.digest == known.digest), None)
        if offset is not None and offset <= size and fits_one_artifact(size - offset):
            return known
        log = runtime.load()[0]
    if fits_one_artifact(len(send_from(log, known)[1])):
        return known
    base = None
    for segment in segments(log, SEGMENT_BYTES):
        answer = send_segment(base, segment)
        if isinstance(answer, Denial):
            raise EvidenceError(f"the verifier refused a segment of the runtime log: "
                                f"{answer.message}", reason=answer.reason)
        base = answer
    return base


Later = list[Callable[[], None]]
"""Work that can wait until the caller has acted on the decision (the agent: until its
client has the answer): remembering the prefix the verifier acknowledged, a hint."""


def _verified(tpm: TPM, home: Path, made: Prepared, verifier: str,
              verify: Callable[[bytes], Decision],
              send_segment: SendSegment | None = None,
              later: Later | None = None) -> tuple[Decision, bytes]:
    """``made``'s artifact verified; when the verifier does not hold the prefix it was
    sent from (log_prefix_unknown), issued once more with the whole runtime log and
    verified again (a denial burns nothing: the nonce is still usable). The prefix an
    acceptance acknowledges is remembered for the next artifact (appended to ``later``
    when given, else now)."""
    artifact = made.artifact
    try:  # a failure closes the sealed copy: the agent lives on after it (attest agent)
        decision = verify(artifact)
        if (not decision.accepted and Reason.LOG_PREFIX_UNKNOWN in
                {denial.reason for denial in decision.denials}
                and jws.parse(artifact).claims.evidence.runtime_log_base is not None):
            base = None if send_segment is None else segmented(home, None, send_segment)
            whole = dataclasses.replace(made.request, log_base=base)
            artifact = issue(tpm, home, whole, int(time.time()))
            decision = verify(artifact)
    except BaseException:
        made.executable.close()
        raise
    if decision.accepted:
        base = acknowledged(decision.facts)
        if base is not None:
            def remember(base: RuntimeLogBase = base) -> None:
                PrefixMemory(home).put(verifier, RuntimeLog(home).read_epoch(), base)

            if later is None:
                remember()
            else:
                later.append(remember)
    return decision, artifact


def run_local(tpm: TPM, home: Path, argv: list[str], policy: VerifierPolicy, store: Store, *,
              subject: str, key_name: str, ttl: int = 60,
              keep_env: Sequence[str] = ()) -> Authorized:
    """Authorize ``argv`` and verify it in-process against ``policy`` and ``store``."""
    from attest.audit.log import AuditLog
    from attest.policy.model import NonceMode
    from attest.tpm.hierarchy import load_identity
    from attest.verify.segments import add_segment
    from attest.verify.verifier import Verifier

    # Set up before anything is measured: trust material that can't be read stops here.
    verifier = Verifier(policy, store, AuditLog.open(store, home))
    nonce = None
    if policy.freshness.nonce is NonceMode.REQUIRED:
        nonce = store.issue_nonce(ttl, int(time.time()))
    # A policy that appraises boot PCRs needs the boot log; any other refuses one.
    boot = policy.wants_boot_log
    # The store is the verifier's state: the prefixes it holds are its own.
    peer = f"store:{store.database.where}"
    ak_name = load_identity(home).ak_name
    log = verifier.log

    def send_segment(base: RuntimeLogBase | None, segment: bytes) -> RuntimeLogBase | Denial:
        return add_segment(policy, store, ak_name, base, segment, int(time.time()),
                           sealed=None if log is None else log.sealed,
                           seal=None if log is None else log.sealed_prefix)

    made = prepare(tpm, home, argv, subject=subject, key_name=key_name, nonce=nonce, ttl=ttl,
                   policy_id=policy.id, policy_digest=policy.digest, include_boot_log=boot,
                   keep_env=keep_env, verifier=peer, send_segment=send_segment)
    decision, artifact = _verified(tpm, home, made, peer, verifier.verify, send_segment)
    return Authorized(decision, made.executable, made.env, artifact)


@dataclass(frozen=True)
class Remote:
    """A verifier service and how to trust it: the keys its results must be signed by,
    the CA of its https certificate, whether plain http elsewhere than loopback is
    allowed (attest.host.http.check_verifier_url)."""

    url: str
    keys: Sequence[EllipticCurvePublicKey]
    cacert: Path | None = None
    insecure: bool = False
    log_key: VerifierKey | None = None  # when given, the receipt is checked with it too

    @property
    def base(self) -> str:
        return self.url.rstrip("/")

    def challenge(self) -> str:
        """A nonce from ``POST /v1/challenges``. Retried: a challenge a lost answer left
        unused only expires."""
        return self.challenge_expiring()[0]

    def challenge_expiring(self) -> tuple[str, int | None]:
        """:meth:`challenge`, and when it expires as the verifier says (its clock, Unix
        seconds; None when it does not say: a hint, for the agent's stock)."""
        answer = post_json(f"{self.base}/v1/challenges", b"{}", cacert=self.cacert,
                           insecure=self.insecure, retries=CHALLENGE_RETRIES)
        expires = answer.get("expires")
        nonce = answer.get("nonce")
        if not isinstance(nonce, str) or not nonce or len(nonce) > MAX_NONCE_CHARS:
            raise VerifierUnreachable(f"the verifier at {self.base} answered no nonce")
        try:
            check_b64url(nonce, "the verifier's nonce")
        except EvidenceError:
            raise VerifierUnreachable(f"the verifier at {self.base} answered a nonce that "
                                      "is not base64url") from None
        return nonce, expires if type(expires) is int else None

    def verify(self, artifact: bytes, nonce: str | None) -> Decision:
        """The verifier's decision on ``artifact``, as its signed result says. Never
        retried: a verification consumes the nonce and the jti."""
        answer = post_json(f"{self.base}/v1/verify", artifact, "application/jose",
                           cacert=self.cacert, insecure=self.insecure)
        return decision_from(answer, artifact, nonce, self.keys, int(time.time()),
                             log_key=self.log_key)


CHALLENGE_RETRIES = 2
MAX_NONCE_CHARS = 512  # the service's are 43; an artifact carries whatever it is given


def run_remote(tpm: TPM, home: Path, argv: list[str], remote: Remote, *, subject: str,
               key_name: str, ttl: int = 60, keep_env: Sequence[str] = (),
               environ: Mapping[str, str] | None = None,
               sealed: SealedExecutable | None = None,
               challenge: Callable[[], str] | None = None,
               later: Later | None = None) -> Authorized:
    """Authorize ``argv`` with a challenge from the verifier service and have it verify;
    accepted only on an affirming result signed by one of ``remote.keys``. ``environ``
    and ``sealed``: the client's, when the host agent authorizes for it; ``challenge``:
    where the nonce comes from (the agent's stock, attest.host.agent.challenges), else
    ``remote.challenge``; ``later``: see :data:`Later`."""
    try:
        nonce = (challenge or remote.challenge)()
    except BaseException:
        if sealed is not None:
            sealed.close()
        raise
    verifier = f"url:{remote.base}"
    made = prepare(tpm, home, argv, subject=subject, key_name=key_name, nonce=nonce, ttl=ttl,
                   keep_env=keep_env, environ=environ, verifier=verifier, sealed=sealed)
    decision, artifact = _verified(tpm, home, made, verifier,
                                   lambda raw: remote.verify(raw, nonce), later=later)
    return Authorized(decision, made.executable, made.env, artifact)


def decision_from(answer: dict[str, object], artifact: bytes, nonce: str | None,
                  keys: Sequence[EllipticCurvePublicKey], now: int, *,
                  log_key: VerifierKey | None = None) -> Decision:
    """The decision a verifier's answer proves: an acceptance only when its ``result`` is
    an attestation result signed by one of ``keys``, unexpired, affirming, with an audit
    receipt (proven in a head signed by ``log_key``, when given), about exactly
    ``artifact`` and ``nonce``. Everything else in the answer is
    unsigned: of it, only the denial messages (text to show) and the runtime log prefix
    acknowledged (a hint, attest.host.runtime.prefixes) are read. Anything unexpected
    is a denial, never an acceptance."""
    from attest.ear import result as ear

    token = answer.get("result")
    if not isinstance(token, str):
        return _denied(Reason.INVALID_SIGNATURE,
                       "the verifier answered without a signed attestation result")
    try:
        found = ear.read(token, keys, now=now)
        ear.check_bound(found, artifact=artifact, nonce=nonce)
    except EvidenceError as exc:
        return _denied(exc.reason, f"the verifier's attestation result: {exc.message}")
    if not found.affirming:
        return Decision(False, _signed_denials(found.reasons, answer.get("denials")))
    if found.receipt is None:
        return _denied(Reason.AUDIT_UNAVAILABLE,
                       "the verifier's result carries no audit receipt")
    if log_key is not None:
        try:
            ear.check_receipt(found, log_key)
        except EvidenceError as exc:
            return _denied(exc.reason, f"the verifier's attestation result: {exc.message}")
    base = acknowledged(answer.get("facts"))
    facts = {} if base is None else {"runtime_log": base.to_json()}
    return Decision(True, jti=found.artifact_jti, subject=found.subject, host=found.host,
                    facts=facts)


def _denied(reason: Reason, message: str) -> Decision:
    return Decision(False, (Denial(reason, message),))


def _signed_denials(codes: Sequence[str], unsigned: object) -> tuple[Denial, ...]:
    """The signed reason codes, each with the answer's message for it when it has one:
    a code named twice (two unmeasured executables) takes the answer's messages for
    it in order, not the first one twice."""
    messages: dict[str, list[str]] = {}
    for item in unsigned if isinstance(unsigned, list) else []:
        if isinstance(item, dict) and isinstance(item.get("message"), str):
            messages.setdefault(str(item.get("reason")), []).append(item["message"])
    denials = []
    for code in codes:
        try:
            reason = Reason(code)
        except ValueError:
            reason = Reason.INTERNAL_ERROR
        said = messages.get(code) or [""]
        denials.append(Denial(reason, said.pop(0) if len(said) > 1 else said[0]))
    return tuple(denials) or (
        Denial(Reason.INTERNAL_ERROR, "the verifier's result does not affirm"),)
