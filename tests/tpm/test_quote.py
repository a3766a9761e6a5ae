"""attest quote create: files tpm2_checkquote accepts, and tpm2_quote's PCR file format."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from tpm2_pytss import TPMS_ATTEST
from tpm2_pytss.constants import TPM2_ST

from attest.evidence.pcrs import PCRSelection
from attest.evidence.tpm2tools import write_serialized_pcrs
from tests.conftest import Host


def _checkquote(host: Host, folder: Path, nonce: str,
                key: str = "ak.pub") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["tpm2_checkquote", "-u", str(folder / key), "-m", str(folder / "quote.msg"),
         "-s", str(folder / "quote.sig"), "-f", str(folder / "quote.pcrs"), "-g", "sha256",
         "-q", nonce],
        capture_output=True, text=True, check=False, timeout=60)


def test_quote_passes_tpm2_checkquote(host: Host, tmp_path: Path) -> None:
    out = tmp_path / "q"
    host.ok("pcr", "extend", "14", "--data", "measured")
    host.ok("quote", "create", "--pcrs", "sha256:0,1,14", "--nonce", "00112233",
            "--out-dir", str(out))
    for name in ("quote.msg", "quote.sig", "quote.pcrs", "ak.pub", "ak.pem", "quote.json"):
        assert (out / name).is_file(), name
    for key in ("ak.pub", "ak.pem"):  # TPM2B_PUBLIC (tss) and PEM: tpm2_checkquote takes both
        checked = _checkquote(host, out, "00112233", key)
        assert checked.returncode == 0, checked.stderr


def test_tpm2_checkquote_rejects_another_nonce(host: Host, tmp_path: Path) -> None:
    """The interop check above can fail: a wrong nonce makes tpm2_checkquote refuse."""
    out = tmp_path / "q"
    host.ok("quote", "create", "--pcrs", "sha256:0,15", "--nonce", "aa", "--out-dir", str(out))
    assert _checkquote(host, out, "bb").returncode != 0


def test_quote_json_holds_the_quoted_values(host: Host, tmp_path: Path) -> None:
    out = tmp_path / "q"
    host.ok("quote", "create", "--pcrs", "sha256:15,0", "--nonce", "0a0b", "--out-dir", str(out))
    summary = json.loads((out / "quote.json").read_text())
    assert summary["pcrs"] == "sha256:0,15"
    assert summary["nonce"] == "0a0b"
    current = json.loads(host.ok("pcr", "read", "0", "15", "--json").stdout)
    assert summary["pcr_values"] == current
    attest, _ = TPMS_ATTEST.unmarshal((out / "quote.msg").read_bytes())
    assert attest.type == TPM2_ST.ATTEST_QUOTE
    assert bytes(attest.extraData) == bytes.fromhex("0a0b")


def test_serialized_pcr_file_matches_tpm2_quote(host: Host, tmp_path: Path) -> None:
    """tpm2_quote -o against the same TPM writes the same bytes as attest."""
    selection = "sha256:0,1,2,3,4,5,6,7,8,9,15"  # more than 8: two TPML_DIGESTs
    env = {**os.environ, "TPM2TOOLS_TCTI": host.sim.tcti}
    done = subprocess.run(
        ["tpm2_quote", "-c", "0x81000002", "-l", selection, "-q", "00",
         "-m", str(tmp_path / "m"), "-s", str(tmp_path / "s"), "-o", str(tmp_path / "pcrs"),
         "-g", "sha256"], env=env, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    values = {(bank, int(i)): bytes.fromhex(v)
              for bank, pcrs in json.loads(host.ok("pcr", "read", "--json").stdout).items()
              for i, v in pcrs.items()}
    ours = write_serialized_pcrs(PCRSelection.parse(selection), values)
    assert ours == (tmp_path / "pcrs").read_bytes()


@pytest.mark.parametrize(("pcrs", "nonce", "says"), [
    ("sha256:0,x", "00", "malformed PCR index"),
    ("sha256", "00", "malformed PCR selection"),
    ("sha256:0-99", "00", "out of range"),
    ("blake:0", "00", "unknown hash"),
    ("sha256:0", "xyz", "not hex"),
    ("sha256:0", "00" * 65, "at most 64"),
])
def test_malformed_pcr_list_or_nonce_exits_2(host: Host, tmp_path: Path, pcrs: str, nonce: str,
                                             says: str) -> None:
    result = host.run("quote", "create", "--pcrs", pcrs, "--nonce", nonce,
                      "--out-dir", str(tmp_path / "q"))
    assert result.exit_code == 2
    assert says in result.stderr
    assert not (tmp_path / "q").exists()


def test_quote_without_provisioning_says_so(host: Host, tmp_path: Path) -> None:
    bare = Host(host.sim, tmp_path / "empty-home")
    result = bare.run("quote", "create", "--pcrs", "sha256:0", "--nonce", "00",
                      "--out-dir", str(tmp_path / "q"))
    assert result.exit_code == 3
    assert "attest provision" in result.stderr
