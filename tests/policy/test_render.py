"""render_policy writes a commented policy that loads back to the values it was given."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from attest.errors import UsageError
from attest.policy import (
    EnrollmentMode,
    KeyPolicyKind,
    NonceMode,
    Rule,
    TrustedAK,
    VerifierPolicy,
    load_policy,
    render_policy,
)
from attest.policy.authority import authority_name
from tests.policy.helpers import AK, ecc_pem, policy_folder

SEALED = {i: hashlib.sha256(bytes([i])).digest() for i in range(8)}
BACKUP = hashlib.sha256(b"backup").digest()


def _written(tmp_path: Path, text: str) -> VerifierPolicy:
    path = policy_folder(tmp_path) / "policy.yaml"
    path.write_text(text)
    return load_policy(path)


def test_a_host_policy_round_trips(tmp_path: Path) -> None:
    ak = TrustedAK("web-1", AK.marshal_tpm2b(), b"\x00\x0b" + bytes(32))
    text = render_policy(
        policy_id="web-1-init", sealed_values=SEALED, runtime_pcr=14, ek_roots=["roots"],
        trusted_aks=[ak], runtime_reference={"/usr/bin/backup": [BACKUP]},
        nonce=NonceMode.OPTIONAL, max_age=90, clock_skew=5, deny_reset=True,
        max_lifetime=3600, single_use=False, max_depth=0, header="from host web-1")
    policy = _written(tmp_path, text)
    assert policy.id == "web-1-init"
    assert policy.ek_roots == (tmp_path.resolve() / "roots",)
    assert policy.enrollment is EnrollmentMode.POLICY and policy.trusted_aks == (ak,)
    assert (policy.pcrs.bank, policy.pcrs.sealed, policy.pcrs.runtime) == \
        ("sha256", tuple(range(8)), 14)
    assert policy.key_policy.kind is KeyPolicyKind.PCR
    assert dict(policy.key_policy.sealed_values) == SEALED
    assert policy.reference is not None
    assert policy.reference.runtime == {"/usr/bin/backup": frozenset({BACKUP})}
    assert policy.freshness.nonce is NonceMode.OPTIONAL
    assert (policy.freshness.max_age, policy.freshness.clock_skew) == (90, 5)
    assert policy.freshness.deny_reset is True
    assert (policy.artifacts.max_lifetime, policy.artifacts.single_use) == (3600, False)
    assert policy.lineage.max_depth == 0
    assert policy.rules == (Rule(("*",), ("exec",), ("*",), ("web-1",)),)
    assert "# from host web-1" in text


def test_every_field_line_is_explained_by_a_comment() -> None:
    text = render_policy(policy_id="p", sealed_values=SEALED,
                         runtime_reference={"/usr/bin/backup": [BACKUP]})
    for key in ("version:", "nonce:", "max_age:", "clock_skew:", "deny_reset:",
                "max_lifetime:", "single_use:", "max_depth:", "runtime:", "sealed:", "bank:",
                "enrollment:", "kind:"):
        line = next(line for line in text.splitlines() if line.strip().startswith(key))
        assert "  # " in line, line


def test_a_store_enrolled_policy_without_reference_values(tmp_path: Path) -> None:
    policy = _written(tmp_path, render_policy(policy_id="p", sealed_values=SEALED))
    assert policy.enrollment is EnrollmentMode.STORE and policy.trusted_aks == ()
    assert policy.reference is None
    assert policy.rules == (Rule(("*",), ("exec",), ("*",), ("*",)),)


def test_no_runtime_measurements_yet_allows_none(tmp_path: Path) -> None:
    policy = _written(tmp_path, render_policy(policy_id="p", sealed_values=SEALED,
                                              runtime_reference={}))
    assert policy.reference is not None and policy.reference.runtime == {}


def test_an_authority_key_policy_round_trips(tmp_path: Path) -> None:
    text = render_policy(policy_id="p", sealed_values={}, sealed_pcrs=[0, 2, 4, 7],
                         authority_pem=ecc_pem(), policy_ref=b"\x01\x02")
    policy = _written(tmp_path, text)
    assert policy.key_policy.kind is KeyPolicyKind.AUTHORIZE
    assert policy.key_policy.authority_name == authority_name(ecc_pem())
    assert policy.key_policy.policy_ref == b"\x01\x02"
    assert policy.pcrs.sealed == (0, 2, 4, 7)


def test_strings_that_yaml_reads_specially_round_trip(tmp_path: Path) -> None:
    names = ["yes", "0123", "null", "a: b # c", "'\"\\", "naïve ✓", "~", "*", "- x"]
    rules = [Rule(("*",), ("exec",), (name,), ("*",)) for name in names if name != "*"]
    text = render_policy(policy_id="p", sealed_values=SEALED,
                         runtime_reference={name: [BACKUP] for name in names}, rules=rules)
    policy = _written(tmp_path, text)
    assert policy.reference is not None and policy.reference.runtime is not None
    assert set(policy.reference.runtime) == set(names)
    assert tuple(rule.argv[0] for rule in policy.rules) == tuple(n for n in names if n != "*")


def test_other_banks_round_trip(tmp_path: Path) -> None:
    sealed = {i: bytes([i]) * 48 for i in range(3)}
    policy = _written(tmp_path, render_policy(policy_id="p", sealed_values=sealed, bank="sha384",
                                              runtime_reference={"x": [b"\x01" * 48]}))
    assert policy.pcrs.bank == "sha384" and dict(policy.key_policy.sealed_values) == sealed
    assert policy.reference is not None and policy.reference.bank == "sha384"


@pytest.mark.parametrize(("render", "says"), [
    (lambda: render_policy(policy_id="two words", sealed_values=SEALED), "id: a policy id is"),
    (lambda: render_policy(policy_id="p", sealed_values={0: b"short"}),
     "expected a sha256 PCR value"),
    (lambda: render_policy(policy_id="p", sealed_values={}), "pcrs.sealed is empty"),
    (lambda: render_policy(policy_id="p", sealed_values=SEALED, runtime_pcr=7),
     "PCR 7 is both sealed and the runtime PCR"),
], ids=["bad-id", "bad-value", "nothing-sealed", "runtime-sealed"])
def test_values_that_would_not_load_are_refused(render: Callable[[], str], says: str) -> None:
    with pytest.raises(UsageError, match=says):
        render()
