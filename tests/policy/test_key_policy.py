"""The authPolicy a policy expects of signing keys, and the PCRs it requires in quotes."""

from __future__ import annotations

from pathlib import Path

from attest.evidence import tpmpolicy as digests
from attest.evidence.pcrs import PCRSelection
from attest.policy import KeyPolicy, KeyPolicyKind, PCRPolicy
from attest.tpm.keys import authority_public_from_pem
from tests.policy.helpers import FULL, ONES, ZERO, ecc_pem, edit, load_text, sealed_values_yaml


def test_pcr_key_policy_is_policy_pcr_then_auth_value(tmp_path: Path) -> None:
    policy = load_text(tmp_path, FULL)
    selection = PCRSelection.parse("sha256:0-7")
    values = {("sha256", i): bytes.fromhex(ONES if i == 1 else ZERO) for i in range(8)}
    assert policy.expected_key_policy_digest() == digests.pcr_auth_policy(selection, values)


def test_pcr_key_policy_follows_the_bank_and_the_sealed_pcrs() -> None:
    pcrs = PCRPolicy(bank="sha384", sealed=(0, 7), runtime=15)
    key_policy = KeyPolicy(sealed_values={0: b"\x01" * 48, 7: b"\x07" * 48})
    expected = digests.pcr_auth_policy(PCRSelection.parse("sha384:0,7"),
                                       {("sha384", 0): b"\x01" * 48, ("sha384", 7): b"\x07" * 48})
    assert key_policy.expected_digest(pcrs) == expected


def test_authorize_key_policy_is_policy_authorize_of_the_authoritys_tpm_name(
        tmp_path: Path) -> None:
    pem = ecc_pem()
    block = "\n".join(f"    {line}" for line in pem.decode().splitlines())
    text = edit(FULL, f"  kind: pcr\n  sealed_values:\n{sealed_values_yaml()}\n",
                f"  kind: authorize\n  authority: |\n{block}\n  policy_ref: \"beef\"\n")
    policy = load_text(tmp_path, text)
    name = bytes(authority_public_from_pem(pem).get_name())
    assert policy.key_policy.kind is KeyPolicyKind.AUTHORIZE
    assert policy.expected_key_policy_digest() == digests.policy_authorize(
        digests.initial(), name, b"\xbe\xef")


def test_quotes_must_cover_the_sealed_pcrs_and_the_runtime_pcr(tmp_path: Path) -> None:
    text = edit(FULL, "  runtime: 15", "  runtime: 14")
    assert load_text(tmp_path, text).required_pcrs == PCRSelection.parse("sha256:0-7,14")
    assert PCRPolicy().required == PCRSelection.parse("sha256:0-7,15")
    assert PCRPolicy().sealed_selection == PCRSelection.parse("sha256:0-7")
