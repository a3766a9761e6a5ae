"""Signed tree heads as C2SP checkpoints in C2SP signed notes, Ed25519 only.

Formats restated from https://c2sp.org/signed-note and https://c2sp.org/tlog-checkpoint:

- checkpoint body: ``<origin>\\n<size>\\n<base64 root>\\n`` (size in decimal, no
  leading zeros; further non-empty extension lines allowed);
- signed note: the body, a blank line, then lines ``— <key name> <base64(key ID ||
  signature)>\\n``; the signature covers the body including its final newline;
- key ID: the first 4 bytes of SHA-256(key name || 0x0A || 0x01 || public key), 0x01
  being the Ed25519 signature type;
- verifier key ("vkey"): ``<name>+<hex key ID>+<base64(0x01 || public key)>``;
  the private key file uses ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``.

A note signed by the trusted key's name and ID must verify, else it is refused;
signatures by other keys are ignored, as the spec says. The log's origin is its key
name, so a head from another log is refused even when its signature is good.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from attest.errors import MalformedInput, ProofError

ED25519 = 0x01
KEY_SIZE = 32
MAX_NOTE = 64 * 1024
MAX_SIGNATURES = 100  # the limit the spec suggests a verifier may impose
_DASH = "\u2014 "
_PRIVATE_PREFIX = "PRIVATE+KEY+"
_NAME = re.compile(r"^[^\s+]+$")
_SIZE = re.compile(r"^(0|[1-9][0-9]*)$")


def key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public).digest()[:4]


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: the log's origin, its size and the RFC 9162 root at that size."""

    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{_b64(self.root)}\n"

    @classmethod
    def from_body(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "" or any(not line for line in lines[:-1]):
            raise ProofError("a checkpoint is at least three non-empty lines")
        origin, size, root = lines[:3]
        if not _SIZE.match(size):
            raise ProofError(f"checkpoint size {size[:40]!r} is not a decimal number")
        digest = _unb64(root, "checkpoint root")
        if len(digest) != 32:
            raise ProofError(f"the checkpoint root is {len(digest)} bytes, not 32")
        return cls(origin, int(size), digest)


@dataclass(frozen=True)
class VerifierKey:
    """A log's public key under its name: what an auditor trusts."""

    name: str
    public: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        if len(self.public) != KEY_SIZE:
            raise MalformedInput(f"an Ed25519 public key is {KEY_SIZE} bytes, "
                                 f"not {len(self.public)}")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public)

    def encode(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([ED25519]) + self.public)}"

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        parts = text.strip().split("+", 2)  # base64 may hold '+'; name and ID never do
        if len(parts) != 3:
            raise MalformedInput("a verifier key reads <name>+<key ID hex>+<base64 key>",
                                 hint="print the log's with `attest audit key`")
        name, hex_id, encoded = parts
        raw = _unb64(encoded, "verifier key", MalformedInput)
        if len(raw) != KEY_SIZE + 1 or raw[0] != ED25519:
            raise MalformedInput("the verifier key is not an Ed25519 key")
        key = cls(name, raw[1:])
        if hex_id.lower() != key.key_id.hex():
            raise MalformedInput(f"verifier key {name}: its key ID {hex_id} does not match "
                                 "its key")
        return key

    def verify_note(self, note: str) -> str:
        """The text of ``note``; ProofError unless this key signed it."""
        text, signatures = _split_note(note)
        verified = False
        for name, signature in signatures:
            if name != self.name or signature[:4] != self.key_id:
                continue  # another signer (a witness, say): not ours to judge
            try:
                Ed25519PublicKey.from_public_bytes(self.public).verify(signature[4:],
                                                                        text.encode())
            except InvalidSignature:
                raise ProofError(f"the signature by {self.name} does not verify") from None
            verified = True
        if not verified:
            raise ProofError(f"it is not signed by the log key {self.name}")
        return text

    def open(self, note: str) -> Checkpoint:
        """The checkpoint in ``note``; ProofError unless this key signed it, for its origin."""
        checkpoint = Checkpoint.from_body(self.verify_note(note))
        if checkpoint.origin != self.name:
            raise ProofError(f"the tree head is for log {checkpoint.origin!r}, "
                             f"not {self.name!r}")
        return checkpoint


class NoteSigner:
    """The log's private key; signs checkpoints for the origin that is its name."""

    def __init__(self, name: str, key: Ed25519PrivateKey) -> None:
        _check_name(name)
        self.name = name
        self._key = key
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.verifier_key = VerifierKey(name, public)
        # A separate key for entry MACs, derived from the private key (never the key itself).
        self._mac_key = hashlib.sha256(b"attest audit entry MAC\0"
                                       + key.private_bytes_raw()).digest()
        self._trust_key = hashlib.sha256(b"attest trusted record MAC\0"
                                         + key.private_bytes_raw()).digest()

    def entry_mac(self, index: int, leaf_hash: bytes) -> bytes:
        """The MAC of the entry at ``index`` with ``leaf_hash``: only the key's holder
        makes it, so an entry that lacks it was not appended by this log."""
        return hmac.new(self._mac_key, index.to_bytes(8, "big") + leaf_hash,
                        hashlib.sha256).digest()

    def trust_mac(self, data: bytes) -> bytes:
        """The MAC of ``data``, a record the verifier trusts (an enrollment, an accepted
        artifact: see attest.audit.seals), under a key of its own: a seal is never an
        entry MAC. Each kind of record has its own version label in ``data``."""
        return hmac.new(self._trust_key, data, hashlib.sha256).digest()

    @classmethod
    def generate(cls, name: str) -> NoteSigner:
        return cls(name, Ed25519PrivateKey.generate())

    def sign(self, size: int, root: bytes) -> str:
        """The signed note of the checkpoint (origin = this key's name, size, root)."""
        return self.sign_text(Checkpoint(self.name, size, root).body())

    def sign_text(self, text: str) -> str:
        """``text`` (newline-terminated) as a note signed by this key."""
        signature = self.verifier_key.key_id + self._key.sign(text.encode())
        return f"{text}\n{_DASH}{self.name} {_b64(signature)}\n"

    def encode_private(self) -> str:
        seed = self._key.private_bytes_raw()
        return (f"{_PRIVATE_PREFIX}{self.name}+{self.verifier_key.key_id.hex()}"
                f"+{_b64(bytes([ED25519]) + seed)}")

    @classmethod
    def decode_private(cls, text: str) -> NoteSigner:
        if not text.startswith(_PRIVATE_PREFIX):
            raise MalformedInput("not a signed-note private key (PRIVATE+KEY+...)")
        parts = text[len(_PRIVATE_PREFIX):].strip().split("+", 2)
        if len(parts) != 3:
            raise MalformedInput("a private key reads PRIVATE+KEY+<name>+<key ID>+<key>")
        name, hex_id, encoded = parts
        raw = _unb64(encoded, "private key", MalformedInput)
        if len(raw) != KEY_SIZE + 1 or raw[0] != ED25519:
            raise MalformedInput("the private key is not an Ed25519 key")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if hex_id.lower() != signer.verifier_key.key_id.hex():
            raise MalformedInput("the private key's ID does not match the key")
        return signer


def check_note_text(note: str) -> None:
    """ProofError unless ``note`` is bounded and holds only printable characters and line
    feeds: a note is printed as it is, so no control (C0, DEL, C1), format or separator
    character may reach a terminal through one."""
    if len(note) > MAX_NOTE:
        raise ProofError(f"a tree head of {len(note)} characters; at most {MAX_NOTE}")
    if not note.replace("\n", "").isprintable():
        raise ProofError("a tree head must not hold control or format characters")


def unverified_text(note: str) -> str:
    """The text ``note`` signs, its signatures unchecked: to show what a stored head says."""
    return _split_note(note)[0]


def _split_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """The signed text and its (key name, key ID || signature) lines."""
    check_note_text(note)
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise ProofError("not a signed note: no blank line before signature lines")
    text, block = note[:cut + 1], note[cut + 2:]
    lines = block[:-1].split("\n")
    if not block or len(lines) > MAX_SIGNATURES:
        raise ProofError(f"a signed note needs 1 to {MAX_SIGNATURES} signature lines")
    signatures: list[tuple[str, bytes]] = []
    for line in lines:
        name, _, encoded = line.removeprefix(_DASH).partition(" ")
        if not line.startswith(_DASH) or not _NAME.match(name) or " " in encoded:
            raise ProofError(f"malformed signature line {line[:60]!r}")
        signature = _unb64(encoded, "signature")
        if len(signature) < 5:
            raise ProofError("a signature line too short to hold a key ID and signature")
        signatures.append((name, signature))
    return text, signatures


def _check_name(name: str) -> None:
    # Printable too: a name is the origin line of every note, and a note holds nothing
    # else (check_note_text).
    if not _NAME.match(name) or not name.isprintable():
        raise MalformedInput(f"key name {name[:60]!r} must be non-empty, without spaces or '+'")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str, what: str,
           error: type[ProofError] | type[MalformedInput] = ProofError) -> bytes:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise error(f"{what} is not base64") from None
    if _b64(data) != text:
        raise error(f"{what} is not canonical base64")
    return data
