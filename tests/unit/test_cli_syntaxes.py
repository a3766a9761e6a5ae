"""One syntax for durations and PCR selections in every command, refused in one wording.

Each option is tried through the real command line (click, attest's error rendering,
the exit code), with nothing behind it that would answer: a TPM that is not there, a
verifier nobody listens on. The value is refused before any of them is needed, so a
usage error (2), never an environment one (3), says what was wrong.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from attest.cli.main import cli
from attest.errors import EXIT_USAGE

ROOT = Path(__file__).resolve().parents[2]
SYNTAX = "expected a duration like 90s, 5m, 1h30m, 250ms or whole seconds (90)"
NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing answers


def _duration_commands(tmp_path: Path) -> dict[str, list[str]]:
    """Each duration option with the arguments its command needs besides it; the option's
    value is appended."""
    key = tmp_path / "authority.pem"
    key.write_text("not read: --expires is refused first\n")
    return {
        "--ttl challenge": ["challenge", "--ttl"],
        "--ttl authorize": ["authorize", "--subject", "s", "--out", str(tmp_path / "a.jws"),
                            "--ttl"],
        "--nonce-ttl": ["serve", "--policy", str(tmp_path / "p.yaml"), "--nonce-ttl"],
        "--stale-after": ["replicas", "--stale-after"],
        "--expires": ["policy", "approve", "--authority-key", str(key), "--pcrs",
                      "sha256:0=" + "00" * 32, "--serial", "1", "--out",
                      str(tmp_path / "approval.json"), "--expires"],
        "--interval": ["agent", "--verifier", NOWHERE, "--interval"],
        "--max-silence": ["agent", "--verifier", NOWHERE, "--interval", "1s",
                          "--max-silence"],
        "--sign-window": ["agent", "--verifier", NOWHERE, "--sign-window"],
    }


SUBSECOND = {"--interval", "--max-silence", "--sign-window"}
OPTIONS = ["--ttl challenge", "--ttl authorize", "--nonce-ttl", "--stale-after", "--expires",
           "--interval", "--max-silence", "--sign-window"]


def _invoke(tmp_path: Path, args: list[str]) -> tuple[int, str]:
    env = {"ATTEST_TCTI": f"swtpm:path={tmp_path}/no-tpm.sock", "ATTEST_STORE": "",
           "XDG_STATE_HOME": ""}
    done = CliRunner().invoke(cli, ["--home", str(tmp_path / "home"), *args], env=env)
    assert "internal error" not in done.output, done.output
    return done.exit_code, done.stderr


@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("value", ["1.5s", "5 m", "-5s", "1m1m", "soon", "5M", "9" * 400,
                                   "1h\x1b[31m"])
def test_every_duration_option_refuses_other_forms_in_one_wording(
        tmp_path: Path, option: str, value: str) -> None:
    code, said = _invoke(tmp_path, [*_duration_commands(tmp_path)[option], value])
    assert code == EXIT_USAGE, said
    name = option.split(maxsplit=1)[0]
    assert f"error: {name}: " in said
    assert SYNTAX in said or "a unit appears twice" in said or "longest duration" in said
    examples = "250ms, 2s or 1m" if option in SUBSECOND else "90s, 5m or 1h30m"
    assert f"hint: write e.g. {examples}; from " in said
    assert "\x1b" not in said


@pytest.mark.parametrize(("option", "too_long"), [
    ("--ttl challenge", "7d1s"), ("--ttl authorize", "8d"), ("--nonce-ttl", "8d"),
    ("--stale-after", "8d"), ("--expires", "3651d"), ("--interval", "1h1s"),
    ("--max-silence", "1d1ms"), ("--sign-window", "1s1ms")])
def test_every_duration_option_names_its_range(tmp_path: Path, option: str,
                                               too_long: str) -> None:
    code, said = _invoke(tmp_path, [*_duration_commands(tmp_path)[option], too_long])
    assert code == EXIT_USAGE, said
    assert "is longer than the longest duration" in said


@pytest.mark.parametrize("option", ["--ttl challenge", "--ttl authorize", "--nonce-ttl",
                                    "--stale-after", "--expires"])
def test_whole_second_options_refuse_a_part_of_a_second(tmp_path: Path, option: str) -> None:
    """250ms is the syntax, but a lifetime in whole seconds does not round it away."""
    code, said = _invoke(tmp_path, [*_duration_commands(tmp_path)[option], "1s500ms"])
    assert code == EXIT_USAGE, said
    assert "not a whole number of seconds" in said


@pytest.mark.parametrize("value", ["1m30s", "90", "1m", "90000ms", "1m30000ms"])
def test_a_challenge_takes_every_form_of_ninety_seconds(tmp_path: Path, value: str) -> None:
    done = CliRunner().invoke(cli, ["--home", str(tmp_path), "challenge", "--ttl", value,
                                    "--json"], env={"ATTEST_STORE": ""})
    assert done.exit_code == 0, done.output
    if value != "1m":
        import json

        assert '"expires"' in done.stdout and json.loads(done.stdout)["nonce"]


def test_grace_on_the_thin_path_is_refused_in_the_same_wording(tmp_path: Path) -> None:
    """`attest run --supervise --grace` is parsed before click loads (attest.cli.thin)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ATTEST_HOME": str(tmp_path),
           "ATTEST_AGENT_SOCKET": str(tmp_path / "none.sock")}
    never = tmp_path / "ran"
    done = subprocess.run([sys.executable, "-m", "attest.cli.main", "run", "--supervise",
                           "--grace", "1.5s", "--", "touch", str(never)], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == EXIT_USAGE, done.stderr
    assert f"error: --grace: {SYNTAX}, not '1.5s'" in done.stderr
    assert "hint: write e.g. 90s, 5m or 1h30m; from 0s to 10m" in done.stderr
    assert not never.exists()


# -- PCR selections ------------------------------------------------------------------------
def _selection_commands(tmp_path: Path) -> dict[str, list[str]]:
    return {
        "pcr read": ["pcr", "read"],
        "quote create --pcrs": ["quote", "create", "--nonce", "00", "--out-dir",
                                str(tmp_path / "q"), "--pcrs"],
        "key create --pcrs": ["key", "create", "--pcrs"],
        "policy approve --pcrs": ["policy", "approve", "--authority-key",
                                  str(_authority(tmp_path)), "--serial", "1", "--out",
                                  str(tmp_path / "a.json"), "--pcrs"],
        "quote verify -l": ["quote", "verify", "-m", str(_file(tmp_path, "m")), "-s",
                            str(_file(tmp_path, "s")), "-u", str(_file(tmp_path, "u")),
                            "-f", str(_file(tmp_path, "f")), "-l"],
    }


def _authority(tmp_path: Path) -> Path:
    return _file(tmp_path, "authority.pem")


def _file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(b"x")
    return path


SELECTION_COMMANDS = ["pcr read", "quote create --pcrs", "key create --pcrs",
                      "policy approve --pcrs", "quote verify -l"]


@pytest.mark.parametrize("command", SELECTION_COMMANDS)
@pytest.mark.parametrize(("value", "said"), [
    ("sha256:0-99999999999", "malformed PCR index"),  # would have built a huge list
    ("sha256:0-24", "PCR index 24 out of range 0-23"),
    ("sha256:7-3", "runs backwards"),
    ("sha256:010", "malformed PCR index"),  # octal to tpm2-tools, decimal to Python
    ("sha256:1_0", "malformed PCR index"),
    ("sha256:0x100", "malformed PCR index"),
    ("md5:0", "unknown hash algorithm"),
    ("sha256:" + ",".join(["1"] * 300), "at most 512"),
])
def test_every_selection_is_refused_in_one_wording(tmp_path: Path, command: str, value: str,
                                                   said: str) -> None:
    code, stderr = _invoke(tmp_path, [*_selection_commands(tmp_path)[command], value])
    assert code == EXIT_USAGE, stderr
    assert said in stderr
    if "hash algorithm" not in said:
        assert "hint: write BANK:LIST, e.g. sha256:0-7,15" in stderr


def test_pcr_read_takes_a_list_in_its_bank_and_refuses_a_bad_one(tmp_path: Path) -> None:
    code, said = _invoke(tmp_path, ["pcr", "read", "--bank", "sha256", "0-7,99"])
    assert code == EXIT_USAGE and "PCR index 99 out of range" in said


@pytest.mark.parametrize("args", [
    ["pcr", "extend", "+15", "--data", "x"],
    ["pcr", "extend", "1_5", "--data", "x"],
    ["pcr", "extend", "015", "--data", "x"],
    ["pcr", "extend", "0x18", "--data", "x"],
    ["pcr", "extend", "0-7", "--data", "x"],
    ["measure", "data", "--pcr", " +15", "--name", "n", "x"],
    ["measure", "file", "--pcr", "99", "/dev/null"],
])
def test_one_pcr_index_is_read_as_a_selection_reads_it(tmp_path: Path, args: list[str]) -> None:
    """Before, click's int() took +15 and 1_5; and a selection took 0x0f but an index
    did not."""
    code, said = _invoke(tmp_path, args)
    assert code == EXIT_USAGE, said
    assert "PCR index" in said
    assert "hint: write BANK:LIST, e.g. sha256:0-7,15" in said


@pytest.mark.parametrize("value", ["+15", "1_5", "015", "fifteen", "24"])
def test_the_runtime_pcr_variable_is_read_as_an_index(value: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from attest.errors import UsageError
    from attest.host.runtime.log import runtime_pcr

    monkeypatch.setenv("ATTEST_RUNTIME_PCR", value)
    with pytest.raises(UsageError, match=r"ATTEST_RUNTIME_PCR: .*PCR index"):
        runtime_pcr()
    monkeypatch.setenv("ATTEST_RUNTIME_PCR", "0x0e")
    assert runtime_pcr() == 14


@pytest.mark.parametrize(("value", "seconds"), [("500ms", 0.5), ("5", 5.0), ("1m", 60.0),
                                                ("", 5.0)])
def test_the_heartbeat_variable_takes_the_duration_syntax(
        value: str, seconds: float, monkeypatch: pytest.MonkeyPatch) -> None:
    from attest.server.replicas import interval_from_environment

    monkeypatch.setenv("ATTEST_SERVE_HEARTBEAT", value)
    assert interval_from_environment() == seconds


@pytest.mark.parametrize("value", ["0.5", "nan", "1e3", "inf", "50ms", "2h", "-1"])
def test_the_heartbeat_variable_refuses_the_rest(value: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from attest.errors import UsageError
    from attest.server.replicas import interval_from_environment

    monkeypatch.setenv("ATTEST_SERVE_HEARTBEAT", value)
    with pytest.raises(UsageError, match="ATTEST_SERVE_HEARTBEAT: ") as caught:
        interval_from_environment()
    assert caught.value.hint == "write e.g. 250ms, 2s or 1m; from 100ms to 1h"
