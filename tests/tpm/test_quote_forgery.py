"""`attest quote verify -u`: only a key whose attributes show restriction can vouch that the
TPM made a quote. A TPMS_ATTEST forged in software and signed inside the TPM by a
non-restricted signing key (what tpm2_checkquote accepts with its PEM) is refused."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from attest.cli.main import cli
from tests.conftest import Host


def _verify(*args: str) -> Result:
    return CliRunner().invoke(cli, ["quote", "verify", *args, "--json"])


def _forge(host: Host, tmp_path: Path) -> Path:
    """A real quote with nonce aa, its extraData rewritten to bb in software and signed by
    the host's non-restricted key `signer` inside the TPM."""
    host.ok("key", "create", "--name", "signer")
    out = tmp_path / "q"
    host.ok("quote", "create", "--pcrs", "sha256:0,7", "--nonce", "aa", "--out-dir", str(out))
    message = bytearray((out / "quote.msg").read_bytes())
    signer_size = int.from_bytes(message[6:8], "big")
    extra = 8 + signer_size  # TPMS_ATTEST: magic, type, qualifiedSigner, extraData
    assert message[extra:extra + 3] == b"\x00\x01\xaa"
    message[extra + 2] = 0xBB
    (out / "forged.msg").write_bytes(bytes(message))
    host.ok("key", "sign", "--name", "signer", "--in", str(out / "forged.msg"),
            "--out", str(out / "forged.sig"), "--format", "tss")
    record = json.loads((host.home / "keys" / "signer" / "key.json").read_text())
    (out / "signer.pub").write_bytes(bytes.fromhex(record["public"]))
    return out


def _forged(out: Path, key: str, *extra: str) -> Result:
    return _verify("-u", str(key), "-m", str(out / "forged.msg"), "-s", str(out / "forged.sig"),
                   "-q", "bb", *extra)


def test_a_forged_quote_is_refused_with_the_signing_key_as_tpm2b_public(
        host: Host, tmp_path: Path) -> None:
    out = _forge(host, tmp_path)
    result = _forged(out, str(out / "signer.pub"))
    assert result.exit_code == 1, result.output
    refusal = json.loads(result.stdout)
    assert refusal["reason"] == "key_attributes_invalid"
    assert "RESTRICTED" in refusal["message"]


def test_a_forged_quote_is_refused_with_the_signing_key_as_bare_pem(
        host: Host, tmp_path: Path) -> None:
    out = _forge(host, tmp_path)
    pem = str(host.home / "keys" / "signer" / "key.pem")
    result = _forged(out, pem)
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["reason"] == "key_attributes_invalid"
    # The flag says what it costs: with it, the forgery passes, as with tpm2_checkquote.
    assert _forged(out, pem, "--trust-unrestricted-pem").exit_code == 0


def test_a_genuine_quote_passes_with_ak_pub_and_needs_the_flag_with_ak_pem(
        host: Host, tmp_path: Path) -> None:
    out = tmp_path / "q"
    host.ok("quote", "create", "--pcrs", "sha256:0,7", "--nonce", "aa", "--out-dir", str(out))
    files = ["-m", str(out / "quote.msg"), "-s", str(out / "quote.sig"),
             "-f", str(out / "quote.pcrs"), "-q", "aa"]
    assert _verify("-u", str(out / "ak.pub"), *files).exit_code == 0
    refused = _verify("-u", str(out / "ak.pem"), *files)
    assert refused.exit_code == 1
    assert json.loads(refused.stdout)["reason"] == "key_attributes_invalid"
    assert _verify("-u", str(out / "ak.pem"), *files, "--trust-unrestricted-pem").exit_code == 0
