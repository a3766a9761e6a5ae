"""One rule for every verifying command's failures (docs/reasons.md, "Exit codes").

Garbage or tampered evidence: exit 1 with its reason code on stderr, and with --json
{"ok": false, "error": {"reason": ...}} on stdout. A file that cannot be opened: exit 2.
The environment failing (an I/O error, a file size limit, no TPM): exit 3, naming it.
And every command a script reads takes the one --json flag.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from attest.artifact.model import b64url
from attest.audit import AuditLog, HeadPolicy
from attest.cli.main import cli
from attest.store import Store, default_url
from tests.audit.conftest import fill
from tests.conftest import VECTORS, Host
from tests.verify.rig import b64d

pytestmark = pytest.mark.skipif(not VECTORS.is_dir(), reason=f"no vectors at {VECTORS}")

GCE = VECTORS / "quotes" / "gce_cos85_nonce9009"
STM = VECTORS / "ekcerts" / "stm_rsa"
BOOT_LOG = VECTORS / "eventlogs" / "gtt_glinux_laptop" / "binary_bios_measurements"
GARBAGE = bytes(range(256)) * 3
MISSING = "/nonexistent/attest-evidence"


def _flip(data: bytes, at: int) -> bytes:
    changed = bytearray(data)
    changed[at] ^= 0x01
    return bytes(changed)


@dataclass
class Case:
    """A verifying command: its argv with the evidence file at ``{}``, the evidence as
    made honestly, a tampering of it, and the reasons garbage and tampering give."""

    argv: list[str]
    genuine: bytes
    tamper: Callable[[bytes], bytes]
    garbage_reason: str
    tampered_reason: str
    env: dict[str, str]


def _gce_name() -> str:
    from attest.evidence.structures import parse_public

    return parse_public((GCE / "ak_pub.tpmt_public.bin").read_bytes()).name.hex()


def _quote_verify() -> Case:
    return Case(["quote", "verify", "-u", str(GCE / "ak_pub.tpmt_public.bin"),
                 "--ak-name", _gce_name(), "-m", str(GCE / "quote_sha256.tpms_attest.bin"),
                 "-s", "{}", "-q", "9009"],
                (GCE / "sig_sha256.tpmt_signature.bin").read_bytes(),
                lambda sig: _flip(sig, len(sig) - 1), "quote_malformed",
                "quote_signature_invalid", {})


def _eventlog_replay() -> Case:
    # Cut mid-event: the log no longer parses.
    return Case(["eventlog", "replay", "{}"], BOOT_LOG.read_bytes(), lambda log: log[:-7],
                "eventlog_malformed", "eventlog_malformed", {})


def _ek_verify() -> Case:
    return Case(["ek", "verify", "{}", "--roots", str(STM / "root_STM_RSA_RT.pem"),
                 "--chain", str(STM / "intermediate_STM_RSA_05I.pem"),
                 "--at", "2024-06-01T00:00:00Z"],
                (STM / "ek_leaf.der").read_bytes(), lambda der: _flip(der, len(der) - 3),
                "ek_chain_invalid", "ek_chain_invalid", {})


def _check_proof(tmp: Path) -> Case:
    home = tmp / "audit-home"
    home.mkdir()
    with Store.open(default_url(home)) as store:
        fill(AuditLog.open(store, home, heads=HeadPolicy(every=4, interval=1e9)), 6)
    env = {"ATTEST_HOME": str(home)}
    key = _ok(["audit", "key"], env).stdout.strip()
    receipt = _ok(["audit", "prove", "--index", "2"], env).stdout

    def tamper(text: bytes) -> bytes:
        proof = json.loads(text)
        proof["index"] = 1  # the receipt of entry 2, claimed for entry 1
        return json.dumps(proof).encode()

    return Case(["audit", "check-proof", "{}", "--key", key], receipt.encode(), tamper,
                "proof_invalid", "proof_invalid", {"ATTEST_HOME": str(tmp / "auditor")})


def _eventlog_check(host: Host) -> Case:
    # The swtpm's PCRs are not the laptop's: the log does not explain them.
    return Case(["eventlog", "check", "--log", "{}"], BOOT_LOG.read_bytes(), lambda log: log,
                "eventlog_malformed", "eventlog_mismatch", host.env)


def _verify(host: Host, tmp: Path) -> Case:
    host.ok("key", "create")
    policy = tmp / "policy.yaml"
    host.ok("policy", "init", "--from-host", "--out", str(policy))
    artifact = tmp / "a.jws"
    host.ok("authorize", "--subject", "deploy-bot", "--out", str(artifact), "--", "ls")

    def tamper(raw: bytes) -> bytes:
        head, _, signature = raw.strip().rpartition(b".")
        return head + b"." + b64url(_flip(b64d(signature), 0)).encode() + b"\n"

    return Case(["verify", "{}", "--policy", str(policy)], artifact.read_bytes(), tamper,
                "malformed_artifact", "invalid_signature", host.env)


def _invoke(argv: list[str], env: dict[str, str]) -> Result:
    result = CliRunner().invoke(cli, argv, env={"ATTEST_STORE": None, **env},
                                catch_exceptions=False)
    assert "internal error" not in result.output, result.output
    assert "Traceback" not in result.output, result.output
    return result


def _ok(argv: list[str], env: dict[str, str]) -> Result:
    result = _invoke(argv, env)
    assert result.exit_code == 0, result.output
    return result


COMMANDS = ["quote verify", "eventlog replay", "eventlog check", "ek verify",
            "audit check-proof", "verify"]


@pytest.fixture(params=COMMANDS)
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    name = request.param
    if name == "quote verify":
        return _quote_verify()
    if name == "eventlog replay":
        return _eventlog_replay()
    if name == "ek verify":
        return _ek_verify()
    if name == "audit check-proof":
        return _check_proof(tmp_path)
    host: Host = request.getfixturevalue("host")
    return _eventlog_check(host) if name == "eventlog check" else _verify(host, tmp_path)


def _with(case: Case, path: Path | str, *extra: str) -> list[str]:
    return [str(path) if arg == "{}" else arg for arg in case.argv] + list(extra)


def _refused_with(result: Result, reason: str, as_json: bool) -> None:
    assert result.exit_code == 1, result.output
    assert reason in result.stderr
    if as_json:
        out = json.loads(result.stdout)
        assert out["ok"] is False
        assert out["error"]["reason"] == reason
        assert (out["error"]["exit_code"], out["error"]["kind"]) == (1, "refused")


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_evidence_garbage_and_tampered_is_exit_1_with_its_reason(
        case: Case, tmp_path: Path, as_json: bool) -> None:
    flag = ["--json"] if as_json else []
    genuine = tmp_path / "genuine.bin"
    genuine.write_bytes(case.genuine)
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(GARBAGE)
    tampered = tmp_path / "tampered.bin"
    tampered.write_bytes(case.tamper(case.genuine))
    _refused_with(_invoke(_with(case, garbage, *flag), case.env), case.garbage_reason, as_json)
    _refused_with(_invoke(_with(case, tampered, *flag), case.env), case.tampered_reason,
                  as_json)


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_a_missing_evidence_file_is_usage_exit_2(case: Case, as_json: bool) -> None:
    result = _invoke(_with(case, MISSING, *(["--json"] if as_json else [])), case.env)
    assert result.exit_code == 2, result.output
    assert MISSING in result.stderr
    if as_json:
        out = json.loads(result.stdout)
        assert out["ok"] is False and out["error"]["kind"] == "usage"
        assert out["error"]["exit_code"] == 2 and MISSING in out["error"]["message"]


def test_an_evidence_file_that_fails_to_read_is_environment_exit_3() -> None:
    # Reading /proc/self/mem at offset 0 fails with EIO: the system, not the caller.
    result = _invoke(["eventlog", "replay", "/proc/self/mem", "--json"], {})
    assert result.exit_code == 3, result.output
    assert "/proc/self/mem" in result.stderr
    error = json.loads(result.stdout)["error"]
    assert error["kind"] == "environment" and "/proc/self/mem" in error["message"]


def test_an_unreachable_tpm_is_environment_exit_3_in_json_too(tmp_path: Path) -> None:
    result = _invoke(["--tcti", "swtpm:path=/nonexistent/tpm.sock", "eventlog", "check",
                      "--log", str(BOOT_LOG), "--json"], {"ATTEST_HOME": str(tmp_path)})
    assert result.exit_code == 3, result.output
    error = json.loads(result.stdout)["error"]
    assert error["kind"] == "environment" and "/nonexistent/tpm.sock" in error["message"]


def _no_bigger_than(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_an_output_the_system_cannot_write_is_environment_exit_3(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    authority = tmp_path / "authority.pem"
    authority.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    out = tmp_path / "approval.json"
    # A file size limit below the approval's size: the write fails as on a full disk.
    done = subprocess.run(
        [sys.executable, "-m", "attest.cli.main", "policy", "approve", "--authority-key",
         str(authority), "--pcrs", f"sha256:7={'00' * 32}", "--serial", "1", "--out",
         str(out), "--json"],
        capture_output=True, text=True, check=False, preexec_fn=_no_bigger_than(64),
        env={**os.environ, "ATTEST_HOME": str(tmp_path / "home"),
             "PYTHONPATH": str(Path(__file__).resolve().parents[1])}, timeout=60)
    assert done.returncode == 3, done.stderr
    assert str(out) in done.stderr
    error = json.loads(done.stdout)["error"]
    assert error["kind"] == "environment" and str(out) in error["message"]
    assert not out.exists()


def test_click_usage_errors_are_json_under_json() -> None:
    result = _invoke(["quote", "verify", "--json", "--no-such-flag"], {})
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert error["kind"] == "usage" and "--no-such-flag" in error["message"]
    result = _invoke(["policy", "approve", "--authority-key", MISSING, "--pcrs", "sha256:7",
                      "--serial", "1", "--out", "x", "--json"], {})
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["exit_code"] == 2
    # Without --json, click's message alone, on stderr.
    plain = _invoke(["quote", "verify", "--no-such-flag"], {})
    assert plain.exit_code == 2 and plain.stdout == ""


# Every command whose output a script reads. `attest run` is not one: its output is
# CMD's own (docs/reasons.md). A new command a script reads belongs here.
SCRIPT_READ = {
    "audit check-proof", "audit consistency", "audit export", "audit head", "audit heads",
    "audit key",
    "audit prove", "audit seal-revocations", "audit verify", "authorize", "challenge",
    "ek verify", "enroll", "eventlog check", "eventlog replay", "eventlog show",
    "key certify", "key create", "key list", "key sign", "measure command", "measure data",
    "measure file", "pcr extend", "pcr read", "policy approve", "policy init", "policy pcr",
    "provision", "quote create", "quote verify", "readmit", "result key", "result verify",
    "revoke", "swtpm start",
    "sign", "swtpm status", "swtpm stop", "verify", "verify-signature",
}


def _commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def test_every_command_a_script_reads_has_the_one_json_flag() -> None:
    from attest.cli.failure import json_option

    marker = json_option()(lambda: None).__click_params__[0]
    commands = dict(_commands(cli))
    assert set(commands) >= SCRIPT_READ, SCRIPT_READ - set(commands)
    lacking = []
    for name, command in commands.items():
        flags = [p for p in command.params if "--json" in p.opts]
        # Every --json is json_option's, so that errors become JSON as well.
        assert all(p.callback is marker.callback for p in flags), name
        if name in SCRIPT_READ and not flags:
            lacking.append(name)
    assert lacking == []


def test_evidence_larger_than_any_is_refused_with_its_reason(tmp_path: Path) -> None:
    from attest.cli.common import MAX_INPUT_BYTES

    huge = tmp_path / "huge.log"
    with huge.open("wb") as file:
        file.truncate(MAX_INPUT_BYTES + 1)  # sparse: nothing is written
    result = _invoke(["eventlog", "replay", str(huge), "--json"], {})
    _refused_with(result, "eventlog_malformed", as_json=True)


def _json(host: Host, *args: str) -> dict[str, Any]:
    cut = args.index("--") if "--" in args else len(args)  # after `--` is the argv
    result = host.ok(*args[:cut], "--json", *args[cut:])
    out = json.loads(result.stdout)
    assert out["ok"] is True, out
    return dict(out)


def test_the_json_of_commands_that_make_something(host: Host, tmp_path: Path) -> None:
    created = _json(host, "key", "create")
    assert created["name"] == "default" and created["kind"] == "pcr"
    data = tmp_path / "data"
    data.write_bytes(b"payload")
    signed = _json(host, "key", "sign", "--in", str(data), "--out", str(tmp_path / "sig"))
    assert (signed["bytes"], signed["format"]) == (7, "der")
    certified = _json(host, "key", "certify", "--nonce", "00", "--out-dir", str(tmp_path / "c"))
    assert all((tmp_path / "c" / name).is_file() for name in certified["files"])
    quoted = _json(host, "quote", "create", "--pcrs", "sha256:0", "--nonce", "0011",
                   "--out-dir", str(tmp_path / "q"))
    assert (quoted["nonce"], quoted["pcrs"]) == ("0011", "sha256:0")
    policy = _json(host, "policy", "init", "--from-host", "--out", str(tmp_path / "p.yaml"))
    assert policy["key"] == "default" and (tmp_path / "p.yaml").is_file()
    issued = _json(host, "authorize", "--subject", "bot", "--out", str(tmp_path / "a.jws"),
                   "--", "ls")
    assert issued["argv"] == ["ls"] and (tmp_path / "a.jws").stat().st_size > 0
    extended = _json(host, "pcr", "extend", "14", "--data", "json")
    assert set(extended["extended"]) >= {"sha256"}
    readmitted = _json(host, "readmit", "--ak", "00" * 34, "--reason", "test")
    assert readmitted["forgot_clock"] is False
    head = _json(host, "audit", "head", "--sign")
    assert isinstance(head["note"], str) and head["size"] == 1  # the readmission
    assert _json(host, "audit", "key")["verifier_key"]


def test_swtpm_start_and_stop_in_json(provisioned_template: Path, tmp_path: Path) -> None:
    import shutil

    from attest.simulator import Simulator

    state = tmp_path / "sim"
    shutil.copytree(provisioned_template, state)
    try:
        started = json.loads(_ok(["swtpm", "start", "--state", str(state), "--json"], {}).stdout)
        assert started["ok"] is True and started["started"] is True
        assert started["tcti"] == Simulator(state).tcti
    finally:
        stopped = json.loads(_ok(["swtpm", "stop", "--state", str(state), "--json"], {}).stdout)
    assert stopped == {"ok": True, "stopped": True, "state": str(state)}


@pytest.mark.parametrize("argv", [["challenge"], ["revoke", "--host", "h", "--reason", "r"],
                                  ["readmit", "--ak", "00" * 34, "--reason", "r"],
                                  ["audit", "seal-revocations"], ["audit", "verify"]])
def test_verifier_commands_create_a_home_that_does_not_exist_yet(
        argv: list[str], tmp_path: Path) -> None:
    # Honest first use: the default store is in a home nobody has created.
    home = tmp_path / "not" / "yet"
    _ok(argv, {"ATTEST_HOME": str(home)})
    assert (home / "verifier.db").is_file()
    assert (home.stat().st_mode & 0o777) == 0o700


def test_policy_init_with_store_enrollment_claims_no_ak(host: Host, tmp_path: Path) -> None:
    # The policy lists no AK: the store decides which AKs are trusted, and the output says so.
    host.ok("key", "create")
    said = host.ok("policy", "init", "--from-host", "--enrollment", "store",
                   "--out", str(tmp_path / "p.yaml")).output
    assert "trusts AK " not in said and "verifier's store" in said
    written = _json(host, "policy", "init", "--from-host", "--enrollment", "store", "--force",
                    "--out", str(tmp_path / "p.yaml"))
    assert written["ak"] is None and written["enrollment"] == "store"


@pytest.mark.parametrize("argv", [["audit", "export", "--from", "9" * 23],
                                  ["audit", "consistency", "--from", "1", "--to", "9" * 23],
                                  ["audit", "prove", "--index", "9" * 23]])
def test_an_audit_index_beyond_any_sqlite_integer_is_usage(argv: list[str],
                                                          tmp_path: Path) -> None:
    result = _invoke([*argv, "--json"], {"ATTEST_HOME": str(tmp_path)})
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout)["error"]["kind"] == "usage"


def test_an_output_path_with_controls_or_undecodable_bytes_is_printed_escaped(
        host: Host, tmp_path: Path) -> None:
    # The user's own path, but what reaches the terminal is still escaped: an ESC in a
    # name does not rewrite the screen, a name that is not UTF-8 does not crash the echo.
    host.ok("key", "create")
    payload = tmp_path / "payload"
    payload.write_bytes(b"data")
    for name in ("ctl\x1b]0;title\x07", os.fsdecode(b"n\xff")):
        out = tmp_path / name
        said = host.ok("key", "sign", "--in", str(payload), "--out", str(out)).output
        assert out.exists() and "\x1b" not in said and "\x07" not in said
        assert "\\x1b" in said or "\\udcff" in said, said


def test_a_home_whose_name_is_not_utf8_holds_the_store(tmp_path: Path) -> None:
    # A path is bytes: the default store URL percent-encodes them, and opens that file.
    home = Path(os.fsdecode(os.fsencode(tmp_path) + b"/h\xff\x1b[2J"))
    said = _ok(["challenge"], {"ATTEST_HOME": str(home)}).output
    assert (home / "verifier.db").is_file()
    assert "\x1b" not in said


def test_a_simulator_state_path_a_tcti_cannot_name_is_usage(tmp_path: Path) -> None:
    # A TCTI is text: a --state that is not UTF-8 (or holds an ESC) is refused before
    # anything is made; status and stop name it escaped, without an internal error.
    state = os.fsdecode(os.fsencode(tmp_path) + b"/s\xff\x1b[2J")
    started = _invoke(["swtpm", "start", "--state", state, "--json"], {})
    assert started.exit_code == 2, started.output
    assert json.loads(started.stdout)["error"]["kind"] == "usage"
    assert not Path(state).exists()
    for command in ("status", "stop"):
        said = _invoke(["swtpm", command, "--state", state], {}).output
        assert "\x1b" not in said and "\\x1b" in said, said


@pytest.mark.parametrize("through_link", [False, True])
def test_an_output_that_is_a_fifo_or_device_is_refused_not_replaced(
        host: Host, tmp_path: Path, through_link: bool) -> None:
    # An output is written to a temporary file renamed over the target: over a FIFO or a
    # device (as root, `--out /dev/zero`; `--out /dev/stdout` through its link) that
    # replaced the node itself. A FIFO stands for both here.
    host.ok("key", "create")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    out = fifo
    if through_link:
        out = tmp_path / "link"
        out.symlink_to(fifo)
    result = host.run("key", "sign", "--in", "/dev/null", "--out", str(out), "--json")
    assert result.exit_code == 2, result.output
    assert "not a regular file" in json.loads(result.stdout)["error"]["message"]
    assert fifo.is_fifo() and out.exists()
    assert not through_link or out.is_symlink()


_NOT_UTF8 = os.fsdecode(b"n\xff")


@pytest.mark.parametrize("argv", [["revoke", "--jti", _NOT_UTF8, "--reason", "r"],
                                  ["revoke", "--host", _NOT_UTF8, "--reason", "r"],
                                  ["revoke", "--jti", "j", "--reason", _NOT_UTF8],
                                  ["readmit", "--ak", "00" * 34, "--reason", _NOT_UTF8]])
def test_ids_and_reasons_that_are_not_utf8_are_usage(argv: list[str], tmp_path: Path) -> None:
    # The store and the audit log keep them as text: argv bytes that are not UTF-8 are the
    # caller's to fix (exit 2), not an internal error (UnicodeEncodeError in SQLite).
    result = _invoke([*argv, "--json"], {"ATTEST_HOME": str(tmp_path)})
    assert result.exit_code == 2, result.output
    assert "not UTF-8" in json.loads(result.stdout)["error"]["message"]


@pytest.mark.parametrize("argv", [["measure", "file", "{loop}"],
                                  ["measure", "command", "--", "{loop}"]])
def test_a_symbolic_link_loop_to_measure_is_usage(host: Host, tmp_path: Path,
                                                   argv: list[str]) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    result = host.run(*(arg.format(loop=tmp_path / "a") for arg in argv))
    assert result.exit_code == 2, result.output
    assert "loop of symbolic links" in result.stderr
