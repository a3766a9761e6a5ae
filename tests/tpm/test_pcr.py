"""attest pcr read / extend against a real swtpm."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.conftest import Host


def _pcr(host: Host, index: int) -> bytes:
    out = host.ok("pcr", "read", str(index), "--json")
    return bytes.fromhex(json.loads(out.stdout)["sha256"][str(index)])


def test_read_all_pcrs_as_json(host: Host) -> None:
    values = json.loads(host.ok("pcr", "read", "--json").stdout)["sha256"]
    assert sorted(map(int, values)) == list(range(24))
    assert all(len(bytes.fromhex(v)) == 32 for v in values.values())


def test_read_human_output_lists_the_bank(host: Host) -> None:
    out = host.ok("pcr", "read", "0", "15").stdout
    assert out.splitlines()[0] == "sha256:"
    assert out.splitlines()[1].strip().startswith("0 : 0x")


def test_extend_data_follows_the_extend_rule(host: Host) -> None:
    before = _pcr(host, 14)
    host.ok("pcr", "extend", "14", "--data", "hello")
    expected = hashlib.sha256(before + hashlib.sha256(b"hello").digest()).digest()
    assert _pcr(host, 14) == expected


def test_extend_digest(host: Host) -> None:
    before = _pcr(host, 13)
    value = bytes(range(32))
    host.ok("pcr", "extend", "13", "--digest", f"sha256:{value.hex()}")
    assert _pcr(host, 13) == hashlib.sha256(before + value).digest()


def test_extend_resettable_pcr_warns(host: Host) -> None:
    result = host.ok("pcr", "extend", "16", "--data", "x")
    assert "can be reset" in result.stderr


@pytest.mark.parametrize("args", [
    ["pcr", "extend", "14"],
    ["pcr", "extend", "14", "--data", "a", "--digest", "sha256:00"],
    ["pcr", "extend", "24", "--data", "a"],
    ["pcr", "extend", "14", "--digest", "sha256:zz"],
    ["pcr", "extend", "14", "--digest", "sha256:0011"],
    ["pcr", "extend", "14", "--digest", "md5:" + "00" * 16],
    ["pcr", "extend", "14", "--digest", "00" * 32],
    ["pcr", "read", "--bank", "sha3"],
    ["pcr", "read", "99"],
])
def test_bad_input_exits_2(host: Host, args: list[str]) -> None:
    result = host.run(*args)
    assert result.exit_code == 2, result.output
    assert "error" in result.output.lower()


def test_read_takes_the_selection_every_pcrs_option_takes(host: Host) -> None:
    """`attest pcr read sha256:0-7,15` as `--pcrs sha256:0-7,15` elsewhere; a bare list
    is in --bank; the values are the TPM's, whichever way the PCRs are named."""
    named = json.loads(host.ok("pcr", "read", "sha256:0-7,15", "--json").stdout)
    listed = json.loads(host.ok("pcr", "read", "0-7", "15", "--json").stdout)
    assert named == listed
    assert sorted(map(int, named["sha256"])) == [*range(8), 15]
    assert named["sha256"]["15"] == _pcr(host, 15).hex()
    human = host.ok("pcr", "read", "sha256:14-15").stdout.splitlines()
    assert human[0] == "sha256:" and len(human) == 3


def test_read_in_a_bank_the_tpm_lacks_says_so(host: Host) -> None:
    result = host.run("pcr", "read", "sha256:0+sha512:0")
    assert result.exit_code == 2, result.output
    assert "the TPM has no PCR" in result.output


def test_extend_takes_an_index_as_a_selection_writes_it(host: Host) -> None:
    before = _pcr(host, 12)
    host.ok("pcr", "extend", "0x0c", "--data", "hello")
    assert _pcr(host, 12) == hashlib.sha256(before + hashlib.sha256(b"hello").digest()).digest()
