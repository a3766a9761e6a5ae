"""Batches of signature inputs under one TPM signature: the Merkle tree, its proofs and
the value the TPM signs. Pure (no TSS): the verifier imports it.

A batch of ``size`` requests is the RFC 9162 tree (attest.audit.merkle, reused: leaf
hash SHA-256(0x00 || data), node SHA-256(0x01 || left || right)) whose leaf ``i`` has as
data SHA-256 of request ``i``'s signature input, the DSSE PAE. The TPM signs, once,

    batch_value = SHA-256("attest-batch-v1" || 0x00 || uint64_be(size) || root)

and each request gets (index, size, proof, root) plus that one signature.

Why a signature over ``batch_value`` can be nothing else (barring SHA-256 collisions):
- not a single DSSE signature: a single signature is ECDSA over SHA-256(PAE), and a
  PAE starts with "DSSEv1 "; the preimage of ``batch_value`` starts with
  "attest-batch-v1\\0". Equal digests would be two different SHA-256 preimages with the
  same hash. So a batch signature never verifies as a DSSE signature of any envelope,
  and a single signature never as a batch's;
- not a signature over a leaf or a node: those are never signed, only ``batch_value``;
  and inside the tree the RFC 9162 0x00/0x01 prefixes keep a leaf from passing for a
  node (no second preimage by moving a level);
- not for another size: RFC 9162 verification alone does not pin the size (leaf 0's
  proof in a batch of 3 also walks to that root when checked as a batch of 4: same path
  shape), so the size is in the signed value; a membership claiming another size asks
  for a value the TPM never signed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from attest.audit import merkle, shape
from attest.audit.hashing import node_hash as merkle_node
from attest.errors import BatchProofError, ProofError

DOMAIN = b"attest-batch-v1\x00"
MAX_BATCH = 65536  # 2**16 requests: a proof is then at most 16 hashes
MAX_PROOF = 16
HASH_SIZE = 32
_HEX = frozenset("0123456789abcdef")
_MEMBERS = frozenset({"index", "size", "root", "proof"})

__all__ = [
    "DOMAIN",
    "MAX_BATCH",
    "Membership",
    "batch_value",
    "build",
    "leaf",
    "memberships",
    "proof_length",
    "signed_value",
    "verify_leaf",
]


def leaf(signature_input: bytes) -> bytes:
    """The RFC 9162 leaf hash of one request: H(0x00 || SHA-256(PAE))."""
    return merkle.leaf_hash(hashlib.sha256(signature_input).digest())


def proof_length(index: int, size: int) -> int:
    """How many hashes the proof of leaf ``index`` in a tree of ``size`` has: exactly this
    many, at most ceil(log2 size) (the rightmost leaves of an unbalanced tree need fewer)."""
    return len(shape.inclusion_ranges(index, size))


def batch_value(size: int, root: bytes) -> bytes:
    """The 32-byte digest the TPM signs for a batch (see the module docstring for why)."""
    _check_size(size)
    if len(root) != HASH_SIZE:
        raise BatchProofError(f"a batch root of {len(root)} bytes; roots are {HASH_SIZE}")
    return hashlib.sha256(DOMAIN + size.to_bytes(8, "big") + root).digest()


@dataclass(frozen=True)
class Membership:
    """Where one request sits in its batch: the bundle's ``"batch"`` member."""

    index: int
    size: int
    root: bytes
    proof: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {"root": self.root.hex(), "index": self.index, "size": self.size,
                "proof": [p.hex() for p in self.proof]}

    @classmethod
    def from_json(cls, value: object) -> Membership:
        """Strict: exactly the four members (the bundle's ``version`` versions them),
        integers that are ints (not bools), lowercase hex of 32 bytes, a proof of exactly
        the length its (index, size) needs."""
        if not isinstance(value, Mapping):
            raise BatchProofError("the batch member is not a JSON object")
        if set(value) != _MEMBERS:
            raise BatchProofError(f"the batch member has members {_names(value)}; "
                                  f"expected {sorted(_MEMBERS)}")
        index, size = _int(value["index"], "index"), _int(value["size"], "size")
        _check_shape(index, size)
        proof = value["proof"]
        if not isinstance(proof, list):
            raise BatchProofError("the batch proof is not a list")
        if len(proof) != proof_length(index, size):
            raise BatchProofError(f"a proof of {min(len(proof), MAX_PROOF + 1)} hashes for "
                                  f"leaf {index} of {size}; it needs "
                                  f"{proof_length(index, size)}")
        return cls(index, size, _hash(value["root"], "root"),
                   tuple(_hash(p, "proof hash") for p in proof))


def build(signature_inputs: Sequence[bytes]) -> tuple[bytes, list[Membership]]:
    """The batch value to sign and each request's membership, in the order given."""
    members = memberships([leaf(s) for s in signature_inputs])
    return batch_value(members[0].size, members[0].root), members


def memberships(leaf_hashes: Sequence[bytes]) -> list[Membership]:
    """Each leaf's membership in the tree of ``leaf_hashes`` (one root, one proof each).

    The same tree as attest.audit.merkle's root and inclusion_proof (tested equal), built
    level by level instead: asking merkle for n proofs hashes O(n^2); here it is O(n log
    n). RFC 9162's split at the largest power of two is the tree in which a level's last
    node, when it has no sibling, moves up unhashed.
    """
    _check_size(len(leaf_hashes))
    levels = [list(leaf_hashes)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        above = [merkle_node(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
        if len(below) % 2:
            above.append(below[-1])
        levels.append(above)
    root, size = levels[-1][0], len(leaf_hashes)
    return [Membership(index, size, root, _path(levels, index)) for index in range(size)]


def _path(levels: list[list[bytes]], index: int) -> tuple[bytes, ...]:
    path = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):  # no sibling: the node moved up as it was
            path.append(level[sibling])
        index >>= 1
    return tuple(path)


def verify_leaf(leaf_hash: bytes, membership: Membership) -> None:
    """Raise BatchProofError unless the proof puts ``leaf_hash`` at the membership's index
    under its root, in a batch of its size."""
    _check_shape(membership.index, membership.size)
    if len(membership.proof) != proof_length(membership.index, membership.size):
        raise BatchProofError(f"a proof of {len(membership.proof)} hashes for leaf "
                              f"{membership.index} of {membership.size}; it needs "
                              f"{proof_length(membership.index, membership.size)}")
    if len(membership.root) != HASH_SIZE:
        raise BatchProofError(f"a batch root of {len(membership.root)} bytes")
    try:
        merkle.verify_inclusion(leaf_hash, membership.index, membership.size,
                                membership.proof, membership.root)
    except (ProofError, ValueError) as exc:  # a proof that does not hold, however
        raise BatchProofError(f"the signed payload is not in the batch: {exc}") from None


def signed_value(signature_input: bytes, membership: Membership) -> bytes:
    """The digest the batch signature must verify over, once the proof has put this
    signature input at its index under the root; raises BatchProofError otherwise.

    The one way in for a verifier: it cannot get a digest to check without the proof
    having been checked first.
    """
    verify_leaf(leaf(signature_input), membership)
    return batch_value(membership.size, membership.root)


def _check_size(size: int) -> None:
    if not 1 <= size <= MAX_BATCH:
        raise BatchProofError(f"a batch of {size} requests; batches hold 1 to {MAX_BATCH}")


def _check_shape(index: int, size: int) -> None:
    _check_size(size)
    if not 0 <= index < size:
        raise BatchProofError(f"leaf index {index} is outside a batch of {size}")


def _int(value: object, what: str) -> int:
    if type(value) is not int:
        raise BatchProofError(f"batch {what} is not an integer")
    return value


def _hash(value: object, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * HASH_SIZE or not set(value) <= _HEX:
        raise BatchProofError(f"batch {what} is not 64 lowercase hex digits")
    return bytes.fromhex(value)


def _names(value: Mapping[Any, Any]) -> list[str]:
    return sorted(str(k)[:40] for k in list(value)[:10])
