"""The shape of an RFC 9162 Merkle tree: which leaf ranges a proof is made of.

Pure arithmetic, no hashing of data. :mod:`attest.audit.merkle` hashes those ranges
from a list in memory; :mod:`attest.audit.tree` reads them from stored subtree
hashes. Both then produce the same proofs, because both take the shape from here.

A range ``(lo, hi)`` is the half-open leaf interval ``[lo, hi)``. A *perfect*
subtree ``(level, index)`` covers ``[index * 2**level, (index + 1) * 2**level)``.
The algorithms restate RFC 9162 section 2.1 (PATH and SUBPROOF) iteratively.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Range = tuple[int, int]
Subtree = tuple[int, int]  # (level, index)


def split(size: int) -> int:
    """The largest power of two smaller than ``size`` (RFC 9162's k), for size >= 2."""
    return 1 << ((size - 1).bit_length() - 1)


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The ranges whose hashes form the inclusion proof of leaf ``index``, leaf to root."""
    ranges: list[Range] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = split(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    ranges.reverse()  # collected root first; a proof lists the leaf's sibling first
    return ranges


def consistency_ranges(old_size: int, new_size: int) -> list[Range]:
    """The ranges of the consistency proof from ``old_size`` to ``new_size`` (0 < old <= new)."""
    ranges: list[Range] = []
    lo, hi, old, whole = 0, new_size, old_size, True
    while old != hi - lo:
        k = split(hi - lo)
        if old <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
            old -= k
            whole = False
    if not whole:
        # The old tree is not a subtree of the new one here: its last piece is proven too.
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def perfect_subtrees(lo: int, hi: int) -> list[Subtree]:
    """``[lo, hi)`` as perfect subtrees, left to right, largest aligned block first.

    For a range that is a node of some RFC 9162 tree (every range above is), the
    blocks shrink left to right and the node's hash is :func:`fold` of theirs.
    """
    blocks: list[Subtree] = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        if lo:
            level = min(level, (lo & -lo).bit_length() - 1)
        blocks.append((level, lo >> level))
        lo += 1 << level
    return blocks


def frontier(size: int) -> list[Subtree]:
    """The perfect subtrees that make up a tree of ``size`` leaves, left to right."""
    return perfect_subtrees(0, size)


def fold(hashes: Sequence[bytes], node: Callable[[bytes, bytes], bytes]) -> bytes:
    """The hash of a node made of shrinking perfect subtrees: a right fold of ``node``."""
    acc = hashes[-1]
    for left in reversed(hashes[:-1]):
        acc = node(left, acc)
    return acc
