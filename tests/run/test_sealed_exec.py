"""attest run execs what it measured, in an environment without code-injecting variables.

Each test is an attack on a real swtpm host: the file is swapped or rewritten after
it was measured and authorized, or the caller's environment carries LD_PRELOAD or
BASH_ENV. The command must run the measured bytes, without the injected code.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from attest.eventlog.cel import parse_cel
from attest.host.runtime.subjects import argv_digests
from tests.conftest import Host

# Runs `attest run` in a child whose run_local, once the artifact is accepted, lets
# ATTACK change the file at TOOL: deterministically between measurement and exec.
_ATTACKER = """
import os, shutil, sys
import attest.cli.run as run_command
from attest.cli.main import main

tool, replacement, how = sys.argv[1:4]
accepted = run_command.run_local

def run_local(*args, **kwargs):
    done = accepted(*args, **kwargs)
    if how == "swap":  # rename another file over the path (needs only the folder)
        os.replace(replacement, tool)
    else:  # rewrite the same inode in place
        with open(tool, "r+b") as out:
            out.truncate(0)
            out.write(open(replacement, "rb").read())
    return done

run_command.run_local = run_local
sys.argv = ["attest", *sys.argv[4:]]
main()
"""


def _attest(host: Host, *args: str, env: dict[str, str] | None = None,
            prelude: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, *(prelude or ["-m", "attest.cli.main"]), *args]
    return subprocess.run(command, env={**os.environ, **host.env, **(env or {})},
                          capture_output=True, text=True, timeout=120, check=False)


def _approved(host: Host, tmp_path: Path, *commands: list[str]) -> Path:
    """Measure ``commands`` and write the policy that trusts the host as it is then."""
    host.ok("key", "create")
    for command in commands:
        host.ok("measure", "command", "--", *command)
    policy = tmp_path / "policy.yaml"
    host.ok("policy", "init", "--from-host", "--out", str(policy))
    return policy


@pytest.mark.parametrize("how", ["swap", "rewrite"])
def test_a_script_changed_after_authorization_runs_as_measured(fresh_host: Host, tmp_path: Path,
                                                               how: str) -> None:
    marker = tmp_path / "marker"
    tool = tmp_path / "tool.sh"
    tool.write_text(f"#!/bin/sh\necho measured > {marker}\n")
    tool.chmod(0o755)
    evil = tmp_path / "evil.sh"
    evil.write_text(f"#!/bin/sh\necho unmeasured > {marker}\n")
    evil.chmod(0o755)
    unmeasured = evil.read_bytes()
    policy = _approved(fresh_host, tmp_path, [str(tool)])
    done = _attest(fresh_host, str(tool), str(evil), how, "run", "--policy", str(policy), "--",
                   str(tool), prelude=["-c", _ATTACKER])
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "measured\n"
    assert tool.read_bytes() == unmeasured  # the attack did happen


@pytest.mark.parametrize("how", ["swap", "rewrite"])
def test_an_elf_changed_after_authorization_runs_as_measured(fresh_host: Host, tmp_path: Path,
                                                             how: str) -> None:
    tool = tmp_path / "tool"
    shutil.copy(shutil.which("echo") or "/bin/echo", tool)
    evil = tmp_path / "evil"
    shutil.copy(shutil.which("false") or "/bin/false", evil)
    unmeasured = evil.read_bytes()
    policy = _approved(fresh_host, tmp_path, [str(tool)])
    done = _attest(fresh_host, str(tool), str(evil), how, "run", "--policy", str(policy), "--",
                   str(tool), "measured", prelude=["-c", _ATTACKER])
    assert (done.returncode, done.stdout) == (0, "measured\n"), done.stderr
    assert tool.read_bytes() == unmeasured  # the attack did happen


def test_bash_env_does_not_run_inside_the_measured_command(fresh_host: Host,
                                                           tmp_path: Path) -> None:
    marker = tmp_path / "injected"
    startup = tmp_path / "startup.sh"
    startup.write_text(f"touch {marker}\n")
    policy = _approved(fresh_host, tmp_path, ["bash", "-c", "true"])
    injected = {"BASH_ENV": str(startup)}
    # The attack is real: bash runs the file for a non-interactive command.
    subprocess.run(["bash", "-c", "true"], env={**os.environ, **injected}, check=True)
    assert marker.exists()
    marker.unlink()
    done = _attest(fresh_host, "run", "--policy", str(policy), "--", "bash", "-c",
                   "echo ${BASH_ENV:-unset}", env=injected)
    assert (done.returncode, done.stdout) == (0, "unset\n"), done.stderr
    assert not marker.exists()


@pytest.fixture
def preload_library(tmp_path: Path) -> tuple[Path, Path]:
    """A real LD_PRELOAD library whose constructor notes, in a marker file, each program
    it was loaded into (attest itself is one: only the command matters here)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build an LD_PRELOAD library")
    marker = tmp_path / "preloaded"
    source = tmp_path / "inject.c"
    source.write_text("#define _GNU_SOURCE\n#include <errno.h>\n#include <stdio.h>\n"
                      "__attribute__((constructor)) static void inject(void) {\n"
                      f"    FILE *f = fopen(\"{marker}\", \"a\");\n"
                      "    if (f) { fprintf(f, \"%s\\n\", program_invocation_name); fclose(f); }\n"
                      "}\n")
    library = tmp_path / "inject.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(library), str(source)], check=True,
                   capture_output=True, timeout=60)
    return library, marker


def test_ld_preload_does_not_load_into_the_measured_command(
        fresh_host: Host, tmp_path: Path, preload_library: tuple[Path, Path]) -> None:
    library, marker = preload_library
    policy = _approved(fresh_host, tmp_path, ["sh", "-c", "true"])
    injected = {"LD_PRELOAD": str(library), "LD_LIBRARY_PATH": str(tmp_path)}
    subprocess.run(["sh", "-c", "true"], env={**os.environ, **injected}, check=True)
    # The library does load when the variable reaches a program.
    assert marker.read_text().splitlines() == ["sh"]
    marker.unlink()
    done = _attest(fresh_host, "run", "--policy", str(policy), "--", "sh", "-c",
                   "echo ${LD_PRELOAD:-unset} ${LD_LIBRARY_PATH:-unset}", env=injected)
    assert (done.returncode, done.stdout) == (0, "unset unset\n"), done.stderr
    assert "sh" not in marker.read_text().splitlines()


def test_other_variables_pass_through(fresh_host: Host, tmp_path: Path) -> None:
    policy = _approved(fresh_host, tmp_path, ["sh", "-c", "true"])
    done = _attest(fresh_host, "run", "--policy", str(policy), "--", "sh", "-c",
                   "echo $ATTEST_TEST_KEEP", env={"ATTEST_TEST_KEEP": "kept"})
    assert (done.returncode, done.stdout) == (0, "kept\n"), done.stderr


def test_the_run_record_binds_the_digest_that_ran_and_no_argument(fresh_host: Host,
                                                                  tmp_path: Path) -> None:
    """The log names the sealed executable's digest and the argv's digest, not the argv."""
    policy = _approved(fresh_host, tmp_path, ["sh", "-c", "true"])
    secret = "--password=" + "k" * 20
    done = _attest(fresh_host, "run", "--policy", str(policy), "--", "sh", "-c", "true",
                   secret)
    assert done.returncode == 0, done.stderr
    log = (fresh_host.home / "runtime.cel").read_bytes()
    assert secret.encode() not in log
    record = parse_cel(log).records[-1].content
    assert record["argv_digest"] == argv_digests(["sh", "-c", "true", secret], ["sha256"])
    sh = Path(shutil.which("sh") or "/bin/sh").resolve()
    assert record["digest"]["sha256"] == hashlib.sha256(sh.read_bytes()).hexdigest()


def test_tcl_library_does_not_run_inside_the_measured_command(fresh_host: Host,
                                                              tmp_path: Path) -> None:
    # Red team after issue 10 item 5: TCLLIBPATH was removed, TCL_LIBRARY passed through,
    # and tclsh sources $TCL_LIBRARY/init.tcl before the measured script runs.
    tclsh = shutil.which("tclsh")
    if tclsh is None:
        pytest.skip("no tclsh")
    marker = tmp_path / "injected"
    library = tmp_path / "tcl"
    library.mkdir()
    (library / "init.tcl").write_text(f'close [open "{marker}" w]\nexit 0\n')
    script = tmp_path / "tool.tcl"
    script.write_text(f"#!{tclsh}\nputs measured\n")
    script.chmod(0o755)
    policy = _approved(fresh_host, tmp_path, [str(script)])
    injected = {"TCL_LIBRARY": str(library)}
    # The attack is real: tclsh runs init.tcl from there, and here it exits before the script.
    attack = subprocess.run([str(script)], env={**os.environ, **injected}, capture_output=True,
                            text=True, check=False)
    assert marker.exists() and attack.stdout == ""
    marker.unlink()
    done = _attest(fresh_host, "run", "--policy", str(policy), "--", str(script), env=injected)
    assert (done.returncode, done.stdout) == (0, "measured\n"), done.stderr
    assert not marker.exists()


def test_a_setgid_executable_runs_with_its_privileges(fresh_host: Host, tmp_path: Path) -> None:
    # Red team after issue 10 item 5: a memfd copy drops the set-user-ID and set-group-ID
    # bits and file capabilities, so `attest run -- sudo ...` (or passwd, ping) ran without
    # the privileges it exists for. A root-owned file only root may write is exec'd from
    # the descriptor that was hashed. (A setgid `id` owned by root shows the egid.)
    if os.geteuid() != 0:
        pytest.skip("making a root-owned setgid file needs root")
    import grp

    group = next((g for g in grp.getgrall() if g.gr_gid != os.getegid()), None)
    if group is None:
        pytest.skip("no other group")
    tool = tmp_path / "id"
    shutil.copy(shutil.which("id") or "/usr/bin/id", tool)
    os.chown(tool, 0, group.gr_gid)
    tool.chmod(0o2755)
    direct = subprocess.run([str(tool), "-g"], capture_output=True, text=True, check=True)
    if direct.stdout.strip() != str(group.gr_gid):
        pytest.skip("setgid is ignored here (a nosuid mount)")
    policy = _approved(fresh_host, tmp_path, [str(tool)])
    done = _attest(fresh_host, "run", "--policy", str(policy), "--", str(tool), "-g")
    assert (done.returncode, done.stdout.strip()) == (0, str(group.gr_gid)), done.stderr


def test_a_setgid_executable_others_may_write_is_still_copied(fresh_host: Host,
                                                               tmp_path: Path) -> None:
    # Whoever may write it could change it between the hash and the exec: sealed copy.
    if os.geteuid() != 0:
        pytest.skip("making a root-owned setgid file needs root")
    from attest.host.runtime.executable import seal_executable

    tool = tmp_path / "id"
    shutil.copy(shutil.which("id") or "/usr/bin/id", tool)
    os.chown(tool, 0, 0)
    tool.chmod(0o2777)
    sealed = seal_executable(str(tool), ["sha256"])
    try:
        assert os.readlink(f"/proc/self/fd/{sealed.fd}").startswith("/memfd:")
    finally:
        sealed.close()
    tool.chmod(0o2755)
    direct = seal_executable(str(tool), ["sha256"])
    try:
        assert os.readlink(f"/proc/self/fd/{direct.fd}") == str(tool)
        assert direct.digests == sealed.digests
    finally:
        direct.close()


def test_a_setgid_executable_on_a_nosuid_mount_is_copied(fresh_host: Host, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # A user's FUSE mount is nosuid, reports any owner and mode, and may serve other bytes
    # to the exec than to the hash: the kernel grants nothing there, so copy and seal.
    if os.geteuid() != 0:
        pytest.skip("making a root-owned setgid file needs root")
    from attest.host.runtime import executable

    tool = tmp_path / "id"
    shutil.copy(shutil.which("id") or "/usr/bin/id", tool)
    os.chown(tool, 0, 0)
    tool.chmod(0o2755)
    real = os.fstatvfs

    class _NoSuid:
        def __init__(self, fd: int) -> None:
            self.f_flag = real(fd).f_flag | os.ST_NOSUID

    monkeypatch.setattr(executable.os, "fstatvfs", _NoSuid)
    sealed = executable.seal_executable(str(tool), ["sha256"])
    try:
        assert os.readlink(f"/proc/self/fd/{sealed.fd}").startswith("/memfd:")
    finally:
        sealed.close()
