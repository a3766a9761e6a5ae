"""scripts/bench_fleet.py's simulated agents are real, distinct hosts: on one swtpm, each
identity is its own AK (at its own persistent handle) and signing key, enrolled under its
own host id, and against a real `attest serve` on loopback each agent's reports are
accepted as its host's; the open loop counts what the service answered, so a report
sent twice is one acceptance and one denial."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import ModuleType

import pytest

from attest.tpm.hierarchy import AK_HANDLE, load_identity
from tests.scripts import script


def _fleet() -> ModuleType:
    return script("bench_fleet")


def test_agents_on_one_tpm_are_distinct_hosts_and_every_report_counts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = _fleet()
    service = script("bench_service")
    stream = script("bench_stream")
    monkeypatch.setattr(fleet, "TPMS", 1)
    monkeypatch.setattr(service, "WORKERS", 1)
    rig = stream.Rig(tmp_path / "fleet")
    try:
        agents = fleet.make_agents(rig, 3)
        identities = [load_identity(a.home) for a in agents]
        assert len({i.ak_name for i in identities}) == 3  # three AKs in one TPM
        assert [i.ak_handle for i in identities] == [AK_HANDLE, fleet.EXTRA_AK_BASE + 1,
                                                     fleet.EXTRA_AK_BASE + 2]
        assert len({(a.home / "keys" / "default" / "key.json").read_bytes()
                    for a in agents}) == 3  # and three signing keys
        policy = fleet.write_policy(rig, rig.hosts)
        home = rig.workdir / "verifier"
        home.mkdir(mode=0o700)
        url = "sqlite:///" + str(home / "verifier.db")
        stream.enroll_into(url, home, [stream.Host(a.name, None, a.home) for a in agents])
        with service.serve(rig.policy_path, url, home, rig.workdir / "serve.log") as srv:
            nonces = service._nonces(service.generate(
                srv.port, "/v1/challenges", [b"{}"] * 6, 2, 60, service.status_outcome,
                keep=True))
            fleet.issue_reports(agents, policy, nonces, 1)
            warm = service.generate(srv.port, "/v1/reports",
                                    [fleet._report_body(a.reports[0]) for a in agents], 2,
                                    60, fleet.report_outcome)
            assert warm.outcomes == {"accepted": 3}  # each host trusted by its own report
            # Agent 2 sends agent 1's report again instead of its own: a replay.
            bodies = [[fleet._report_body(a.reports[1])] for a in agents]
            bodies[2] = bodies[1]
            window = asyncio.run(fleet._open_loop(srv.port, bodies, 0.2))
        assert len(window.latencies_s) == 3
        assert window.outcomes["accepted"] == 2
        (denied,) = (k for k in window.outcomes if k != "accepted")
        assert denied.startswith("denied: ")
        assert {"replayed", "nonce_reused"} & set(denied.split(": ", 1)[1].split(","))
    finally:
        rig.stop()


def test_a_report_counts_only_when_its_host_is_left_trusted() -> None:
    fleet = _fleet()
    trusted = b'{"accepted": true, "host_state": {"state": "trusted"}}'
    untrusted = b'{"accepted": true, "host_state": {"state": "untrusted"}}'
    assert fleet.report_outcome(200, trusted) == "accepted"
    assert fleet.report_outcome(200, untrusted) == "accepted, host untrusted"
    assert fleet.report_outcome(200, b'{"accepted": true}') == "accepted, host None"
    assert fleet.report_outcome(503, b"{}") == "HTTP 503"
