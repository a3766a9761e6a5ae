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
