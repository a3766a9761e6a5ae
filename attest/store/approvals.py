"""The high-water mark of authority approval serials, per AK and per TPM, over an open
transaction.

A TPM cannot forget an approval, so a host rolled back to old firmware signs under
the old approval again. Once a host has had an artifact accepted under serial N of an
authority (and policyRef), the verifier denies it any serial below N: going back
needs a new approval with a higher serial, which only the authority can make.

The mark is kept for the AK (table ``approval_serials``) and for its TPM
(``tpm_approval_serials``: by the EK the AK was activated under, or by its host id when
the store knows no EK), and the higher of the two counts: a new AK of the same TPM
inherits the TPM's mark rather than starting from nothing.
"""

from __future__ import annotations

from attest.store.db import Conflict, Transaction
from attest.store.ddl import Table
from attest.store.errors import ApprovalRolledBack
from attest.store.records import ApprovalUse
from attest.store.schema import approval_serials, tpm_approval_serials

# (table, its holder column): the holder is an AK name, or a TPM (see tpm_holder).
_MARKS: tuple[tuple[Table, str], ...] = ((approval_serials, "ak_name"),
                                         (tpm_approval_serials, "holder"))
_AK_EK = "SELECT ek FROM ak_eks WHERE ak_name = :ak"


def tpm_holder(tx: Transaction, ak_name: str, host: str | None) -> str | None:
    """The AK's TPM as the per-TPM mark keys it: its EK when recorded, else its host id."""
    row = tx.first(_AK_EK, {"ak": ak_name})
    if row is not None and row.ek:
        return f"ek:{row.ek}"
    return None if host is None else f"host:{host}"


def _highest_sql(table: Table, column: str) -> str:
    return (f"SELECT serial FROM {table.name} "  # noqa: S608 - names from the schema
            f"WHERE {column} = :holder AND authority = :authority AND policy_ref = :ref")


def _raise_sql(table: Table, column: str) -> str:
    # Never lowers the mark: of two concurrent acceptances the higher serial stays.
    return (f"UPDATE {table.name} SET serial = :serial, seen_at = :now "  # noqa: S608
            f"WHERE {column} = :holder AND authority = :authority AND policy_ref = :ref "
            "AND serial < :serial")


def _one(tx: Transaction, table: Table, column: str, holder: str,
         approval: ApprovalUse) -> int | None:
    row = tx.first(_highest_sql(table, column), {
        "holder": holder, "authority": approval.authority, "ref": approval.policy_ref})
    return None if row is None else int(row.serial)


def highest(tx: Transaction, ak_name: str, approval: ApprovalUse,
            host: str | None = None) -> int | None:
    """The highest serial accepted for the AK or its TPM (``host``: its host id)."""
    holders = (ak_name, tpm_holder(tx, ak_name, host))
    found = [mark for (table, column), holder in zip(_MARKS, holders, strict=True)
             if holder is not None
             and (mark := _one(tx, table, column, holder, approval)) is not None]
    return max(found, default=None)


def advance(tx: Transaction, ak_name: str, approval: ApprovalUse, now: int,
            host: str | None = None) -> None:
    """Record ``approval``'s serial as the AK's and its TPM's mark, or raise
    ApprovalRolledBack when a higher one was accepted meanwhile (the snapshot the
    verifier judged was older)."""
    holders = (ak_name, tpm_holder(tx, ak_name, host))
    for (table, column), holder in zip(_MARKS, holders, strict=True):
        if holder is not None:
            _advance(tx, table, column, holder, approval, now)


def _advance(tx: Transaction, table: Table, column: str, holder: str,
             approval: ApprovalUse, now: int) -> None:
    params = {"holder": holder, "authority": approval.authority, "ref": approval.policy_ref,
              "serial": approval.serial, "now": now}
    for _ in range(2):
        stored = _one(tx, table, column, holder, approval)
        if stored is not None:
            if stored > approval.serial:
                raise ApprovalRolledBack(approval.serial, stored)
            tx.execute(_raise_sql(table, column), params)
            stored = _one(tx, table, column, holder, approval)
            if stored is not None and stored > approval.serial:
                raise ApprovalRolledBack(approval.serial, stored)
            return
        try:
            with tx.savepoint():
                tx.execute(table.insert(), {column: holder, "authority": approval.authority,
                                            "policy_ref": approval.policy_ref,
                                            "serial": approval.serial, "seen_at": now})
            return
        except Conflict:
            continue  # another verifier recorded this holder's first serial: compare with it
