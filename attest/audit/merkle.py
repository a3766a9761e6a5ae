"""RFC 9162 Merkle tree hashing, proofs and their verification, over hashes in memory.

Pure: bytes in, bytes out. Leaf = SHA-256(0x00 || data), node = SHA-256(0x01 ||
left || right), empty tree = SHA-256(""). Indices are 0-based. Verification
follows RFC 9162 sections 2.1.3.2 and 2.1.4.2, with the choices the
transparency-dev/merkle reference makes where the RFC leaves room (and its test
vectors check): a consistency proof from size 0 is always refused, and equal sizes
need an empty proof and equal roots.

The ``verify_*`` functions return nothing and raise :class:`attest.errors.ProofError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from attest.audit import shape
from attest.audit.hashing import EMPTY_ROOT, HASH_SIZE, leaf_hash
from attest.audit.hashing import node_hash as _node
from attest.errors import ProofError

__all__ = [
    "Step",
    "consistency_proof",
    "inclusion_proof",
    "inclusion_steps",
    "leaf_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The tree head hash of ``leaf_hashes`` (MTH), in one pass with a stack of subtrees."""
    if not leaf_hashes:
        return EMPTY_ROOT
    stack: list[tuple[int, bytes]] = []  # (leaves covered, hash): perfect subtrees, shrinking
    for value in leaf_hashes:
        size, acc = 1, value
        while stack and stack[-1][0] == size:
            acc = _node(stack.pop()[1], acc)
            size *= 2
        stack.append((size, acc))
    return shape.fold([h for _, h in stack], _node)


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``leaf_hashes`` (RFC 9162 PATH)."""
    if not 0 <= index < len(leaf_hashes):
        raise ValueError(f"leaf {index} is not in a tree of {len(leaf_hashes)} leaves")
    return [root(leaf_hashes[lo:hi]) for lo, hi in shape.inclusion_ranges(index, len(leaf_hashes))]


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """The proof that the tree of the first ``old_size`` leaves is a prefix (RFC 9162 PROOF)."""
    if not 0 < old_size <= len(leaf_hashes):
        raise ValueError(f"no consistency proof from size {old_size} to {len(leaf_hashes)}")
    return [root(leaf_hashes[lo:hi])
            for lo, hi in shape.consistency_ranges(old_size, len(leaf_hashes))]


class Step(NamedTuple):
    """One hash of an inclusion path: the sibling at ``level`` (0: the leaves), on the
    left of the node climbed so far or on its right, and the hash of the two together."""

    level: int
    left: bool
    sibling: bytes
    combined: bytes

    @property
    def side(self) -> str:
        return "left" if self.left else "right"


def inclusion_steps(leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes]
                    ) -> tuple[list[Step], int]:
    """The RFC 9162 (2.1.3.2) climb from ``leaf_hash`` at ``index`` (inside a tree of
    ``tree_size``) by ``proof``: each step, and the levels of the tree still above the
    last one (0: the proof reached the root's level). Hashes past the root's level are
    not steps. Decides nothing: :func:`verify_inclusion` does, and a page showing a
    path (attest.console.receipt) shows the same climb."""
    steps: list[Step] = []
    fn, sn, level, node = index, tree_size - 1, 0, leaf_hash
    for sibling in proof:
        if sn == 0:
            break
        if fn & 1 or fn == sn:
            # The last node of its level with no right sibling climbs alone first: the
            # sibling it meets is a subtree as many levels up.
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
                level += 1
            node = _node(sibling, node)
            steps.append(Step(level, True, sibling, node))
        else:
            node = _node(node, sibling)
            steps.append(Step(level, False, sibling, node))
        fn >>= 1
        sn >>= 1
        level += 1
    return steps, sn


def verify_inclusion(leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes],
                     root: bytes) -> None:
    """Raise ProofError unless ``proof`` puts ``leaf_hash`` at ``index`` under ``root``."""
    _check_hashes(leaf_hash, *proof)
    if not 0 <= index < tree_size:
        raise ProofError(f"leaf index {index} is outside a tree of size {tree_size}")
    steps, above = inclusion_steps(leaf_hash, index, tree_size, proof)
    if len(steps) < len(proof):
        raise ProofError("the inclusion proof is longer than the tree is deep")
    if above != 0:
        raise ProofError("the inclusion proof is shorter than the tree is deep")
    if (steps[-1].combined if steps else leaf_hash) != root:
        raise ProofError(f"leaf {index} is not in the tree of size {tree_size} with that root")


def verify_consistency(old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes,
                       new_root: bytes) -> None:
    """Raise ProofError unless the ``old_size`` tree is a prefix of the ``new_size`` tree.

    Roots are compared, not parsed: one of the wrong length simply never matches
    (the reference accepts equal sizes with equal roots of any length).
    """
    _check_hashes(*proof)
    if old_size <= 0 or old_size > new_size:
        raise ProofError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size == new_size:
        if proof:
            raise ProofError("a consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError(f"two different roots for the same size {old_size}")
        return
    if not proof:
        raise ProofError("an empty consistency proof between different sizes")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)  # a perfect old tree is itself a node of the new one
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:  # start at the old tree's last node that is not a right child
        fn >>= 1
        sn >>= 1
    old_acc = new_acc = path[0]
    for value in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            old_acc = _node(value, old_acc)
            new_acc = _node(value, new_acc)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            new_acc = _node(new_acc, value)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the consistency proof is shorter than the tree is deep")
    if old_acc != old_root:
        raise ProofError(f"the proof does not lead to the root of size {old_size}")
    if new_acc != new_root:
        raise ProofError(f"the tree of size {old_size} is not a prefix of the tree of "
                         f"size {new_size} with that root")


def _check_hashes(*values: bytes) -> None:
    for value in values:
        if len(value) != HASH_SIZE:
            raise ProofError(f"a hash of {len(value)} bytes; SHA-256 hashes are {HASH_SIZE}")
