"""One entry point: an audited shell (attest.verify.verifier) around a pure appraisal
(attest.verify.appraisal), and trust material read with the policy. From the recorded
corpus (no TPM), but for the TPM reset, which a live swtpm's reboot makes."""

from __future__ import annotations

import builtins
import dataclasses
import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, NoReturn

import pytest

from attest.artifact import jws
from attest.audit.log import AuditLog
from attest.policy import VerifierPolicy, load_policy
from attest.policy.trust import load_trust
from attest.store import Store
from attest.verify.appraisal import Memo, appraise, snapshot_query
from attest.verify.verifier import Verifier, read_snapshot, read_snapshots
from tests.corpus import Bench, Corpus
from tests.store import reads
from tests.verify.rig import Rig, accepted, denied


def _own_roots(corpus: Corpus, folder: Path) -> VerifierPolicy:
    """The corpus's policy, loaded from a copy in ``folder`` beside a copy of its EK roots
    (``folder/roots``), which the test may then empty or delete."""
    folder.mkdir()
    shutil.copytree(corpus.folder / "roots", folder / "roots")
    shutil.copy(corpus.folder / "policy-pcr.yaml", folder / "policy.yaml")
    return load_policy(folder / "policy.yaml")


def _entries(log: AuditLog) -> list[dict[str, Any]]:
    return [json.loads(entry.data) for entry in log.entries()]


def test_the_appraisal_reads_no_file_no_store_and_no_clock(
        corpus: Corpus, bench: Bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Given the snapshot read before, appraise accepts with every file, the store and the
    clock out of reach, the EK roots folder deleted after the policy loaded included: it
    checks the EK chain against the roots read at load."""
    policy = _own_roots(corpus, tmp_path / "own")
    trust = load_trust(policy)
    recorded = corpus.artifact("web-1-exec")
    artifact = jws.parse(recorded.raw)
    memo = Memo()
    query = snapshot_query(artifact, policy, memo)
    assert query is not None and query.enrollment and query.jti == artifact.claims.jti
    now = recorded.now
    store = bench.store
    snapshot = read_snapshot(store, query, now)
    assert read_snapshots(store, [query, query], now) == [snapshot, snapshot]  # a batch's read
    shutil.rmtree(tmp_path / "own" / "roots")

    def refuse(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError("I/O inside the appraisal")

    for owner, name in ((builtins, "open"), (io, "open"), (os, "open"), (os, "stat"),
                        (time, "time"), (Store, "read"), (Store, "write"),
                        (Store, "snapshot"), (Store, "record_reset")):
        monkeypatch.setattr(owner, name, refuse)
    try:
        appraisal = appraise(artifact, policy, trust, snapshot, now, memo)
    finally:
        monkeypatch.undo()
    assert appraisal.denials == (), appraisal.denials
    assert appraisal.acceptance is not None and appraisal.reset is None
    assert appraisal.acceptance.record.jti == artifact.claims.jti
    assert len(memo.ek_checked) == 1  # the chain was checked, against the roots read at load
    # Nothing was committed: the appraisal only says what an acceptance commits.
    assert not reads.jti_seen(store, artifact.claims.jti)


def test_the_appraisal_denies_with_the_trust_material_it_is_given(
        corpus: Corpus, bench: Bench, tmp_path: Path) -> None:
    """The roots are those of the trust material, not of the folder as it is now."""
    policy = _own_roots(corpus, tmp_path / "own")
    trust = load_trust(policy)
    roots = tmp_path / "own" / "roots"
    for file in roots.iterdir():  # the folder now holds other roots: not read again
        file.write_bytes(b"not a certificate")
    first, second = corpus.artifact("web-1-exec"), corpus.artifact("web-1-parent")
    accepted(Verifier.unaudited(policy, bench.store, trust=trust).verify(
        first.raw, now=first.now))
    shutil.rmtree(roots)
    empty = type(trust)()
    denied(Verifier.unaudited(policy, bench.store, trust=empty).verify(
        second.raw, now=second.now), "ek_chain_invalid")


def test_the_entry_point_logs_every_decision(corpus: Corpus, bench: Bench) -> None:
    """Verifier(policy, store, log).verify logs acceptances (in their transaction, with
    the artifact's seal) and denials, whatever denied them: the bytes, the checks, the
    commit."""
    log = bench.log
    logged_before = log.size()  # the corpus's enrollments
    verifier = Verifier(corpus.policy(), bench.store, log)
    recorded = corpus.artifact("web-1-exec")
    first = verifier.verify(recorded.raw, now=recorded.now)
    accepted(first)
    second = verifier.verify(recorded.raw, now=recorded.now)
    denied(second, "replayed")
    garbage = verifier.verify(b"not a jws", now=recorded.now)
    denied(garbage, "malformed_artifact")
    assert (first.audit_index, second.audit_index, garbage.audit_index) == tuple(
        range(logged_before, logged_before + 3))
    logged = _entries(log)[logged_before:]
    assert [(e["decision"], e["reasons"]) for e in logged] == [
        ("accepted", []), ("denied", ["replayed"]), ("denied", ["malformed_artifact"])]
    jti = recorded.claims.jti
    assert logged[0]["jti"] == logged[1]["jti"] == jti
    record = reads.artifact(bench.store, jti)
    assert record is not None and log.sealed(record)


def test_an_unaudited_verification_is_a_named_choice(corpus: Corpus, tmp_path: Path) -> None:
    """The log is not optional in the constructor; Verifier.unaudited logs nothing and
    checks no seal (it trusts the store as it is), where the audited verifier does."""
    bench = corpus.bench(tmp_path / "unsealed", enroll=False)
    try:
        store, log = bench.store, bench.log
        policy = dataclasses.replace(corpus.policy(), ek_roots=())
        with pytest.raises(TypeError):
            Verifier(policy, store)  # type: ignore[call-arg]
        enrolled = corpus.enrollment("web-1")
        with store.write() as tx:  # what a database writer does: no entry, no seal
            tx.execute("INSERT INTO hosts (host, first_enrolled_at, last_enrolled_at) "
                       "VALUES (:host, 0, 0)", {"host": enrolled.host})
            tx.execute("INSERT INTO enrollments (ak_name, host, ak_public, "
                       "ak_qualified_name, ek_certificate, enrolled_at, updated_at) "
                       "VALUES (:ak, :host, :public, :qn, NULL, 0, 0)",
                       {"ak": enrolled.ak_name.hex(), "host": enrolled.host,
                        "public": enrolled.ak_public, "qn": enrolled.ak_qualified_name})
        unaudited = Verifier.unaudited(policy, store)
        assert not unaudited.audited and Verifier(policy, store, log).audited
        first, second = corpus.artifact("web-1-exec"), corpus.artifact("web-1-parent")
        accepted(unaudited.verify(first.raw, now=first.now))
        assert log.size() == 0
        denied(Verifier(policy, store, log).verify(second.raw, now=second.now), "ak_unknown")
        assert [e["decision"] for e in _entries(log)] == ["denied"]
    finally:
        bench.close()


def test_ek_roots_are_read_when_the_verifier_is_made_not_per_verification(
        corpus: Corpus, bench: Bench, tmp_path: Path) -> None:
    """Roots unreadable when the verifier is set up (a folder emptied since the policy was
    checked) deny every EK check ek_chain_invalid, naming them, even once restored; the
    next verifier made reads them again."""
    policy = _own_roots(corpus, tmp_path / "own")
    roots = tmp_path / "own" / "roots"
    saved = {file.name: file.read_bytes() for file in roots.iterdir()}
    for file in roots.iterdir():
        file.unlink()
    verifier = Verifier(policy, bench.store, bench.log)
    for name, data in saved.items():  # restored: this verifier does not read them again
        (roots / name).write_bytes(data)
    recorded = corpus.artifact("web-1-exec")
    decision = verifier.verify(recorded.raw, now=recorded.now)
    denied(decision, "ek_chain_invalid")
    assert "no certificates" in decision.denials[0].message
    accepted(Verifier(policy, bench.store, bench.log).verify(recorded.raw, now=recorded.now))


def test_a_tpm_reset_is_a_fact_the_appraisal_returns_and_the_shell_records(rig: Rig) -> None:
    """Under deny_reset, the appraisal of a new boot's artifact reports the reset and
    writes nothing; the shell records it (pending re-admission), as the check used to."""
    store = rig.store()
    policy = rig.policy(deny_reset=True)
    verifier = Verifier.unaudited(policy, store)
    accepted(verifier.verify(rig.issue()))
    rig.host.sim.stop()  # TPM2_Shutdown, then TPM2_Startup(CLEAR): resetCount changes
    rig.host.sim.start()
    rig.host.ok("measure", "command", "--", "ls")  # the new boot's log
    raw = rig.issue()
    artifact, memo, now = jws.parse(raw), Memo(), int(time.time())
    query = snapshot_query(artifact, policy, memo)
    assert query is not None
    ak = rig.identity.ak_name
    before = reads.epoch(store, ak)
    appraisal = appraise(artifact, policy, verifier.trust, read_snapshot(store, query, now),
                         now, memo)
    assert [d.reason.value for d in appraisal.denials] == ["tpm_reset"]
    assert appraisal.reset is not None and appraisal.reset.ak_name == ak
    assert reads.epoch(store, ak) == before  # the appraisal wrote nothing
    denied(verifier.verify(raw), "tpm_reset")
    after = reads.epoch(store, ak)
    assert after is not None and after != before  # the shell recorded the reset
