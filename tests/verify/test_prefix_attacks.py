"""Attacks on incremental runtime logs by the host user (issue 12's red team): a prefix
or a suffix that leaves the runtime PCR unreplayed in the policy's bank.

A booted host (firmware in PCRs 4 and 7, a boot log, reference.boot in the policy) that
measured nothing yet: its runtime PCR 15 holds its reset value. Artifacts are real,
issued and re-signed on its swtpm; the verifier is the audited one on real SQLite.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from attest.artifact import jws
from attest.artifact.model import Evidence, RuntimeLogBase
from attest.eventlog import prefix as log_prefix
from attest.eventlog.cel import (
    ATTEST_CONTENT_TYPE,
    CelRecord,
    attest_record,
    content_digests,
    encode_record,
    measurement_content,
)
from attest.host.runtime.log import measure
from attest.policy.model import Rule
from tests.conftest import Host
from tests.verify.rig import HOST_ID, Rig, accepted, denied
from tests.verify.test_log_sources import (
    GRUB,
    SHIM,
    _apps,
    _with_boot,
    booted_rig,
)


@pytest.fixture
def unmeasured(fresh_host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
               ) -> Iterator[Rig]:
    """A booted host (as test_log_sources' ``booted``) whose runtime PCR is untouched."""
    with booted_rig(fresh_host, tmp_path, monkeypatch) as made:
        yield made


def _swap(log: bytes, base: RuntimeLogBase | None = None) -> Callable[[Evidence], Evidence]:
    def edit(evidence: Evidence) -> Evidence:
        return dataclasses.replace(evidence, runtime_log=log, runtime_log_base=base)
    return edit


def test_a_suffix_never_extended_is_not_vouched_for_by_a_prefix_without_pcr_values(
        unmeasured: Rig) -> None:
    """A whole log of one record that extends nothing (an NV record) is accepted: PCR 15
    is at its reset value, as the log says. Its prefix then holds no PCR value; a suffix
    sent from it, claiming the executable was measured, must still replay to PCR 15,
    which nothing ever extended."""
    rig = unmeasured
    ls = jws.parse(rig.issue(include_boot_log=True)).claims.scope.executable_digest
    assert ls is not None
    policy = _with_boot(rig.policy(runtime_reference={"ls": [bytes.fromhex(ls)]},
                                   executables={"ls": [bytes.fromhex(ls)]},
                                   rules=[Rule(("*",), ("exec", "read"), ("*",), (HOST_ID,))]),
                        _apps(SHIM, GRUB))
    verifier = rig.verifier(policy)
    content = measurement_content("data", "boot", {"sha256": hashlib.sha256(b"x").digest()})
    note = CelRecord(0, 0, None, content_digests(content, ["sha256"]), ATTEST_CONTENT_TYPE,
                     content, nv_index=0x01500000)
    whole = encode_record(note)
    # Not an exec artifact: nothing measured is needed.
    read = rig.issue(action="read", include_boot_log=True)
    first = rig.verify_logged(verifier, rig.reissue(read, evidence=_swap(whole)))
    accepted(first)
    base = RuntimeLogBase(1, log_prefix.prefix_digest(whole))
    assert first.facts["runtime_log"] == base.to_json()
    # The claimed measurement of ls: content-bound, never extended into PCR 15.
    claimed = encode_record(attest_record(1, 15, measurement_content(
        "command", "ls", {"sha256": bytes.fromhex(ls)}), ["sha256"]))
    raw = rig.issue(include_boot_log=True)
    forged = rig.reissue(raw, evidence=_swap(claimed, base))
    # Before the fix: accepted, PCR 15 quoted all zeros and "ls" among the commands.
    denied(rig.verify_logged(verifier, forged), "log_prefix_unknown")
    # The whole log, as the host sends it then, replays: the claim shows.
    whole_claim = rig.reissue(raw, evidence=_swap(whole + claimed))
    denied(rig.verify_logged(verifier, whole_claim), "eventlog_mismatch")


def test_a_prefix_seal_binds_each_command_not_their_joined_text(rig: Rig) -> None:
    """The host measures a command record whose digest text holds a comma; the verifier
    seals the prefix. A database writer then splits that text into separate digests,
    one of them an executable the host never measured: the seal must not still match."""
    target = jws.parse(rig.issue("cat")).claims.scope.executable_digest
    ls = jws.parse(rig.issue()).claims.scope.executable_digest
    assert target is not None and ls is not None and target != ls
    if target > ls:
        crafted, split_up = f"{target},g", [ls, target, "g"]
    else:
        crafted, split_up = f",{target}", ["", target, ls]
    policy = rig.policy(runtime_reference=None, executables={
        "ls": [bytes.fromhex(ls)], "cat": [bytes.fromhex(target)]})
    with rig.tpm() as tpm:  # a host user's own record, measured for real
        measure(tpm, rig.home, 15, {"type": "command", "name": "odd",
                                    "digest": {"sha256": crafted}})
    verifier = rig.verifier(policy)
    first = rig.verify_logged(verifier, rig.issue())
    accepted(first)
    facts = first.facts["runtime_log"]
    base = RuntimeLogBase(facts["count"], bytes.fromhex(facts["digest"]))
    with verifier.store.write() as tx:  # the database writer: the seal kept as it was
        tx.execute("UPDATE log_prefixes SET commands = :commands",
                   {"commands": json.dumps(sorted(split_up))})
    # Before the fix: accepted, cat "measured" by the prefix.
    denied(rig.verify_logged(verifier, rig.issue("cat", log_base=base)), "log_prefix_unknown")


def test_an_audited_appraisal_counts_no_prefix_row_the_shell_did_not_judge() -> None:
    """Seals are the shell's verdicts on the snapshot's rows; in an audited verification a
    row without one (never judged) is forged, never 'unchecked' as in an unaudited one."""
    from attest.store import LogPrefix
    from attest.verify.appraisal import Seal, Seals

    row = LogPrefix(ak_name="00" * 34, reset_count=1, restart_count=0, policy_digest="p",
                    count=3, digest=bytes(32), pcr_values=(("sha256", bytes(32)),),
                    commands=frozenset())
    assert not Seals(audited=True).prefix_sealed(row)
    assert Seals(audited=True, log_prefixes=((row, Seal.GENUINE),)).prefix_sealed(row)
    assert not Seals(audited=True, log_prefixes=((row, Seal.FORGED),)).prefix_sealed(row)
    assert Seals().prefix_sealed(row)  # unaudited: the store is trusted as it is
