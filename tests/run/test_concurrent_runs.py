"""Concurrent `attest run` on one host: every honest run is accepted (issue 11 item 2).

Each run measures into the runtime PCR, so without care one run's extend lands
between another's PolicyPCR and Sign (TPM_RC_PCR_CHANGED), or between its log
snapshot and its quote. All processes share one home, one swtpm and one SQLite store.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attest.host.runtime.log import RuntimeLog
from tests.conftest import Host

RUNS = 16



def test_sixteen_concurrent_runs_all_succeed(ready: tuple[Host, Path]) -> None:
    host, policy = ready
    env = {**os.environ, **host.env, "TSS2_LOG": "all+NONE"}
    # Each process issues, verifies against the shared store and audit log, and execs.
    runs = [subprocess.Popen([sys.executable, "-m", "attest.cli.main", "run", "--policy",
                              str(policy), "--", "sh", "-c", f"exit {i % 3}"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(RUNS)]
    results = [(run.wait(timeout=120), *run.communicate()) for run in runs]
    # The exit code is CMD's: each run was accepted by the in-process verifier, then ran.
    failed = [(i, code, err) for i, (code, _, err) in enumerate(results) if code != i % 3]
    assert not failed, failed
    jtis = {err.split("accepted (", 1)[1].split(")", 1)[0] for _, _, err in results}
    assert len(jtis) == RUNS
    # Log order is extend order: the log still explains the PCR, one record a run.
    assert "ok" in host.ok("eventlog", "check").output
    assert len(RuntimeLog(host.home).read().records) == 1 + RUNS
    host.ok("audit", "verify")


def test_concurrent_key_signs_and_measurements_all_succeed(fresh_host: Host,
                                                           tmp_path: Path) -> None:
    """`attest key sign` next to measurements: a measurement must not void a signer's
    policy session, and signers must not overrun the simulator's three object slots."""
    fresh_host.ok("key", "create")
    data = tmp_path / "data"
    data.write_bytes(b"signed while the host measures")
    env = {**os.environ, **fresh_host.env, "TSS2_LOG": "all+NONE"}
    attest = [sys.executable, "-m", "attest.cli.main"]
    commands = [[*attest, "key", "sign", "--in", str(data), "--out", str(tmp_path / f"sig{i}")]
                for i in range(6)]
    commands += [[*attest, "measure", "data", "--name", f"n{i}", "--value", "v"]
                 for i in range(6)]
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for c in commands]
    failed = [(p.args, p.returncode, err) for p, (_, err) in
              ((p, p.communicate(timeout=120)) for p in procs) if p.returncode != 0]
    assert not failed, failed
    public = serialization.load_pem_public_key(
        (fresh_host.home / "keys" / "default" / "key.pem").read_bytes())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    for i in range(6):
        public.verify((tmp_path / f"sig{i}").read_bytes(), data.read_bytes(),
                      ec.ECDSA(hashes.SHA256()))
