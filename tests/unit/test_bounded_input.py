"""Files named on the command line are read up to a bound: a FIFO, a device or a file
that never ends costs a bounded read and a refusal (evidence: exit 1 with its reason) or
an exit 2 (any other input), not all the memory there is."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from attest.cli.common import MAX_INPUT_BYTES, read_input
from attest.errors import MalformedInput
from tests.conftest import Host


def _limited() -> None:
    # Far above the bound; far below what the machine has (a bug must not take it down).
    limit = 1 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_quote_verify_of_an_endless_file_is_refused() -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "attest.cli.main", "quote", "verify", "-u", "/dev/zero",
         "-m", "/dev/null", "-s", "/dev/null"],
        env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True,
        timeout=120, preexec_fn=_limited, check=False)
    assert done.returncode == 1, done.stderr  # -u is evidence: no key is that large
    assert "internal error" not in done.stderr
    assert "quote_malformed" in done.stderr
    assert f"more than {MAX_INPUT_BYTES} bytes" in done.stderr


def test_read_input_takes_a_file_up_to_its_bound(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    assert read_input(path, "file", limit=10) == b"x" * 10
    with pytest.raises(MalformedInput, match="more than 9 bytes"):
        read_input(path, "file", limit=9)


# A file attest keeps in its home, replaced by an endless device or by a FIFO nobody
# writes to, and a command that reads it: a bounded read and an error naming the file,
# never a hang or all the memory there is.
HOME_FILES = [
    ("identity.json", ["quote", "create", "--pcrs", "sha256:0", "--nonce", "00",
                       "--out-dir", "{tmp}/q"]),
    ("ak.pem", ["quote", "create", "--pcrs", "sha256:0", "--nonce", "00", "--out-dir", "{tmp}/q"]),
    ("keys/default/key.json", ["key", "sign", "--in", "/dev/null", "--out", "{tmp}/sig"]),
    ("runtime.cel", ["policy", "init", "--from-host", "--out", "{tmp}/p.yaml"]),
    ("audit/audit-log.pub", ["audit", "heads"]),
]


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
@pytest.mark.parametrize("endless", ["device", "fifo"])
@pytest.mark.parametrize(("name", "argv"), HOME_FILES, ids=[n for n, _ in HOME_FILES])
def test_a_home_file_replaced_by_an_endless_one_is_named_not_read_forever(
        host: Host, tmp_path: Path, name: str, argv: list[str], endless: str) -> None:
    host.ok("key", "create")
    host.ok("audit", "key")
    target = host.home / name
    target.unlink(missing_ok=True)  # the runtime log exists once something was measured
    if endless == "device":
        target.symlink_to("/dev/zero")
    else:
        os.mkfifo(target)
    done = subprocess.run(
        [sys.executable, "-m", "attest.cli.main", *(a.format(tmp=tmp_path) for a in argv)],
        env={**os.environ, **host.env, "ATTEST_STORE": "",
             "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        capture_output=True, text=True, timeout=60, preexec_fn=_limited, check=False)
    assert done.returncode in (1, 2, 3), done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr
    assert name.rsplit("/", 1)[-1] in done.stderr, done.stderr
