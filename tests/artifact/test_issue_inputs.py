"""What issue() reads: the executable digest it names, the runtime log as repaired."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import pytest

from attest.artifact import jws
from attest.errors import UsageError
from attest.host.issue import Request, issue
from attest.tpm.device import open_tpm
from tests.conftest import Host


@pytest.fixture
def issuer(host: Host) -> Host:
    host.ok("key", "create", "--name", "dig")
    return host


def _digest(host: Host, request: Request) -> str | None:
    with open_tpm(host.sim.tcti) as tpm:
        raw = issue(tpm, host.home, request, int(time.time()))
    return jws.parse(raw).claims.scope.executable_digest


def test_without_a_measurement_the_file_is_hashed(issuer: Host) -> None:
    path = Path(shutil.which("true") or "/bin/true").resolve()
    request = Request(subject="s", action="exec", argv=("true",), key_name="dig")
    assert _digest(issuer, request) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_measured_digest_is_the_one_named(issuer: Host) -> None:
    measured = hashlib.sha256(b"what attest run measured").hexdigest()
    request = Request(subject="s", action="exec", argv=("true",), key_name="dig",
                      executable_digest=measured)
    assert _digest(issuer, request) == measured


@pytest.mark.parametrize("bad", ["ab" * 31, "AB" * 32, "0" * 64 + "\n", "zz" * 32])
def test_a_malformed_measured_digest_is_refused(issuer: Host, bad: str) -> None:
    request = Request(subject="s", action="exec", argv=("true",), key_name="dig",
                      executable_digest=bad)
    with pytest.raises(UsageError, match="SHA-256"):
        _digest(issuer, request)


def test_the_log_shipped_is_the_log_after_repair(fresh_host: Host) -> None:
    issuer = fresh_host  # it measures: PCR 15 of the shared simulator must stay untouched
    issuer.ok("key", "create", "--name", "dig")
    issuer.ok("measure", "data", "--name", "release", "--value", "1")
    log = issuer.home / "runtime.cel"
    whole = log.read_bytes()
    log.write_bytes(whole + b'\x1e{"recnum": 1, "pcr"')  # an append cut short by a crash
    request = Request(subject="s", action="exec", argv=("true",), key_name="dig")
    with open_tpm(issuer.sim.tcti) as tpm:
        raw = issue(tpm, issuer.home, request, int(time.time()))
    assert jws.parse(raw).claims.evidence.runtime_log == whole == log.read_bytes()
