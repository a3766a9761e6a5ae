"""`attest quote verify -u`: only a key whose attributes show restriction can vouch that the
TPM made a quote. A TPMS_ATTEST forged in software and signed inside the TPM by a
non-restricted signing key (what tpm2_checkquote accepts with its PEM) is refused."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from attest.cli.main import cli
from attest.tpm.hierarchy import load_identity
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
    result = _forged(out, str(out / "signer.pub"), "--trust-key-file")
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
    name = load_identity(host.home).ak_name.hex()
    assert _verify("-u", str(out / "ak.pub"), "--ak-name", name, *files).exit_code == 0
    # The name as tpm2_createak -n writes it (a file of its bytes) works the same.
    assert _verify("-u", str(out / "ak.pub"), "--ak-name", str(out / "ak.name"),
                   *files).exit_code == 0
    # Without a name, nothing vouches for the file's attributes: refused unless trusted.
    unnamed = _verify("-u", str(out / "ak.pub"), *files)
    assert unnamed.exit_code == 1
    assert json.loads(unnamed.stdout)["reason"] == "key_attributes_invalid"
    assert _verify("-u", str(out / "ak.pub"), *files, "--trust-key-file").exit_code == 0
    refused = _verify("-u", str(out / "ak.pem"), *files)
    assert refused.exit_code == 1
    assert json.loads(refused.stdout)["reason"] == "key_attributes_invalid"
    assert _verify("-u", str(out / "ak.pem"), *files, "--trust-unrestricted-pem").exit_code == 0


def _restricted_twin(public_file: Path, out: Path) -> Path:
    """The signing key's TPM2B_PUBLIC with RESTRICTED set by hand: the key material (all a
    signature depends on) is unchanged, the attributes are the file's word."""
    import dataclasses

    from attest.evidence.ak import AK_REQUIRED
    from attest.evidence.structures import ObjectAttributes, parse_public_tpm2b

    public = parse_public_tpm2b(public_file.read_bytes())
    attributes = (public.attributes | AK_REQUIRED) & ~ObjectAttributes.DECRYPT
    edited = dataclasses.replace(public, attributes=attributes)
    path = out / "edited.pub"
    path.write_bytes(edited.marshal_tpm2b())
    return path


def test_a_forged_quote_is_refused_with_the_signing_key_relabelled_restricted(
        host: Host, tmp_path: Path) -> None:
    """A TPM2B_PUBLIC shows restriction only under a name the verifier trusts: the file's
    attributes are whatever its sender wrote. The signing key's public area with the
    RESTRICTED bit set verifies the software forgery like the PEM does."""
    out = _forge(host, tmp_path)
    edited = _restricted_twin(out / "signer.pub", out)
    result = _forged(out, str(edited))
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["reason"] == "key_attributes_invalid"
    # Under the AK's name the edited file is not the AK: refused before its signature.
    named = _forged(out, str(edited), "--ak-name", load_identity(host.home).ak_name.hex())
    assert named.exit_code == 1, named.output
    refusal = json.loads(named.stdout)
    assert refusal["reason"] == "key_attributes_invalid"
    assert "not --ak-name" in refusal["message"]


def test_policy_init_lists_only_the_ak_the_tpm_holds(host: Host, tmp_path: Path) -> None:
    """`policy init --from-host` (enrollment: policy) writes trusted_aks from the home's
    identity.json, which the host user can edit: with the signing key's public area
    relabelled restricted there (and its name), the policy trusted a key that signs any
    TPMS_ATTEST made in software, so quotes and certifications could be forged at will.
    The AK listed must be the one the TPM holds at the AK handle, and restricted."""
    host.ok("key", "create")
    out = _forge(host, tmp_path)
    edited = _restricted_twin(out / "signer.pub", out)
    from attest.evidence.structures import parse_public_tpm2b

    path = host.home / "identity.json"
    identity = json.loads(path.read_text())
    identity["ak"]["public"] = edited.read_bytes().hex()
    identity["ak"]["name"] = parse_public_tpm2b(edited.read_bytes()).name.hex()
    path.write_text(json.dumps(identity))
    result = host.run("policy", "init", "--from-host", "--out", str(tmp_path / "p.yaml"))
    assert result.exit_code != 0, result.output
    assert not (tmp_path / "p.yaml").exists()
