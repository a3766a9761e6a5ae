"""attest.signing.batch: the Merkle batch of signature inputs, against transparency-dev's
RFC 9162 vectors (read in place) and Hypothesis properties; its JSON form, strictly."""

from __future__ import annotations

import base64
import hashlib
import json
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attest.audit import merkle
from attest.errors import BatchProofError, ProofError
from attest.reasons import Reason
from attest.signing import batch
from attest.signing.batch import Membership
from tests.audit.conftest import MERKLE
from tests.audit.test_merkle_vectors import _reference

PROBES = sorted((MERKLE / "testdata" / "inclusion").rglob("*.json")) if MERKLE.is_dir() else []
SETTINGS = settings(max_examples=200, deadline=None)


def _pae(i: int) -> bytes:
    body = f"payload {i}".encode()
    return b"DSSEv1 28 application/vnd.in-toto+json %d %s" % (len(body), body)


@cache
def _batch(size: int) -> tuple[bytes, tuple[Membership, ...]]:
    value, members = batch.build([_pae(i) for i in range(size)])
    return value, tuple(members)


# -- the tree is RFC 9162's: transparency-dev/merkle's vectors ------------------------

def test_memberships_give_the_reference_roots_and_canonical_proofs() -> None:
    ref = _reference()
    leaves = [bytes.fromhex(h) for h in ref["leaf_hashes_hex"]]
    for size in range(1, 9):
        for member in batch.memberships(leaves[:size]):
            assert member.root.hex() == ref["root_by_tree_size_hex"][str(size)]
            batch.verify_leaf(leaves[member.index], member)
    for case in ref["inclusion_proofs"]:
        size, index = case["tree_size"], case["leaf_index_0based"]
        member = batch.memberships(leaves[:size])[index]
        assert [p.hex() for p in member.proof] == case["audit_path_hex"]


def test_inclusion_probes_verify_exactly_when_upstream_says() -> None:
    if not PROBES:
        pytest.skip(f"Merkle vectors not found at {MERKLE}; set ATTEST_VECTORS")
    checked = 0
    for path in PROBES:
        case = json.loads(path.read_text())
        member = Membership(case["leafIdx"], case["treeSize"],
                            base64.b64decode(case["root"] or ""),
                            tuple(base64.b64decode(p) for p in case["proof"] or []))
        leaf = base64.b64decode(case["leafHash"] or "")
        if case["wantErr"]:
            with pytest.raises(BatchProofError):
                batch.verify_leaf(leaf, member)
        else:
            batch.verify_leaf(leaf, member)
        checked += 1
    assert checked > 50


@SETTINGS
@given(st.integers(1, 300))
def test_memberships_are_the_audit_logs_tree(size: int) -> None:
    leaves = [batch.leaf(_pae(i)) for i in range(size)]
    members = batch.memberships(leaves)
    assert members[0].root == merkle.root(leaves)
    assert [list(m.proof) for m in members] == [merkle.inclusion_proof(leaves, i)
                                                for i in range(size)]


def test_leaf_is_the_rfc9162_leaf_hash_of_the_pae_digest() -> None:
    pae = _pae(7)
    assert batch.leaf(pae) == hashlib.sha256(b"\x00" + hashlib.sha256(pae).digest()).digest()


def test_batch_value_is_the_domain_the_size_and_the_root() -> None:
    root = bytes(range(32))
    expected = hashlib.sha256(b"attest-batch-v1\x00" + (5).to_bytes(8, "big") + root).digest()
    assert batch.batch_value(5, root) == expected
    # Known answer, so that a change of the signed value cannot pass unnoticed.
    assert expected.hex() == hashlib.sha256(
        bytes.fromhex("6174746573742d62617463682d763100" "0000000000000005") + root).hexdigest()


def test_a_batch_of_one_has_an_empty_proof_and_the_leaf_as_root() -> None:
    value, (member,) = _batch(1)
    assert member.proof == () and member.root == batch.leaf(_pae(0))
    assert batch.signed_value(_pae(0), member) == value


def test_batch_value_is_never_the_digest_a_single_signature_signs() -> None:
    # A single DSSE signature is ECDSA over SHA-256(PAE); the batch preimage cannot be a PAE.
    value, members = _batch(3)
    preimage = batch.DOMAIN + (3).to_bytes(8, "big") + members[0].root
    assert not preimage.startswith(b"DSSEv1 ")
    assert value not in {hashlib.sha256(_pae(i)).digest() for i in range(3)}
    assert value != members[0].root


# -- properties ------------------------------------------------------------------------

@st.composite
def member_of(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, 300))
    return size, draw(st.integers(0, size - 1))


@SETTINGS
@given(member_of())
def test_every_requests_proof_verifies_under_the_one_signed_value(case: tuple[int, int]) -> None:
    size, index = case
    value, members = _batch(size)
    assert {m.root for m in members} == {members[0].root}
    assert batch.signed_value(_pae(index), members[index]) == value
    assert len(members[index].proof) <= max(0, (size - 1).bit_length())


@SETTINGS
@given(member_of(), st.integers(0, 15), st.integers(0, 255))
def test_any_change_to_leaf_index_size_or_proof_fails(case: tuple[int, int], which: int,
                                                       bit: int) -> None:
    size, index = case
    _, members = _batch(size)
    member = members[index]
    with pytest.raises(BatchProofError):
        batch.signed_value(_pae(index) + b" ", member)
    with pytest.raises(BatchProofError):
        batch.signed_value(_pae(size + 1), member)
    for other in {index ^ 1, index + 1, index - 1, 2 * index + 1} - {index}:
        with pytest.raises(BatchProofError):
            batch.signed_value(_pae(index), Membership(other, size, member.root, member.proof))
    if member.proof:
        k = which % len(member.proof)
        flipped = bytearray(member.proof[k])
        flipped[bit // 8] ^= 1 << (bit % 8)
        proof = (*member.proof[:k], bytes(flipped), *member.proof[k + 1:])
        with pytest.raises(BatchProofError):
            batch.signed_value(_pae(index), Membership(index, size, member.root, proof))
    root = bytearray(member.root)
    root[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(BatchProofError):
        batch.signed_value(_pae(index), Membership(index, size, bytes(root), member.proof))


@SETTINGS
@given(member_of(), st.integers(1, 300))
def test_a_proof_for_size_n_never_verifies_for_m(case: tuple[int, int], other: int) -> None:
    # RFC 9162 verification alone does not pin the size (leaf 0's proof of size 3 also
    # walks to the same root as size 4): the size in the signed value does.
    size, index = case
    if other == size:
        other += 1
    value, members = _batch(size)
    member = members[index]
    try:
        claimed = batch.signed_value(_pae(index), Membership(index, other, member.root,
                                                             member.proof))
    except BatchProofError:
        return
    assert claimed != value


def test_the_same_path_shape_under_another_size_signs_another_value() -> None:
    value, members = _batch(3)
    claimed = batch.signed_value(_pae(0), Membership(0, 4, members[0].root, members[0].proof))
    assert claimed != value


def test_batch_proof_invalid_is_the_reason_of_a_payload_not_in_the_batch() -> None:
    # A real root, reused for a payload that was never in its batch.
    _, members = _batch(4)
    with pytest.raises(ProofError) as caught:
        batch.signed_value(b"DSSEv1 3 foo 3 bar", members[2])
    assert caught.value.reason is Reason.BATCH_PROOF_INVALID
    assert caught.value.exit_code == 1


# -- bounds ------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, -1, batch.MAX_BATCH + 1])
def test_sizes_outside_1_to_65536_are_refused(size: int) -> None:
    with pytest.raises(BatchProofError):
        batch.batch_value(size, bytes(32))
    with pytest.raises(BatchProofError):
        batch.signed_value(b"x", Membership(0, size, bytes(32), ()))


def test_an_empty_batch_is_refused_when_built() -> None:
    with pytest.raises(BatchProofError):
        batch.build([])


def test_the_largest_batch_has_proofs_of_16_hashes() -> None:
    assert batch.proof_length(0, batch.MAX_BATCH) == 16
    assert batch.proof_length(batch.MAX_BATCH - 1, batch.MAX_BATCH) == 16
    assert batch.proof_length(4, 5) == 1  # the lone rightmost leaf: shorter than log2


# -- the JSON member ----------------------------------------------------------------------

def test_json_round_trip() -> None:
    _, members = _batch(5)
    for member in members:
        text = json.dumps(member.to_json())
        assert Membership.from_json(json.loads(text)) == member


def _valid() -> dict[str, Any]:
    return _batch(5)[1][2].to_json()


@pytest.mark.parametrize("change", [
    lambda d: d.pop("root"),
    lambda d: d.update(extra=1),
    lambda d: d.update(v=1),
    lambda d: d.update(index=True),
    lambda d: d.update(index=1.0),
    lambda d: d.update(index="2"),
    lambda d: d.update(index=5),
    lambda d: d.update(index=-1),
    lambda d: d.update(size=0),
    lambda d: d.update(size=batch.MAX_BATCH + 1),
    lambda d: d.update(size=10**100),
    lambda d: d.update(root=d["root"].upper()),
    lambda d: d.update(root=d["root"][:-2]),
    lambda d: d.update(root=d["root"] + "00"),
    lambda d: d.update(root=" " + d["root"][1:]),
    lambda d: d.update(root=None),
    lambda d: d.update(proof=d["proof"] + [d["proof"][0]]),
    lambda d: d.update(proof=d["proof"][:-1]),
    lambda d: d.update(proof="".join(d["proof"])),
    lambda d: d.update(proof=[*d["proof"][:-1], 7]),
    lambda d: d.update(proof=[d["root"]] * 10**4),
])
def test_malformed_batch_members_are_refused(change: Any) -> None:
    value = _valid()
    change(value)
    with pytest.raises(BatchProofError):
        Membership.from_json(value)


@pytest.mark.parametrize("value", [None, [], "batch", 5])
def test_a_batch_member_that_is_no_object_is_refused(value: object) -> None:
    with pytest.raises(BatchProofError):
        Membership.from_json(value)
