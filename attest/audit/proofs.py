"""Proof documents: what ``attest audit prove`` and ``consistency`` print and
``check-proof`` checks offline, with nothing but the log's verifier key.

An inclusion proof bound to a signed checkpoint is a *receipt*. Hashes are standard
base64, as in checkpoints. Pure: JSON values in, checks out.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from attest.audit import merkle
from attest.audit.hashing import HASH_SIZE
from attest.audit.note import Checkpoint, VerifierKey
from attest.errors import MalformedInput, ProofError

INCLUSION = "inclusion"
CONSISTENCY = "consistency"


@dataclass(frozen=True)
class InclusionProof:
    """Entry ``index`` (leaf data ``entry``, when given) is in the tree of ``tree_size``."""

    index: int
    leaf_hash: bytes
    tree_size: int
    proof: tuple[bytes, ...]
    root: bytes
    checkpoint: str | None = None  # the signed head of tree_size: what makes it a receipt
    entry: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": INCLUSION,
            "index": self.index,
            "leaf_hash": _b64(self.leaf_hash),
            "tree_size": self.tree_size,
            "proof": [_b64(h) for h in self.proof],
            "root": _b64(self.root),
            "checkpoint": self.checkpoint,
            "entry": None if self.entry is None else self.entry.decode(),
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> InclusionProof:
        entry = value.get("entry")
        return cls(
            index=_int(value, "index"), leaf_hash=_hash(value.get("leaf_hash"), "leaf_hash"),
            tree_size=_int(value, "tree_size"), proof=_hashes(value.get("proof")),
            root=_hash(value.get("root"), "root"),
            checkpoint=_optional_text(value, "checkpoint"),
            entry=None if entry is None else _text(entry, "entry").encode())

    def verify(self, key: VerifierKey) -> Checkpoint:
        """The checkpoint this proof is bound to; ProofError unless everything holds."""
        if self.checkpoint is None:
            raise ProofError("the proof has no signed checkpoint: nothing a key can vouch for",
                             hint="ask for a receipt (`attest audit prove` without --size)")
        head = key.open(self.checkpoint)
        if head.size != self.tree_size:
            raise ProofError(f"the proof is for size {self.tree_size}; the checkpoint is "
                             f"for size {head.size}")
        if head.root != self.root:
            raise ProofError("the proof's root is not the checkpoint's")
        if self.entry is not None and merkle.leaf_hash(self.entry) != self.leaf_hash:
            raise ProofError(f"entry {self.index} does not hash to the proof's leaf hash")
        merkle.verify_inclusion(self.leaf_hash, self.index, self.tree_size, self.proof,
                                head.root)
        return head


@dataclass(frozen=True)
class ConsistencyProof:
    """The tree of ``old_size`` is a prefix of the tree of ``new_size``."""

    old_size: int
    new_size: int
    proof: tuple[bytes, ...]
    old_root: bytes
    new_root: bytes
    old_checkpoint: str | None = None
    new_checkpoint: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": CONSISTENCY,
            "old_size": self.old_size,
            "new_size": self.new_size,
            "proof": [_b64(h) for h in self.proof],
            "old_root": _b64(self.old_root),
            "new_root": _b64(self.new_root),
            "old_checkpoint": self.old_checkpoint,
            "new_checkpoint": self.new_checkpoint,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> ConsistencyProof:
        return cls(
            old_size=_int(value, "old_size"), new_size=_int(value, "new_size"),
            proof=_hashes(value.get("proof")), old_root=_hash(value.get("old_root"), "old_root"),
            new_root=_hash(value.get("new_root"), "new_root"),
            old_checkpoint=_optional_text(value, "old_checkpoint"),
            new_checkpoint=_optional_text(value, "new_checkpoint"))

    def verify(self, key: VerifierKey) -> tuple[Checkpoint, Checkpoint]:
        """Both checkpoints; ProofError unless both are signed and the proof holds."""
        if self.old_checkpoint is None or self.new_checkpoint is None:
            raise ProofError("the proof lacks a signed checkpoint at one of its sizes",
                             hint="prove between sizes that have signed heads")
        old, new = key.open(self.old_checkpoint), key.open(self.new_checkpoint)
        if (old.size, new.size) != (self.old_size, self.new_size):
            raise ProofError("the proof's sizes are not its checkpoints' sizes")
        merkle.verify_consistency(old.size, new.size, self.proof, old.root, new.root)
        return old, new


def parse_proof(value: Any) -> InclusionProof | ConsistencyProof:
    """A proof document as ``prove`` or ``consistency`` wrote it; MalformedInput otherwise."""
    if not isinstance(value, dict):
        raise MalformedInput("a proof file holds one JSON object")
    kind = value.get("type")
    if kind == INCLUSION:
        return InclusionProof.from_json(value)
    if kind == CONSISTENCY:
        return ConsistencyProof.from_json(value)
    raise MalformedInput(f"unknown proof type {kind!r}; expected {INCLUSION} or {CONSISTENCY}")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _hash(value: Any, what: str) -> bytes:
    try:
        data = base64.b64decode(_text(value, what), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedInput(f"{what} is not base64") from None
    if len(data) != HASH_SIZE:
        raise MalformedInput(f"{what} is {len(data)} bytes, not {HASH_SIZE}")
    return data


def _hashes(value: Any) -> tuple[bytes, ...]:
    if not isinstance(value, list):
        raise MalformedInput("proof must be a list of base64 hashes")
    return tuple(_hash(v, "a proof hash") for v in value)


def _int(value: dict[str, Any], key: str) -> int:
    number = value.get(key)
    if not isinstance(number, int) or isinstance(number, bool) or number < 0:
        raise MalformedInput(f"{key} must be a non-negative integer")
    return number


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise MalformedInput(f"{what} must be a string")
    return value


def _optional_text(value: dict[str, Any], key: str) -> str | None:
    found = value.get(key)
    return None if found is None else _text(found, key)
