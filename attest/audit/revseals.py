"""Revocation seals: a revocation a database writer deletes stays in force.

attest never deletes a revocation (they are append-only), but whoever can write the
verifier's database can: a DELETE on ``revocations`` lifts an AK, EK, host, key,
approval or artifact revocation at once, and ``attest audit verify`` names it only
afterwards. So every revocation recorded through the audited path (``attest revoke``:
:func:`attest.audit.hooks.revoke_logged`) gets, in its own transaction, a MAC under a
key derived from the log key (which lives outside the database: attest.audit.keys) over
its row (``revocation_seals``), and the set gets a sealed aggregate: its count and the
sum mod 2^256 of the rows' hashes, which no order of insertion changes
(``revocation_aggregate``, one row).

The audited verifier (attest.verify.verifier) checks, inside each acceptance's
transaction, that the set is the one it sealed: every row it has not seen yet carries
a good seal, the rows add up to the aggregate, and the table holds as many rows as the
aggregate counts. It keeps the rows it has checked in memory (:class:`SealedSet`), so
a long-running verifier reads only rows above the highest id it saw (all of them once
more only when a revocation committed under a lower id, which PostgreSQL allows), and a revocation
it holds stays in force even when its row is replaced in place (same id). Anything
else is a denial for every artifact (audit_unavailable): the set is no longer the
verifier's, and refusing to decide is the only safe answer (a forged revocation is only
a denial of service).

The line a revocation reaches an artifact through is read from the ``artifacts`` rows
(each ancestor's parent link, key, AK, host, approval): with any revocation in force,
the check also takes the values the verifier accepted (not the row stored under the
jti, which a writer may have prepared or changed) and walks the parent's line checking
every ancestor's row against its artifact seal (attest.audit.seals), so a row deleted,
re-linked or edited does not hide a revocation of what it rests on.

Stores whose revocations predate the seals have none: ``attest audit seal-revocations``
(:func:`reseal`) seals the set as it stands, once ``attest audit verify`` has shown every
row to be logged. Until then the audited verifier accepts nothing.

What the seals do not stop: a writer who deletes the newest revocations AND restores an
older aggregate with its MAC, against a verifier process that never saw those rows (a
fresh ``attest verify``). ``attest audit verify`` still names them (reconcile).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from attest.audit import seals
from attest.audit.note import NoteSigner
from attest.errors import AuditUnavailable
from attest.store.db import Row, Transaction
from attest.store.records import ArtifactRecord, RevocationKind
from attest.store.revocations import MAX_WALK
from attest.store.schema import revocation_aggregate, revocation_seals

# Bumped if an encoding changes: a seal made under another version never matches.
_ROW_VERSION = b"attest revocation seal v1\0"
_SET_VERSION = b"attest revocation set v1\0"
_MODULUS = 1 << 256
AGGREGATE_ROW = 1

_COLUMNS = "revocations.id, kind, subject, reason, revoked_at, cascaded_from"
_BY_PAIR = (f"SELECT {_COLUMNS} FROM revocations "  # noqa: S608 - constants only
            "WHERE kind = :kind AND subject = :subject")
_ALL = f"SELECT {_COLUMNS} FROM revocations ORDER BY id"  # noqa: S608 - constants only
_ABOVE = (f"SELECT {_COLUMNS}, revocation_seals.mac AS seal FROM revocations "  # noqa: S608
          "LEFT JOIN revocation_seals ON revocation_seals.id = revocations.id "
          "WHERE revocations.id > :high ORDER BY revocations.id")
_COUNT = "SELECT count(*) FROM revocations"
_SEAL_OF = "SELECT mac FROM revocation_seals WHERE id = :id"
_INSERT_SEAL = revocation_seals.insert()
_DROP_SEALS = "DELETE FROM revocation_seals"
# Taken first in every transaction that seals or checks the set: writers and checkers
# queue on this row (a row lock on PostgreSQL), so a check never sees a revocation's
# row without its aggregate or the reverse. Before the audit state row, always.
_LOCK = "UPDATE revocation_aggregate SET total = total WHERE id = :id"
_AGGREGATE = "SELECT total, digest, mac FROM revocation_aggregate WHERE id = :id"
_UPDATE = ("UPDATE revocation_aggregate SET total = :total, digest = :digest, mac = :mac "
           "WHERE id = :id")
_INSERT_AGGREGATE = revocation_aggregate.insert()
# What an acceptance rests on: the artifact and its stored ancestors, their key, AK (and
# the EK it was activated under), host and approval, and each one's parent jti.
_LINE = f"""\
WITH RECURSIVE chain(jti, parent_jti, kid, ak_name, host, level) AS (
    SELECT jti, parent_jti, kid, ak_name, host, 0 FROM artifacts WHERE jti = :start
    UNION ALL
    SELECT parent.jti, parent.parent_jti, parent.kid, parent.ak_name, parent.host,
           chain.level + 1
    FROM chain JOIN artifacts AS parent ON parent.jti = chain.parent_jti
    WHERE chain.level < {MAX_WALK}
)
SELECT chain.jti, chain.parent_jti, chain.kid, chain.ak_name, chain.host,
       artifact_approvals.approval, ak_eks.ek
FROM chain LEFT JOIN artifact_approvals ON artifact_approvals.jti = chain.jti
           LEFT JOIN ak_eks ON ak_eks.ak_name = chain.ak_name"""  # noqa: S608
_EK_OF = "SELECT ek FROM ak_eks WHERE ak_name = :ak"
# The accepted artifact's ancestors, from its parent up, whole (with their seals): each
# must be the row the verifier sealed when it accepted it, and none may be missing, or
# the walk above would miss a revocation of a key, AK, host or approval they rest on.
_ANCESTORS = f"""\
WITH RECURSIVE chain(jti, level) AS (
    SELECT jti, 0 FROM artifacts WHERE jti = :start
    UNION ALL
    SELECT parent.jti, chain.level + 1
    FROM chain JOIN artifacts AS child ON child.jti = chain.jti
               JOIN artifacts AS parent ON parent.jti = child.parent_jti
    WHERE chain.level < {MAX_WALK}
)
SELECT chain.level, artifacts.*, artifact_approvals.approval, ak_eks.ek AS ek_id,
       artifact_seals.mac AS seal
FROM chain JOIN artifacts ON artifacts.jti = chain.jti
           LEFT JOIN artifact_approvals ON artifact_approvals.jti = chain.jti
           LEFT JOIN artifact_seals ON artifact_seals.jti = chain.jti
           LEFT JOIN ak_eks ON ak_eks.ak_name = artifacts.ak_name
ORDER BY chain.level"""  # noqa: S608


def _field(value: str | int | None) -> bytes:
    """A field that cannot run into the next: absent (0), or present (1) with its length."""
    if value is None:
        return b"\0"
    data = str(value).encode()
    return b"\1" + len(data).to_bytes(4, "big") + data


def row_data(row: Row) -> bytes:
    """The canonical encoding of a revocation row: its id (so that a row moved to
    another id is not the same row), what it revokes, why, when and its cascade."""
    return _ROW_VERSION + b"".join(_field(part) for part in (
        int(row.id), row.kind, row.subject, row.reason, int(row.revoked_at),
        row.cascaded_from))


def _element(data: bytes) -> int:
    return int.from_bytes(hashlib.sha256(data).digest(), "big")


def _set_mac(signer: NoteSigner, count: int, digest: int) -> bytes:
    return signer.trust_mac(_SET_VERSION + count.to_bytes(8, "big")
                            + digest.to_bytes(32, "big"))


def _write_aggregate(tx: Transaction, signer: NoteSigner, count: int, digest: int,
                     exists: bool) -> None:
    values = {"id": AGGREGATE_ROW, "total": count, "digest": digest.to_bytes(32, "big"),
              "mac": _set_mac(signer, count, digest)}
    tx.execute(_UPDATE if exists else _INSERT_AGGREGATE, values)


def start(tx: Transaction, signer: NoteSigner) -> None:
    """Seal the empty set of a new log's store (attest.audit.log opens it): from then on
    the aggregate must be there. An existing aggregate, or rows, are left alone."""
    if tx.first(_AGGREGATE, {"id": AGGREGATE_ROW}) is None and not tx.scalar(_COUNT):
        _write_aggregate(tx, signer, 0, 0, exists=False)


def seal(tx: Transaction, signer: NoteSigner,
         pairs: Iterable[tuple[RevocationKind, str]]) -> None:
    """Seal the revocations of ``pairs`` as ``tx`` holds them (just recorded, or already
    there) and add them to the aggregate. A row sealed already is left as it is; one
    sealed by someone else (a seal that does not match) is left unsealed for the check
    to refuse. Without an aggregate (a store from before the seals) one is started over
    these rows alone: the check then refuses the set until :func:`reseal`."""
    exists = tx.execute(_LOCK, {"id": AGGREGATE_ROW}) == 1
    aggregate = tx.first(_AGGREGATE, {"id": AGGREGATE_ROW}) if exists else None
    count = 0 if aggregate is None else int(aggregate.total)
    digest = 0 if aggregate is None else int.from_bytes(bytes(aggregate.digest), "big")
    added = False
    for kind, subject in dict.fromkeys(pairs):
        row = tx.first(_BY_PAIR, {"kind": kind.value, "subject": subject})
        if row is None or tx.first(_SEAL_OF, {"id": row.id}) is not None:
            continue
        data = row_data(row)
        tx.execute(_INSERT_SEAL, {"id": row.id, "mac": signer.trust_mac(data)})
        count, digest, added = count + 1, (digest + _element(data)) % _MODULUS, True
    if added or not exists:
        _write_aggregate(tx, signer, count, digest, exists=exists)


def reseal(tx: Transaction, signer: NoteSigner) -> int:
    """Seal every revocation row as it stands and the set they make; how many. For
    stores from before the seals, once `attest audit verify` passed: whatever the table
    holds now becomes the set the verifier stands by."""
    exists = tx.execute(_LOCK, {"id": AGGREGATE_ROW}) == 1
    tx.execute(_DROP_SEALS)
    count = digest = 0
    for row in tx.all(_ALL):
        data = row_data(row)
        tx.execute(_INSERT_SEAL, {"id": row.id, "mac": signer.trust_mac(data)})
        count, digest = count + 1, (digest + _element(data)) % _MODULUS
    _write_aggregate(tx, signer, count, digest, exists=exists)
    return count


def _removed(what: str) -> AuditUnavailable:
    return AuditUnavailable(
        f"revocations were removed from the database outside attest: {what}",
        hint="run `attest audit verify`; once the revocations are restored, "
             "`attest audit seal-revocations`")


@dataclass(frozen=True)
class _Checked:
    id: int
    kind: str
    subject: str
    element: int


@dataclass(frozen=True)
class Held:
    """The revocations a process holds, as :meth:`SealedSet.check_set` found them sealed
    in ``tx``: good for :meth:`SealedSet.check_line` in that transaction only."""

    tx: Transaction
    pairs: dict[tuple[str, str], int]  # (kind, subject): id


@dataclass
class SealedSet:
    """The revocations this process has checked against their seals: append-only, as
    attest never deletes one. One per AuditLog, shared between threads."""

    high: int = 0  # the highest row id checked
    count: int = 0
    digest: int = 0
    ids: set[int] = field(default_factory=set)
    pairs: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, subject): id
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, tx: Transaction, signer: NoteSigner, jti: str | None,
              record: ArtifactRecord | None = None) -> None:
        """Raise :class:`AuditUnavailable` unless the revocations ``tx`` sees are the
        sealed set (:meth:`check_set`), and none this process holds covers ``jti``'s
        line or ``record``'s (:meth:`check_line`)."""
        self.check_line(tx, signer, self.check_set(tx, signer), jti, record)

    def check_set(self, tx: Transaction, signer: NoteSigner) -> Held:
        """Raise :class:`AuditUnavailable` unless the revocations ``tx`` sees are the
        sealed set; else the set this process holds, for :meth:`check_line` in the same
        ``tx``. Takes the aggregate's row lock first, held to the end of ``tx``: no
        revocation commits (nor is sealed) until then, so the set checked here stays the
        one ``tx`` sees for every acceptance it goes on to write."""
        if tx.execute(_LOCK, {"id": AGGREGATE_ROW}) != 1:
            raise _removed("the sealed revocation set is missing (a store from before the "
                           "seals: run `attest audit seal-revocations`)")
        aggregate = tx.first(_AGGREGATE, {"id": AGGREGATE_ROW})
        if aggregate is None or aggregate.mac is None or not hmac.compare_digest(
                bytes(aggregate.mac),
                _set_mac(signer, int(aggregate.total),
                         int.from_bytes(bytes(aggregate.digest), "big"))):
            raise _removed("the revocation set's seal does not match")
        sealed = (int(aggregate.total), int.from_bytes(bytes(aggregate.digest), "big"))
        with self._lock:
            new = self._unseen(tx, signer, self.high)
            if self._total(new) != sealed and self.ids:
                # Row ids are handed out when inserted, not when committed: on PostgreSQL
                # a revocation may commit below one seen already. Rare (a race with a
                # revoker), so then, and only then, every row is read once more.
                new = self._unseen(tx, signer, 0)
            count, digest = self._total(new)
            if (count, digest) != sealed:
                raise _removed(f"the sealed set holds {sealed[0]} revocation(s); "
                               f"{count} are known to this verifier")
            present = int(tx.scalar(_COUNT) or 0)
            if present < count:
                raise _removed(f"{count - present} of {count} sealed revocation(s) are gone")
            if present > count:  # a row under an id seen already, or one seen twice
                raise _removed(f"the table holds {present} revocation(s) and the sealed "
                               f"set {count}")
            # Only a set that holds together joins what this process stands by.
            self.count, self.digest = count, digest
            for row in new:
                self.high = max(self.high, row.id)
                self.ids.add(row.id)
                self.pairs[(row.kind, row.subject)] = row.id
            # The dict only grows (attest never deletes a revocation): a later check's
            # rows joining it while ``tx`` reads it can only deny more, never less.
            return Held(tx, self.pairs)

    def check_line(self, tx: Transaction, signer: NoteSigner, held: Held, jti: str | None,
                   record: ArtifactRecord | None = None) -> None:
        """Raise :class:`AuditUnavailable` if a revocation of ``held`` (checked by
        :meth:`check_set` in this very ``tx``) covers ``jti``'s line (its row, as the
        acceptance transaction just stored it, and its stored ancestors), or ``record``
        (the values the verifier accepted) and its parent's line, each ancestor's row
        checked against its artifact seal (attest.audit.seals)."""
        if held.tx is not tx:  # a set checked in another transaction proves nothing here
            raise _removed("the revocation set was not checked in this transaction")
        pairs = held.pairs
        if jti is not None and pairs:
            found = _held(tx, pairs, jti)
            if found is None and record is not None:
                found = _held_by(tx, signer, pairs, record)
            if found is not None:
                kind, subject = found
                raise _removed(f"the revocation of {kind}:{subject} (#{pairs[found]}) is "
                               "still in force here")

    def _unseen(self, tx: Transaction, signer: NoteSigner, above: int) -> list[_Checked]:
        """The rows above ``above`` this process has not checked, each against its seal."""
        found: list[_Checked] = []
        for row in tx.all(_ABOVE, {"high": above}):
            if int(row.id) in self.ids:
                continue
            data = row_data(row)
            if row.seal is None or not hmac.compare_digest(bytes(row.seal),
                                                           signer.trust_mac(data)):
                raise _removed(f"revocation #{row.id} ({row.kind}:{row.subject}) lacks "
                               "the verifier's seal, or was changed since")
            found.append(_Checked(int(row.id), row.kind, row.subject, _element(data)))
        return found

    def _total(self, new: list[_Checked]) -> tuple[int, int]:
        """The count and digest of the held set with ``new``."""
        return (self.count + len(new),
                (self.digest + sum(row.element for row in new)) % _MODULUS)


def _held(tx: Transaction, pairs: dict[tuple[str, str], int],
          jti: str) -> tuple[str, str] | None:
    """The first pair of ``jti``'s line that the held set revokes, or None. The store's
    own lookup (Store.accept) read the table; this reads what this verifier sealed, so a
    row replaced in place under its id does not lift a revocation."""
    if (RevocationKind.ARTIFACT.value, jti) in pairs:  # stored or not
        return RevocationKind.ARTIFACT.value, jti
    for row in tx.all(_LINE, {"start": jti}):
        for kind, subject in ((RevocationKind.ARTIFACT, row.jti),
                              (RevocationKind.ARTIFACT, row.parent_jti),
                              (RevocationKind.KEY, row.kid), (RevocationKind.AK, row.ak_name),
                              (RevocationKind.EK, row.ek), (RevocationKind.HOST, row.host),
                              (RevocationKind.APPROVAL, row.approval)):
            if subject is not None and (kind.value, subject) in pairs:
                return kind.value, subject
    return None


def _held_by(tx: Transaction, signer: NoteSigner, pairs: dict[tuple[str, str], int],
             record: ArtifactRecord) -> tuple[str, str] | None:
    """The first pair the held set revokes among ``record``'s own (what the verifier
    accepted, not a row) and its ancestors', or None. The ancestors are read from the
    parent up, each checked against its seal: a row a database writer deleted or changed
    (another kid, no parent) would hide the revocation of what it rests on."""
    # The AK's EK: the audited verifier checked it under the enrollment's seal.
    found = _pairs_of(pairs, record.jti, record.kid, record.ak_name, record.host,
                      record.approval, tx.scalar(_EK_OF, {"ak": record.ak_name}))
    if found is not None or record.parent_jti is None:
        return found
    expected: str | None = record.parent_jti
    for row in tx.all(_ANCESTORS, {"start": record.parent_jti}):
        ancestor = ArtifactRecord(
            jti=row.jti, sha256=row.sha256, parent_jti=row.parent_jti, depth=row.depth,
            exp=row.exp, host=row.host, kid=row.kid, ak_name=row.ak_name,
            subject=row.subject, scope=row.scope, approval=row.approval,
            seal=None if row.seal is None else bytes(row.seal))
        if ancestor.jti != expected or not seals.artifact_sealed(signer, ancestor):
            raise _ancestor(f"the ancestor {row.jti}'s row lacks the verifier's seal, or "
                            "was changed since")
        found = _pairs_of(pairs, row.jti, row.kid, row.ak_name, row.host, row.approval,
                          row.ek_id)
        if found is not None:
            return found
        expected = row.parent_jti
        if expected is None or int(row.level) >= MAX_WALK:
            return None
    raise _ancestor(f"the ancestor {expected}'s row is gone")


def _pairs_of(pairs: dict[tuple[str, str], int], jti: str, kid: str, ak_name: str,
              host: str, approval: str | None, ek: str | None) -> tuple[str, str] | None:
    for kind, subject in ((RevocationKind.ARTIFACT, jti), (RevocationKind.KEY, kid),
                          (RevocationKind.AK, ak_name), (RevocationKind.EK, ek),
                          (RevocationKind.HOST, host), (RevocationKind.APPROVAL, approval)):
        if subject is not None and (kind.value, subject) in pairs:
            return kind.value, subject
    return None


def _ancestor(what: str) -> AuditUnavailable:
    return AuditUnavailable(
        f"an artifact's lineage was changed in the database outside attest: {what}",
        hint="run `attest audit verify`; reissue the artifact from a parent this verifier "
             "accepted")
