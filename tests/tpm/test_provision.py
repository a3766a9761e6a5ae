"""attest provision: EK checked against its certificate, SRK and AK, idempotence."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import crypto
from tpm2_pytss import TPM2B_PUBLIC, TPMA_OBJECT
from tpm2_pytss.constants import TPM2_ALG, TPM2_ECC

from attest.simulator import Simulator
from attest.tpm.hierarchy import load_identity
from tests.conftest import VECTORS, Host


def test_provision_writes_the_host_identity(host: Host) -> None:
    ident = load_identity(host.home)
    assert {ek.kind for ek in ident.eks} == {"rsa", "ecc"}
    assert all(ek.certificate for ek in ident.eks)
    assert (host.home / "ak.pem").is_file() and (host.home / "ek-rsa.pem").is_file()
    ak, _ = TPM2B_PUBLIC.unmarshal(ident.ak_public)
    area = ak.publicArea
    assert area.type == TPM2_ALG.ECC
    assert area.parameters.eccDetail.curveID == TPM2_ECC.NIST_P256
    attrs = int(area.objectAttributes)
    for flag in (TPMA_OBJECT.FIXEDTPM, TPMA_OBJECT.FIXEDPARENT, TPMA_OBJECT.SENSITIVEDATAORIGIN,
                 TPMA_OBJECT.USERWITHAUTH, TPMA_OBJECT.RESTRICTED, TPMA_OBJECT.SIGN_ENCRYPT):
        assert attrs & flag, flag
    assert not attrs & TPMA_OBJECT.DECRYPT
    assert bytes(ak.get_name()) == ident.ak_name


def test_provision_twice_reuses_what_exists(host: Host) -> None:
    before = load_identity(host.home)
    again = host.ok("provision", "--json")
    steps = {s["component"]: s["result"] for s in json.loads(again.stdout)["steps"]}
    assert steps["SRK 0x81000001"] == "reused"
    assert steps["AK 0x81000002"] == "reused"
    assert load_identity(host.home) == before


def test_provision_on_a_fresh_tpm_creates_srk_and_ak(fresh_swtpm: Simulator,
                                                     tmp_path: Path) -> None:
    h = Host(fresh_swtpm, tmp_path / "home")
    out = h.ok("provision", "--json")
    steps = {s["component"]: s["result"] for s in json.loads(out.stdout)["steps"]}
    assert steps["SRK 0x81000001"] == "created"
    assert steps["AK 0x81000002"] == "created"
    assert steps["EK (EK-RSA2048)"].startswith("matches its certificate")


def test_a_home_of_another_tpm_is_refused(fresh_host: Host, host: Host) -> None:
    # host.home holds the shared simulator's identity; fresh_host's TPM has another AK.
    other = Host(fresh_host.sim, host.home)
    result = other.run("provision")
    assert result.exit_code == 1
    assert "identity of another AK" in result.stderr
    assert "--replace-identity" in result.stderr


def test_ek_certificate_chains_to_the_simulator_ca(host: Host) -> None:
    sim = host.sim
    store = crypto.X509Store()
    store.add_cert(crypto.X509.from_cryptography(
        x509.load_pem_x509_certificate(sim.root_ca_cert.read_bytes())))
    intermediate = crypto.X509.from_cryptography(
        x509.load_pem_x509_certificate(sim.intermediate_ca_cert.read_bytes()))
    for kind in ("rsa", "ecc"):
        leaf = x509.load_pem_x509_certificate((host.home / f"ek-{kind}.pem").read_bytes())
        ctx = crypto.X509StoreContext(store, crypto.X509.from_cryptography(leaf),
                                      chain=[intermediate])
        ctx.verify_certificate()  # raises X509StoreContextError when the chain is broken


def test_ek_chain_check_fails_without_the_intermediate(host: Host) -> None:
    store = crypto.X509Store()
    store.add_cert(crypto.X509.from_cryptography(
        x509.load_pem_x509_certificate(host.sim.root_ca_cert.read_bytes())))
    leaf = x509.load_pem_x509_certificate((host.home / "ek-rsa.pem").read_bytes())
    ctx = crypto.X509StoreContext(store, crypto.X509.from_cryptography(leaf))
    try:
        ctx.verify_certificate()
    except crypto.X509StoreContextError:
        return
    raise AssertionError("an EK certificate verified without its issuer")


def test_ek_public_key_is_the_certificates(host: Host) -> None:
    ident = load_identity(host.home)
    for ek in ident.eks:
        assert ek.certificate is not None
        cert = x509.load_der_x509_certificate(ek.certificate)
        public, _ = TPM2B_PUBLIC.unmarshal(ek.public)
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        assert cert.public_key().public_bytes(serialization.Encoding.DER, spki) == bytes(
            public.to_der())


def test_a_cleared_tpm_is_named_not_a_raw_code(fresh_swtpm: Simulator, tmp_path: Path) -> None:
    """A home whose TPM lost its AK (cleared, or another TPM) tells the user to provision."""
    h = Host(fresh_swtpm, tmp_path / "home")
    h.ok("provision")
    subprocess.run(["tpm2_evictcontrol", "-C", "o", "-c", "0x81000002"], check=True,
                   capture_output=True, env={**os.environ, "TPM2TOOLS_TCTI": fresh_swtpm.tcti})
    result = h.run("quote", "create", "--pcrs", "sha256:0", "--nonce", "00",
                   "--out-dir", str(tmp_path / "q"))
    assert result.exit_code == 3
    assert "no AK at 0x81000002" in result.stderr and "attest provision" in result.stderr
    # provision refuses to silently swap identities, and says how to ...
    refused = h.run("provision")
    assert refused.exit_code == 1
    assert "no longer holds the AK" in refused.stderr and "--replace-identity" in refused.stderr
    old = load_identity(h.home)
    # ... and does it when asked, keeping the old identity beside the new one.
    h.ok("provision", "--replace-identity")
    assert load_identity(h.home).ak_name != old.ak_name
    assert len(list(h.home.glob("identity.json.replaced-*"))) == 1
    h.ok("quote", "create", "--pcrs", "sha256:0", "--nonce", "00", "--out-dir",
         str(tmp_path / "q"))


def test_ek_chain_checked_against_given_roots(host: Host) -> None:
    out = host.ok("provision", "--ek-roots", str(host.sim.ca_dir), "--json")
    steps = {s["component"]: s["result"] for s in json.loads(out.stdout)["steps"]}
    assert "chain verified" in steps["EK (EK-RSA2048)"]
    assert "chain verified" in steps["EK (EK-HIGH-ECC384)"]


def test_ek_chain_to_other_roots_is_refused(host: Host) -> None:
    other = VECTORS / "ekcerts" / "vendor_ca_only" / "INTEL_RT.pem"
    if not other.is_file():
        pytest.skip(f"no vectors at {VECTORS}")
    result = host.run("provision", "--ek-roots", str(other))
    assert result.exit_code == 1
    assert "does not chain to the given roots" in result.stderr


def test_without_roots_the_chain_is_said_unchecked(host: Host) -> None:
    out = host.ok("provision", "--json")
    steps = {s["component"]: s["result"] for s in json.loads(out.stdout)["steps"]}
    assert "chain not checked" in steps["EK (EK-RSA2048)"]


def test_identity_records_the_qualified_name_quotes_carry(host: Host, tmp_path: Path) -> None:
    host.ok("quote", "create", "--pcrs", "sha256:0", "--nonce", "01", "--out-dir",
            str(tmp_path / "q"))
    from attest.evidence.structures import parse_attest

    signer = parse_attest((tmp_path / "q" / "quote.msg").read_bytes()).qualified_signer
    assert signer == load_identity(host.home).ak_qualified_name


def test_an_ek_certificate_only_openssl_reads_is_written_to_the_home(host: Host,
                                                                      tmp_path: Path) -> None:
    # ekcert accepts such a certificate through its OpenSSL fallback (Nuvoton's roots are
    # not strict DER); writing the home must not reparse it with `cryptography`.
    import dataclasses

    from attest.evidence.ekcert import parse_ek_certificate, split_certificates
    from attest.tpm.hierarchy import _write_identity

    pem = (VECTORS / "ekcerts" / "nuvoton_root_nonder" / "NUVO_2110.pem").read_bytes()
    assert parse_ek_certificate(pem).parsed_by == "openssl"
    der = split_certificates(pem)[0]
    ident = load_identity(host.home)
    odd = dataclasses.replace(ident, eks=tuple(dataclasses.replace(ek, certificate=der)
                                               for ek in ident.eks))
    home = tmp_path / "other-home"
    _write_identity(home, odd, TPM2B_PUBLIC.unmarshal(ident.ak_public)[0])
    written = (home / "ek-rsa.pem").read_bytes()
    assert split_certificates(written) == [der]
