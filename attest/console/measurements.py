"""Which reference value allowed each runtime measurement of a host's report, or why
none did: for the console's host page.

The report is the one that last changed the host's trust state (attest.store.
hostreports: kept only when its quote verified). When its log replayed to the quote
(accepted, or denied for a reference value alone: :func:`replayed`), each of its
runtime log's records is appraised on its own with the project's appraisal
(attest.eventlog.appraise.appraise), against the runtime sections of the policy in
force now, so the page says, record by record, what the verifier's one verdict for the
whole log did not: the reference entry that matched, or the message of the mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from attest.errors import EvidenceError
from attest.eventlog.appraise import ReferenceValues, appraise
from attest.eventlog.cel import SYSTEMD_CONTENT_TYPE, CelRecord, describe_content, parse_cel
from attest.policy.model import VerifierPolicy
from attest.reasons import Reason
from attest.store.hostreports import ReportLog

# Records a page shows: a runtime log holds up to ~40,000; the refused ones come first
# when there are more (they are why a host is untrusted).
MAX_SHOWN = 200


@dataclass(frozen=True)
class Measured:
    number: int  # the record's number in the host's whole log (its recnum when it has one)
    pcr: int | None
    digest: str  # "<bank>:<hex>" of what the record extended, the policy's bank first
    description: str
    allowed_by: str | None  # the reference entry that allowed it
    refused: str | None  # why no reference value allowed it
    code: str | None  # the refusal's reason code
    # Neither: no section of the policy reads records of this kind (why, in words).
    unappraised: str | None = None


@dataclass(frozen=True)
class Appraised:
    records: tuple[Measured, ...]
    total: int  # records in the report's log (those shown may be fewer)
    base: int  # records of the prefix the log continued, appraised before
    note: str | None  # why nothing could be appraised, when so


# Said instead of any record's verdict when the report's log is not evidence.
NOT_REPLAYED = ("the report was denied eventlog_mismatch: its runtime log does not replay "
                "to the PCRs its quote signed (or a record is not what it extended), so its "
                "records are the host's claim, not measurements, and none is appraised here")


def explain(runtime: ReportLog, policy: VerifierPolicy, *, replayed: bool = True) -> Appraised:
    """Each record of ``runtime`` appraised alone. ``replayed``: whether the verifier
    found the log to replay to the report's quote (a report accepted, or denied for a
    reference value alone); a log that did not is the host's word, and appraising it
    would show a lie's records as allowed measurements (:func:`replayed`)."""
    if not replayed:
        return Appraised((), 0, runtime.base, NOT_REPLAYED)
    reference = policy.reference
    try:
        records = parse_cel(runtime.log).records
    except EvidenceError as exc:
        return Appraised((), 0, runtime.base, f"the report's log does not parse: {exc.message}")
    if reference is None or not reference.appraises_runtime_log:
        return Appraised((), len(records), runtime.base,
                         "the policy in force appraises no runtime measurements")
    # The runtime sections alone: a single record says nothing of the boot PCRs.
    runtime_only = replace(reference, boot_pcrs=None, secure_boot=None,
                           boot_applications=None)
    covered = policy.log_sources.covered
    found = [_one(record, runtime_only, covered, runtime.base) for record in records
             if record.extends]
    refused = [m for m in found if m.refused is not None]
    if len(found) > MAX_SHOWN:
        room = max(0, MAX_SHOWN - len(refused[:MAX_SHOWN]))
        keep = {id(m) for m in refused[:MAX_SHOWN]}
        keep.update(id(m) for m in [m for m in found if m.refused is None][:room])
        found = [m for m in found if id(m) in keep]
    return Appraised(tuple(found), len(records), runtime.base, None)


def replayed(accepted: bool, reasons: tuple[str, ...]) -> bool:
    """Whether a stored report's log held as evidence: accepted, or denied only for a
    measurement the reference values forbid (which the verifier reports only once the log
    replays to the quote: attest.verify.appraisal.log_denial). Any other denial that moves
    a host's state (eventlog_mismatch) says the log is not what the TPM measured."""
    return accepted or (bool(reasons)
                        and set(reasons) == {Reason.REFERENCE_VALUE_MISMATCH.value})


def _one(record: CelRecord, reference: ReferenceValues, covered: frozenset[int], base: int
         ) -> Measured:
    bank = reference.bank
    digests = dict(record.digests)
    shown = bank if bank in digests else next(iter(sorted(digests)), None)
    digest = "" if shown is None else f"{shown}:{digests[shown].hex()}"
    number = record.recnum if record.recnum is not None else base + record.index
    made = Measured(number, record.pcr, digest, describe_content(record), None, None, None)
    try:
        facts = appraise([record], reference, covered=covered)
    except EvidenceError as exc:
        # The message names the record first (its label): the row says that already.
        said = exc.message.removeprefix(record.label + ": ")
        return replace(made, refused=said, code=exc.reason.value)
    if facts.runtime:
        name, _ = facts.runtime[0]
        return replace(made, allowed_by=f"reference.runtime {name!r}: its {bank} digest "
                       "is one of the entry's values")
    if record.content_type == SYSTEMD_CONTENT_TYPE and reference.systemd is not None:
        return replace(made, allowed_by=f"reference.systemd: {digest}")
    return replace(made, unappraised="the policy has no reference section for this "
                   "record's content type: the verifier lets it pass unread")
