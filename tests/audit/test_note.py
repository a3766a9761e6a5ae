"""Signed tree heads: C2SP signed notes and checkpoints, and the log key in the home."""

from __future__ import annotations

import base64
import stat
import threading
from pathlib import Path

import pytest

from attest.audit import keys
from attest.audit.note import Checkpoint, NoteSigner, VerifierKey
from attest.errors import MalformedInput, ProofError, UsageError

# The examples of golang.org/x/mod/sumdb/note (example_test.go, the signed-note
# reference implementation): a key pair and the note it signs. Ed25519 is
# deterministic, so signing the text again must give the same bytes.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = ("If you think cryptography is the answer to your problem,\n"
           "then you don't know what your problem is.\n")
GO_NOTE = (GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIu"
           "GUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")
ROOT = bytes(range(32))


def test_key_id_and_signature_match_the_go_reference_example() -> None:
    key = VerifierKey.parse(GO_VKEY)
    assert key.key_id.hex() == "c74f20a3"
    assert key.verify_note(GO_NOTE) == GO_TEXT


def test_signing_reproduces_the_go_reference_note() -> None:
    signer = NoteSigner.decode_private(GO_SKEY)
    assert signer.verifier_key == VerifierKey.parse(GO_VKEY)
    assert signer.encode_private() == GO_SKEY
    assert signer.sign_text(GO_TEXT) == GO_NOTE


def test_a_checkpoint_note_has_the_c2sp_layout() -> None:
    signer = NoteSigner.generate("example.com/log")
    note = signer.sign(20852163, ROOT)
    body, signature = note.split("\n\n")
    assert body.split("\n") == ["example.com/log", "20852163", base64.b64encode(ROOT).decode()]
    dash, name, sig = signature.rstrip("\n").split(" ")
    assert (dash, name) == ("\u2014", "example.com/log")
    raw = base64.b64decode(sig)
    assert raw[:4] == signer.verifier_key.key_id and len(raw) == 4 + 64
    assert signer.verifier_key.open(note) == Checkpoint("example.com/log", 20852163, ROOT)


def test_the_verifier_key_round_trips_through_its_text() -> None:
    key = NoteSigner.generate("example.com/log").verifier_key
    assert VerifierKey.parse(key.encode()) == key


@pytest.mark.parametrize("change", ["size", "root", "signature", "dash", "blank line"])
def test_a_changed_note_is_refused(change: str) -> None:
    signer = NoteSigner.generate("example.com/log")
    note = signer.sign(5, ROOT)
    lines = note.split("\n")
    if change == "size":
        lines[1] = "6"
    elif change == "root":
        lines[2] = base64.b64encode(bytes(32)).decode()
    elif change == "signature":
        sig = bytearray(base64.b64decode(lines[4].split(" ")[2]))
        sig[10] ^= 1
        lines[4] = f"\u2014 example.com/log {base64.b64encode(bytes(sig)).decode()}"
    elif change == "dash":
        lines[4] = "--" + lines[4][1:]
    else:
        del lines[3]
    with pytest.raises(ProofError):
        signer.verifier_key.open("\n".join(lines))


def test_a_note_signed_by_another_key_of_the_same_name_is_refused() -> None:
    ours, theirs = NoteSigner.generate("example.com/log"), NoteSigner.generate("example.com/log")
    with pytest.raises(ProofError, match="not signed by the log key"):
        ours.verifier_key.open(theirs.sign(5, ROOT))


def test_other_signers_are_ignored_but_ours_must_verify() -> None:
    ours, witness = NoteSigner.generate("example.com/log"), NoteSigner.generate("witness.example")
    note = ours.sign(5, ROOT)
    cosigned = note + witness.sign(5, ROOT).split("\n\n")[1]
    assert ours.verifier_key.open(cosigned).size == 5


def test_a_head_for_another_origin_is_refused() -> None:
    signer = NoteSigner.generate("example.com/log")
    other = signer.sign_text(Checkpoint("other.example/log", 5, ROOT).body())
    with pytest.raises(ProofError, match=r"for log 'other\.example/log'"):
        signer.verifier_key.open(other)


def test_a_malformed_verifier_key_is_bad_input() -> None:
    for text in ("nothing", "a+b", GO_VKEY.replace("c74f20a3", "c74f20a4")):
        with pytest.raises(MalformedInput):
            VerifierKey.parse(text)


def test_the_log_key_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    signer = keys.load_or_create(tmp_path, "example.com/log")
    assert stat.S_IMODE((keys.key_dir(tmp_path) / keys.PRIVATE_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.key_dir(tmp_path).stat().st_mode) == 0o700
    assert keys.load_or_create(tmp_path).verifier_key == signer.verifier_key
    assert keys.load_public(tmp_path) == signer.verifier_key


def test_processes_racing_to_create_the_key_share_one(tmp_path: Path) -> None:
    found: list[VerifierKey] = []
    threads = [threading.Thread(target=lambda: found.append(
        keys.load_or_create(tmp_path).verifier_key)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 8 and len(set(found)) == 1


def test_a_log_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    keys.load_or_create(tmp_path)
    (keys.key_dir(tmp_path) / keys.PRIVATE_FILE).chmod(0o644)
    with pytest.raises(UsageError, match="open to others"):
        keys.load(tmp_path)
