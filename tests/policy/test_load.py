"""A valid policy file loads into the model, with defaults where sections are left out."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from attest.errors import EXIT_USAGE, PolicyError
from attest.policy import (
    EnrollmentMode,
    KeyPolicyKind,
    NonceMode,
    PCRPolicy,
    Rule,
    load_policy,
    parse_policy,
)
from attest.policy.authority import authority_name
from tests.policy.helpers import (
    AK,
    FULL,
    OFFLINE,
    ONES,
    ZERO,
    ecc_pem,
    edit,
    load_text,
    policy_folder,
    sealed_values_yaml,
    write,
)

MINIMAL = f"""\
version: 1
id: minimal
key_policy:
  sealed_values:
{sealed_values_yaml()}
rules:
  - {{subjects: ["*"], actions: ["exec"], argv: ["*"], hosts: ["*"]}}
"""


def test_full_policy_loads_every_field(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    policy = load_policy(path)
    assert policy.id == "prod-web" and policy.version == 1
    assert policy.digest == hashlib.sha256(FULL.encode()).hexdigest()
    assert policy.path == path.resolve()
    assert policy.ek_roots == (tmp_path.resolve() / "roots", tmp_path.resolve() / "extra-root.pem")
    assert policy.enrollment is EnrollmentMode.STORE and policy.trusted_aks == ()
    assert policy.pcrs == PCRPolicy("sha256", (0, 1, 2, 3, 4, 5, 6, 7), 15)
    assert policy.key_policy.kind is KeyPolicyKind.PCR
    assert dict(policy.key_policy.sealed_values) == {
        i: bytes.fromhex(ONES if i == 1 else ZERO) for i in range(8)}
    assert policy.reference is not None and policy.reference.bank == "sha256"
    assert policy.reference.runtime == {"/usr/bin/backup": frozenset({bytes.fromhex("ab" * 32)})}
    assert policy.freshness.nonce is NonceMode.REQUIRED
    assert (policy.freshness.max_age, policy.freshness.clock_skew) == (300, 30)
    assert policy.freshness.deny_reset is False
    assert (policy.artifacts.max_lifetime, policy.artifacts.single_use) == (600, True)
    assert policy.lineage.max_depth == 3
    assert policy.rules == (Rule(("deploy-bot",), ("exec",), ("/usr/bin/backup --full *",),
                                 ("*",)),)


def test_left_out_sections_take_their_defaults(tmp_path: Path) -> None:
    policy = load_text(tmp_path, MINIMAL)
    assert policy.ek_roots == () and policy.enrollment is EnrollmentMode.STORE
    assert policy.pcrs == PCRPolicy("sha256", (0, 1, 2, 3, 4, 5, 6, 7), 15)
    assert policy.key_policy.kind is KeyPolicyKind.PCR
    assert policy.reference is None
    assert policy.freshness.nonce is NonceMode.REQUIRED
    assert (policy.freshness.max_age, policy.freshness.clock_skew) == (300, 30)
    assert (policy.artifacts.max_lifetime, policy.artifacts.single_use) == (600, True)
    assert policy.lineage.max_depth == 3


def test_the_digest_changes_with_any_byte_even_a_comment(tmp_path: Path) -> None:
    first = load_text(tmp_path, FULL).digest
    assert load_text(tmp_path, FULL + "# a comment\n").digest != first


def test_paths_are_relative_to_the_policy_files_folder(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    folder = policy_folder(tmp_path / "etc")
    path = write(folder, FULL)
    monkeypatch.chdir(tmp_path)
    policy = load_policy(Path("etc") / "policy.yaml")
    assert policy.ek_roots[0] == folder.resolve() / "roots"
    assert policy.path == path.resolve()


@pytest.mark.parametrize(("written", "seconds"), [
    ("300", 300), ("300s", 300), ("5m", 300), ("1h", 3600), ("2d", 172800), ("1h30m", 5400),
    ('"45"', 45), ("0s", 0),
])
def test_durations_are_seconds_or_a_number_with_a_unit(tmp_path: Path, written: str,
                                                       seconds: int) -> None:
    policy = load_text(tmp_path, edit(FULL, "clock_skew: 30s", f"clock_skew: {written}"))
    assert policy.freshness.clock_skew == seconds


def test_unquoted_all_digit_hex_stays_hex(tmp_path: Path) -> None:
    # YAML would read 000...0 as the integer 0; hex fields take the text as written.
    text = edit(FULL, f'"0": "{ZERO}"', f"0: {ZERO}")
    text = edit(text, f'digests: ["{"ab" * 32}"]', f"digests: [{'0' * 64}]")
    policy = load_text(tmp_path, text)
    assert policy.key_policy.sealed_values[0] == bytes(32)
    assert policy.reference is not None and policy.reference.runtime is not None
    assert policy.reference.runtime["/usr/bin/backup"] == frozenset({bytes(32)})


def test_reference_bank_defaults_to_the_pcr_bank(tmp_path: Path) -> None:
    text = edit(FULL, "  bank: sha256\n", "  bank: sha384\n")
    text = text.replace(ZERO, "00" * 48).replace(ONES, "11" * 48).replace("ab" * 32, "ab" * 48)
    policy = load_text(tmp_path, text)
    assert policy.reference is not None and policy.reference.bank == "sha384"
    assert policy.required_pcrs.banks == (("sha384", (0, 1, 2, 3, 4, 5, 6, 7, 15)),)


def test_offline_policy_lists_trusted_aks(tmp_path: Path) -> None:
    policy = load_text(tmp_path, OFFLINE)
    assert policy.enrollment is EnrollmentMode.POLICY
    (ak,) = policy.trusted_aks
    assert ak.host == "web-1" and ak.ak_public == AK.marshal_tpm2b()
    assert ak.ak_qualified_name == bytes.fromhex("000b" + "cd" * 32)
    assert ak.name == AK.name
    assert policy.trusted_ak(AK.name) is ak
    assert policy.trusted_ak(b"\x00\x0b" + bytes(32)) is None


def test_authorize_key_policy_with_an_inline_authority(tmp_path: Path) -> None:
    pem = ecc_pem().decode()
    block = "\n".join(f"    {line}" for line in pem.splitlines())
    text = edit(FULL, f"  kind: pcr\n  sealed_values:\n{sealed_values_yaml()}\n",
                f"  kind: authorize\n  authority: |\n{block}\n  policy_ref: \"0a0b\"\n")
    policy = load_text(tmp_path, text)
    assert policy.key_policy.kind is KeyPolicyKind.AUTHORIZE
    assert policy.key_policy.authority_pem == pem.encode()
    assert policy.key_policy.authority_name == authority_name(pem.encode())
    assert policy.key_policy.policy_ref == b"\x0a\x0b"


def test_authorize_key_policy_with_an_authority_file(tmp_path: Path) -> None:
    (policy_folder(tmp_path) / "authority.pem").write_bytes(ecc_pem())
    text = edit(FULL, f"  kind: pcr\n  sealed_values:\n{sealed_values_yaml()}\n",
                "  kind: authorize\n  authority_file: authority.pem\n")
    policy = load_text(tmp_path, text)
    assert policy.key_policy.authority_name == authority_name(ecc_pem())
    assert policy.key_policy.policy_ref == b""


def test_parse_policy_reads_bytes_with_a_base_folder(tmp_path: Path) -> None:
    policy = parse_policy(FULL.encode(), source="inline", base_dir=policy_folder(tmp_path))
    assert policy.ek_roots[0] == tmp_path.resolve() / "roots" and policy.path is None


def test_a_policy_error_is_bad_input_exit_2(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as caught:
        load_text(tmp_path, edit(FULL, "max_age: 300s", "max_age: soon"))
    assert caught.value.exit_code == EXIT_USAGE


def test_a_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read the policy"):
        load_policy(tmp_path / "absent.yaml")
