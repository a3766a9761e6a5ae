"""Approval documents (attest.evidence.approval) and the policy keys that retire them:
strict parsing of hostile bytes, an identity independent of the signatures, and the
key_policy settings min_approval_serial and revoked_approvals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from attest.errors import EvidenceError, PolicyError
from attest.evidence.approval import (
    MAX_APPROVAL_BYTES,
    Approval,
    parse_approval,
    verify_approval,
)
from attest.evidence.pcrs import PCRSelection
from attest.policy.authority import authority_public
from attest.reasons import Reason
from attest.tpm import keys as signing
from tests.policy.helpers import FULL, ecc_pem, edit, load_text, sealed_values_yaml

SELECTION = PCRSelection.parse("sha256:0-7")
VALUES = {("sha256", i): bytes([i]) * 32 for i in range(8)}


def _private_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())


AUTHORITY = _private_pem()


def _approval(serial: int = 1, **options: Any) -> Approval:
    return signing.approve(AUTHORITY, SELECTION, VALUES, serial=serial, **options)


def _document(**members: Any) -> bytes:
    document = json.loads(_approval().to_bytes())
    document.update(members)
    return json.dumps(document).encode()


def test_an_approval_reads_back_as_written() -> None:
    made = _approval(7, not_after=1_900_000_000)
    assert parse_approval(made.to_bytes()) == made
    assert Approval.from_json(made.to_json()) == made


def test_the_id_names_the_content_not_the_signatures() -> None:
    first, again = _approval(3), _approval(3)
    assert first.signature != again.signature  # ECDSA: a fresh signature every time
    assert first.id == again.id
    assert _approval(4).id != first.id


@pytest.mark.parametrize(("document", "says"), [
    (b"[" * 10_000, "not JSON"),
    (b" " * (MAX_APPROVAL_BYTES + 1), "more than"),
    (_document()[:-1] + b', "serial": 1}', "appears twice"),
    (_document(pcrs="sha256:0-7"), "canonically"),
    (_document(pcrs="sha256:0,1"), "exactly the PCRs"),
    (_document(serial=True), "serial"),
    (_document(serial=-1), "serial"),
    (_document(serial=2**60), "serial"),
    (_document(not_after="tomorrow"), "not_after"),
    (_document(approved_policy="00" * 32), "not the PolicyPCR digest"),
    (_document(values={**json.loads(_approval().to_bytes())["values"], "sha256:0": "AB" * 32}),
     "lowercase hex"),
    (_document(format="attest-approval/0"), "format"),
    (_document(extra=1), "expected the members"),
], ids=["deep", "oversize", "duplicate", "pcrs-spelling", "pcrs-values", "bool-serial",
        "negative-serial", "huge-serial", "text-expiry", "approved-policy", "uppercase-hex",
        "format", "unknown-member"])
def test_hostile_documents_are_refused(document: bytes, says: str) -> None:
    with pytest.raises(EvidenceError, match=says) as caught:
        parse_approval(document)
    assert caught.value.reason is Reason.MALFORMED_ARTIFACT


def _public_pem(private_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(private_pem, password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def _rsa_private_pem() -> bytes:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())


@pytest.mark.parametrize("private_pem", [AUTHORITY, _rsa_private_pem()], ids=["ecc", "rsa"])
def test_both_signatures_verify_with_the_authority(private_pem: bytes) -> None:
    made = signing.approve(private_pem, SELECTION, VALUES, b"\xc0\xde", serial=9)
    verify_approval(parse_approval(made.to_bytes()), authority_public(_public_pem(private_pem)),
                    b"\xc0\xde")


def test_verification_names_what_is_wrong() -> None:
    made = _approval(2)
    authority = authority_public(_public_pem(AUTHORITY))
    cases = [
        (made, authority_public(_public_pem(_private_pem())), b"", "another authority"),
        (made, authority, b"\x01", "policyRef"),
        (parse_approval(_document(serial=99)), authority, b"", "document signature"),
        (Approval(made.authority_public, made.selection, made.values, made.policy_ref,
                  made.document_signature, made.serial, made.not_after, made.signature),
         authority, b"", "its signature"),
    ]
    for approval, key, policy_ref, says in cases:
        with pytest.raises(EvidenceError, match=says) as caught:
            verify_approval(approval, key, policy_ref)
        assert caught.value.reason is Reason.KEY_POLICY_MISMATCH


def _authorize(extra: str = "") -> str:
    block = "\n".join(f"    {line}" for line in ecc_pem().decode().splitlines())
    return edit(FULL, f"  kind: pcr\n  sealed_values:\n{sealed_values_yaml()}\n",
                f"  kind: authorize\n  authority: |\n{block}\n{extra}")


def test_the_policy_retires_approvals_by_serial_and_by_id(tmp_path: Path) -> None:
    approval_id = _approval().id
    policy = load_text(tmp_path, _authorize(
        f"  min_approval_serial: 5\n  revoked_approvals: [\"{approval_id}\"]\n"))
    assert policy.key_policy.min_approval_serial == 5
    assert policy.key_policy.revoked_approvals == frozenset({approval_id})
    defaults = load_text(tmp_path, _authorize())
    assert defaults.key_policy.min_approval_serial == 0
    assert defaults.key_policy.revoked_approvals == frozenset()


@pytest.mark.parametrize(("text", "says"), [
    (_authorize("  revoked_approvals: [\"ABC\"]\n"), "64 lowercase hex"),
    (_authorize("  min_approval_serial: -1\n"), "whole number"),
    (edit(FULL, "  kind: pcr\n", "  kind: pcr\n  min_approval_serial: 2\n"),
     "not used with kind: pcr"),
], ids=["bad-id", "negative-serial", "pcr-kind"])
def test_bad_approval_settings_are_policy_errors(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(PolicyError, match=says):
        load_text(tmp_path, text)
