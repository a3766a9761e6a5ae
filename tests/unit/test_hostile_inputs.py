"""Input from outside ends in the project's own error, bounded and quickly: deep nesting,
durations out of range, binary files, endless files and FIFOs never reach `internal
error` (issue 11, item 5)."""

from __future__ import annotations

import base64
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from attest.cli.key import read_approvals
from attest.cli.main import cli
from attest.durations import MAX_DURATION_S
from attest.errors import EXIT_USAGE, PolicyError, UsageError
from attest.inputfile import MAX_POLICY_BYTES, read_at_most
from attest.policy import parse_policy
from tests.conftest import VECTORS
from tests.policy.helpers import sealed_values_yaml

ROOT = Path(__file__).resolve().parents[2]
DEEP = 100_000


def _policy(freshness: str = "") -> str:
    return f"""\
version: 1
id: bounds
key_policy:
  sealed_values:
{sealed_values_yaml()}
{freshness}rules:
  - {{subjects: ["*"], actions: ["exec"], argv: ["*"], hosts: ["*"]}}
"""


def _limited() -> None:
    # Far above every bound; far below what the machine has (an unbounded read must fail
    # the test, not take the machine down).
    limit = 1 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _attest(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    # A subprocess with a timeout: a read that waits forever fails the test, not the suite.
    return subprocess.run([sys.executable, "-m", "attest.cli.main", *args],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=_limited, check=False)


# --- deep nesting ------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "version: 1\nid: deep\nrules: " + "[" * DEEP,
    "version: 1\nid: deep\nrules: " + "{a: " * DEEP,
    "a:\n" + "".join(" " * i + "- \n" for i in range(1, 2000)),
], ids=["flow-sequences", "flow-mappings", "block-sequences"])
def test_deeply_nested_policy_is_a_policy_error_naming_the_limit(text: str) -> None:
    with pytest.raises(PolicyError, match="nests deeper than 32 levels"):
        parse_policy(text.encode())


def test_verify_with_a_deeply_nested_policy_is_a_usage_error(tmp_path: Path) -> None:
    policy = tmp_path / "deep.yaml"
    policy.write_text("version: 1\nid: deep\nrules: " + "[" * DEEP)
    artifact = tmp_path / "a.jws"
    artifact.write_text("x.y.z")
    result = CliRunner().invoke(cli, ["--home", str(tmp_path), "verify", str(artifact),
                                      "--policy", str(policy)])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "nests deeper than 32 levels" in result.stderr
    assert "internal error" not in result.output


@pytest.mark.parametrize("text", [b"[" * DEEP, b'{"a":' * DEEP], ids=["arrays", "objects"])
def test_deeply_nested_approval_is_a_usage_error(text: bytes, tmp_path: Path) -> None:
    path = tmp_path / "approval.json"
    path.write_bytes(text[:16000])
    with pytest.raises(UsageError, match="approval"):
        read_approvals([path])


def test_binary_approval_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "approval.json"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(UsageError, match="not an approval file"):
        read_approvals([path])


# --- durations ---------------------------------------------------------------------------


@pytest.mark.parametrize("ttl", ["1e22d", "nan", "inf", "-5", "0", "8d",
                                 "99999999999999999999999999d", "9" * 5000])
def test_challenge_ttl_outside_its_range_is_a_usage_error(ttl: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--home", str(tmp_path), "challenge", "--ttl", ttl])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "from 1s to 7d" in result.stderr
    assert "internal error" not in result.output


@pytest.mark.parametrize("value", ["99999999999999999999d", "3651d", "9" * 5000,
                                   "9999999999999s"])
def test_policy_duration_beyond_the_longest_is_a_policy_error(value: str) -> None:
    text = _policy(f"freshness:\n  max_age: {value}\n")
    with pytest.raises(PolicyError, match=f"longest duration, {MAX_DURATION_S // 86400}d"):
        parse_policy(text.encode())


def test_policy_duration_of_ten_years_loads() -> None:
    policy = parse_policy(_policy("artifacts:\n  max_lifetime: 3650d\n").encode())
    assert policy.artifacts.max_lifetime == MAX_DURATION_S


# --- bounded reads -----------------------------------------------------------------------


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_policy_from_an_endless_file_is_refused_after_a_bounded_read(tmp_path: Path) -> None:
    (tmp_path / "a.jws").write_text("x.y.z")
    done = _attest("--home", str(tmp_path), "verify", str(tmp_path / "a.jws"),
                   "--policy", "/dev/zero")
    assert done.returncode == EXIT_USAGE, done.stderr
    assert f"more than {MAX_POLICY_BYTES} bytes" in done.stderr


def test_read_at_most_of_a_fifo_without_a_writer_ends_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert read_at_most(fifo, 10) == b""


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_verify_of_dev_zero_is_a_denial(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(_policy())
    done = _attest("--home", str(tmp_path), "verify", "/dev/zero", "--policy", str(policy))
    assert done.returncode == 1, done.stderr
    assert "malformed_artifact" in done.stderr
    assert "internal error" not in done.stderr


@pytest.mark.parametrize("role", ["artifact", "policy"])
def test_verify_of_a_fifo_nobody_writes_to_ends_with_a_clean_error(role: str,
                                                                   tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    policy = tmp_path / "policy.yaml"
    policy.write_text(_policy())
    (tmp_path / "a.jws").write_text("x.y.z")
    done = _attest("--home", str(tmp_path), "verify",
                   str(fifo if role == "artifact" else tmp_path / "a.jws"),
                   "--policy", str(fifo if role == "policy" else policy))
    assert done.returncode == (1 if role == "artifact" else EXIT_USAGE), done.stderr
    assert ("malformed_artifact" if role == "artifact" else "the file holds no policy") \
        in done.stderr
    assert "internal error" not in done.stderr


def test_approval_from_a_fifo_nobody_writes_to_is_a_usage_error(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    code = ("import sys; from pathlib import Path; from attest.cli.key import read_approvals\n"
            "from attest.errors import UsageError\n"
            "try:\n    read_approvals([Path(sys.argv[1])])\n"
            "except UsageError as exc:\n    print(exc.message)\n")
    done = subprocess.run([sys.executable, "-c", code, str(fifo)],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=60, preexec_fn=_limited, check=False)
    assert done.returncode == 0, done.stderr
    assert "not an approval file" in done.stdout


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          text=True, timeout=120, preexec_fn=_limited, check=False)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_policy_ek_roots_naming_an_endless_file_are_read_up_to_a_bound() -> None:
    # The verifier reads the policy's ek_roots through read_certificates.
    done = _python("import sys; from pathlib import Path\n"
                   "from attest.certfiles import read_certificates\n"
                   "from attest.errors import MalformedInput\n"
                   "try:\n    read_certificates([Path('/dev/zero')])\n"
                   "except MalformedInput as exc:\n    print(exc.message)\n")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "certificate /dev/zero holds more than" in done.stdout


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_eventlog_check_of_an_endless_file_is_read_up_to_a_bound() -> None:
    # The logs are read before the TPM is asked anything: no TPM needed to show the bound.
    done = _python("import sys; from pathlib import Path\n"
                   "from attest.host.runtime.check import check_logs\n"
                   "from attest.errors import EventLogError\n"
                   "try:\n    check_logs(None, [Path('/dev/zero')])\n"
                   "except EventLogError as exc:\n    print(exc.reason.value, exc.message)\n")
    assert done.returncode == 0, done.stderr[-2000:]
    # A log is evidence: too large is eventlog_malformed (exit 1), not bad usage.
    assert "eventlog_malformed log /dev/zero holds more than" in done.stdout


@pytest.mark.skipif(not VECTORS.is_dir(), reason=f"no vectors at {VECTORS}")
def test_quote_verify_qualification_file_is_bounded(tmp_path: Path) -> None:
    qualification = tmp_path / "q.bin"
    qualification.write_bytes(b"\x00" * 4096)
    gce = VECTORS / "quotes" / "gce_cos85_nonce9009"
    result = CliRunner().invoke(cli, [
        "quote", "verify", "-u", str(gce / "ak_pub.tpmt_public.bin"),
        "-m", str(gce / "quote_sha256.tpms_attest.bin"),
        "-s", str(gce / "sig_sha256.tpmt_signature.bin"), "-q", str(qualification)])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "holds more than 1024 bytes" in result.stderr


@pytest.mark.parametrize("expires", ["99999999999d", "3651d", "0"])
def test_approval_expiry_outside_its_range_is_a_usage_error(expires: str, tmp_path: Path) -> None:
    key = tmp_path / "authority.pem"
    key.write_text("not read: the duration is checked first")
    result = CliRunner().invoke(cli, [
        "--home", str(tmp_path), "policy", "approve", "--authority-key", str(key),
        "--pcrs", f"sha256:7={'00' * 32}", "--serial", "1", "--expires", expires,
        "--out", str(tmp_path / "approval.json")])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "from 1s to 3650d" in result.stderr
    assert not (tmp_path / "approval.json").exists()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize("nested", [b"[" * DEEP, b'{"a":' * DEEP], ids=["arrays", "objects"])
def test_verify_of_an_artifact_with_deeply_nested_claims_is_a_denial(nested: bytes,
                                                                     tmp_path: Path) -> None:
    header = b'{"alg":"ES256","typ":"attest-artifact+jwt","kid":"000b' + b"00" * 32 + b'"}'
    artifact = tmp_path / "deep.jws"
    artifact.write_text(f"{_b64(header)}.{_b64(nested)}.{_b64(bytes(64))}")
    policy = tmp_path / "policy.yaml"
    policy.write_text(_policy())
    result = CliRunner().invoke(cli, ["--home", str(tmp_path), "verify", str(artifact),
                                      "--policy", str(policy)])
    assert result.exit_code == 1, result.output
    assert "malformed_artifact" in result.stderr
    assert "internal error" not in result.output


def test_eventlog_replay_of_a_deeply_nested_cel_log_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "deep.cel"
    log.write_bytes(b"\x1e" + b"[" * DEEP + b"\n")
    result = CliRunner().invoke(cli, ["eventlog", "replay", str(log), "--format", "cel"])
    assert result.exit_code in (1, 2), result.output
    assert "internal error" not in result.output
    assert "eventlog_malformed" in result.output or "nests deeper" in result.output
