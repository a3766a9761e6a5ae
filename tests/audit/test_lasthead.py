"""The last head's file (attest.audit.lasthead): its slots, a torn write, tampering,
the older format, and several processes recording on one key folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from attest.audit import keys, lasthead
from attest.audit.lasthead import SLOT, LastHead
from attest.audit.note import Checkpoint, NoteSigner
from attest.errors import AuditUnavailable

ROOT = Path(__file__).resolve().parents[2]
NAME = "test/attest-audit"


@pytest.fixture
def signer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> NoteSigner:
    monkeypatch.setenv("ATTEST_AUDIT_DIR", str(tmp_path / "audit"))
    return keys.load_or_create(tmp_path, NAME)


def _head(signer: NoteSigner, size: int) -> tuple[str, Checkpoint]:
    root = size.to_bytes(32, "big")
    return signer.sign(size, root), Checkpoint(signer.name, size, root)


def _record(home: Path, signer: NoteSigner, *sizes: int) -> LastHead:
    record = keys.last_head_record(home, signer.verifier_key)
    for size in sizes:
        record.record(*_head(signer, size))
    return record


def _file(home: Path) -> Path:
    return keys.key_dir(home) / keys.LAST_HEAD_FILE


def _recorded(home: Path, signer: NoteSigner) -> int:
    head = keys.last_head(home, signer.verifier_key)
    assert head is not None
    return head.size


def test_heads_alternate_between_the_two_slots_and_the_newest_is_read(
        tmp_path: Path, signer: NoteSigner) -> None:
    _record(tmp_path, signer, 1, 2, 3)
    data = _file(tmp_path).read_bytes()
    assert len(data) == 2 * SLOT and (_file(tmp_path).stat().st_mode & 0o777) == 0o600
    slots = [lasthead.read_slot(data, i) for i in (0, 1)]
    assert [(s.seq, s.index) for s in slots if s is not None] == [(3, 0), (2, 1)]
    assert _recorded(tmp_path, signer) == 3
    assert keys.last_head_note(tmp_path) == _head(signer, 3)[0]


@pytest.mark.parametrize("tear", ["header", "note", "zeros", "checksum"])
def test_a_torn_slot_leaves_the_head_before_it(tmp_path: Path, signer: NoteSigner,
                                               tear: str) -> None:
    # A crash in the middle of a record tears the slot being written, and only that
    # one: its checksum fails and the head recorded before it is the last head.
    _record(tmp_path, signer, 4, 5)
    path = _file(tmp_path)
    data = bytearray(path.read_bytes())
    newest = lasthead.newest(bytes(data))
    assert newest is not None and newest.seq == 2
    start = newest.index * SLOT
    if tear == "header":
        data[start:start + 10] = bytes(10)
    elif tear == "note":
        data[start + 100:start + SLOT] = bytes(SLOT - 100)  # the header, then nothing
    elif tear == "zeros":
        data[start:start + SLOT] = bytes(SLOT)
    else:
        data[start + 40] ^= 1  # one bit of the sequence or checksum
    path.write_bytes(bytes(data))
    assert _recorded(tmp_path, signer) == 4
    # The next record overwrites the torn slot, not the head it falls back on.
    _record(tmp_path, signer, 6)
    assert _recorded(tmp_path, signer) == 6
    assert lasthead.newest(path.read_bytes()) is not None


def test_a_torn_note_with_a_whole_header_is_caught_by_its_checksum(
        tmp_path: Path, signer: NoteSigner) -> None:
    _record(tmp_path, signer, 7, 8)
    path = _file(tmp_path)
    data = bytearray(path.read_bytes())
    newest = lasthead.newest(bytes(data))
    assert newest is not None
    end = newest.index * SLOT + SLOT
    note_end = data.index(b"\n\0", newest.index * SLOT)  # the note's last line
    data[note_end - 20:end] = bytes(end - note_end + 20)  # the write stopped short
    path.write_bytes(bytes(data))
    assert _recorded(tmp_path, signer) == 7


def test_both_slots_damaged_is_refused_not_forgotten(tmp_path: Path,
                                                     signer: NoteSigner) -> None:
    # No crash damages both (one slot is written at a time): the folder was tampered
    # with, and the key signs nothing rather than forget the last head.
    _record(tmp_path, signer, 1, 2)
    path = _file(tmp_path)
    path.write_bytes(path.read_bytes().replace(b"attest-last-head 1 ", b"attest-last-head 1 9"))
    with pytest.raises(AuditUnavailable, match="neither of its slots"):
        keys.last_head(tmp_path, signer.verifier_key)
    with pytest.raises(Exception, match="neither of its slots"):
        keys.last_head_note(tmp_path)


def test_a_forged_slot_is_detected_by_a_process_that_verified_the_file_before(
        tmp_path: Path, signer: NoteSigner) -> None:
    # The process remembers the slot it verified; a slot with a valid checksum, a
    # higher sequence and a note the key did not sign is still verified, and refused.
    record = _record(tmp_path, signer, 10)
    assert record.current() == _head(signer, 10)[1]
    impostor = NoteSigner.generate(NAME)  # same name, another key
    forged = impostor.sign(3, bytes(32)).encode()
    path = _file(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:SLOT] + lasthead.encode_slot(9, forged))
    with pytest.raises(AuditUnavailable, match="does not verify with the log key"):
        record.current()


def test_a_slot_rewritten_in_place_with_the_same_sequence_is_verified_again(
        tmp_path: Path, signer: NoteSigner) -> None:
    # Same inode, same size, same sequence: only the note differs, and it is read.
    record = _record(tmp_path, signer, 12)
    assert record.current() is not None
    impostor = NoteSigner.generate(NAME)
    path = _file(tmp_path)
    with path.open("r+b") as out:
        out.write(lasthead.encode_slot(1, impostor.sign(12, (12).to_bytes(32, "big"))
                                       .encode()))
    with pytest.raises(AuditUnavailable, match="does not verify with the log key"):
        record.current()


def test_a_head_that_does_not_verify_is_replaced_by_the_next_record(
        tmp_path: Path, signer: NoteSigner) -> None:
    # As before the slots: a record replaces a last head that protects nothing.
    _record(tmp_path, signer, 3)
    impostor = NoteSigner.generate(NAME)
    _file(tmp_path).write_bytes(lasthead.encode_slot(5, impostor.sign(50, bytes(32))
                                                     .encode()) + bytes(SLOT))
    _record(tmp_path, signer, 4)
    assert _recorded(tmp_path, signer) == 4


def test_the_older_one_note_file_is_read_and_replaced_by_a_larger_head(
        tmp_path: Path, signer: NoteSigner) -> None:
    path = _file(tmp_path)
    path.write_text(_head(signer, 20)[0])
    path.chmod(0o600)
    assert _recorded(tmp_path, signer) == 20
    assert keys.last_head_note(tmp_path) == _head(signer, 20)[0]
    _record(tmp_path, signer, 19)  # smaller: the older file stays
    assert path.read_text() == _head(signer, 20)[0]
    _record(tmp_path, signer, 21)
    assert path.read_bytes().startswith(lasthead.MAGIC) and _recorded(tmp_path, signer) == 21


def test_a_tampered_older_file_is_still_refused(tmp_path: Path, signer: NoteSigner) -> None:
    path = _file(tmp_path)
    path.write_text(_head(signer, 20)[0].replace("\n20\n", "\n2\n"))
    path.chmod(0o600)
    with pytest.raises(AuditUnavailable, match="does not verify with the log key"):
        keys.last_head(tmp_path, signer.verifier_key)


def test_a_recorder_with_an_old_memory_never_moves_the_head_back(
        tmp_path: Path, signer: NoteSigner) -> None:
    # Two recorders (two processes' worth of memory): one recorded 5, the other then
    # 10, within one tick of the file's clock; the first, late, records 7.
    first = _record(tmp_path, signer, 5)
    _record(tmp_path, signer, 10)
    first.record(*_head(signer, 7))
    assert _recorded(tmp_path, signer) == 10
    assert first.current() == _head(signer, 10)[1]
    first.record(*_head(signer, 11))
    assert _recorded(tmp_path, signer) == 11


def test_a_file_open_to_others_is_refused(tmp_path: Path, signer: NoteSigner) -> None:
    _record(tmp_path, signer, 1)
    _file(tmp_path).chmod(0o644)
    with pytest.raises(Exception, match="open to others"):
        keys.last_head(tmp_path, signer.verifier_key)
    with pytest.raises(Exception, match="open to others"):
        _record(tmp_path, signer, 2)


_RECORDER = """
import sys
from pathlib import Path
from attest.audit import keys
from attest.audit.note import Checkpoint
home, start, step, count = Path(sys.argv[1]), *map(int, sys.argv[2:5])
signer = keys.load(home)
record = keys.last_head_record(home, signer.verifier_key)
for size in range(start, start + step * count, step):
    root = size.to_bytes(32, "big")
    record.record(signer.sign(size, root), Checkpoint(signer.name, size, root))
"""


def test_two_processes_recording_at_once_never_move_it_back(tmp_path: Path,
                                                          signer: NoteSigner) -> None:
    # Two processes record interleaved, growing heads as fast as they can, while this
    # one reads: the head read never shrinks, and ends at the largest recorded.
    count = 150
    children = [subprocess.Popen([sys.executable, "-c", _RECORDER, str(tmp_path),
                                  str(first), "2", str(count)], cwd=ROOT,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)},
                                 stderr=subprocess.PIPE)
                for first in (1, 2)]
    try:
        reader = keys.last_head_record(tmp_path, signer.verifier_key)
        seen = 0
        while any(child.poll() is None for child in children):
            head = reader.current()
            if head is not None:
                assert head.size >= seen
                seen = head.size
        for child in children:
            assert child.wait() == 0, child.stderr.read().decode() if child.stderr else ""
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
            child.wait()
            if child.stderr is not None:
                child.stderr.close()
    assert _recorded(tmp_path, signer) == 2 * count
