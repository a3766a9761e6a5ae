"""Incremental runtime logs: an artifact carries only the records after a prefix its
verifier appraised before (attest.verify.incremental, docs/verification.md).

Artifacts are real, issued on the rig's swtpm; the verifier's prefix rows are real
SQLite rows, sealed by the audited acceptance. A database writer is played by SQL.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from attest.artifact import jws
from attest.artifact.model import RuntimeLogBase
from attest.decision import Decision
from attest.eventlog import prefix as log_prefix
from attest.eventlog.cel import parse_cel
from attest.store import Store
from attest.store import prefixes as stored_prefixes
from attest.store.records import LogPrefix
from attest.verify.verifier import Verifier
from tests.verify.rig import Rig, accepted, denied


def _base(decision: Decision) -> RuntimeLogBase:
    facts = decision.facts["runtime_log"]
    return RuntimeLogBase(facts["count"], bytes.fromhex(facts["digest"]))


def _records(raw: bytes) -> int:
    return len(parse_cel(jws.parse(raw).claims.evidence.runtime_log).records)


def _rows(store: Store) -> list[LogPrefix]:
    with store.read() as tx:
        return [row for row in map(stored_prefixes._prefix, tx.all(
            "SELECT * FROM log_prefixes ORDER BY record_count")) if row is not None]


def _prepared(rig: Rig, **policy: Any) -> tuple[Verifier, RuntimeLogBase]:
    """A verifier that accepted the host's whole log (the rig measured ``ls``), then the
    host measures ``cat``: the next artifact sends from the acknowledged prefix."""
    rig.host.ok("measure", "command", "--", "cat")
    verifier = rig.verifier(rig.policy(**policy))
    first = rig.verify_logged(verifier, rig.issue())
    accepted(first)
    rig.host.ok("measure", "data", "--name", "later", "--value", "x")
    return verifier, _base(first)


def test_acceptance_acknowledges_the_whole_log_and_the_next_artifact_sends_only_after_it(
        rig: Rig) -> None:
    verifier, base = _prepared(rig, runtime_reference=None)
    log = (rig.home / "runtime.cel").read_bytes()
    assert base.count == 2 and base.digest == log_prefix.prefix_digest(log, 2)
    raw = rig.issue(log_base=base)
    evidence = jws.parse(raw).claims.evidence
    assert evidence.runtime_log_base == base
    assert _records(raw) == len(parse_cel(log).records) - 2
    decision = rig.verify_logged(verifier, raw)
    accepted(decision)
    assert _base(decision).count == len(parse_cel(log).records)
    assert _base(decision).digest == log_prefix.prefix_digest(log)


def test_a_prefix_the_verifier_never_appraised_is_log_prefix_unknown(rig: Rig) -> None:
    verifier, base = _prepared(rig, runtime_reference=None)
    other = rig.verifier(rig.policy(runtime_reference=None), store=rig.store("fresh"))
    denied(rig.verify_logged(other, rig.issue(log_base=base)), "log_prefix_unknown")
    # Sent from record 1: this verifier holds the 2-record prefix only.
    log = (rig.home / "runtime.cel").read_bytes()
    shorter = RuntimeLogBase(1, log_prefix.prefix_digest(log, 1))
    denied(rig.verify_logged(verifier, rig.issue(log_base=shorter)), "log_prefix_unknown")
    # The whole log, as the host sends it after that denial, is accepted.
    accepted(rig.verify_logged(other, rig.issue()))


def test_a_wrong_prefix_digest_is_log_prefix_unknown(rig: Rig) -> None:
    verifier, base = _prepared(rig, runtime_reference=None)
    raw = rig.issue(log_base=base)
    wrong = dataclasses.replace(base, digest=bytes(32))
    forged = rig.reissue(raw, evidence=lambda e: dataclasses.replace(e, runtime_log_base=wrong))
    denied(rig.verify_logged(verifier, forged), "log_prefix_unknown")
    accepted(rig.verify_logged(verifier, raw))


def _move_row(rig: Rig, store: Store, **changes: Any) -> None:
    """The genuine prefix row replaced by one under another key, sealed by the verifier's
    own key: a prefix of another AK or boot that this verifier did appraise."""
    (row,) = _rows(store)
    moved = dataclasses.replace(row, **changes)
    log = rig.log(store)
    with store.write() as tx:
        tx.execute("DELETE FROM log_prefixes")
        stored_prefixes.record(tx, log.sealed_prefix(moved), 0)
    assert log.sealed(_rows(store)[0])


def test_a_prefix_of_another_boot_is_never_used(rig: Rig) -> None:
    verifier, base = _prepared(rig, runtime_reference=None)
    (row,) = _rows(verifier.store)
    _move_row(rig, verifier.store, reset_count=row.reset_count + 1)
    denied(rig.verify_logged(verifier, rig.issue(log_base=base)), "log_prefix_unknown")


def test_a_prefix_of_another_ak_is_never_used(rig: Rig) -> None:
    verifier, base = _prepared(rig, runtime_reference=None)
    _move_row(rig, verifier.store, ak_name="000b" + "ab" * 32)
    denied(rig.verify_logged(verifier, rig.issue(log_base=base)), "log_prefix_unknown")


def test_a_prefix_row_the_verifier_did_not_seal_is_not_used(rig: Rig) -> None:
    verifier, base = _prepared(rig, runtime_reference=None)
    (row,) = _rows(verifier.store)
    assert row.seal is not None and rig.log(verifier.store).sealed(row)
    raw = rig.issue(log_base=base)
    with verifier.store.write() as tx:  # a database writer's row: no seal
        tx.execute("UPDATE log_prefixes SET mac = NULL")
    denied(rig.verify_logged(verifier, raw), "log_prefix_unknown")
    with verifier.store.write() as tx:  # the seal back, over other commands: no match
        tx.execute("UPDATE log_prefixes SET mac = :mac, commands = '[]'", {"mac": row.seal})
    denied(rig.verify_logged(verifier, raw), "log_prefix_unknown")


def test_an_executable_measured_before_the_prefix_is_still_measured(rig: Rig) -> None:
    """Run A measured cat; another acceptance covered that record; A's artifact is sent
    from after it, and its executable is found among the prefix's commands."""
    verifier, base = _prepared(rig, runtime_reference=None)
    raw = rig.issue("cat", log_base=base)
    assert b"cat" not in jws.parse(raw).claims.evidence.runtime_log
    accepted(rig.verify_logged(verifier, raw))


def test_the_suffix_is_appraised_against_the_reference_values(rig: Rig) -> None:
    rig.host.ok("measure", "command", "--", "cat")
    verifier = rig.verifier(rig.policy())  # ls and cat, nothing else
    first = rig.verify_logged(verifier, rig.issue())
    accepted(first)
    rig.host.ok("measure", "data", "--name", "surprise", "--value", "x")
    denied(rig.verify_logged(verifier, rig.issue(log_base=_base(first))),
           "reference_value_mismatch")


def test_a_suffix_that_does_not_explain_the_quote_is_eventlog_mismatch(rig: Rig) -> None:
    verifier, base = _prepared(rig, runtime_reference=None)
    raw = rig.issue(log_base=base)
    rig.host.ok("measure", "data", "--name", "hidden", "--value", "y")
    later = rig.issue(log_base=base)
    # The later quote covers "hidden"; the earlier suffix does not explain it.
    short = jws.parse(raw).claims.evidence.runtime_log
    hidden = rig.reissue(later, evidence=lambda e: dataclasses.replace(e, runtime_log=short))
    denied(rig.verify_logged(verifier, hidden), "eventlog_mismatch")
    accepted(rig.verify_logged(verifier, later))


def test_two_verifiers_sharing_one_store_agree_on_prefixes(rig: Rig) -> None:
    verifier, base = _prepared(rig, runtime_reference=None)
    second = Verifier.unaudited(verifier.policy, verifier.store)
    decision = rig.verify_logged(second, rig.issue(log_base=base))
    accepted(decision)
    accepted(rig.verify_logged(verifier, rig.issue(log_base=_base(decision))))
    assert [row.count for row in _rows(verifier.store)] == [2, 3]
