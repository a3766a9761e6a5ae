"""PCR-bound signing keys: create, sign in a policy session, certify, authority approvals."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from tpm2_pytss import TPM2B_PUBLIC, TPMA_OBJECT, TPMS_ATTEST
from tpm2_pytss.constants import TPM2_ST

from attest.evidence import tpmpolicy
from attest.evidence.pcrs import PCRSelection
from attest.simulator import Simulator
from tests.conftest import Host


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "payload.bin"
    path.write_bytes(b"release-1.2.3.tar.gz contents")
    return path


def _verify(pem: bytes, signature: bytes, data: bytes) -> None:
    key = serialization.load_pem_public_key(pem)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(signature, data, ec.ECDSA(hashes.SHA256()))


def _pcrs(host: Host, selection: str) -> dict[tuple[str, int], bytes]:
    sel = PCRSelection.parse(selection)
    bank = sel.banks[0][0]
    data = json.loads(host.ok("pcr", "read", "--bank", bank,
                              *[str(i) for _, i in sel], "--json").stdout)
    return {(bank, int(i)): bytes.fromhex(v) for i, v in data[bank].items()}


def test_key_attributes_and_policy(host: Host) -> None:
    host.ok("key", "create", "--name", "attrs", "--pcrs", "sha256:0,1,2,3,4,5,6,7")
    record = json.loads((host.home / "keys" / "attrs" / "key.json").read_text())
    public, _ = TPM2B_PUBLIC.unmarshal(bytes.fromhex(record["public"]))
    attrs = int(public.publicArea.objectAttributes)
    for flag in (TPMA_OBJECT.FIXEDTPM, TPMA_OBJECT.FIXEDPARENT, TPMA_OBJECT.SENSITIVEDATAORIGIN,
                 TPMA_OBJECT.SIGN_ENCRYPT):
        assert attrs & flag, flag
    assert not attrs & TPMA_OBJECT.USERWITHAUTH  # only a policy session can use it
    assert not attrs & TPMA_OBJECT.RESTRICTED
    expected = tpmpolicy.pcr_auth_policy(PCRSelection.parse("sha256:0-7"),
                                      _pcrs(host, "sha256:0-7"))
    assert bytes(public.publicArea.authPolicy) == expected
    assert (host.home / "keys" / "attrs" / "key.json").stat().st_mode & 0o777 == 0o600


def test_sign_verifies_with_the_public_key(host: Host, payload: Path, tmp_path: Path) -> None:
    host.ok("key", "create")  # name "default", PCRs 0-7
    host.ok("key", "sign", "--in", str(payload), "--out", str(tmp_path / "sig"))
    pem = (host.home / "keys" / "default" / "key.pem").read_bytes()
    _verify(pem, (tmp_path / "sig").read_bytes(), payload.read_bytes())
    with pytest.raises(InvalidSignature):
        _verify(pem, (tmp_path / "sig").read_bytes(), b"other data")


def test_sign_after_a_sealed_pcr_changed_exits_1(fresh_host: Host, payload: Path,
                                                 tmp_path: Path) -> None:
    fresh_host.ok("key", "create", "--name", "boot")
    fresh_host.ok("key", "sign", "--name", "boot", "--in", str(payload),
                  "--out", str(tmp_path / "s1"))
    fresh_host.ok("pcr", "extend", "7", "--data", "secure boot policy changed")
    result = fresh_host.run("key", "sign", "--name", "boot", "--in", str(payload),
                            "--out", str(tmp_path / "s2"))
    assert result.exit_code == 1
    assert "PCR state no longer matches" in result.stderr
    assert "sha256:7" in result.stderr
    assert "0x" not in result.stderr.split("hint:")[0].replace("(TPM rc", "")
    assert not (tmp_path / "s2").exists()


def test_runtime_pcr_changes_do_not_stop_signing(host: Host, payload: Path,
                                                 tmp_path: Path) -> None:
    host.ok("key", "create", "--name", "rt")
    host.ok("pcr", "extend", "14", "--data", "a runtime measurement")
    host.ok("key", "sign", "--name", "rt", "--in", str(payload), "--out", str(tmp_path / "s"))


def test_tss_signature_format(host: Host, payload: Path, tmp_path: Path) -> None:
    host.ok("key", "create", "--name", "tss")
    host.ok("key", "sign", "--name", "tss", "--in", str(payload), "--out",
            str(tmp_path / "s"), "--format", "tss")
    from tpm2_pytss import TPMT_SIGNATURE
    from tpm2_pytss.constants import TPM2_ALG

    sig, used = TPMT_SIGNATURE.unmarshal((tmp_path / "s").read_bytes())
    assert sig.sigAlg == TPM2_ALG.ECDSA and used == len((tmp_path / "s").read_bytes())


def test_certify_names_the_key(host: Host, tmp_path: Path) -> None:
    host.ok("key", "create", "--name", "cert")
    host.ok("key", "certify", "--name", "cert", "--nonce", "c0ffee", "--out-dir",
            str(tmp_path / "c"))
    attest, _ = TPMS_ATTEST.unmarshal((tmp_path / "c" / "certify.msg").read_bytes())
    assert attest.type == TPM2_ST.ATTEST_CERTIFY
    assert bytes(attest.extraData) == bytes.fromhex("c0ffee")
    public, _ = TPM2B_PUBLIC.unmarshal((tmp_path / "c" / "key.pub").read_bytes())
    assert bytes(attest.attested.certify.name) == bytes(public.get_name())
    # Signed by the AK: check with the AK's public key.
    from tpm2_pytss import TPMT_SIGNATURE

    sig, _ = TPMT_SIGNATURE.unmarshal((tmp_path / "c" / "certify.sig").read_bytes())
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    der = encode_dss_signature(int.from_bytes(bytes(sig.signature.ecdsa.signatureR), "big"),
                               int.from_bytes(bytes(sig.signature.ecdsa.signatureS), "big"))
    _verify((host.home / "ak.pem").read_bytes(), der,
            (tmp_path / "c" / "certify.msg").read_bytes())


def test_creating_an_existing_key_exits_2(host: Host) -> None:
    host.ok("key", "create", "--name", "dup")
    result = host.run("key", "create", "--name", "dup")
    assert result.exit_code == 2 and "already exists" in result.stderr


def test_unknown_key_and_bad_name_exit_2(host: Host, payload: Path, tmp_path: Path) -> None:
    missing = host.run("key", "sign", "--name", "nope", "--in", str(payload),
                       "--out", str(tmp_path / "s"))
    assert missing.exit_code == 2 and "no signing key named 'nope'" in missing.stderr
    bad = host.run("key", "create", "--name", "../escape")
    assert bad.exit_code == 2 and "invalid key name" in bad.stderr


def test_key_list(host: Host) -> None:
    host.ok("key", "create", "--name", "listed", "--pcrs", "sha256:0,7")
    listed = json.loads(host.ok("key", "list", "--json").stdout)
    assert [k["name"] for k in listed] == ["listed"]
    assert listed[0]["pcrs"] == "sha256:0,7" and listed[0]["kind"] == "pcr"


def _authority(tmp_path: Path, name: str) -> tuple[Path, Path]:
    private = ec.generate_private_key(ec.SECP256R1())
    priv = tmp_path / f"{name}.key"
    pub = tmp_path / f"{name}.pub"
    priv.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    pub.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


def test_authority_key_signs_under_a_current_approval(fresh_host: Host, payload: Path,
                                                      tmp_path: Path) -> None:
    priv, pub = _authority(tmp_path, "authority")
    h = fresh_host
    h.ok("key", "create", "--name", "upd", "--authority", str(pub))
    no_approval = h.run("key", "sign", "--name", "upd", "--in", str(payload),
                        "--out", str(tmp_path / "s0"))
    assert no_approval.exit_code == 2 and "--approval" in no_approval.stderr

    h.ok("policy", "approve", "--serial", "1", "--authority-key", str(priv),
         "--pcrs", "sha256:0-7",
         "--out", str(tmp_path / "a1.json"))
    h.ok("key", "sign", "--name", "upd", "--in", str(payload), "--out", str(tmp_path / "s1"),
         "--approval", str(tmp_path / "a1.json"))
    _verify((h.home / "keys" / "upd" / "key.pem").read_bytes(),
            (tmp_path / "s1").read_bytes(), payload.read_bytes())

    # A planned update: PCR 4 changes; the old approval no longer works ...
    h.ok("pcr", "extend", "4", "--data", "new boot loader")
    stale = h.run("key", "sign", "--name", "upd", "--in", str(payload),
                  "--out", str(tmp_path / "s2"), "--approval", str(tmp_path / "a1.json"))
    assert stale.exit_code == 1 and "no longer matches the approved policy" in stale.stderr
    # ... and a new approval of the new value (given explicitly, no TPM read) does.
    value = _pcrs(h, "sha256:4")[("sha256", 4)].hex()
    h.ok("policy", "approve", "--serial", "2", "--authority-key", str(priv),
         "--pcrs", "sha256:0-3,5-7",
         "--pcrs", f"sha256:4={value}", "--out", str(tmp_path / "a2.json"))
    h.ok("key", "sign", "--name", "upd", "--in", str(payload), "--out", str(tmp_path / "s3"),
         "--approval", str(tmp_path / "a2.json"))


def test_approval_by_another_authority_is_refused(host: Host, payload: Path,
                                                  tmp_path: Path) -> None:
    _, pub = _authority(tmp_path, "real")
    other_priv, _ = _authority(tmp_path, "other")
    host.ok("key", "create", "--name", "guarded", "--authority", str(pub))
    host.ok("policy", "approve", "--serial", "1", "--authority-key", str(other_priv),
            "--pcrs", "sha256:0-7",
            "--out", str(tmp_path / "forged.json"))
    result = host.run("key", "sign", "--name", "guarded", "--in", str(payload),
                      "--out", str(tmp_path / "s"), "--approval", str(tmp_path / "forged.json"))
    assert result.exit_code == 1 and "another authority" in result.stderr


def test_sign_reads_stdin(host: Host, tmp_path: Path) -> None:
    host.ok("key", "create", "--name", "stdin")
    result = host.run("key", "sign", "--name", "stdin", "--in", "-", "--out",
                      str(tmp_path / "s"), input=b"from a pipe")
    assert result.exit_code == 0, result.output
    _verify((host.home / "keys" / "stdin" / "key.pem").read_bytes(),
            (tmp_path / "s").read_bytes(), b"from a pipe")


def test_unwritable_output_exits_2_without_a_traceback(host: Host, payload: Path,
                                                       tmp_path: Path) -> None:
    host.ok("key", "create", "--name", "io")
    result = host.run("key", "sign", "--name", "io", "--in", str(payload),
                      "--out", str(tmp_path / "no" / "such" / "dir" / "sig"))
    assert result.exit_code == 0  # parent folders are created
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")
    result = host.run("key", "sign", "--name", "io", "--in", str(payload),
                      "--out", str(blocked / "sig"))
    assert result.exit_code == 2
    assert str(blocked) in result.stderr and "Traceback" not in result.output


def test_authority_key_takes_no_pcrs_at_creation(host: Host, tmp_path: Path) -> None:
    _, pub = _authority(tmp_path, "a")
    result = host.run("key", "create", "--name", "ap", "--authority", str(pub),
                      "--pcrs", "sha256:0")
    assert result.exit_code == 2 and "from each approval" in result.stderr


def test_policy_ref_binds_approvals_to_the_key(host: Host, payload: Path,
                                               tmp_path: Path) -> None:
    priv, pub = _authority(tmp_path, "ref")
    host.ok("key", "create", "--name", "channel", "--authority", str(pub),
            "--policy-ref", "c0de")
    host.ok("policy", "approve", "--serial", "1", "--authority-key", str(priv),
            "--pcrs", "sha256:0-7",
            "--policy-ref", "c0de", "--out", str(tmp_path / "right.json"))
    host.ok("key", "sign", "--name", "channel", "--in", str(payload), "--out",
            str(tmp_path / "s"), "--approval", str(tmp_path / "right.json"))
    host.ok("policy", "approve", "--serial", "2", "--authority-key", str(priv),
            "--pcrs", "sha256:0-7",
            "--out", str(tmp_path / "wrong.json"))
    result = host.run("key", "sign", "--name", "channel", "--in", str(payload), "--out",
                      str(tmp_path / "s2"), "--approval", str(tmp_path / "wrong.json"))
    assert result.exit_code == 1 and "policyRef" in result.stderr


def test_key_records_are_private(host: Host) -> None:
    host.ok("key", "create", "--name", "private")
    assert (host.home / "keys").stat().st_mode & 0o777 == 0o700
    assert (host.home / "keys" / "private").stat().st_mode & 0o777 == 0o700


_DATA_LIMIT = 64 << 20
ROOT = Path(__file__).resolve().parents[2]


def _data_limited() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (_DATA_LIMIT, _DATA_LIMIT))


def test_sign_hashes_a_payload_larger_than_its_memory_in_chunks(host: Host,
                                                               tmp_path: Path) -> None:
    # `key sign --in -` of a stream larger than the process may allocate: hashed as read
    # (constant memory), not read whole first; the signature covers every byte.
    host.ok("key", "create", "--name", "big")
    payload = bytes(range(256)) * (512 << 10)  # 128 MiB > _DATA_LIMIT
    done = subprocess.run(
        [sys.executable, "-m", "attest.cli.main", "key", "sign", "--name", "big", "--in", "-",
         "--out", str(tmp_path / "sig"), "--json"], input=payload, capture_output=True,
        env={**os.environ, **host.env, "PYTHONPATH": str(ROOT)}, timeout=120,
        preexec_fn=_data_limited, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["bytes"] == len(payload)
    pem = (host.home / "keys" / "big" / "key.pem").read_bytes()
    key = serialization.load_pem_public_key(pem)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify((tmp_path / "sig").read_bytes(), hashlib.sha256(payload).digest(),
               ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def test_a_key_of_a_cleared_tpm_says_it_is_gone_and_how_to_recreate_it(
        fresh_swtpm: Simulator, tmp_path: Path, payload: Path) -> None:
    # After tpm2_clear the storage seed is new: the key's private part fails its
    # integrity check under the new SRK (0x1df); the user learns why and what to do.
    h = Host(fresh_swtpm, tmp_path / "home")
    h.ok("provision")
    h.ok("key", "create", "--name", "old")
    subprocess.run(["tpm2_clear"], check=True, capture_output=True,
                   env={**os.environ, "TPM2TOOLS_TCTI": fresh_swtpm.tcti})
    h.ok("provision", "--replace-identity")
    result = h.run("key", "sign", "--name", "old", "--in", str(payload),
                   "--out", str(tmp_path / "sig"))
    assert result.exit_code == 3, result.stderr
    assert "belongs to a TPM state that is gone" in result.stderr
    assert "attest key create --name old" in result.stderr
