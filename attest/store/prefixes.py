"""Appraised runtime log prefixes (table ``log_prefixes``): read for a verification,
written in the acceptance's transaction.

A row says: this verifier replayed a runtime log of ``record_count`` records with this
prefix digest to a quote of the AK in this boot epoch, and appraised it under the
policy of this digest, with these running PCR values and these measured commands.
An artifact whose ``runtime_log_base`` names such a row carries only the records after
it (attest.verify.incremental). Rows are keyed by all of those, so a prefix of another
AK, boot or policy is never found.

A few are kept per AK, epoch and policy (concurrent runs on one host send from
different points): a prefix of N records goes to slot N % SLOTS, one upsert, so the
table stays bounded without a pruning statement on the acceptance's path. Rows of the
AK's other boots go when a whole log of a later boot is accepted (the first artifact a
host sends a verifier in a new boot is always whole: its log was archived at the
reboot).
"""

from __future__ import annotations

import json

from attest.store.db import Row, Transaction
from attest.store.records import LogPrefix
from attest.store.schema import log_prefixes

# Slots per AK, boot epoch and policy: the latest prefixes, by record count.
SLOTS = 16

_FIND = ("SELECT * FROM log_prefixes WHERE ak_name = :ak AND policy_digest = :policy "
         "AND record_count = :count")
_COLUMNS = log_prefixes.column_names
# One statement on both backends (SQLite >= 3.24, PostgreSQL >= 9.5).
_UPSERT = (log_prefixes.insert() + " ON CONFLICT (ak_name, reset_count, restart_count, "
           "policy_digest, slot) DO UPDATE SET "
           + ", ".join(f"{name} = excluded.{name}" for name in _COLUMNS
                       if name not in ("ak_name", "reset_count", "restart_count",
                                       "policy_digest", "slot")))
_OTHER_EPOCHS = ("DELETE FROM log_prefixes WHERE ak_name = :ak "
                 "AND (reset_count <> :resets OR restart_count <> :restarts)")


def find(tx: Transaction, ak_name: str, policy_digest: str, count: int) -> tuple[LogPrefix, ...]:
    """The prefixes of ``count`` records stored for the AK under the policy, any epoch
    (the verifier picks the quote's once the quote is verified)."""
    rows = tx.all(_FIND, {"ak": ak_name, "policy": policy_digest, "count": count})
    return tuple(prefix for prefix in map(_prefix, rows) if prefix is not None)


def record(tx: Transaction, prefix: LogPrefix, now: int, *, whole: bool = False) -> None:
    """Store ``prefix`` with its seal (None: unsealed) in its slot, replacing what the
    slot held. ``whole``: the artifact sent its whole log, so its boot is the AK's
    current one: rows of other boots (and segments no quote confirmed) go."""
    tx.execute(_UPSERT, {
        "ak_name": prefix.ak_name, "reset_count": prefix.reset_count,
        "restart_count": prefix.restart_count, "policy_digest": prefix.policy_digest,
        "slot": prefix.count % SLOTS, "record_count": prefix.count, "digest": prefix.digest,
        "pcr_values": json.dumps({bank: value.hex() for bank, value in prefix.pcr_values},
                                 sort_keys=True),
        "commands": json.dumps(sorted(prefix.commands)), "accepted_at": now,
        "mac": prefix.seal})
    if whole and prefix.reset_count >= 0:
        tx.execute(_OTHER_EPOCHS, {"ak": prefix.ak_name, "resets": prefix.reset_count,
                                   "restarts": prefix.restart_count})


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
