"""The runtime log of the report that last changed each host's trust state.

Written by attest.store.hosttrust.record_report in the transaction of the change (so
only a report whose quote verified under the host's AK is kept: the change needs it),
read by the console's host page, which appraises each record against the policy in
force (attest.console.measurements). The quote is genuine; the log need not be: a
report denied eventlog_mismatch carried a log that does not replay to its quote, kept
as sent, and the page appraises none of its records (measurements.replayed). One row a host,
replaced at each change: the table grows with the fleet, not with its reports.
"""

from __future__ import annotations

from dataclasses import dataclass

from attest.store.db import Transaction
from attest.store.schema import host_reports
from attest.store.store import Store

_UPSERT = (host_reports.insert() + " ON CONFLICT (host) DO UPDATE SET "
           "accepted = excluded.accepted, reasons = excluded.reasons, "
           "reported_at = excluded.reported_at, audit_index = excluded.audit_index, "
           "log_base = excluded.log_base, runtime_log = excluded.runtime_log")
_ROW = ("SELECT host, accepted, reasons, reported_at, audit_index, log_base, runtime_log "
        "FROM host_reports WHERE host = :host")


@dataclass(frozen=True)
class ReportLog:
    """A report's runtime log as it carried it: ``base`` records of a prefix the verifier
    appraised before (incremental logs), then ``log`` (CEL-JSON)."""

    log: bytes
    base: int = 0


@dataclass(frozen=True)
class StoredReport:
    host: str
    accepted: bool
    reasons: tuple[str, ...]
    reported_at: int
    audit_index: int | None
    runtime: ReportLog


def record(tx: Transaction, host: str, runtime: ReportLog, *, accepted: bool,
           reasons: str, now: int, audit_index: int | None) -> None:
    tx.execute(_UPSERT, {"host": host, "accepted": 1 if accepted else 0, "reasons": reasons,
                         "reported_at": now, "audit_index": audit_index,
                         "log_base": runtime.base, "runtime_log": runtime.log})


def last(store: Store, host: str) -> StoredReport | None:
    with store.read() as tx:
        row = tx.first(_ROW, {"host": host})
    if row is None:
        return None
    return StoredReport(row.host, bool(row.accepted),
                        tuple(r for r in (row.reasons or "").split(",") if r),
                        int(row.reported_at), row.audit_index,
                        ReportLog(bytes(row.runtime_log), int(row.log_base)))
