"""``attest audit verify``: recompute the whole log and say where it was tampered with.

Checks, in one read transaction:

1. every entry's data hashes to its stored leaf hash (else: changed);
2. entries sit at consecutive indexes, each at the index it names in its own JSON
   (else: deleted, inserted, or swapped), and as many as the log's size says
   (else: truncated, or inserted past the end);
3. every stored subtree hash is the hash of its two children (else: the entries under
   it were changed, leaf hashes and all);
4. every tree head is signed by the log key, and its root is the root recomputed from
   the entries at its size (else: forged, or the log changed after it was signed);
   each head is consistent with the next; a trusted head, if given, too;
5. where the log key is: every entry after the last head it signed carries its entry
   MAC (:mod:`attest.audit.macs`; else: forged in the database);
6. every accepted artifact, enrollment (as its host) and revocation the store holds has
   its entry (:mod:`attest.audit.reconcile`; else: kept out of the log), and every
   revocation the log records is still in the store (else: lifted outside attest).

Signed heads are what an attacker with the database but not the key cannot redo: a
log rewritten wholesale still contradicts the first head signed after the rewritten
entry. The problems found are sorted by the first entry they concern.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise

from attest import progress
from attest.audit import macs, merkle, reconcile, shape, tree
from attest.audit.entry import claimed_index
from attest.audit.hashing import EMPTY_ROOT, leaf_hash, node_hash
from attest.audit.note import Checkpoint, NoteSigner, VerifierKey
from attest.audit.schema import STATE_ROW
from attest.errors import ProofError, UsageError
from attest.store import Store
from attest.store.db import Transaction

_CHUNK = 5000
_log = logging.getLogger(__name__)
# Rows between two progress counts: a count costs a call; a million rows, 250 of them.
_STEP = 4096
_MAX_MOVED = 10_000  # misplaced entries remembered for the diagnosis; the first few matter

_STATE = "SELECT size, head_size FROM audit_state WHERE id = :id"
_HEADS = "SELECT size, note FROM audit_heads ORDER BY size"
_ENTRIES = "SELECT idx, data, leaf_hash FROM audit_entries ORDER BY idx"
_LEAF_HASHES = "SELECT leaf_hash FROM audit_entries ORDER BY idx"
_NODES = "SELECT idx, hash FROM audit_nodes WHERE level = :level ORDER BY idx"

# Rank: at the same position, the more specific finding is reported first.
_PLACE, _CHANGED, _SUBTREE, _FORGED, _HEAD, _UNLOGGED = range(6)
_MAX_FORGED = 100  # forged entries named one by one; the rest are counted


@dataclass(frozen=True, order=True)
class Problem:
    """One finding. A finding about a range of entries sits at the range's last entry,
    so that a finding naming one entry inside the range is reported before it."""

    position: int
    rank: int
    message: str = field(compare=False)


@dataclass(frozen=True)
class LogSummary:
    entries: int
    heads: int
    root: bytes


class LogInvalid(ProofError):
    """The log does not hold what it signed; :attr:`problems` lists every finding."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        more = len(self.problems) - 1
        suffix = f" ({more} more finding{'s' if more > 1 else ''})" if more else ""
        super().__init__(self.problems[0].message + suffix,
                         hint="restore the database from a copy that verifies; keep this "
                              "one for the investigation")


def verify_log(store: Store, key: VerifierKey | None, trusted_head: str | None = None,
               signer: NoteSigner | None = None) -> LogSummary:
    """A summary of a log that holds; :class:`LogInvalid` naming the first tampering.

    With ``signer`` (run where the log key is), every entry after the trusted head must
    carry its entry MAC (:mod:`attest.audit.macs`).
    """
    trusted = None if trusted_head is None else _trusted(key, trusted_head)
    with store.read() as tx:
        problems: list[Problem] = []
        recorded_size, recorded_head = _state(tx, problems)
        heads = _heads(tx, key, problems)
        wanted = {h.size for h in heads} | ({trusted.size} if trusted else set())
        count, roots = _scan(tx, wanted, problems, recorded_size)
        _check_count(count, recorded_size, problems)
        if recorded_head and all(h.size != recorded_head for h in heads):
            problems.append(Problem(recorded_head, _HEAD, f"the tree head of size "
                                    f"{recorded_head} is missing or not the log's"))
        _check_nodes(tx, count, problems)
        _check_heads(heads, roots, count, problems)
        if trusted is not None:
            _check_trusted(trusted, roots, count, problems)
        if not problems:
            _check_consistency(tx, heads, problems)
        if signer is not None:
            # Entries under a head the key signed are vouched for by it (the heads were
            # checked against the entries above): an attest older than the MACs left none.
            covered = max([h.size for h in heads if roots.get(h.size) == h.root]
                          + [0 if trusted is None else trusted.size])
            _check_macs(tx, signer, covered, count, problems)
        _check_reconciled(tx, count, problems)
    _log.info("audit log: %d entries and %d heads recomputed, %d problems", count,
              len(heads), len(problems))
    if problems:
        raise LogInvalid(problems)
    return LogSummary(count, len(heads), roots.get(count, EMPTY_ROOT))


def _trusted(key: VerifierKey | None, note: str) -> Checkpoint:
    if key is None:
        raise UsageError("a trusted head needs the log's verifier key to check it",
                         hint="pass --key, or run where the log key is")
    try:
        return key.open(note)
    except ProofError as exc:
        raise ProofError(f"the trusted head does not verify: {exc.message}") from None


def _state(tx: Transaction, problems: list[Problem]) -> tuple[int | None, int]:
    row = tx.first(_STATE, {"id": STATE_ROW})
    if row is None:
        problems.append(Problem(0, _PLACE, "the audit log's state row was deleted"))
        return None, 0
    return row.size, row.head_size


def _heads(tx: Transaction, key: VerifierKey | None, problems: list[Problem]
           ) -> list[Checkpoint]:
    """The heads signed by the log key, by size; the others become problems."""
    rows = tx.all(_HEADS)
    if not rows:
        return []
    if key is None:
        raise UsageError("the log has signed heads but no verifier key is at hand",
                         hint="pass --key with the log's verifier key")
    valid: list[Checkpoint] = []
    for row in rows:
        try:
            head = key.open(row.note)
        except ProofError as exc:
            problems.append(Problem(row.size, _HEAD, f"the tree head of size {row.size} is "
                                    f"forged: {exc.message}"))
            continue
        if head.size != row.size:
            problems.append(Problem(min(head.size, row.size), _HEAD,
                                    f"the tree head stored as size {row.size} was signed "
                                    f"for size {head.size}"))
            continue
        valid.append(head)
    return valid


def _scan(tx: Transaction, wanted: set[int], problems: list[Problem], expected: int | None
          ) -> tuple[int, dict[int, bytes]]:
    """Recompute leaves and the roots at ``wanted`` sizes (and the final one) in one pass
    (``expected`` entries, as the log's state row says, for the progress shown)."""
    with progress.task("checking audit entries", expected, "entries") as task:
        found = _scan_rows(tx, wanted, problems, task)
        task.advance(found[0] % _STEP)
    return found


def _scan_rows(tx: Transaction, wanted: set[int], problems: list[Problem],
               task: progress.Task) -> tuple[int, dict[int, bytes]]:
    stack: list[tuple[int, bytes]] = []  # (level, hash) of the frontier, left to right
    roots: dict[int, bytes] = {}
    moved: dict[int, int] = {}  # stored index -> the index the entry names
    count = 0
    gap_seen = False
    for row in tx.stream(_ENTRIES, chunk=_CHUNK):
        if row.idx != count and not gap_seen:
            gap_seen = True  # later entries are all off by the same amount: say it once
            problems.append(Problem(count, _PLACE, f"{_entries(count, row.idx)} deleted"))
        hashed = leaf_hash(row.data)
        if hashed != row.leaf_hash:
            problems.append(Problem(row.idx, _CHANGED, f"entry {row.idx} was changed: its data "
                                    "no longer hashes to its leaf hash"))
        try:
            claim = claimed_index(row.data)
        except ProofError as exc:
            problems.append(Problem(row.idx, _CHANGED, f"entry {row.idx} was changed: "
                                    f"{exc.message}"))
        else:
            if claim != row.idx and len(moved) < _MAX_MOVED:
                moved[row.idx] = claim
        level = 0
        while stack and stack[-1][0] == level:
            hashed = node_hash(stack.pop()[1], hashed)
            level += 1
        stack.append((level, hashed))
        count += 1
        if not count % _STEP:
            task.advance(_STEP)
        if count in wanted:
            roots[count] = shape.fold([h for _, h in stack], node_hash)
    if stack:
        roots[count] = shape.fold([h for _, h in stack], node_hash)
    problems.extend(_diagnose_moves(moved))
    return count, roots


def _diagnose_moves(moved: dict[int, int]) -> list[Problem]:
    """Name the first misplaced entry's story: a swap, a deletion or an insertion."""
    if not moved:
        return []
    stored = min(moved)
    claim = moved[stored]
    if moved.get(claim) == stored:
        a, b = sorted((stored, claim))
        return [Problem(a, _PLACE, f"entries {a} and {b} were swapped (reordered)")]
    if claim > stored:
        return [Problem(stored, _PLACE, f"{_entries(stored, claim)} deleted; entry {claim} "
                        f"and those after it were renumbered")]
    return [Problem(claim, _PLACE, f"{_entries(claim, stored)} inserted before the entry "
                    f"that names itself {claim}, now at index {stored}")]


def _check_count(count: int, recorded: int | None, problems: list[Problem]) -> None:
    if recorded is None or count == recorded:
        return
    if count < recorded:
        problems.append(Problem(count, _PLACE, f"the log was truncated: it records {recorded} "
                                f"entries and holds {count}"))
    else:
        problems.append(Problem(recorded, _PLACE, f"{_entries(recorded, count)} inserted past "
                                f"the end of the log, which records {recorded} entries"))


def _check_nodes(tx: Transaction, count: int, problems: list[Problem]) -> None:
    """Each stored subtree hash against its stored children, level by level."""
    # A tree of ``count`` leaves has fewer than ``count`` subtree hashes.
    with progress.task("checking audit subtree hashes", max(count - 1, 0), "nodes") as task:
        _check_levels(tx, count, problems, task)


def _check_levels(tx: Transaction, count: int, problems: list[Problem],
                  task: progress.Task) -> None:
    for level in range(1, count.bit_length()):
        children = _column(tx, level - 1)
        parents = _nodes(tx, level)
        for index in range(count >> level):
            if index % _STEP == _STEP - 1:
                task.advance(_STEP)
            left, right = next(children, None), next(children, None)
            found = next(parents, None)
            first, last = index << level, ((index + 1) << level) - 1
            if found is None or found[0] != index:
                problems.append(Problem(last, _SUBTREE, f"the stored subtree hash over entries "
                                        f"{first}..{last} was deleted"))
                break
            if left is None or right is None or found[1] != node_hash(left, right):
                problems.append(Problem(last, _SUBTREE, f"entries {first}..{last} were changed: "
                                        "their stored subtree hash no longer matches them"))
                break
        task.advance((count >> level) % _STEP)


def _column(tx: Transaction, level: int) -> Iterator[bytes]:
    if level == 0:
        return (row.leaf_hash for row in tx.stream(_LEAF_HASHES, chunk=_CHUNK))
    return (found for _, found in _nodes(tx, level))


def _nodes(tx: Transaction, level: int) -> Iterator[tuple[int, bytes]]:
    return ((row.idx, row.hash)
            for row in tx.stream(_NODES, {"level": level}, chunk=_CHUNK))


def _check_heads(heads: list[Checkpoint], roots: dict[int, bytes], count: int,
                 problems: list[Problem]) -> None:
    """Each head's root against the recomputed one; the first mismatch brackets the change."""
    matched = 0
    for head in heads:
        if head.size > count:
            problems.append(Problem(count, _HEAD, f"the log was truncated: its tree head of "
                                    f"size {head.size} covers more than its {count} entries"))
            return
        if roots.get(head.size, EMPTY_ROOT) != head.root:
            problems.append(Problem(head.size - 1, _HEAD, "the log no longer matches its tree "
                                    f"head of size {head.size}: an entry in {matched}.."
                                    f"{head.size - 1} was changed, inserted or removed since "
                                    "it was signed"))
            return
        matched = head.size


def _check_trusted(head: Checkpoint, roots: dict[int, bytes], count: int,
                   problems: list[Problem]) -> None:
    if head.size > count:
        problems.append(Problem(count, _HEAD, f"the log was truncated: the trusted head covers "
                                f"{head.size} entries, the log holds {count}"))
    elif roots.get(head.size, EMPTY_ROOT) != head.root:
        # At its last entry, as a signed head's: a finding inside the range comes first.
        problems.append(Problem(head.size - 1, _HEAD, f"the log's first {head.size} entries "
                                "are not those of the trusted head: the log was rewritten"))


def _check_consistency(tx: Transaction, heads: list[Checkpoint],
                       problems: list[Problem]) -> None:
    for old, new in pairwise(heads):
        try:
            merkle.verify_consistency(old.size, new.size,
                                      tree.consistency_proof(tx, old.size, new.size),
                                      old.root, new.root)
        except ProofError as exc:
            problems.append(Problem(old.size, _HEAD, f"the tree heads of sizes {old.size} and "
                                    f"{new.size} are not consistent: {exc.message}"))
            return


def _check_macs(tx: Transaction, signer: NoteSigner, start: int, count: int,
                problems: list[Problem]) -> None:
    forged = 0
    for index in macs.unmarked(tx, signer, start, count):
        forged += 1
        if forged <= _MAX_FORGED:
            problems.append(Problem(index, _FORGED, f"entry {index} was not appended by this "
                                    "log (its entry MAC is missing or wrong): forged in the "
                                    "database"))
    if forged > _MAX_FORGED:
        problems.append(Problem(count, _FORGED, f"and {forged - _MAX_FORGED} more entries "
                                "without their entry MAC"))


def _check_reconciled(tx: Transaction, count: int, problems: list[Problem]) -> None:
    named, missing = reconcile.missing_entries(tx)
    problems.extend(Problem(count, _UNLOGGED, f"the log has no entry for the {what}: kept "
                            "out of the log") for what in named)
    if missing > len(named):
        problems.append(Problem(count, _UNLOGGED, f"and {missing - len(named)} more changes "
                                "of trust the store holds have no entry in the log"))
    named, lifted = reconcile.lifted_revocations(tx)
    problems.extend(Problem(count, _UNLOGGED, f"the store no longer holds the {what} that the "
                            "log records: lifted outside attest") for what in named)
    if lifted > len(named):
        problems.append(Problem(count, _UNLOGGED, f"and {lifted - len(named)} more revocations "
                                "the log records are missing from the store"))


def _entries(first: int, stop: int) -> str:
    return f"entry {first} was" if stop - first == 1 else f"entries {first}..{stop - 1} were"
