"""Which TPM (EK) a host id and an AK belong to, as functions over an open transaction.

The rules, enforced where enrollments and host revocations are written:

- an AK is enrolled under one host id, and activated under one EK;
- a host id belongs to one EK; another EK, or an AK whose TPM is not known,
  takes it only by an explicit move (``move_host``), which the caller audits;
- a revoked AK, EK or host id is never enrolled again: revoking a host revokes
  its EK and every AK activated under that EK, whatever host id they used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from attest.errors import UsageError
from attest.reasons import Reason
from attest.store import revocations as revs
from attest.store.db import Transaction
from attest.store.errors import EnrollmentRefused
from attest.store.records import RevocationKind

_EK_ID = re.compile(r"[0-9a-f]{64}")

_ENROLLED_HOST = "SELECT host FROM enrollments WHERE ak_name = :ak"
_HOST_EK = "SELECT ek FROM host_eks WHERE host = :host"
_AK_EK = "SELECT ek FROM ak_eks WHERE ak_name = :ak"
_INSERT_HOST_EK = "INSERT INTO host_eks (host, ek, bound_at) VALUES (:host, :ek, :now)"
_MOVE_HOST_EK = "UPDATE host_eks SET ek = :ek, bound_at = :now WHERE host = :host"
_UNBIND_HOST = "DELETE FROM host_eks WHERE host = :host"
_INSERT_AK_EK = "INSERT INTO ak_eks (ak_name, ek, enrolled_at) VALUES (:ak, :ek, :now)"
_HOST_AKS = "SELECT ak_name FROM enrollments WHERE host = :host ORDER BY ak_name"
_HOST_AK_EKS = ("SELECT DISTINCT ak_eks.ek FROM ak_eks JOIN enrollments "
                "ON enrollments.ak_name = ak_eks.ak_name WHERE enrollments.host = :host")
_EK_AKS = "SELECT ak_name FROM ak_eks WHERE ek = :ek ORDER BY ak_name"
# The host's enrolled AKs not activated under :ek (NULL :ek: all of them).
_OTHER_TPMS_AKS = ("SELECT ak_name FROM enrollments WHERE host = :host AND ak_name <> :ak "
                   "AND ak_name NOT IN (SELECT ak_name FROM ak_eks WHERE ek = :ek) "
                   "ORDER BY ak_name")
_DROP_ENROLLMENT = "DELETE FROM enrollments WHERE ak_name = :ak"
# A dropped AK's seal goes with it: restored later with its old row, it would vouch again.
_DROP_SEAL = "DELETE FROM enrollment_seals WHERE ak_name = :ak"


@dataclass(frozen=True)
class HostMove:
    """An administrator moved ``host`` from the EK ``previous`` to ``ek`` (None: an
    enrollment without an EK, which leaves the host id unbound)."""

    host: str
    previous: str | None  # None: the host id's TPM was not recorded
    ek: str | None
    dropped: tuple[str, ...] = ()  # AKs of other TPMs that spoke for the host id until now


def ek_id(value: str) -> str:
    """An EK id as the store keys it: 64 lowercase hex characters (a SHA-256)."""
    if not _EK_ID.fullmatch(value):
        raise UsageError(f"an EK id is a SHA-256 in lowercase hex, not {value[:80]!r}")
    return value


def admit(tx: Transaction, *, host: str, ak_name: str, ek: str | None, now: int,
          move_host: bool) -> HostMove | None:
    """Check that ``ak_name`` activated under ``ek`` may enroll as ``host``; record the
    bindings. Raises EnrollmentRefused; returns the move when ``move_host`` moved one."""
    wanted: list[tuple[RevocationKind, str | None]] = [
        (RevocationKind.AK, ak_name), (RevocationKind.EK, ek), (RevocationKind.HOST, host)]
    revoked = revs.find(tx, [(kind, subject) for kind, subject in wanted if subject])
    if revoked is not None:
        raise EnrollmentRefused(
            f"{revoked.kind.value} {revoked.subject} is revoked: {revoked.reason}",
            reason=Reason.AK_REVOKED,
            hint="a revoked TPM identity is not enrolled again, under any host id")
    enrolled = tx.first(_ENROLLED_HOST, {"ak": ak_name})
    if enrolled is not None and enrolled.host != host:
        raise EnrollmentRefused(
            f"AK {ak_name[:16]}… is enrolled as host {enrolled.host!r}; an AK has one host id",
            hint="revoke it (attest revoke --ak) and enroll a new AK")
    activated = tx.first(_AK_EK, {"ak": ak_name})
    if activated is not None and activated.ek != ek:
        raise EnrollmentRefused(
            f"AK {ak_name[:16]}… was activated under another EK ({activated.ek[:16]}…)",
            hint="an AK lives in one TPM; this enrollment names another")
    bound = tx.first(_HOST_EK, {"host": host})
    # The host id's other AKs that this EK did not activate: another TPM's, or AKs whose
    # TPM was never recorded (enrolled without an EK, or before EKs were recorded).
    others = [row.ak_name for row in tx.all(_OTHER_TPMS_AKS,
                                             {"host": host, "ek": ek, "ak": ak_name})]
    taken = bound is not None and bound.ek != ek
    moved = None
    if taken or others:
        if not move_host:
            holder = (f"EK {bound.ek[:16]}…" if bound is not None and taken
                      else f"AK {others[0][:16]}…, of a TPM not recorded")
            raise EnrollmentRefused(
                f"host id {host!r} belongs to another TPM ({holder})",
                hint="if this host really replaced that TPM, an administrator moves the host "
                "id with `attest enroll --move-host` (audited)")
        # The host id leaves the old TPM: its AKs no longer speak for it (ak_unknown).
        for other in others:
            tx.execute(_DROP_ENROLLMENT, {"ak": other})
            tx.execute(_DROP_SEAL, {"ak": other})
        moved = HostMove(host, None if bound is None else bound.ek, ek, tuple(others))
    if ek is None:
        if bound is not None:
            tx.execute(_UNBIND_HOST, {"host": host})
        return moved
    if bound is None:
        tx.execute(_INSERT_HOST_EK, {"host": host, "ek": ek, "now": now})
    elif moved is not None:
        tx.execute(_MOVE_HOST_EK, {"host": host, "ek": ek, "now": now})
    if activated is None:
        tx.execute(_INSERT_AK_EK, {"ak": ak_name, "ek": ek, "now": now})
    return moved


def revoke_host(tx: Transaction, host: str, reason: str, now: int
                ) -> list[tuple[RevocationKind, str]]:
    """Revoke ``host``, the EKs it was enrolled with, and every AK of those EKs and of the
    host; returns what was revoked, the host first."""
    revoked: list[tuple[RevocationKind, str]] = [(RevocationKind.HOST, host)]
    eks = {row.ek for row in tx.all(_HOST_AK_EKS, {"host": host})}
    bound = tx.first(_HOST_EK, {"host": host})
    if bound is not None:
        eks.add(bound.ek)
    revoked.extend((RevocationKind.EK, ek) for ek in sorted(eks))
    aks = {row.ak_name for row in tx.all(_HOST_AKS, {"host": host})}
    for ek in eks:
        aks.update(row.ak_name for row in tx.all(_EK_AKS, {"ek": ek}))
    revoked.extend((RevocationKind.AK, ak) for ak in sorted(aks))
    for kind, subject in revoked:
        revs.record(tx, kind, subject, reason, now)
    return revoked


def revoke_ek(tx: Transaction, ek: str, reason: str, now: int
              ) -> list[tuple[RevocationKind, str]]:
    """Revoke the TPM whose EK id is ``ek`` and every AK activated under it, whatever host
    id holds them now (a TPM moved off its host id is reached only this way); returns
    what was revoked, the EK first."""
    revoked: list[tuple[RevocationKind, str]] = [(RevocationKind.EK, ek_id(ek))]
    revoked.extend((RevocationKind.AK, row.ak_name) for row in tx.all(_EK_AKS, {"ek": ek}))
    for kind, subject in revoked:
        revs.record(tx, kind, subject, reason, now)
    return revoked


@dataclass(frozen=True)
class IdentitySummary:
    """A host's TPM identity as the fleet shows it: its latest enrolled AK, the EK the
    host id is bound to (else the one that AK was activated under), and whether each is
    revoked (the revocation's reason, or None)."""

    host: str
    ak_name: str
    ak_revoked: str | None
    ek: str | None
    ek_revoked: str | None
    aks: int  # how many AKs are enrolled under the host id


# Every enrolled AK of the hosts asked for, each with its EK and revocations, newest AK
# first per host: one statement a page of hosts. :hostN placeholders are filled below.
# 'ak' and 'ek' are RevocationKind.AK and .EK's values (asserted below).
_SUMMARIES = (
    "SELECT e.host, e.ak_name, e.enrolled_at, COALESCE(he.ek, ae.ek) AS ek, "
    "rak.reason AS ak_revoked, rek.reason AS ek_revoked "
    "FROM enrollments e "
    "LEFT JOIN ak_eks ae ON ae.ak_name = e.ak_name "
    "LEFT JOIN host_eks he ON he.host = e.host "
    "LEFT JOIN revocations rak ON rak.kind = 'ak' "
    "AND rak.subject = e.ak_name "
    "LEFT JOIN revocations rek ON rek.kind = 'ek' "
    "AND rek.subject = COALESCE(he.ek, ae.ek) "
    "WHERE e.host IN ({hosts}) ORDER BY e.host, e.enrolled_at DESC, e.ak_name")
MAX_SUMMARY_HOSTS = 500
assert (RevocationKind.AK.value, RevocationKind.EK.value) == ("ak", "ek")  # noqa: S101


def summaries(tx: Transaction, hosts: list[str]) -> dict[str, IdentitySummary]:
    """The identity summary of each of ``hosts`` that has an enrolled AK (at most
    MAX_SUMMARY_HOSTS: a page of the fleet), in one statement."""
    if len(hosts) > MAX_SUMMARY_HOSTS:
        raise ValueError(f"at most {MAX_SUMMARY_HOSTS} hosts a summary read")
    if not hosts:
        return {}
    names = ", ".join(f":host{i}" for i in range(len(hosts)))  # placeholders, no data
    rows = tx.all(_SUMMARIES.format(hosts=names),
                  {f"host{i}": host for i, host in enumerate(hosts)})
    found: dict[str, IdentitySummary] = {}
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.host] = counts.get(row.host, 0) + 1
        if row.host not in found:  # the newest enrolled AK comes first
            found[row.host] = IdentitySummary(row.host, row.ak_name, row.ak_revoked,
                                              row.ek, row.ek_revoked, 0)
    return {host: replace(summary, aks=counts[host]) for host, summary in found.items()}
