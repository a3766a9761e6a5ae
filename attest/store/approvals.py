"""The per-AK high-water mark of authority approval serials, over an open transaction.

A TPM cannot forget an approval, so a host rolled back to old firmware signs under
the old approval again. Once an AK has had an artifact accepted under serial N of an
authority (and policyRef), the verifier denies it any serial below N: going back
needs a new approval with a higher serial, which only the authority can make.
"""

from __future__ import annotations

from attest.store.db import Conflict, Transaction
from attest.store.errors import ApprovalRolledBack
from attest.store.records import ApprovalUse
from attest.store.schema import approval_serials

_HIGHEST = ("SELECT serial FROM approval_serials "
            "WHERE ak_name = :ak AND authority = :authority AND policy_ref = :ref")
# Never lowers the mark: of two concurrent acceptances the higher serial stays.
_RAISE = ("UPDATE approval_serials SET serial = :serial, seen_at = :now "
          "WHERE ak_name = :ak AND authority = :authority AND policy_ref = :ref "
          "AND serial < :serial")
_INSERT = approval_serials.insert()


def highest(tx: Transaction, ak_name: str, approval: ApprovalUse) -> int | None:
    row = tx.first(_HIGHEST, {"ak": ak_name, "authority": approval.authority,
                              "ref": approval.policy_ref})
    return None if row is None else int(row.serial)


def advance(tx: Transaction, ak_name: str, approval: ApprovalUse, now: int) -> None:
    """Record ``approval``'s serial as the AK's mark, or raise ApprovalRolledBack when
    a higher one was accepted meanwhile (the snapshot the verifier judged was older)."""
    params = {"ak": ak_name, "authority": approval.authority, "ref": approval.policy_ref,
              "serial": approval.serial, "now": now}
    for _ in range(2):
        stored = highest(tx, ak_name, approval)
        if stored is not None:
            if stored > approval.serial:
                raise ApprovalRolledBack(approval.serial, stored)
            tx.execute(_RAISE, params)
            stored = highest(tx, ak_name, approval)
            if stored is not None and stored > approval.serial:
                raise ApprovalRolledBack(approval.serial, stored)
            return
        try:
            with tx.savepoint():
                tx.execute(_INSERT, {"ak_name": ak_name, "authority": approval.authority,
                                     "policy_ref": approval.policy_ref,
                                     "serial": approval.serial, "seen_at": now})
            return
        except Conflict:
            continue  # another verifier recorded this AK's first serial: compare with it
