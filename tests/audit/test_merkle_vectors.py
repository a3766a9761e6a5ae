"""attest.audit.merkle against transparency-dev/merkle's RFC 6962/9162 vectors, read in place."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from attest.audit import merkle
from attest.errors import ProofError
from tests.audit.conftest import MERKLE

PROBES = sorted((MERKLE / "testdata").rglob("*.json")) if MERKLE.is_dir() else []


def _reference() -> dict[str, Any]:
    path = MERKLE / "rfc6962_reference_tree.json"
    if not path.is_file():
        pytest.skip(f"Merkle vectors not found at {MERKLE}; set ATTEST_VECTORS")
    value: dict[str, Any] = json.loads(path.read_text())
    return value


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _hexes(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


def _leaves() -> list[bytes]:
    return [merkle.leaf_hash(bytes.fromhex(x)) for x in _reference()["leaf_inputs_hex"]]


def test_all_196_probes_are_present() -> None:
    if not PROBES:
        pytest.skip(f"Merkle vectors not found at {MERKLE}; set ATTEST_VECTORS")
    assert len(PROBES) == 196


def test_leaf_hashes_match_the_reference() -> None:
    assert [h.hex() for h in _leaves()] == _reference()["leaf_hashes_hex"]


def test_hasher_vectors() -> None:
    by_what = {v["what"]: v for v in _reference()["hasher_vectors"]}
    assert merkle.root([]).hex() == by_what["empty tree root (sha256 of empty string)"]["hex"]
    assert merkle.leaf_hash(b"").hex() == by_what["leaf hash of empty leaf data"]["hex"]
    assert merkle.leaf_hash(b"L123456").hex() == by_what["leaf hash of ASCII 'L123456'"]["hex"]


def test_roots_of_every_size_0_to_8() -> None:
    leaves = _leaves()
    for size, expected in _reference()["root_by_tree_size_hex"].items():
        assert merkle.root(leaves[:int(size)]).hex() == expected, size


def test_node_hashes_by_level_are_roots_of_perfect_subtrees() -> None:
    leaves = _leaves()
    for level, hashes in enumerate(_reference()["node_hashes_by_level_hex"]):
        width = 1 << level
        for index, expected in enumerate(hashes):
            assert merkle.root(leaves[index * width:(index + 1) * width]).hex() == expected


def test_canonical_inclusion_proofs_are_generated_and_verify() -> None:
    leaves = _leaves()
    for case in _reference()["inclusion_proofs"]:
        size, index = case["tree_size"], case["leaf_index_0based"]
        proof = merkle.inclusion_proof(leaves[:size], index)
        assert proof == _hexes(case["audit_path_hex"])
        merkle.verify_inclusion(leaves[index], index, size, proof, merkle.root(leaves[:size]))


def test_canonical_consistency_proofs_are_generated_and_verify() -> None:
    leaves = _leaves()
    for case in _reference()["consistency_proofs"]:
        old, new = case["size1"], case["size2"]
        proof = merkle.consistency_proof(leaves[:new], old)
        assert proof == _hexes(case["proof_hex"])
        merkle.verify_consistency(old, new, proof, merkle.root(leaves[:old]),
                                  merkle.root(leaves[:new]))


@pytest.mark.parametrize("path", PROBES, ids=lambda p: str(p.relative_to(MERKLE / "testdata")))
def test_probe(path: Path) -> None:
    case = json.loads(path.read_text())
    proof = [_b64(h) for h in case["proof"] or []]
    if "leafIdx" in case:
        def check() -> None:
            merkle.verify_inclusion(_b64(case["leafHash"]), case["leafIdx"], case["treeSize"],
                                    proof, _b64(case["root"]))
    else:
        def check() -> None:
            merkle.verify_consistency(case["size1"], case["size2"], proof, _b64(case["root1"]),
                                      _b64(case["root2"]))
    if case["wantErr"]:
        with pytest.raises(ProofError):
            check()
    else:
        check()
