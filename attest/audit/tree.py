"""The Merkle tree as stored: leaves in ``audit_entries``, perfect subtrees in ``audit_nodes``.

Functions over an open transaction, which the caller owns. Growing the tree
reads only its frontier (the O(log n) perfect subtrees of the current size) and writes
the new leaves and the subtrees they complete; a root or a proof reads the O(log n)
subtrees that :mod:`attest.audit.shape` names, in at most two queries.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

from attest.audit import shape
from attest.audit.hashing import EMPTY_ROOT, leaf_hash, node_hash
from attest.audit.schema import audit_entries, audit_nodes
from attest.audit.shape import Subtree
from attest.errors import ProofError
from attest.store.db import Transaction

_INSERT_ENTRY = audit_entries.insert()
_INSERT_NODE = audit_nodes.insert()


def fetch(tx: Transaction, wanted: Iterable[Subtree]) -> dict[Subtree, bytes]:
    """The stored hashes of ``wanted``; ProofError if one is missing (a damaged log)."""
    keys = set(wanted)
    leaves = sorted(i for level, i in keys if level == 0)
    nodes = sorted(k for k in keys if k[0] > 0)
    found: dict[Subtree, bytes] = {}
    if leaves:
        rows = tx.all(_leaves_statement(len(leaves)),
                      {f"i{n}": index for n, index in enumerate(leaves)})
        found.update(((0, row.idx), row.leaf_hash) for row in rows)
    if nodes:
        params: dict[str, object] = {}
        for n, (level, index) in enumerate(nodes):
            params[f"l{n}"], params[f"i{n}"] = level, index
        rows = tx.all(_nodes_statement(len(nodes)), params)
        found.update(((row.level, row.idx), row.hash) for row in rows)
    missing = keys - found.keys()
    if missing:
        level, index = min(missing)
        raise ProofError(f"the stored tree lacks the subtree at level {level}, index {index}",
                         hint="run `attest audit verify` to find what was removed")
    return found


def root(tx: Transaction, size: int) -> bytes:
    if size == 0:
        return EMPTY_ROOT
    keys = shape.frontier(size)
    found = fetch(tx, keys)
    return shape.fold([found[k] for k in keys], node_hash)


def inclusion_proof(tx: Transaction, index: int, size: int) -> list[bytes]:
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    return _hash_ranges(tx, shape.inclusion_ranges(index, size))


def inclusion_proof_and_root(tx: Transaction, index: int,
                             size: int) -> tuple[list[bytes], bytes]:
    """:func:`inclusion_proof` and :func:`root` of ``size`` from one read of the stored
    subtrees (a receipt carries both)."""
    proofs, root_hash = inclusion_proofs_and_root(tx, [index], size)
    return proofs[0], root_hash


def inclusion_proofs_and_root(tx: Transaction, indexes: Sequence[int],
                              size: int) -> tuple[list[list[bytes]], bytes]:
    """The inclusion proof of each of ``indexes`` and the root of ``size``, from one read
    of the stored subtrees (the receipts of a group commit's entries share most)."""
    for index in indexes:
        if not 0 <= index < size:
            raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    pieces = [[shape.perfect_subtrees(lo, hi) for lo, hi in shape.inclusion_ranges(i, size)]
              for i in indexes]
    frontier = shape.frontier(size)
    found = fetch(tx, [*(k for each in pieces for blocks in each for k in blocks), *frontier])
    proofs = [[shape.fold([found[k] for k in blocks], node_hash) for blocks in each]
              for each in pieces]
    return proofs, shape.fold([found[k] for k in frontier], node_hash)


def consistency_proof(tx: Transaction, old_size: int, new_size: int) -> list[bytes]:
    if not 0 < old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
    return _hash_ranges(tx, shape.consistency_ranges(old_size, new_size))


def extend(tx: Transaction, size: int, leaves: Sequence[bytes]) -> bytes:
    """Append ``leaves`` (leaf data) at ``size``, ``size + 1``, ...; returns the new root.

    The caller has reserved those indexes (see :mod:`attest.audit.schema`).
    """
    keys = shape.frontier(size)
    found = fetch(tx, keys)
    stack = [(level, index, found[(level, index)]) for level, index in keys]
    entries: list[dict[str, object]] = []
    nodes: list[dict[str, object]] = []
    for offset, data in enumerate(leaves):
        hashed = leaf_hash(data)
        entries.append({"idx": size + offset, "data": data, "leaf_hash": hashed})
        level, index, value = 0, size + offset, hashed
        while stack and stack[-1][0] == level:  # a left sibling waits: their parent is complete
            value = node_hash(stack.pop()[2], value)
            level, index = level + 1, index >> 1
            nodes.append({"level": level, "idx": index, "hash": value})
        stack.append((level, index, value))
    if entries:
        tx.many(_INSERT_ENTRY, entries)
    if nodes:
        tx.many(_INSERT_NODE, nodes)
    return shape.fold([value for _, _, value in stack], node_hash) if stack else EMPTY_ROOT


def _hash_ranges(tx: Transaction, ranges: list[shape.Range]) -> list[bytes]:
    pieces = [shape.perfect_subtrees(lo, hi) for lo, hi in ranges]
    found = fetch(tx, (k for blocks in pieces for k in blocks))
    return [shape.fold([found[k] for k in blocks], node_hash) for blocks in pieces]


# A proof names O(log n) subtrees: a statement per count of them, kept for reuse.
@functools.lru_cache(maxsize=128)
def _leaves_statement(count: int) -> str:
    wanted = ", ".join(f":i{n}" for n in range(count))
    return f"SELECT idx, leaf_hash FROM audit_entries WHERE idx IN ({wanted})"  # noqa: S608


@functools.lru_cache(maxsize=128)
def _nodes_statement(count: int) -> str:
    # OR of key equalities, not a row-value IN: SQLite plans the IN as a full scan,
    # the OR as one primary-key lookup per subtree.
    wanted = " OR ".join(f"(level = :l{n} AND idx = :i{n})" for n in range(count))
    return f"SELECT level, idx, hash FROM audit_nodes WHERE {wanted}"  # noqa: S608
