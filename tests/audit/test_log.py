"""The log over the store: indexes, stored subtrees, heads, proofs and receipts."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attest.audit import AuditLog, HeadPolicy, merkle, verify_log
from attest.errors import AuditUnavailable, UsageError
from attest.store import Store
from tests.audit.conftest import T0, entry, fill

PROVEN_SIZE = 70


@pytest.fixture(scope="module")
def proven(tmp_path_factory: pytest.TempPathFactory) -> tuple[AuditLog, list[bytes]]:
    """A 70-entry log, shared by the proof properties (they only read it)."""
    home = tmp_path_factory.mktemp("proven")
    log = AuditLog.open(Store.open(f"sqlite:///{home}/verifier.db"), home)
    fill(log, PROVEN_SIZE)
    return log, [e.leaf_hash for e in log.entries()]


def test_appends_get_consecutive_indexes_from_zero(log: AuditLog) -> None:
    assert fill(log, 5) == [0, 1, 2, 3, 4]
    assert log.size() == 5


def test_an_entry_is_canonical_json_naming_its_index(log: AuditLog) -> None:
    fill(log, 3)
    stored = list(log.entries())[2]
    value = json.loads(stored.data)
    assert value["index"] == 2 and value["kind"] == "decision" and value["jti"] == "jti-2"
    assert stored.data == entry(2).encode(2)  # RFC 8785: sorted keys, no spaces
    assert stored.data.startswith(b'{"artifact":')
    assert stored.leaf_hash == merkle.leaf_hash(stored.data)


def test_subtree_hashes_are_stored_once_complete(log: AuditLog, store: Store) -> None:
    fill(log, 7)
    with store.read() as tx:
        count = tx.scalar("SELECT count(*) FROM audit_nodes")
    assert count == 3 + 1  # 3 pairs at level 1, one quadruple at level 2


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_every_inclusion_proof_the_log_gives_verifies(
        proven: tuple[AuditLog, list[bytes]], data: st.DataObject) -> None:
    log, leaves = proven
    size = data.draw(st.integers(1, PROVEN_SIZE))
    index = data.draw(st.integers(0, size - 1))
    proof = log.inclusion_proof(index, size)
    assert list(proof.proof) == merkle.inclusion_proof(leaves[:size], index)
    merkle.verify_inclusion(leaves[index], index, size, proof.proof, merkle.root(leaves[:size]))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_every_consistency_proof_the_log_gives_verifies(
        proven: tuple[AuditLog, list[bytes]], data: st.DataObject) -> None:
    log, leaves = proven
    new = data.draw(st.integers(1, PROVEN_SIZE))
    old = data.draw(st.integers(1, new))
    proof = log.consistency_proof(old, new)
    assert list(proof.proof) == merkle.consistency_proof(leaves[:new], old)
    merkle.verify_consistency(old, new, proof.proof, merkle.root(leaves[:old]),
                              merkle.root(leaves[:new]))


def test_a_head_is_signed_every_n_entries(log: AuditLog) -> None:
    fill(log, 10)
    assert [h.size for h in log.all_heads()] == [4, 8]


def test_a_head_is_signed_once_t_seconds_passed(store: Store, home: Path) -> None:
    now = [float(T0)]
    log = AuditLog.open(store, home, heads=HeadPolicy(every=1000, interval=60),
                        clock=lambda: now[0])
    fill(log, 3)
    now[0] += 61  # since the first entry, as long as there is no head
    fill(log, 2)
    now[0] += 30
    fill(log, 1)
    now[0] += 31
    fill(log, 1)
    assert [(h.size, h.signed_at) for h in log.all_heads()] == [(4, T0 + 61), (7, T0 + 122)]


def test_a_receipt_proves_an_entry_to_a_signed_head(log: AuditLog) -> None:
    fill(log, 6)
    receipt = log.receipt(5)  # no head covers 5 yet: one is signed for it
    assert receipt.tree_size == 6 and receipt.checkpoint is not None
    assert log.verifier_key is not None
    assert receipt.verify(log.verifier_key).size == 6


def test_appending_inside_a_transaction_rolls_back_with_it(log: AuditLog, store: Store) -> None:
    fill(log, 2)
    with pytest.raises(RuntimeError), store.write() as conn:
        assert log.append(conn, entry(2)) == 2
        raise RuntimeError("the acceptance failed after logging")
    assert log.size() == 2
    assert fill(log, 1) == [2]


def test_concurrent_appends_share_commits_and_never_share_an_index(log: AuditLog) -> None:
    got: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(25):
            index = log.record(entry(1000 * n + i))
            with lock:
                got.append(index)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(got) == list(range(200))
    assert verify_log(log.store, log.verifier_key).entries == 200


def test_a_log_opened_without_its_key_takes_no_entry(store: Store) -> None:
    log = AuditLog.open(store, None)
    with pytest.raises(AuditUnavailable, match="without its key"):
        log.record(entry(0))


def test_a_home_without_the_logs_key_cannot_sign_for_it(log: AuditLog, store: Store,
                                                        tmp_path_factory: pytest.TempPathFactory
                                                        ) -> None:
    fill(log, 4)  # and so a signed head
    with pytest.raises(AuditUnavailable, match="signed by a key"):
        AuditLog.open(store, tmp_path_factory.mktemp("elsewhere"))


def test_proofs_outside_the_log_are_bad_input(log: AuditLog) -> None:
    fill(log, 3)
    with pytest.raises(UsageError):
        log.inclusion_proof(3)
    with pytest.raises(UsageError):
        log.inclusion_proof(0, 4)
    with pytest.raises(UsageError):
        log.consistency_proof(0, 2)


def test_an_empty_log_verifies_and_has_nothing_to_sign(log: AuditLog) -> None:
    summary = verify_log(log.store, log.verifier_key)
    assert (summary.entries, summary.heads, summary.root) == (0, 0, merkle.root([]))
    with pytest.raises(UsageError, match="empty"):
        log.sign_head()
