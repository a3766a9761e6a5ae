"""Appraised runtime log prefixes (table ``log_prefixes``): read for a verification,
written in the acceptance's transaction.

A row says: this verifier replayed a runtime log of ``record_count`` records with this
prefix digest to a quote of the AK in this boot epoch, and appraised it under the
policy of this digest, with these running PCR values and these measured commands.
An artifact whose ``runtime_log_base`` names such a row carries only the records after
it (attest.verify.incremental). Rows are keyed by all of those, so a prefix of another
AK, boot or policy is never found. A few are kept per AK, epoch and policy: concurrent
runs on one host send from different points; rows of the AK's earlier boots go when a
later boot's prefix is written.
"""

from __future__ import annotations

import json

from attest.store.db import Conflict, Row, Transaction
from attest.store.records import LogPrefix
from attest.store.schema import log_prefixes

# Prefixes kept per AK, boot epoch and policy: the latest by record count.
KEPT_PER_EPOCH = 16

_FIND = ("SELECT * FROM log_prefixes WHERE ak_name = :ak AND policy_digest = :policy "
         "AND record_count = :count")
_KEY = ("ak_name = :ak AND reset_count = :resets AND restart_count = :restarts "
        "AND policy_digest = :policy AND record_count = :count")
_DELETE = "DELETE FROM log_prefixes WHERE " + _KEY  # noqa: S608 - constant text
_INSERT = log_prefixes.insert()
_SEAL = "UPDATE log_prefixes SET mac = :mac WHERE " + _KEY  # noqa: S608 - constant text
_OTHER_EPOCHS = ("DELETE FROM log_prefixes WHERE ak_name = :ak "
                 "AND (reset_count <> :resets OR restart_count <> :restarts)")
_EPOCH = ("ak_name = :ak AND reset_count = :resets AND restart_count = :restarts "
          "AND policy_digest = :policy")
# Everything below the KEPT_PER_EPOCH-th highest count (a derived table: both backends).
_PRUNE = ("DELETE FROM log_prefixes WHERE " + _EPOCH + " AND record_count < ("  # noqa: S608
          "SELECT MIN(record_count) FROM (SELECT record_count FROM log_prefixes WHERE "
          + _EPOCH + " ORDER BY record_count DESC LIMIT :kept) AS kept)")


def find(tx: Transaction, ak_name: str, policy_digest: str, count: int) -> tuple[LogPrefix, ...]:
    """The prefixes of ``count`` records stored for the AK under the policy, any epoch
    (the verifier picks the quote's once the quote is verified)."""
    rows = tx.all(_FIND, {"ak": ak_name, "policy": policy_digest, "count": count})
    return tuple(prefix for prefix in map(_prefix, rows) if prefix is not None)


def record(tx: Transaction, prefix: LogPrefix, now: int) -> None:
    """Store ``prefix`` (unsealed: the audit hook seals it in the same transaction),
    replacing a row under its key, and prune the AK's older rows."""
    key = _key(prefix)
    tx.execute(_DELETE, key)
    values = {"ak_name": prefix.ak_name, "reset_count": prefix.reset_count,
              "restart_count": prefix.restart_count, "policy_digest": prefix.policy_digest,
              "record_count": prefix.count, "digest": prefix.digest,
              "pcr_values": json.dumps({bank: value.hex() for bank, value in prefix.pcr_values},
                                       sort_keys=True),
              "commands": json.dumps(sorted(prefix.commands)), "accepted_at": now, "mac": None}
    try:
        with tx.savepoint():
            tx.execute(_INSERT, values)
    except Conflict:
        return  # a concurrent acceptance of the same prefix (PostgreSQL): its row stands
    if prefix.reset_count >= 0:
        # A prefix a quote confirmed: the AK's other boots (and the segments no quote
        # confirmed yet, attest.verify.incremental) are over. A segment's own row
        # (negative epoch) leaves the confirmed ones alone.
        tx.execute(_OTHER_EPOCHS, key)
    tx.execute(_PRUNE, {**key, "kept": KEPT_PER_EPOCH})


def seal(tx: Transaction, prefix: LogPrefix, mac: bytes) -> None:
    """Set the verifier's seal on the row of ``prefix`` written in ``tx``."""
    tx.execute(_SEAL, {**_key(prefix), "mac": mac})


def _key(prefix: LogPrefix) -> dict[str, object]:
    return {"ak": prefix.ak_name, "resets": prefix.reset_count,
            "restarts": prefix.restart_count, "policy": prefix.policy_digest,
            "count": prefix.count}


def _prefix(row: Row) -> LogPrefix | None:
    # A row that does not parse is a row the verifier did not write: as if absent.
    try:
        values = json.loads(row.pcr_values)
        commands = json.loads(row.commands)
        pcr_values = tuple(sorted((str(bank), bytes.fromhex(value))
                                  for bank, value in values.items()))
        measured = frozenset(str(digest) for digest in commands)
    except (ValueError, TypeError, AttributeError):
        return None
    return LogPrefix(ak_name=row.ak_name, reset_count=int(row.reset_count),
                     restart_count=int(row.restart_count), policy_digest=row.policy_digest,
                     count=int(row.record_count), digest=bytes(row.digest),
                     pcr_values=pcr_values, commands=measured,
                     accepted_at=int(row.accepted_at),
                     seal=None if row.mac is None else bytes(row.mac))
