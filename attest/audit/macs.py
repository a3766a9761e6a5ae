"""Entry MACs: the log tells the entries it appended from entries written into its tables.

Whoever can write the database can append entries with attest's own code (leaf and
subtree hashes and all) and the store rows they vouch for (an enrollment of their
AK): the reconciliation is then satisfied, and the verifier's next head would sign
the forgery. So each append stores, in the same transaction, an HMAC-SHA256 of the
entry's index and leaf hash under a key derived from the log key; a head is signed
only once every entry since the last head this key signed carries its MAC, and
``attest audit verify`` run where the key is names the entries that do not.

Entries appended before MACs existed have none: a head signed since covers them; a
tail left unsigned by an older attest has to be signed by that attest first.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator, Sequence

from attest import progress
from attest.audit.hashing import leaf_hash
from attest.audit.note import NoteSigner
from attest.audit.schema import audit_macs
from attest.store.db import Transaction

# MACs left at the indexes being appended (a log truncated in the database) are
# replaced: in the same statement, where a DELETE before it cost a round trip inside the
# log's lock.
_INSERT = audit_macs.insert() + " ON CONFLICT (idx) DO UPDATE SET mac = excluded.mac"
_CHUNK = 5000
# Every entry of the range with its MAC (NULL when it has none).
_RANGE = ("SELECT audit_entries.idx AS idx, audit_entries.leaf_hash AS leaf_hash, "
          "audit_macs.mac AS mac FROM audit_entries LEFT JOIN audit_macs "
          "ON audit_macs.idx = audit_entries.idx "
          "WHERE audit_entries.idx >= :start AND audit_entries.idx < :stop "
          "ORDER BY audit_entries.idx")


def record(tx: Transaction, signer: NoteSigner, first: int, leaves: Sequence[bytes]) -> None:
    """Store the MACs of ``leaves`` (leaf data), appended at ``first``, ``first + 1``, ..."""
    if leaves:
        tx.many(_INSERT, [{"idx": first + offset,
                           "mac": signer.entry_mac(first + offset, leaf_hash(data))}
                          for offset, data in enumerate(leaves)])


def unmarked(tx: Transaction, signer: NoteSigner, start: int, stop: int) -> Iterator[int]:
    """The indexes in ``start..stop-1`` whose stored entry lacks its MAC (or has a wrong
    one). A missing entry is not reported here: the tree check names it."""
    # Chunks of indexes read with plain queries, not a server-side cursor: a head signed
    # in every group commit checks only that group's entries, inside the log's lock, and
    # a cursor cost PostgreSQL three round trips where one query costs one.
    with progress.task("checking audit entry MACs", max(stop - start, 0), "entries") as task:
        for low in range(start, stop, _CHUNK):
            for row in tx.all(_RANGE, {"start": low, "stop": min(low + _CHUNK, stop)}):
                mac = row.mac
                if mac is None or not hmac.compare_digest(
                        bytes(mac), signer.entry_mac(row.idx, bytes(row.leaf_hash))):
                    yield row.idx
            task.advance(min(_CHUNK, stop - low))
