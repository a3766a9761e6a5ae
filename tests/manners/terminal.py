"""Running `attest` with stderr on a pseudo-terminal, as a person's shell would."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def attest(args: list[str], env: dict[str, str], *, tty: bool) -> Ran:
    """Run `python -m attest.cli.main ARGS`: stdout a pipe; stderr a pseudo-terminal
    when ``tty`` (what it drew read from the master side), else a pipe."""
    # The TSS2_LOG attest.tpm set in this test process is not the child's unless asked.
    inherited = {k: v for k, v in os.environ.items() if k != "TSS2_LOG"}
    full_env = {**inherited, "PYTHONPATH": str(ROOT), "TERM": "xterm", **env}
    command = [sys.executable, "-m", "attest.cli.main", *args]
    if not tty:
        done = subprocess.run(command, env=full_env, capture_output=True, timeout=120,
                              check=False)
        return Ran(done.returncode, done.stdout.decode(), done.stderr.decode())
    master, slave = pty.openpty()
    try:
        child = subprocess.Popen(command, env=full_env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=slave)
    finally:
        os.close(slave)  # the child holds it; EOF on the master once the child exits
    drawn = bytearray()
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's last writer closed it
                break
            if not chunk:
                break
            drawn += chunk
        assert child.stdout is not None
        out = child.stdout.read()
        code = child.wait(timeout=120)
    finally:
        os.close(master)
        if child.poll() is None:
            child.kill()
            child.wait()
    # The terminal's line discipline writes \n as \r\n: undo that, keep lone \r.
    return Ran(code, out.decode(), drawn.decode().replace("\r\n", "\n"))
