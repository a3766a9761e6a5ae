"""The evidence commands on real-world vectors (../shared/vectors), read in place."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from attest.cli.main import cli
from tests.conftest import VECTORS

pytestmark = pytest.mark.skipif(not VECTORS.is_dir(), reason=f"no vectors at {VECTORS}")
GCE = VECTORS / "quotes" / "gce_cos85_nonce9009"


def _gce_name() -> str:
    # The name a verifier would have recorded for the vector's AK at enrollment.
    from attest.evidence.structures import parse_public

    return parse_public((GCE / "ak_pub.tpmt_public.bin").read_bytes()).name.hex()

STM = VECTORS / "ekcerts" / "stm_rsa"


@pytest.mark.parametrize("bank", ["sha1", "sha256", "sha384"])
def test_gce_quote_verifies_from_the_cli(bank: str) -> None:
    result = CliRunner().invoke(cli, [
        "quote", "verify", "-u", str(GCE / "ak_pub.tpmt_public.bin"), "--ak-name", _gce_name(),
        "-m", str(GCE / f"quote_{bank}.tpms_attest.bin"),
        "-s", str(GCE / f"sig_{bank}.tpmt_signature.bin"), "-q", "9009", "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["signature"] == "rsassa-sha256"
    assert facts["selection"] == f"{bank}:" + ",".join(map(str, range(24)))


def test_gce_quote_with_another_nonce_is_refused() -> None:
    result = CliRunner().invoke(cli, [
        "quote", "verify", "-u", str(GCE / "ak_pub.tpmt_public.bin"), "--ak-name", _gce_name(),
        "-m", str(GCE / "quote_sha256.tpms_attest.bin"),
        "-s", str(GCE / "sig_sha256.tpmt_signature.bin"), "-q", "9010"])
    assert result.exit_code == 1
    assert "binding_mismatch" in result.stderr


def test_padded_stm_ek_certificate_from_nv_verifies() -> None:
    result = CliRunner().invoke(cli, [
        "ek", "verify", str(STM / "ek_leaf_as_read_from_nv_with_ff_padding.der"),
        "--roots", str(STM / "root_STM_RSA_RT.pem"),
        "--chain", str(STM / "intermediate_STM_RSA_05I.pem"),
        "--at", "2024-06-01T00:00:00Z"])
    assert result.exit_code == 0, result.output
    assert "padding bytes after the DER were ignored" in result.stdout


def test_stm_ek_with_another_vendors_root_is_refused() -> None:
    result = CliRunner().invoke(cli, [
        "ek", "verify", str(STM / "ek_leaf.der"),
        "--roots", str(VECTORS / "ekcerts" / "vendor_ca_only" / "INTEL_RT.pem"),
        "--at", "2024-06-01T00:00:00Z", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["reason"] == "ek_chain_invalid"
