"""The audit log over the store: appends, signed tree heads, proofs and receipts.

Two ways in. :meth:`AuditLog.append` takes the caller's transaction, so a decision is
logged inside the acceptance transaction and commits (or not) with it.
:meth:`AuditLog.record` stands alone: concurrent callers share one durable commit
(group commit) and each returns once its entry is on disk.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from attest.audit import keys, macs, merkle, revseals, seals, tree
from attest.audit.entry import Entry
from attest.audit.groupcommit import GroupCommit
from attest.audit.note import Checkpoint, NoteSigner, VerifierKey
from attest.audit.proofs import ConsistencyProof, InclusionProof
from attest.audit.schema import (
    AUDIT_COMPONENT,
    AUDIT_SCHEMA_VERSION,
    STATE_ROW,
    TABLES,
    audit_heads,
    audit_state,
)
from attest.errors import AttestError, AuditUnavailable, ProofError, UsageError
from attest.store import Store, integrity
from attest.store.db import Conflict, DatabaseError, Transaction
from attest.store.records import ArtifactRecord, Enrollment, LogPrefix, RevocationKind

# The UPDATE comes first in an append: it takes the state row's lock, so concurrent
# appenders queue there and read the size only once it is theirs (returned by the same
# statement: one round trip fewer inside the lock).
_RESERVE = ("UPDATE audit_state SET size = size + :count WHERE id = :id "
            "RETURNING size, head_size, head_at")
_STATE = "SELECT size, head_size, head_at FROM audit_state WHERE id = :id"
_STATE_EXISTS = "SELECT id FROM audit_state"
_INSERT_STATE = audit_state.insert()
_HEAD_STARTS = "UPDATE audit_state SET head_at = :now WHERE id = :id"
_HEAD_SIGNED = "UPDATE audit_state SET head_size = :size, head_at = :now WHERE id = :id"
_INSERT_HEAD = audit_heads.insert()
_LOCK_STATE = "UPDATE audit_state SET size = size WHERE id = :id"
_HEAD = "SELECT size, signed_at, note FROM audit_heads WHERE size = :size"
_LATEST_HEAD = "SELECT size, signed_at, note FROM audit_heads ORDER BY size DESC LIMIT 1"
_ALL_HEADS = "SELECT size, signed_at, note FROM audit_heads ORDER BY size"
_ENTRY = "SELECT data, leaf_hash FROM audit_entries WHERE idx = :idx"
_ENTRIES = ("SELECT idx, data, leaf_hash FROM audit_entries "
            "WHERE idx >= :start AND idx < :stop ORDER BY idx")
_KEPT_RECEIPTS = 4096  # receipts kept for receipt(), at most (a few group commits' worth)


@dataclass(frozen=True)
class HeadPolicy:
    """Sign a new tree head once ``every`` entries or ``interval`` seconds have passed.

    Checked at each append (and a receipt signs one on demand), so heads never lag the
    log by more than ``every`` entries, nor by more than ``interval`` seconds when
    entries keep coming.
    """

    every: int = 1000
    interval: float = 60.0

    def __post_init__(self) -> None:
        if self.every < 1 or self.interval < 0:
            raise UsageError("a head policy needs every >= 1 entries and interval >= 0 s")

    def due(self, size: int, head_size: int, head_at: int, now: int) -> bool:
        return size > head_size and (size - head_size >= self.every
                                     or now - head_at >= self.interval)


@dataclass(frozen=True)
class SignedHead:
    size: int
    signed_at: int
    note: str  # the C2SP checkpoint, signed


@dataclass(frozen=True)
class StoredEntry:
    index: int
    data: bytes  # canonical JSON: the leaf data
    leaf_hash: bytes


class AuditLog:
    """One per process, shared between threads. Open with :meth:`open`."""

    def __init__(self, store: Store, signer: NoteSigner | None, *,
                 heads: HeadPolicy | None = None, clock: Callable[[], float] = time.time,
                 max_batch: int = 512, home: Path | None = None) -> None:
        self.store = store
        # Where the key keeps the last head it signed (None: the log signs unpinned).
        self._home = home
        self._last = (None if home is None or signer is None
                      else keys.last_head_record(home, signer.verifier_key))
        self._pin_failed = ""
        self.heads = heads or HeadPolicy()
        self._signer = signer
        self._clock = clock
        self._group: GroupCommit[Entry, int] = GroupCommit(self._write_batch, max_batch)
        # Receipts of the entries of heads this process signed, read once per commit for
        # all of them (keep_receipts): index -> proof, taken by receipt().
        self.keep_receipts = False
        self._receipts: dict[int, InclusionProof] = {}
        self._receipts_lock = threading.Lock()
        # The revocations this process checked against their seals (attest.audit.revseals).
        self._revocations = revseals.SealedSet()

    @classmethod
    def open(cls, store: Store, home: Path | None, *, name: str | None = None,
             heads: HeadPolicy | None = None, clock: Callable[[], float] = time.time,
             max_batch: int = 512) -> AuditLog:
        """The log in ``store``'s database, signing with the log key in ``home``.

        The key is created on first use. ``home=None`` opens it for reading and
        proving only: appending or signing then raises :class:`AuditUnavailable`.
        """
        store.ensure_schema(AUDIT_COMPONENT, AUDIT_SCHEMA_VERSION, TABLES)
        _ensure_state(store)
        signer = None if home is None else _signer(store, home, name)
        log = cls(store, signer, heads=heads, clock=clock, max_batch=max_batch, home=home)
        if signer is not None:
            log._check_pinned()
            _start_revocations(store, signer)
        return log

    def now(self) -> int:
        """The log's clock, in epoch seconds: what entries and heads are stamped with."""
        return int(self._clock())

    @property
    def verifier_key(self) -> VerifierKey | None:
        """The public key that checks this log's heads (None when opened without a key)."""
        return None if self._signer is None else self._signer.verifier_key

    # -- appending ---------------------------------------------------------------------

    def append(self, tx: Transaction, entry: Entry) -> int:
        """Append inside the caller's write transaction; the entry's index.

        Raises :class:`AuditUnavailable` when it can't: the caller's transaction must
        then roll back (an acceptance is never committed unlogged).
        """
        return self._append(tx, [entry])[0]

    def append_many(self, tx: Transaction, entries: Sequence[Entry]) -> list[int]:
        """Append ``entries``, in order, inside the caller's write transaction: one
        reservation, one tree extension, for a group of decisions (attest.verify.batch).
        Raises :class:`AuditUnavailable` as :meth:`append` does."""
        return self._append(tx, entries) if entries else []

    def record(self, entry: Entry) -> int:
        """Append in a transaction of its own, shared with concurrent callers; durable on return."""
        return self._group.submit(entry)

    def record_many(self, entries: Sequence[Entry]) -> list[int]:
        """Append ``entries`` in one transaction, in order."""
        return self._write_batch(entries) if entries else []

    def _write_batch(self, entries: Sequence[Entry]) -> list[int]:
        with self.store.write() as tx:
            return self._append(tx, entries)

    def _append(self, tx: Transaction, entries: Sequence[Entry]) -> list[int]:
        if self._signer is None:
            raise AuditUnavailable("the audit log was opened without its key",
                                   hint="open it with the verifier's home")
        try:
            # In this transaction: a trigger installed since the open fires in none of its
            # writes (the acceptance's included) unless this check has seen it first.
            integrity.check_no_triggers(tx)
            reserved = tx.first(_RESERVE, {"count": len(entries), "id": STATE_ROW})
            if reserved is None:
                raise AuditUnavailable("the audit log's state row is missing",
                                       hint="run `attest audit verify`")
            state = _State(reserved.size, reserved.head_size, reserved.head_at)
            first = state.size - len(entries)
            leaves = [e.encode(first + i) for i, e in enumerate(entries)]
            root = tree.extend(tx, first, leaves)
            macs.record(tx, self._signer, first, leaves)
            now = self.now()
            if self.heads.due(state.size, state.head_size, state.head_at or now, now):
                self._insert_head(tx, state.size, root, now)
                if self.keep_receipts:
                    size = state.size
                    tx.after_commit(lambda: self._keep_receipts(first, size))
            elif not state.head_at:  # the interval runs from the first entry until a head
                tx.execute(_HEAD_STARTS, {"now": now, "id": STATE_ROW})
            return list(range(first, state.size))
        except AuditUnavailable:
            raise
        except (DatabaseError, AttestError) as exc:
            raise AuditUnavailable(f"the audit log could not take the entry: {exc}",
                                   hint="check the verifier's store") from exc

    # -- enrollment seals (attest.audit.seals) -----------------------------------------

    def seal_enrollment(self, tx: Transaction, ak_name: bytes | str) -> None:
        """Seal the enrollment of ``ak_name`` as written in ``tx`` (or drop its seal when
        ``tx`` holds none). Raises :class:`AuditUnavailable` without the key: the caller's
        transaction rolls back, and nothing is enrolled unsealed."""
        signer = self._keyed("seal an enrollment")
        name = ak_name.hex() if isinstance(ak_name, bytes) else ak_name
        with _unavailable("the enrollment could not be sealed"):
            seals.seal(tx, signer, name)

    def seal_pending(self, data: bytes) -> bytes:
        """The verifier's seal over a pending enrollment's fixed fields (``data`` carries
        its own label: attest.verify.enrollment), so that a row someone else wrote into
        the database activates nothing. Raises :class:`AuditUnavailable` without the key."""
        return self._keyed("seal a pending enrollment").trust_mac(data)

    def seal_artifact(self, tx: Transaction, record: ArtifactRecord) -> None:
        """Seal the artifact ``record`` that ``tx`` accepts, over the values the verifier
        accepted. Raises :class:`AuditUnavailable` without the key: the acceptance rolls
        back (audit_unavailable), and no artifact is accepted unsealed."""
        signer = self._keyed("seal an artifact")
        with _unavailable("the artifact could not be sealed"):
            seals.seal_artifact(tx, signer, record)

    def sealed_prefix(self, prefix: LogPrefix) -> LogPrefix:
        """``prefix`` with this verifier's seal, as the audited acceptance (or segment)
        writes it (incremental logs). Raises :class:`AuditUnavailable` without the key:
        nothing is recorded, and the audited verifier records no prefix unsealed."""
        signer = self._keyed("seal a log prefix")
        return dataclasses.replace(prefix, seal=seals.log_prefix_seal(signer, prefix))

    def sealed(self, record: Enrollment | ArtifactRecord | LogPrefix) -> bool:
        """Whether this verifier wrote ``record`` as it stands (its seal matches): an
        enrollment it made, an artifact it accepted (a parent lineage rests on), or a
        runtime log prefix it appraised.
        Raises :class:`AuditUnavailable` without the key: never a silent yes or no."""
        if isinstance(record, LogPrefix):
            return seals.log_prefix_sealed(self._keyed("check a log prefix's seal"), record)
        if isinstance(record, ArtifactRecord):
            return seals.artifact_sealed(self._keyed("check an artifact's seal"), record)
        return seals.sealed(self._keyed("check an enrollment's seal"), record)

    # -- revocation seals (attest.audit.revseals) --------------------------------------

    def seal_revocations(self, tx: Transaction,
                         pairs: Iterable[tuple[RevocationKind, str]]) -> None:
        """Seal the revocations of ``pairs`` recorded in ``tx``, and the set with them.
        Call it before appending their entries (the set's row is locked before the log's
        state row, as in :meth:`check_revocations`). Raises :class:`AuditUnavailable`
        without the key: the caller's transaction rolls back, nothing is revoked unsealed."""
        signer = self._keyed("seal a revocation")
        with _unavailable("the revocation could not be sealed"):
            revseals.seal(tx, signer, pairs)

    def reseal_revocations(self) -> int:
        """Seal every revocation the store holds, as it stands (`attest audit
        seal-revocations`, after `attest audit verify`); how many."""
        signer = self._keyed("seal the revocations")
        with self.store.write() as tx:
            count = revseals.reseal(tx, signer)
            self.pin(tx)  # the set's row is locked first, as everywhere
            return count

    def check_revocations(self, tx: Transaction, jti: str | None,
                          record: ArtifactRecord | None = None) -> None:
        """Inside an acceptance's transaction: raise :class:`AuditUnavailable` unless the
        revocations are the set this verifier sealed, and none it holds covers ``jti``'s
        line, nor ``record`` (the values accepted) and its sealed ancestors
        (attest.audit.revseals). Never a silent pass without the key."""
        signer = self._keyed("check the revocations' seals")
        with _unavailable("the revocations could not be checked"):
            self._revocations.check(tx, signer, jti, record)

    def check_revocation_set(self, tx: Transaction) -> revseals.Held:
        """Inside a group's write transaction, before any acceptance: raise
        :class:`AuditUnavailable` unless the revocations are the set this verifier
        sealed; else that set, for :meth:`check_revoked` on each acceptance of ``tx``.
        The set's row lock is taken here and held to the commit, so it is the set every
        acceptance of ``tx`` is written against (attest.audit.revseals)."""
        signer = self._keyed("check the revocations' seals")
        with _unavailable("the revocations could not be checked"):
            return self._revocations.check_set(tx, signer)

    def check_revoked(self, tx: Transaction, held: revseals.Held, jti: str,
                      record: ArtifactRecord | None = None) -> None:
        """Inside an acceptance's transaction, after :meth:`check_revocation_set` in the
        same ``tx``: raise :class:`AuditUnavailable` if a revocation of that set covers
        ``jti``'s line or ``record`` and its sealed ancestors. What it reads is the set
        this verifier sealed, not the table, so a row deleted since does not lift it."""
        signer = self._keyed("check the revocations' seals")
        with _unavailable("the revocations could not be checked"):
            self._revocations.check_line(tx, signer, held, jti, record)

    def _keyed(self, doing: str) -> NoteSigner:
        if self._signer is None:
            raise AuditUnavailable(f"the audit log was opened without its key: cannot {doing}",
                                   hint="open it with the verifier's home")
        return self._signer

    # -- tree heads --------------------------------------------------------------------

    def sign_head(self) -> SignedHead:
        """The head of the log as it is now: the latest one if current, else a new one."""
        with self.store.write() as tx:
            integrity.check_no_triggers(tx)  # as an append does: nothing rewrites the head
            # The state row's lock, as appenders take it: heads are signed in log order.
            tx.execute(_LOCK_STATE, {"id": STATE_ROW})
            state = _state(tx)
            if state.size == 0:
                raise UsageError("the audit log is empty: there is nothing to sign")
            head = _head(tx, state.size)
            if head is None:
                head = self._insert_head(tx, state.size, tree.root(tx, state.size),
                                         self.now())
            return head

    def pin(self, tx: Transaction) -> None:
        """Sign, in ``tx`` (which has appended to the log: the state row is locked), a
        head over the log as it stands, unless one covers it already; recorded in
        ``last-head`` once ``tx`` commits. A revocation pins its entries so: a log wiped
        in the database together with its revocations (and their sealed set) before any
        head was signed would otherwise open as a new log, with a sealed empty set."""
        with _unavailable("the log could not be pinned"):
            integrity.check_no_triggers(tx)
            tx.execute(_LOCK_STATE, {"id": STATE_ROW})
            state = _state(tx)
            if state.size and _head(tx, state.size) is None:
                self._insert_head(tx, state.size, tree.root(tx, state.size), self.now())

    def _insert_head(self, tx: Transaction, size: int, root: bytes, now: int) -> SignedHead:
        if self._signer is None:
            raise AuditUnavailable("the audit log was opened without its key",
                                   hint="open it with the verifier's home")
        signed = self._check_extends_last(tx, size, root) or self._verified_head(tx)
        # Every entry since the last head this key signed was appended by this log: an
        # entry written into the tables by someone else (attest's code, another key)
        # lacks its MAC, and the head would vouch for it.
        forged = next(macs.unmarked(tx, self._signer, signed, size), None)
        if forged is not None:
            raise AuditUnavailable(
                f"refusing to sign a tree head: entry {forged} was not appended by this log "
                "(its entry MAC is missing or wrong): forged in the database",
                hint="someone wrote entries into the database: run `attest audit verify`, "
                     "restore the database from a copy that verifies")
        note = self._signer.sign(size, root)
        tx.execute(_INSERT_HEAD, {"size": size, "signed_at": now, "note": note})
        tx.execute(_HEAD_SIGNED, {"size": size, "now": now, "id": STATE_ROW})
        if self._last is not None:
            # Once committed: a head rolled back (a crash, a failed acceptance) was never
            # handed out, and the next one takes its size with other entries.
            head = Checkpoint(self._signer.name, size, root)  # signed here: not verified again
            tx.after_commit(lambda: self._save_last(note, head))
        return SignedHead(size, now, note)

    def _save_last(self, note: str, head: Checkpoint) -> None:
        assert self._last is not None  # noqa: S101 (only registered with a record)
        try:
            self._last.record(note, head)
        except (OSError, AttestError, ValueError) as exc:
            # The head is committed and may be handed out: this process signs no more
            # heads, rather than sign without the record of this one.
            self._pin_failed = f"recording the last head signed failed: {exc}"

    # -- the last head signed, kept beside the key ---------------------------------------

    def _last_signed(self) -> Checkpoint | None:
        return None if self._last is None else self._last.current()

    def _check_extends_last(self, tx: Transaction, size: int, root: bytes) -> int:
        """Refuse to sign a tree that does not extend the last head this key signed;
        the size of that head (0: none is recorded).

        Whoever can write the database can truncate the log and delete its heads; the
        key would then sign a fork at an old size. The last head is kept outside the
        database, beside the key, so a new head must prove consistent with it.
        """
        if self._pin_failed:
            raise AuditUnavailable(f"refusing to sign a tree head: {self._pin_failed}",
                                   hint="check the log key folder, then restart the verifier")
        last = self._last_signed()
        if last is None:
            return 0
        try:
            if last.size > size:
                raise ProofError(f"the log has {size} entries, fewer than the {last.size} "
                                 "of the last head signed: it was truncated")
            if last.size == size:
                if last.root != root:
                    raise ProofError(f"the tree of size {size} is not the one signed")
            else:
                merkle.verify_consistency(last.size, size,
                                          tree.consistency_proof(tx, last.size, size),
                                          last.root, root)
        except ProofError as exc:
            raise AuditUnavailable(
                f"refusing to sign a tree head: the log does not extend the last head this "
                f"key signed (size {last.size}): {exc.message}",
                hint="someone rewrote the log in the database: run `attest audit verify`, "
                     "restore the database from a copy that extends the last head") from None
        return last.size

    def _verified_head(self, tx: Transaction) -> int:
        """The size of the latest head in the database that this key signed over the tree
        the database holds (0: none). Without ``last-head`` (an attest older than it, or
        opened without a home), the entries it covers are vouched for by its signature."""
        assert self._signer is not None  # noqa: S101 (only called when signing)
        row = tx.first(_LATEST_HEAD)
        if row is None:
            return 0
        try:
            head = self._signer.verifier_key.open(row.note)
            if head.size == row.size and tree.root(tx, head.size) == head.root:
                return head.size
        except ProofError:
            pass  # a head this key did not sign, or a tree it no longer matches: none
        return 0

    def _check_pinned(self) -> None:
        """On open: the database holds the tree of the last head signed, or refuse."""
        last = self._last_signed()
        if last is None:
            return
        with self.store.read() as tx:
            size = _state(tx).size
            try:
                found = tree.root(tx, last.size) if size >= last.size else None
            except ProofError:
                found = None
        if found != last.root:
            raise AuditUnavailable(
                f"the audit log in the database does not hold the last head this key "
                f"signed (size {last.size}; the log records {size} entries): it was "
                "truncated or rewritten",
                hint="run `attest audit verify`; restore the database from a copy that "
                     "extends the last head")

    def latest_head(self) -> SignedHead | None:
        with self.store.read() as tx:
            row = tx.first(_LATEST_HEAD)
        return None if row is None else SignedHead(row.size, row.signed_at, row.note)

    def head(self, size: int) -> SignedHead | None:
        with self.store.read() as tx:
            return _head(tx, size)

    def all_heads(self) -> list[SignedHead]:
        with self.store.read() as tx:
            rows = tx.all(_ALL_HEADS)
        return [SignedHead(r.size, r.signed_at, r.note) for r in rows]

    # -- reading and proving -----------------------------------------------------------

    def size(self) -> int:
        with self.store.read() as tx:
            return _state(tx).size

    def root(self, size: int | None = None) -> bytes:
        with self.store.read() as tx:
            return tree.root(tx, _size(tx, size))

    def inclusion_proof(self, index: int, size: int | None = None) -> InclusionProof:
        """Entry ``index`` in the tree of ``size`` (default: the latest head's, else the log's).

        Carries the signed checkpoint when a head of that size exists: then it is a
        receipt; see :meth:`receipt` for one that always is.
        """
        with self.store.read() as tx:
            return _inclusion(tx, _state(tx), index, size)

    def receipt(self, index: int) -> InclusionProof:
        """Entry ``index``'s inclusion proof to a signed head (signed now if none covers it)."""
        with self._receipts_lock:
            kept = self._receipts.pop(index, None)
        if kept is not None:
            return kept
        with self.store.read() as tx:
            # One read transaction when a head covers it already (the service signs one
            # with every commit): a transaction costs a server round trips of its own.
            state = _state(tx)
            if state.head_size > index:
                return _inclusion(tx, state, index, None)
        self.sign_head()
        return self.inclusion_proof(index)

    def _keep_receipts(self, first: int, size: int) -> None:
        """After the commit of entries ``first..size-1`` and their head (of ``size``): the
        receipt of each, read in one transaction for all, for :meth:`receipt` to hand out
        (the service asks for one per decision: a transaction each cost a server about a
        third of a verification's statements)."""
        try:
            with self.store.read() as tx:
                kept = _inclusions(tx, range(first, size), size)
        except Exception:  # noqa: BLE001 - the commit stands: receipt() reads them one by one
            return
        with self._receipts_lock:
            self._receipts.update((proof.index, proof) for proof in kept)
            # A receipt nobody asked for (its caller gone) is not kept forever.
            while len(self._receipts) > _KEPT_RECEIPTS:
                del self._receipts[next(iter(self._receipts))]

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> ConsistencyProof:
        """The tree of ``old_size`` is a prefix of ``new_size``'s (default: the latest head's)."""
        with self.store.read() as tx:
            if new_size is None:
                new_size = _latest_size(tx) or None
            new_size = _size(tx, new_size)
            if not 0 < old_size <= new_size:
                raise UsageError(f"no consistency proof from size {old_size} to {new_size}",
                                 hint="sizes run from 1 to the log's size")
            old_head, new_head = _head(tx, old_size), _head(tx, new_size)
            return ConsistencyProof(
                old_size=old_size, new_size=new_size,
                proof=tuple(tree.consistency_proof(tx, old_size, new_size)),
                old_root=tree.root(tx, old_size), new_root=tree.root(tx, new_size),
                old_checkpoint=None if old_head is None else old_head.note,
                new_checkpoint=None if new_head is None else new_head.note)

    def entries(self, start: int = 0, stop: int | None = None,
                chunk: int = 2000) -> Iterator[StoredEntry]:
        """Entries ``start <= index < stop`` in order, read in chunks (one transaction each)."""
        while stop is None or start < stop:
            upper = start + chunk if stop is None else min(start + chunk, stop)
            with self.store.read() as tx:
                rows = tx.all(_ENTRIES, {"start": start, "stop": upper})
            if not rows:
                return
            for row in rows:
                yield StoredEntry(row.idx, row.data, row.leaf_hash)
            start = rows[-1].idx + 1


# -- helpers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _State:
    size: int
    head_size: int
    head_at: int


def _state(tx: Transaction) -> _State:
    row = tx.first(_STATE, {"id": STATE_ROW})
    if row is None:
        raise AuditUnavailable("the audit log's state row is missing",
                               hint="run `attest audit verify`")
    return _State(row.size, row.head_size, row.head_at)


def _inclusion(tx: Transaction, state: _State, index: int, size: int | None) -> InclusionProof:
    """:meth:`AuditLog.inclusion_proof` in ``tx``, whose state row ``state`` was read."""
    if size is None:
        latest = state.head_size
        size = latest if latest > index else state.size
    elif not 0 <= size <= state.size:
        raise UsageError(f"the audit log has {state.size} entries; there is no tree of size "
                         f"{size}")
    if not 0 <= index < size:
        raise UsageError(f"entry {index} is not in a tree of {size} entries")
    row = tx.first(_ENTRY, {"idx": index})
    if row is None:
        raise ProofError(f"entry {index} of the log is missing",
                         hint="run `attest audit verify`")
    head = _head(tx, size)
    proof, root = tree.inclusion_proof_and_root(tx, index, size)
    return InclusionProof(
        index=index, leaf_hash=row.leaf_hash, tree_size=size, proof=tuple(proof),
        root=root, checkpoint=None if head is None else head.note, entry=row.data)


def _inclusions(tx: Transaction, indexes: range, size: int) -> list[InclusionProof]:
    """The receipts of ``indexes`` to the head of ``size`` (none without that head)."""
    head = _head(tx, size)
    if head is None or not indexes:
        return []
    rows = {row.idx: row for row in tx.all(_ENTRIES, {"start": indexes.start,
                                                       "stop": indexes.stop})}
    wanted = [i for i in indexes if i in rows]  # a missing entry: receipt() will say so
    proofs, root = tree.inclusion_proofs_and_root(tx, wanted, size)
    return [InclusionProof(index=i, leaf_hash=rows[i].leaf_hash, tree_size=size,
                           proof=tuple(proof), root=root, checkpoint=head.note,
                           entry=rows[i].data)
            for i, proof in zip(wanted, proofs, strict=True)]


def _signer(store: Store, home: Path, name: str | None) -> NoteSigner:
    """The key of ``home``, if it is the one that signed the log's heads so far.

    Signing with another key (a CLI run under another $ATTEST_HOME, say) would leave
    heads that every audit then reports as forged.
    """
    with store.read() as tx:
        state = _state(tx)
        latest = _head(tx, state.head_size) if state.head_size else None
    if latest is not None and not keys.exists(home):
        raise AuditUnavailable(f"the audit log's heads are signed by a key that {home} lacks",
                               hint="use the verifier's ATTEST_HOME (--home)")
    signer = keys.load_or_create(home, name)
    if latest is not None:
        try:
            signer.verifier_key.verify_note(latest.note)
        except ProofError:
            raise AuditUnavailable(f"the audit log's latest head is not signed by the log key "
                                   f"in {home}", hint="use the verifier's ATTEST_HOME (--home), "
                                   "or run `attest audit verify`") from None
    return signer


def _ensure_state(store: Store) -> None:
    for attempt in range(2):
        try:
            with store.write() as tx:
                if tx.first(_STATE_EXISTS) is None:
                    tx.execute(_INSERT_STATE, {"id": STATE_ROW, "size": 0, "head_size": 0,
                                               "head_at": 0})
            return
        except Conflict:
            if attempt:  # another opener created it first, twice: not a race, a fault
                raise


def _start_revocations(store: Store, signer: NoteSigner) -> None:
    """A new log's store starts with the sealed empty revocation set. Only a new log's:
    on a log with entries, a missing set is a store from before the seals, or one a
    writer emptied, and only an administrator may seal it (reseal)."""
    with store.read() as tx:
        state = tx.first(_STATE, {"id": STATE_ROW})
        if state is None or state.size:
            return
    try:
        with store.write() as tx:
            revseals.start(tx, signer)
    except Conflict:
        pass  # another opener started it first


def _head(tx: Transaction, size: int) -> SignedHead | None:
    row = tx.first(_HEAD, {"size": size})
    return None if row is None else SignedHead(row.size, row.signed_at, row.note)


def _latest_size(tx: Transaction) -> int:
    """The size of the latest signed head; 0 when there is none."""
    return _state(tx).head_size


def _size(tx: Transaction, size: int | None) -> int:
    current = _state(tx).size
    if size is None:
        return current
    if not 0 <= size <= current:
        raise UsageError(f"the audit log has {current} entries; there is no tree of size {size}")
    return size


@contextmanager
def _unavailable(failed: str) -> Iterator[None]:
    """A store error while sealing or checking a seal is AuditUnavailable, named by
    ``failed``: the caller's transaction rolls back, nothing stands unsealed."""
    try:
        yield
    except DatabaseError as exc:
        raise AuditUnavailable(f"{failed}: {exc}", hint="check the verifier's store") from exc
