"""For random trees, every proof verifies and any change to proof, root, index or size fails."""

from __future__ import annotations

import hashlib
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attest.audit import merkle
from attest.errors import ProofError

MAX_SIZE = 300
SETTINGS = settings(max_examples=300, deadline=None)


@cache
def leaves(size: int) -> tuple[bytes, ...]:
    return tuple(merkle.leaf_hash(hashlib.sha256(str(i).encode()).digest())
                 for i in range(size))


@cache
def root(size: int) -> bytes:
    return merkle.root(leaves(size))


@st.composite
def inclusion_case(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, MAX_SIZE))
    return size, draw(st.integers(0, size - 1))


@st.composite
def consistency_case(draw: st.DrawFn) -> tuple[int, int]:
    new = draw(st.integers(1, MAX_SIZE))
    return draw(st.integers(1, new)), new


def _flip(proof: list[bytes], which: int, bit: int) -> list[bytes]:
    changed = bytearray(proof[which])
    changed[bit // 8] ^= 1 << (bit % 8)
    return [*proof[:which], bytes(changed), *proof[which + 1:]]


def _mutations(proof: list[bytes], which: int, bit: int) -> list[list[bytes]]:
    """Each way of changing a proof: a flipped bit, an element dropped, added or moved."""
    extra = hashlib.sha256(b"extra").digest()
    changed = [[*proof, extra], [extra, *proof]]
    if proof:
        changed += [_flip(proof, which % len(proof), bit), proof[:-1], proof[1:],
                    [*proof[:which % len(proof)], *proof[which % len(proof) + 1:]]]
    if len(proof) > 1:
        changed.append([proof[1], proof[0], *proof[2:]])
    return [c for c in changed if c != proof]


@SETTINGS
@given(inclusion_case())
def test_every_inclusion_proof_verifies(case: tuple[int, int]) -> None:
    size, index = case
    proof = merkle.inclusion_proof(leaves(size), index)
    merkle.verify_inclusion(leaves(size)[index], index, size, proof, root(size))


@SETTINGS
@given(inclusion_case(), st.integers(0, 64), st.integers(0, 255))
def test_a_changed_inclusion_proof_is_refused(case: tuple[int, int], which: int,
                                               bit: int) -> None:
    size, index = case
    proof = merkle.inclusion_proof(leaves(size), index)
    for changed in _mutations(proof, which, bit):
        with pytest.raises(ProofError):
            merkle.verify_inclusion(leaves(size)[index], index, size, changed, root(size))


@SETTINGS
@given(inclusion_case(), st.integers(0, 255))
def test_inclusion_under_a_changed_root_or_leaf_is_refused(case: tuple[int, int],
                                                           bit: int) -> None:
    size, index = case
    proof = merkle.inclusion_proof(leaves(size), index)
    leaf = leaves(size)[index]
    with pytest.raises(ProofError):
        merkle.verify_inclusion(leaf, index, size, proof, _flip([root(size)], 0, bit)[0])
    with pytest.raises(ProofError):
        merkle.verify_inclusion(_flip([leaf], 0, bit)[0], index, size, proof, root(size))


@SETTINGS
@given(inclusion_case(), st.integers(-3, 3).filter(bool))
def test_inclusion_at_a_changed_index_is_refused(case: tuple[int, int], delta: int) -> None:
    size, index = case
    proof = merkle.inclusion_proof(leaves(size), index)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(leaves(size)[index], index + delta, size, proof, root(size))


@SETTINGS
@given(inclusion_case(), st.integers(-3, 3).filter(bool))
def test_inclusion_at_a_changed_size_is_refused(case: tuple[int, int], delta: int) -> None:
    # Against the true root of the other size: what a checkpoint of that size would hold.
    size, index = case
    other = size + delta
    proof = merkle.inclusion_proof(leaves(size), index)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(leaves(size)[index], index, other, proof,
                                root(max(other, 0)))


@SETTINGS
@given(consistency_case())
def test_every_consistency_proof_verifies(case: tuple[int, int]) -> None:
    old, new = case
    proof = merkle.consistency_proof(leaves(new), old)
    merkle.verify_consistency(old, new, proof, root(old), root(new))


@SETTINGS
@given(consistency_case(), st.integers(0, 64), st.integers(0, 255))
def test_a_changed_consistency_proof_is_refused(case: tuple[int, int], which: int,
                                                bit: int) -> None:
    old, new = case
    proof = merkle.consistency_proof(leaves(new), old)
    for changed in _mutations(proof, which, bit):
        with pytest.raises(ProofError):
            merkle.verify_consistency(old, new, changed, root(old), root(new))


@SETTINGS
@given(consistency_case(), st.integers(0, 255))
def test_consistency_with_a_changed_or_swapped_root_is_refused(case: tuple[int, int],
                                                               bit: int) -> None:
    old, new = case
    proof = merkle.consistency_proof(leaves(new), old)
    bad_old, bad_new = _flip([root(old)], 0, bit)[0], _flip([root(new)], 0, bit)[0]
    for old_root, new_root in ((bad_old, root(new)), (root(old), bad_new)):
        with pytest.raises(ProofError):
            merkle.verify_consistency(old, new, proof, old_root, new_root)
    if old != new:
        with pytest.raises(ProofError):
            merkle.verify_consistency(old, new, proof, root(new), root(old))


@SETTINGS
@given(consistency_case(), st.integers(-3, 3).filter(bool), st.booleans())
def test_consistency_between_changed_sizes_is_refused(case: tuple[int, int], delta: int,
                                                      move_old: bool) -> None:
    old, new = case
    proof = merkle.consistency_proof(leaves(new), old)
    old2, new2 = (old + delta, new) if move_old else (old, new + delta)
    with pytest.raises(ProofError):
        merkle.verify_consistency(old2, new2, proof, root(max(old2, 0)), root(max(new2, 0)))


def test_a_consistency_proof_from_size_zero_is_always_refused() -> None:
    with pytest.raises(ProofError):
        merkle.verify_consistency(0, 0, [], merkle.root([]), merkle.root([]))
    with pytest.raises(ProofError):
        merkle.verify_consistency(0, 3, [], merkle.root([]), root(3))


def test_proofs_are_not_generated_outside_the_tree() -> None:
    with pytest.raises(ValueError, match="not in a tree"):
        merkle.inclusion_proof(leaves(3), 3)
    with pytest.raises(ValueError, match="consistency"):
        merkle.consistency_proof(leaves(3), 0)
