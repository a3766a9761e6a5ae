"""Incremental runtime logs: appraise only the records after a prefix already appraised.

A verifier keeps, per AK, boot epoch and policy digest, the prefixes of runtime logs
it accepted (attest.store.prefixes): record count, prefix digest
(attest.eventlog.prefix), the runtime PCR's value after them in each bank, and the
digests of the commands they measured. An artifact whose evidence names one of them
(``runtime_log_base``) carries only the records after it. The verifier then:

1. picks the stored prefix of the quote's epoch whose count and digest match, sealed
   by this verifier when the caller checks seals; none: ``log_prefix_unknown`` (the
   host sends its whole log again);
2. replays the suffix from the prefix's PCR values and compares with the quote, as for
   a whole log (the boot log, when the policy appraises it, is still sent and replayed
   in full: it does not grow);
3. appraises only the suffix against the reference values: the prefix passed them,
   under the same policy digest, when its artifact was accepted;
4. takes the executables measured as the prefix's commands plus the suffix's.

The cost is that of the suffix, whatever the records before it. All of it is pure:
the store's rows come in, denials and the new prefix go out.

Segments (no size cliff): a log too large for one artifact reaches the verifier in
segments first (:func:`appraise_segment`). A segment is appraised like a suffix, but no
quote vouches for it yet: its prefix is recorded *unconfirmed* (epoch UNCONFIRMED),
with the running PCR values of the verifier's own replay from the PCR's reset value.
Such a prefix is usable only as the base of an artifact whose quote its suffix replays
to: a match proves the whole chain, from reset, as a whole log's replay would.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from attest.artifact.model import Evidence, RuntimeLogBase
from attest.decision import Denial
from attest.errors import AttestError, EventLogError, EventLogMismatch, EvidenceError
from attest.eventlog import prefix as log_prefix
from attest.eventlog.appraise import appraise
from attest.eventlog.cel import CelRecord, check_content_bound, parse_cel
from attest.eventlog.replay import (
    PCRBanks,
    compare_replay,
    replay,
    reset_value,
    startup_locality,
)
from attest.eventlog.tcg import TcgEvent, parse_tcg
from attest.evidence.pcrs import DIGEST_SIZES
from attest.evidence.quote import QuoteFacts
from attest.policy.model import VerifierPolicy
from attest.reasons import Reason
from attest.store.records import LogPrefix
from attest.verify.executables import measured_commands

# The boot epoch of a prefix no quote confirmed yet (obfuscated counts are 32-bit
# unsigned: no quote has this one).
UNCONFIRMED = -1

PrefixSeal = Callable[[LogPrefix], bool]
"""Whether this verifier wrote a prefix row as it stands (attest.audit.seals); raises
AttestError when it cannot tell."""


@dataclass(frozen=True)
class RuntimeState:
    """The whole runtime log an accepted artifact stands on, as the verifier appraised it:
    what the acceptance records as a prefix for the host's next artifacts."""

    count: int
    digest: bytes
    pcr_values: tuple[tuple[str, bytes], ...]  # the runtime PCR after the log, by bank
    commands: frozenset[str]

    def prefix(self, ak_name: bytes, quote: QuoteFacts, policy_digest: str) -> LogPrefix:
        clock = quote.clock_info
        return LogPrefix(ak_name=ak_name.hex(), reset_count=clock.reset_count,
                         restart_count=clock.restart_count, policy_digest=policy_digest,
                         count=self.count, digest=self.digest, pcr_values=self.pcr_values,
                         commands=self.commands)

    def to_json(self) -> dict[str, object]:
        """What the decision's facts say of it: the prefix the host may send from next."""
        return {"count": self.count, "digest": self.digest.hex()}


@dataclass(frozen=True)
class SuffixOutcome:
    """The logs of an artifact with a ``runtime_log_base``: a denial, or the commands
    the whole log measured and its state."""

    denial: Denial | None
    commands: frozenset[str] | None = None
    state: RuntimeState | None = None


def whole_log_state(runtime_log: bytes, count: int, replayed: PCRBanks, pcr: int,
                    commands: frozenset[str]) -> RuntimeState | None:
    """The state of a whole runtime log (sent from record 0), or None when it has no
    prefix digest (not JSON-SEQ as attest writes it: it is then always sent whole)."""
    try:
        records = log_prefix.records_of(runtime_log)
    except EventLogError:
        return None
    if len(records) != count:
        return None
    values = tuple(sorted((bank, pcrs[pcr]) for bank, pcrs in replayed.items() if pcr in pcrs))
    return RuntimeState(count, log_prefix.extend(log_prefix.EMPTY, records), values, commands)


def choose_prefix(candidates: Sequence[LogPrefix], base: RuntimeLogBase, quote: QuoteFacts,
                  sealed: PrefixSeal | None) -> LogPrefix | Denial:
    """The stored prefix ``base`` names, for the quote's boot epoch; else the denial that
    tells the host to send its log from further back."""
    clock = quote.clock_info
    epochs = {(clock.reset_count, clock.restart_count), (UNCONFIRMED, UNCONFIRMED)}
    epoch = [c for c in candidates if c.count == base.count
             and (c.reset_count, c.restart_count) in epochs]
    if sealed is not None:
        try:
            epoch = [c for c in epoch if sealed(c)]
        except AttestError as exc:  # the key is out of reach: named, never skipped
            return Denial(exc.reason or Reason.INTERNAL_ERROR, exc.message)
    if not epoch:
        return Denial(Reason.LOG_PREFIX_UNKNOWN,
                      f"the runtime log is sent from record {base.count}, a prefix this "
                      "verifier has not appraised for this AK, boot and policy: send the "
                      "whole log")
    found = next((c for c in epoch if c.digest == base.digest), None)
    if found is None:
        return Denial(Reason.LOG_PREFIX_UNKNOWN,
                      f"the runtime log's first {base.count} records are not the ones this "
                      "verifier appraised for this AK and boot (another prefix digest): "
                      "send the whole log")
    return found


def appraise_suffix(evidence: Evidence, base: RuntimeLogBase,
                    candidates: Sequence[LogPrefix], quote: QuoteFacts,
                    policy: VerifierPolicy, sealed: PrefixSeal | None) -> SuffixOutcome:
    """Check the runtime records after ``base`` (and the boot log, whole) against the
    quote and the reference values, starting from the stored prefix ``base`` names."""
    chosen = choose_prefix(candidates, base, quote, sealed)
    if isinstance(chosen, Denial):
        return SuffixOutcome(chosen)
    sources = policy.log_sources
    pcr = sources.runtime_pcr
    bank = policy.pcrs.bank
    if bank not in dict(chosen.pcr_values):
        # A prefix that replayed no value of the runtime PCR in the policy's bank (a log
        # of records that extend nothing, a segment without that bank's digests): the
        # suffix could not be replayed from it, and a PCR left out of the replay would
        # be compared with its reset value, records or not. The whole log can be.
        return SuffixOutcome(Denial(
            Reason.LOG_PREFIX_UNKNOWN,
            f"the prefix of {base.count} records holds no {bank} value of PCR {pcr} to "
            "replay the rest from: send the whole log"))
    try:
        data = evidence.runtime_log
        suffix = parse_cel(data).records
        spans = log_prefix.records_of(data)
        if len(spans) != len(suffix):
            raise EventLogError("a runtime log sent from a prefix is JSON-SEQ, one record "
                                "per RS")
        first = suffix[0].recnum if suffix else None
        if first is not None and first != base.count:
            raise EventLogError(f"the runtime log is sent from record {base.count} but its "
                                f"first record is numbered {first}")
        check_content_bound(suffix)
        boot = None if evidence.boot_log is None else parse_tcg(evidence.boot_log).events
        sources.check(suffix, boot)
        events: list[TcgEvent | CelRecord] = [*(boot or ()), *suffix]
        replayed = replay(boot or ())
        values = _continue(chosen.pcr_values, suffix)
        if bank not in dict(values):
            # Merged into the boot log's replay below, a bank missing here would not
            # make compare_replay refuse (the boot log has the bank): refuse it here.
            raise EventLogMismatch(f"the runtime records after record {base.count} do not "
                                   f"all carry {bank} digests: PCR {pcr} cannot be replayed")
        for each, value in values:
            replayed.setdefault(each, {})[pcr] = value
        locality = startup_locality(boot or ())
        quoted = {(b, i): v for b, pcrs in quote.pcrs.items() for i, v in pcrs.items()}
        compare_replay(events, replayed, locality, quoted,
                       require=[(policy.pcrs.bank, i) for i in sources.must_replay()])
        if policy.reference is not None:
            appraise(events, policy.reference, covered=sources.covered)
    except EvidenceError as exc:
        return SuffixOutcome(Denial(exc.reason or Reason.INTERNAL_ERROR, exc.message))
    commands = chosen.commands | measured_commands(suffix)
    state = RuntimeState(base.count + len(suffix), log_prefix.extend(chosen.digest, spans),
                         values, commands)
    return SuffixOutcome(None, commands, state)


def appraise_segment(data: bytes, base: RuntimeLogBase | None,
                     candidates: Sequence[LogPrefix], policy: VerifierPolicy,
                     sealed: PrefixSeal | None) -> RuntimeState | Denial:
    """A segment of a runtime log too large for one artifact: its records after ``base``
    (an unconfirmed prefix; None: from record 0), appraised against the reference
    values, and the unconfirmed state they reach. No quote is compared: the artifact
    that uses the state as its base does that (see the module's docstring)."""
    if base is None:
        start = RuntimeState(0, log_prefix.EMPTY, (), frozenset())
    else:
        unconfirmed = [c for c in candidates
                       if (c.reset_count, c.restart_count) == (UNCONFIRMED, UNCONFIRMED)]
        chosen = _chosen_by_digest(unconfirmed, base, sealed)
        if isinstance(chosen, Denial):
            return chosen
        start = RuntimeState(chosen.count, chosen.digest, chosen.pcr_values, chosen.commands)
    pcr = policy.log_sources.runtime_pcr
    try:
        records = parse_cel(data).records
        spans = log_prefix.records_of(data)
        if not records or len(spans) != len(records):
            raise EventLogError("a segment is a JSON-SEQ runtime log of at least one record")
        first = records[0].recnum
        if first is not None and first != start.count:
            raise EventLogError(f"the segment continues record {start.count} but its first "
                                f"record is numbered {first}")
        check_content_bound(records)
        stray = next((r for r in records if r.extends and r.pcr != pcr), None)
        if stray is not None:
            raise EventLogMismatch(f"runtime records outside PCR {pcr}: {stray.label}")
        values = start.pcr_values
        if base is None:
            values = tuple((bank, reset_value(bank, pcr)) for bank in
                           sorted(b for b in records[0].digests if b in DIGEST_SIZES))
        reference = policy.reference
        if reference is not None and reference.appraises_runtime_log:
            # The runtime section only: boot state is appraised with the artifact's quote.
            appraise(records, dataclasses.replace(
                reference, boot_pcrs=None, secure_boot=None, boot_applications=None),
                covered=policy.log_sources.covered)
    except EvidenceError as exc:
        return Denial(exc.reason or Reason.INTERNAL_ERROR, exc.message)
    return RuntimeState(start.count + len(records), log_prefix.extend(start.digest, spans),
                        _continue(values, records),
                        start.commands | measured_commands(records))


def _chosen_by_digest(candidates: Sequence[LogPrefix], base: RuntimeLogBase,
                      sealed: PrefixSeal | None) -> LogPrefix | Denial:
    if sealed is not None:
        try:
            candidates = [c for c in candidates if sealed(c)]
        except AttestError as exc:
            return Denial(exc.reason or Reason.INTERNAL_ERROR, exc.message)
    found = next((c for c in candidates
                  if c.count == base.count and c.digest == base.digest), None)
    if found is None:
        return Denial(Reason.LOG_PREFIX_UNKNOWN,
                      f"the segment continues record {base.count}, a segment this verifier "
                      "does not hold: send the log's segments from record 0")
    return found


def _continue(values: tuple[tuple[str, bytes], ...],
              records: Sequence[CelRecord]) -> tuple[tuple[str, bytes], ...]:
    """The runtime PCR's values after ``records``, from ``values``, in each bank every
    extending record carries (a bank with a hole cannot be replayed, as in replay)."""
    out: list[tuple[str, bytes]] = []
    measured = [record.digests for record in records if record.extends]
    for bank, start in values:
        if not all(bank in digests for digests in measured):
            continue
        new = getattr(hashlib, bank)
        value = start
        for digests in measured:
            value = new(value + digests[bank]).digest()
        out.append((bank, value))
    return tuple(out)
