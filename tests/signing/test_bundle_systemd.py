"""A signature bundle from a host whose runtime PCR systemd shares: the runtime log it
carries holds systemd's records, and the verifier appraises them (reference.systemd)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from attest.eventlog.cel import parse_cel
from attest.signing.bundle import Bundle
from attest.verify.signature import verify_bundle
from tests.runtime.systemd_writer import systemd_measure
from tests.signing.bundles import file as _file
from tests.signing.bundles import reasons as _reasons
from tests.signing.bundles import shown as _shown
from tests.signing.bundles import sign as _sign
from tests.verify.rig import Rig

WORD = "machine-id:0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def test_a_bundle_carries_and_the_verifier_appraises_systemd_records(
        rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "tpm2-measure.log"
    monkeypatch.setenv("ATTEST_SYSTEMD_LOG", str(log))
    systemd_measure(log, rig.host.sim.tcti, 15, WORD, "machine-id")
    payload = _file(rig, "app.tar", b"release 1.0\n")
    raw = _sign(rig, str(payload))
    carried = parse_cel(Bundle.from_bytes(raw).runtime_log).records
    assert [r.content_type for r in carried] == ["attest", "systemd"]  # rig measured ls
    assert carried[1].content["string"] == WORD
    allowed = hashlib.sha256(WORD.encode()).digest()
    now = int(time.time())
    accepted = verify_bundle(raw, rig.policy(systemd_reference=[allowed]), now,
                             _shown(payload))
    assert accepted.accepted, accepted.to_json()
    other = hashlib.sha256(b"machine-id:another").digest()
    assert _reasons(verify_bundle(raw, rig.policy(systemd_reference=[other]), now,
                                  _shown(payload))) == {"reference_value_mismatch"}
    # A policy appraising runtime records but silent about systemd's denies them too.
    assert _reasons(verify_bundle(raw, rig.policy(), now, _shown(payload))) == \
        {"reference_value_mismatch"}
