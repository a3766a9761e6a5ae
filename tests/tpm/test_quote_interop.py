"""Interop both ways: tpm2_quote -> attest quote verify, attest quote create -> tpm2_checkquote,
with both PCR file forms; attest ek verify on the simulator's EK; policy pcr vs a trial session."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from attest.cli.main import cli
from attest.tpm.hierarchy import load_identity
from tests.conftest import Host

NONCE = "5eed"


def _tools(host: Host, *args: str) -> None:
    env = {**os.environ, "TPM2TOOLS_TCTI": host.sim.tcti}
    done = subprocess.run(list(args), env=env, capture_output=True, text=True, check=False,
                          timeout=60)
    assert done.returncode == 0, done.stderr


def _verify(*args: str) -> Result:
    public = Path(args[1])
    if args[:1] == ("-u",) and public.name == "ak.pub":
        # The AK's name as the verifier knows it (enrollment): it vouches for ak.pub.
        # (quote create's out-dir holds ak.name, the host's copy of it.)
        named = public.parent / "ak.name"
        name = named.read_bytes().hex() if named.exists() else \
            load_identity(public.parent).ak_name.hex()
        args = (*args, "--ak-name", name)
    return CliRunner().invoke(cli, ["quote", "verify", *args])


@pytest.fixture
def tools_quote(host: Host, tmp_path: Path) -> Path:
    """A quote made by tpm2_quote with attest's AK, plus both PCR file forms."""
    host.ok("pcr", "extend", "14", "--data", "interop")
    _tools(host, "tpm2_quote", "-c", "0x81000002", "-l", "sha256:0,1,14", "-q", NONCE,
           "-m", str(tmp_path / "msg"), "-s", str(tmp_path / "sig"),
           "-o", str(tmp_path / "pcrs.serialized"), "-g", "sha256")
    _tools(host, "tpm2_pcrread", "sha256:0,1,14", "-o", str(tmp_path / "pcrs.values"))
    return tmp_path


def test_tpm2_quote_passes_attest_with_the_serialized_pcr_file(host: Host,
                                                              tools_quote: Path) -> None:
    t = tools_quote
    result = _verify("-u", str(host.home / "ak.pub"), "-m", str(t / "msg"), "-s", str(t / "sig"),
                     "-f", str(t / "pcrs.serialized"), "-g", "sha256", "-q", NONCE, "--json")
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["valid"] and facts["pcr_values_checked"]
    current = json.loads(host.ok("pcr", "read", "0", "1", "14", "--json").stdout)
    assert facts["pcrs"] == current


def test_tpm2_quote_passes_attest_with_bare_values_and_a_list(host: Host,
                                                             tools_quote: Path) -> None:
    t = tools_quote
    result = _verify("-u", str(host.home / "ak.pub"), "-m", str(t / "msg"), "-s", str(t / "sig"),
                     "-f", str(t / "pcrs.values"), "-l", "sha256:0,1,14", "-F", "values",
                     "-g", "sha256", "-q", NONCE)
    assert result.exit_code == 0, result.output
    assert "valid: quote of sha256:0,1,14" in result.stdout


def test_tampered_pcr_value_is_refused_with_its_reason(host: Host, tools_quote: Path) -> None:
    t = tools_quote
    values = bytearray((t / "pcrs.values").read_bytes())
    values[-1] ^= 1
    (t / "bad.values").write_bytes(bytes(values))
    result = _verify("-u", str(host.home / "ak.pub"), "-m", str(t / "msg"), "-s", str(t / "sig"),
                     "-f", str(t / "bad.values"), "-l", "sha256:0,1,14", "-q", NONCE)
    assert result.exit_code == 1
    assert "pcr_digest_mismatch" in result.stderr


@pytest.mark.parametrize(("flag", "value", "reason"), [
    ("-q", "beef", "binding_mismatch"),
    ("-g", "sha384", "alg_not_allowed"),
])
def test_wrong_nonce_or_hash_is_refused(host: Host, tools_quote: Path, flag: str, value: str,
                                        reason: str) -> None:
    t = tools_quote
    args = {"-q": NONCE, "-g": "sha256"} | {flag: value}
    result = _verify("-u", str(host.home / "ak.pub"), "-m", str(t / "msg"), "-s", str(t / "sig"),
                     "-f", str(t / "pcrs.serialized"), *[x for kv in args.items() for x in kv],
                     "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["reason"] == reason


def test_qualification_from_a_file(host: Host, tools_quote: Path) -> None:
    t = tools_quote
    (t / "nonce.bin").write_bytes(bytes.fromhex(NONCE))
    result = _verify("-u", str(host.home / "ak.pub"), "-m", str(t / "msg"), "-s", str(t / "sig"),
                     "-q", str(t / "nonce.bin"))
    assert result.exit_code == 0, result.output


def test_attest_quote_passes_attest_verify(host: Host, tmp_path: Path) -> None:
    out = tmp_path / "q"
    host.ok("quote", "create", "--pcrs", "sha256:0,7,15", "--nonce", NONCE, "--out-dir", str(out))
    result = _verify("-u", str(out / "ak.pub"), "-m", str(out / "quote.msg"),
                     "-s", str(out / "quote.sig"), "-f", str(out / "quote.pcrs"), "-q", NONCE)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("broken", ["public", "message", "signature", "pcrs"])
def test_input_that_is_no_tpm_structure_is_quote_malformed(host: Host, tools_quote: Path,
                                                           broken: str) -> None:
    t = tools_quote
    files = {"public": host.home / "ak.pub", "message": t / "msg", "signature": t / "sig",
             "pcrs": t / "pcrs.serialized"}
    garbage = t / "garbage"
    garbage.write_bytes(b"\x00\x01not a TPM structure")
    files[broken] = garbage
    result = _verify("-u", str(files["public"]), "-m", str(files["message"]),
                     "-s", str(files["signature"]), "-f", str(files["pcrs"]), "-q", NONCE)
    # Evidence that does not parse is refused with its reason, not bad usage.
    assert result.exit_code == 1, result.output
    assert "quote_malformed" in result.stderr
    assert "Traceback" not in result.output


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = _verify("-u", str(tmp_path / "nope.pem"), "-m", str(tmp_path / "m"),
                     "-s", str(tmp_path / "s"))
    assert result.exit_code == 2
    assert "cannot read" in result.stderr


def test_ek_verify_on_the_simulator_ek(host: Host) -> None:
    sim = host.sim
    ok = CliRunner().invoke(cli, ["ek", "verify", str(host.home / "ek-rsa.pem"),
                                  "--roots", str(sim.root_ca_cert),
                                  "--chain", str(sim.intermediate_ca_cert), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["valid"] is True
    # The CA folder holds root and intermediate: both become trust anchors.
    folder = CliRunner().invoke(cli, ["ek", "verify", str(host.home / "ek-ecc.pem"),
                                      "--roots", str(sim.ca_dir)])
    assert folder.exit_code == 0, folder.output
    missing = CliRunner().invoke(cli, ["ek", "verify", str(host.home / "ek-rsa.pem"),
                                       "--roots", str(sim.root_ca_cert), "--json"])
    assert missing.exit_code == 1
    assert json.loads(missing.stdout)["reason"] == "ek_chain_invalid"


def test_ek_verify_before_issuance_is_refused(host: Host) -> None:
    sim = host.sim
    result = CliRunner().invoke(cli, ["ek", "verify", str(host.home / "ek-rsa.pem"),
                                      "--roots", str(sim.ca_dir), "--at", "2000-01-01T00:00:00Z"])
    assert result.exit_code == 1
    assert "ek_chain_invalid" in result.stderr
    bad_time = CliRunner().invoke(cli, ["ek", "verify", str(host.home / "ek-rsa.pem"),
                                        "--roots", str(sim.ca_dir), "--at", "next tuesday"])
    assert bad_time.exit_code == 2


def test_policy_pcr_matches_the_key_policy(host: Host) -> None:
    host.ok("key", "create", "--name", "pp", "--pcrs", "sha256:0,7")
    record = json.loads((host.home / "keys" / "pp" / "key.json").read_text())
    values = json.loads(host.ok("pcr", "read", "0", "7", "--json").stdout)["sha256"]
    result = CliRunner().invoke(cli, ["policy", "pcr", "--bank", "sha256",
                                      "--pcr", f"0={values['0']}", "--pcr", f"7={values['7']}",
                                      "--auth-value"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == record["policy_digest"]


@pytest.mark.parametrize("spec", ["16", "16=zz", "16=00", "99=" + "00" * 32])
def test_policy_pcr_bad_input_exits_2(spec: str) -> None:
    result = CliRunner().invoke(cli, ["policy", "pcr", "--pcr", spec])
    assert result.exit_code == 2


def test_bare_values_file_of_all_24_pcrs(host: Host, tmp_path: Path) -> None:
    """tpm2_checkquote 5.4 fails on this correct input ("Failed to hash PCR values")."""
    all24 = "sha256:" + ",".join(map(str, range(24)))
    _tools(host, "tpm2_quote", "-c", "0x81000002", "-l", all24, "-q", NONCE,
           "-m", str(tmp_path / "msg"), "-s", str(tmp_path / "sig"), "-g", "sha256")
    _tools(host, "tpm2_pcrread", all24, "-o", str(tmp_path / "values"))
    result = _verify("-u", str(host.home / "ak.pub"), "-m", str(tmp_path / "msg"),
                     "-s", str(tmp_path / "sig"), "-f", str(tmp_path / "values"),
                     "-l", "sha256:0-23", "-q", NONCE, "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["pcrs"]["sha256"]) == 24
