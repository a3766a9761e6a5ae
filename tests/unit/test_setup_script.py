"""The set-up scripts' manners: colors only for a person at a terminal without NO_COLOR,
and a user who is not root and has no sudo told what to install and how.

The shell functions of scripts/_setup.sh (and quickstart's transcript helpers) run in
bash as the scripts run them, with stdout and stderr a pipe or a pseudo-terminal.
"""

from __future__ import annotations

import os
import pty
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "scripts" / "_setup.sh"
QUICKSTART = ROOT / "scripts" / "quickstart"
ESC = "\x1b"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")


def _quickstart_helpers() -> str:
    """quickstart's step/run/shown definitions (the script itself installs and runs the
    whole story, so its helpers are run alone)."""
    text = QUICKSTART.read_text()
    found = [line for line in text.splitlines()
             if re.match(r"(step|run|shown)\(\) \{.*\}$", line)]
    assert len(found) == 3, found
    return "\n".join(found)


def _bash(script: str, *, tty: bool, env: dict[str, str]) -> tuple[str, str]:
    """Run ``script`` after sourcing _setup.sh; stdout and stderr a pseudo-terminal each
    when ``tty``, else pipes. Returns (stdout, stderr)."""
    full = f"source {SETUP}\n{_quickstart_helpers()}\n{script}\n"
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/"), **env}
    if not tty:
        done = subprocess.run(["bash", "-c", full], env=base, cwd=ROOT, capture_output=True,
                              text=True, timeout=30, check=False)
        return done.stdout, done.stderr
    outputs = []
    fds = [pty.openpty(), pty.openpty()]
    try:
        proc = subprocess.Popen(["bash", "-c", full], env=base, cwd=ROOT,
                                stdin=subprocess.DEVNULL, stdout=fds[0][1], stderr=fds[1][1])
        for _, follower in fds:
            os.close(follower)
        proc.wait(timeout=30)
        for leader, _ in fds:
            chunks = []
            while True:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # EIO: the terminal's other end is closed and drained
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            outputs.append(b"".join(chunks).decode())
    finally:
        for leader, _ in fds:
            os.close(leader)
    return outputs[0], outputs[1]


SAY_AND_SHOW = "say hello; step 'a step'; run true; shown '$ attest %s' x"


def test_colors_on_a_terminal() -> None:
    out, err = _bash(SAY_AND_SHOW, tty=True, env={"TERM": "xterm"})
    assert f"{ESC}[1m==> hello" in err
    assert f"{ESC}[1;34m## a step" in out and f"{ESC}[2m$ true" in out
    assert f"{ESC}[2m$ attest x{ESC}[0m" in out


def test_no_colors_in_a_pipe() -> None:
    out, err = _bash(SAY_AND_SHOW, tty=False, env={"TERM": "xterm"})
    assert ESC not in out and ESC not in err
    assert "==> hello" in err and "## a step" in out and "$ true" in out
    assert "$ attest x" in out


@pytest.mark.parametrize("value", ["1", "0", "false", "yes"])
def test_no_color_set_to_anything_turns_colors_off_on_a_terminal(value: str) -> None:
    """no-color.org: any non-empty value, whatever it says."""
    out, err = _bash(SAY_AND_SHOW, tty=True, env={"TERM": "xterm", "NO_COLOR": value})
    assert ESC not in out and ESC not in err
    assert "==> hello" in err and "## a step" in out


def test_an_empty_no_color_keeps_colors() -> None:
    _, err = _bash("say hello", tty=True, env={"TERM": "xterm", "NO_COLOR": ""})
    assert f"{ESC}[1m==> hello" in err


def test_a_dumb_terminal_gets_no_colors() -> None:
    out, err = _bash(SAY_AND_SHOW, tty=True, env={"TERM": "dumb"})
    assert ESC not in out and ESC not in err


def test_each_stream_is_judged_alone() -> None:
    """stdout piped into a file, stderr still the terminal: say keeps its bold."""
    script = "exec 1>/dev/null; set_colors; say hello; echo \"[$DIM]\" >&2"
    _, err = _bash(script, tty=True, env={"TERM": "xterm"})
    assert f"{ESC}[1m==> hello" in err and "[]" in err


def test_no_script_writes_an_escape_sequence_of_its_own() -> None:
    for path in (QUICKSTART, ROOT / "scripts" / "test"):
        assert "\\033" not in path.read_text() and ESC not in path.read_text(), path


# -- a user who is not root and has no sudo -------------------------------------------------
def _without_sudo(tmp_path: Path) -> dict[str, str]:
    """PATH with python3 and bash only: no sudo, no apt-get to run by mistake."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("python3", "bash"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    return {"PATH": str(bin_dir)}


# The checks ensure_debs makes, answered as on a host missing two packages; id says a
# user; apt-get records that it was called (it must not be).
_STUBS = """
id() { echo 1000; }
dpkg-query() { case "$*" in *swtpm-tools*|*tpm2-tools*) echo 'unknown ok not-installed';;
               *) echo 'install ok installed';; esac; }
apt-get() { echo "APT-GET RAN: $*"; }
"""


def test_a_user_without_sudo_is_told_the_packages_and_the_root_command(
        tmp_path: Path) -> None:
    out, err = _bash(_STUBS + "ensure_debs; echo \"status=$?\"", tty=False,
                     env=_without_sudo(tmp_path))
    assert "status=1" in out and "APT-GET RAN" not in out + err
    assert "error: missing Debian packages: swtpm-tools tpm2-tools" in err
    assert "not root and has no sudo" in err
    assert ("    apt-get update && apt-get install -y --no-install-recommends "
            "swtpm-tools tpm2-tools") in err


def test_a_forced_update_without_sudo_names_the_update(tmp_path: Path) -> None:
    stubs = _STUBS.replace("*swtpm-tools*|*tpm2-tools*", "*no-such-package*")
    out, err = _bash(stubs + "ATTEST_FORCE_APT_UPDATE=1 ensure_debs; echo \"status=$?\"",
                     tty=False, env=_without_sudo(tmp_path))
    assert "status=1" in out and "APT-GET RAN" not in out + err
    assert "    apt-get update\n" in err


def test_root_installs_without_a_hint(tmp_path: Path) -> None:
    stubs = _STUBS.replace("echo 1000", "echo 0")
    out, err = _bash(stubs + "ensure_debs; echo \"status=$?\"", tty=False,
                     env=_without_sudo(tmp_path))
    assert "status=0" in out and "hint:" not in err
    assert "APT-GET RAN: install -y -q --no-install-recommends swtpm-tools tpm2-tools" in out


def test_nothing_missing_needs_no_root(tmp_path: Path) -> None:
    stubs = _STUBS.replace("*swtpm-tools*|*tpm2-tools*", "*no-such-package*")
    out, err = _bash(stubs + "ensure_debs; echo \"status=$?\"", tty=False,
                     env=_without_sudo(tmp_path))
    assert "status=0" in out and err == "" and "APT-GET RAN" not in out
