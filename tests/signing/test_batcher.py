"""attest.signing.batcher: concurrent requests into batches, one signature a batch.

A software ECDSA key stands in for the TPM here (the rules are about batching); the
integration test at the end signs with a PCR-bound key on a real swtpm."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from concurrent.futures import CancelledError, Future

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from attest.errors import BatchProofError, UsageError
from attest.signing import batch
from attest.signing.batcher import Batcher, BatcherClosed, BatcherFull, Signed

KEYS = {name: ec.generate_private_key(ec.SECP256R1()) for name in ("ci", "release", "bad")}


class Recorder:
    """A software signer that remembers every value it signed, and for which key."""

    def __init__(self, fail_for: str | None = None, gate: threading.Event | None = None) -> None:
        self.signed: list[tuple[str, bytes]] = []
        self.fail_for = fail_for
        self.gate = gate
        self.lock = threading.Lock()

    def __call__(self, key_id: str, value: bytes) -> bytes:
        if self.gate is not None:
            self.gate.wait(10)
        with self.lock:
            self.signed.append((key_id, value))
        if key_id == self.fail_for:
            raise RuntimeError(f"TPM refused to sign for {key_id}")
        return KEYS[key_id].sign(value, ec.ECDSA(Prehashed(hashes.SHA256())))


def _pae(tag: str) -> bytes:
    return b"DSSEv1 28 application/vnd.in-toto+json %d %s" % (len(tag), tag.encode())


def _check(result: Signed[bytes], pae: bytes) -> None:
    """What a verifier does: the proof first, then the one signature over the value."""
    value = batch.signed_value(pae, result.membership)
    assert value == result.value
    KEYS[result.key_id].public_key().verify(result.signature, value,
                                             ec.ECDSA(Prehashed(hashes.SHA256())))


def test_concurrent_submitters_get_valid_proofs_under_one_root_per_batch() -> None:
    signer = Recorder()
    kinds = [("ci", "p1"), ("ci", "p2"), ("release", "p1")]
    results: list[tuple[str, str, bytes, Signed[bytes]]] = []
    lock = threading.Lock()

    def requester(n: int) -> None:
        for i in range(25):
            key_id, policy_id = kinds[(n + i) % len(kinds)]
            pae = _pae(f"{n}-{i}")
            got = batcher.submit(key_id, policy_id, pae).result(10)
            with lock:
                results.append((key_id, policy_id, pae, got))

    with Batcher(signer, window=0.005) as batcher:
        threads = [threading.Thread(target=requester, args=(n,)) for n in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(results) == 24 * 25
    by_root: dict[bytes, list[tuple[str, str, Signed[bytes]]]] = defaultdict(list)
    for key_id, policy_id, pae, got in results:
        _check(got, pae)
        assert (got.key_id, got.policy_id) == (key_id, policy_id)
        by_root[got.membership.root].append((key_id, policy_id, got))
    for members in by_root.values():
        assert len({(k, p) for k, p, _ in members}) == 1  # never mixed
        size = members[0][2].membership.size
        assert sorted(g.membership.index for _, _, g in members) == list(range(size))
        assert len({g.signature for _, _, g in members}) == 1
    # One signature a batch, and every batch value signed is one the requests explain.
    assert len(signer.signed) == len(by_root) == batcher.batches_signed
    assert Counter(v for _, v in signer.signed) == Counter(
        members[0][2].value for members in by_root.values())
    assert len(by_root) < len(results)  # it did batch


def test_one_key_under_two_policies_is_two_batches() -> None:
    signer = Recorder()
    with Batcher(signer, window=60) as batcher:  # close() cuts them
        a = batcher.submit("ci", "p1", _pae("a"))
        b = batcher.submit("ci", "p2", _pae("b"))
        c = batcher.submit("ci", "p1", _pae("c"))
    assert a.result().membership.root == c.result().membership.root
    assert b.result().membership.size == 1 and a.result().membership.size == 2
    assert len(signer.signed) == 2


def test_order_of_arrival_is_the_index() -> None:
    signer = Recorder()
    with Batcher(signer, window=60, max_batch=10) as batcher:
        futures = [batcher.submit("ci", "p", _pae(str(i))) for i in range(10)]
        results = [f.result(10) for f in futures]  # max_batch cut it, not the window
    assert [r.membership.index for r in results] == list(range(10))
    assert {r.membership.size for r in results} == {10}
    value, _ = batch.build([_pae(str(i)) for i in range(10)])
    assert signer.signed == [("ci", value)]  # exactly what was asked, in that order


def test_max_batch_cuts_batches_in_order() -> None:
    signer = Recorder(gate=threading.Event())
    with Batcher(signer, window=0, max_batch=4) as batcher:
        futures = [batcher.submit("ci", "p", _pae(str(i))) for i in range(10)]
        signer.gate.set()  # type: ignore[union-attr]
        results = [f.result(10) for f in futures]
    sizes = [r.membership.size for r in results]
    assert max(sizes) <= 4
    for r, pae in zip(results, (_pae(str(i)) for i in range(10)), strict=True):
        _check(r, pae)
    # Later requests never sit at a lower index of the same batch than earlier ones.
    roots = [r.membership.root for r in results]
    for root in set(roots):
        indices = [r.membership.index for r in results if r.membership.root == root]
        assert indices == sorted(indices)


def test_a_lone_request_does_not_wait_out_the_window() -> None:
    # Nothing else comes within the quiet time: the batch is cut then, not after 600 s.
    with Batcher(Recorder(), window=600, quiet=0) as batcher:
        _check(batcher.submit("ci", "p", _pae("lone")).result(60), _pae("lone"))


def test_requests_that_waited_during_a_signature_are_joined_by_the_next_ones() -> None:
    # Cut as soon as the signer is free, B would be a cohort of its own, taking turns at the
    # TPM with A's requesters for good; it waits a window for them instead.
    gate = threading.Event()
    signer = Recorder(gate=gate)
    with Batcher(signer, window=0.5, quiet=0.5) as batcher:
        a = batcher.submit("ci", "p", _pae("a"))  # cut after 0.5 s, then held at the gate
        threading.Event().wait(0.6)
        b = batcher.submit("ci", "p", _pae("b"))
        threading.Event().wait(0.6)  # B's own window passes while the TPM is busy
        gate.set()
        a.result(10)
        c = batcher.submit("ci", "p", _pae("c"))  # A's requester asks again
        assert b.result(10).membership.root == c.result(10).membership.root
        assert c.result().membership.index == 1


def test_a_single_request_is_a_batch_of_one() -> None:
    with Batcher(Recorder(), window=0) as batcher:
        result = batcher.submit("release", "p", _pae("alone")).result(10)
    assert result.membership.size == 1 and result.membership.proof == ()
    _check(result, _pae("alone"))
    with pytest.raises(InvalidSignature):  # the batch signature is no DSSE signature
        KEYS["release"].public_key().verify(result.signature, _pae("alone"),
                                            ec.ECDSA(hashes.SHA256()))


def test_a_sign_failure_fails_exactly_its_batch() -> None:
    signer = Recorder(fail_for="bad", gate=threading.Event())
    with Batcher(signer, window=0.05) as batcher:
        bad = [batcher.submit("bad", "p", _pae(f"b{i}")) for i in range(5)]
        good = [batcher.submit("ci", "p", _pae(f"g{i}")) for i in range(5)]
        signer.gate.set()  # type: ignore[union-attr]
        for future in bad:
            with pytest.raises(RuntimeError, match="refused"):
                future.result(10)
        for i, future in enumerate(good):
            _check(future.result(10), _pae(f"g{i}"))


def test_a_result_cannot_be_moved_to_a_payload_not_in_its_batch() -> None:
    with Batcher(Recorder(), window=0.05) as batcher:
        result = batcher.submit("ci", "p", _pae("in")).result(10)
    with pytest.raises(BatchProofError):
        batch.signed_value(_pae("not in"), result.membership)


def test_a_cancelled_request_is_not_signed() -> None:
    signer = Recorder()
    with Batcher(signer, window=60) as batcher:  # close() cuts it
        kept = batcher.submit("ci", "p", _pae("kept"))
        dropped = batcher.submit("ci", "p", _pae("dropped"))
        assert dropped.cancel()
    assert kept.result().membership.size == 1
    assert signer.signed == [("ci", batch.build([_pae("kept")])[0])]
    with pytest.raises(CancelledError):
        dropped.result()


def test_close_signs_what_waits_and_refuses_what_comes_after() -> None:
    signer = Recorder()
    batcher = Batcher(signer, window=60)
    waiting = batcher.submit("ci", "p", _pae("waiting"))
    batcher.close()
    _check(waiting.result(0), _pae("waiting"))
    with pytest.raises(BatcherClosed):
        batcher.submit("ci", "p", _pae("late"))


def test_a_full_queue_refuses_instead_of_growing() -> None:
    gate = threading.Event()
    signer = Recorder(gate=gate)
    with Batcher(signer, window=0, max_batch=1, max_pending=2) as batcher:
        first = batcher.submit("ci", "p", _pae("0"))
        taken: list[Future[Signed[bytes]]] = []
        with pytest.raises(BatcherFull):
            for i in range(10):  # at most two wait (the first may be held by the signer)
                taken.append(batcher.submit("ci", "p", _pae(str(i + 1))))
        assert len(taken) in {1, 2}  # 2 if the signer took the first before we filled up
        gate.set()
        for future in [first, *taken]:
            future.result(10)


@pytest.mark.parametrize("bad", [
    {"max_batch": 0}, {"max_batch": batch.MAX_BATCH + 1}, {"window": -1.0},
    {"window": float("nan")}, {"max_pending": 0}, {"quiet": -1.0},
    {"quiet": float("nan")},
])
def test_bad_settings_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(UsageError):
        Batcher(Recorder(), **bad)  # type: ignore[arg-type]


def test_a_request_that_is_no_bytes_is_refused() -> None:
    with Batcher(Recorder()) as batcher, pytest.raises(UsageError):
        batcher.submit("ci", "p", "text")  # type: ignore[arg-type]
