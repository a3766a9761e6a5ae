"""An authority's TPM name, computed without a TPM stack, is the one attest.tpm.keys uses."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attest.errors import MalformedInput
from attest.evidence.structures import parse_public_tpm2b
from attest.policy.authority import authority_name, authority_public
from attest.tpm.keys import authority_public_from_pem
from tests.policy.helpers import ecc_pem, rsa_pem


def _tpm_name(pem: bytes) -> bytes:
    return bytes(authority_public_from_pem(pem).get_name())


def _short_coordinate_pem() -> bytes:
    """A P-256 key whose x has a leading zero byte, written at full width on both sides."""
    for value in range(1, 100_000):
        key = ec.derive_private_key(value, ec.SECP256R1()).public_key()
        if key.public_numbers().x < 1 << 248:
            return key.public_bytes(serialization.Encoding.PEM,
                                    serialization.PublicFormat.SubjectPublicKeyInfo)
    raise AssertionError("no short coordinate found")


@pytest.mark.parametrize("pem", [
    pytest.param(ecc_pem(), id="ecc-p256"),
    pytest.param(_short_coordinate_pem(), id="ecc-p256-short-x"),
    pytest.param(rsa_pem(2048), id="rsa-2048"),
    pytest.param(rsa_pem(3072, exponent=3), id="rsa-3072-exponent-3"),
])
def test_name_equals_the_tpm_stacks(pem: bytes) -> None:
    assert authority_name(pem) == _tpm_name(pem)


@pytest.mark.parametrize("pem", [ecc_pem(), rsa_pem(2048)], ids=["ecc-p256", "rsa-2048"])
def test_public_area_equals_the_tpm_stacks_byte_for_byte(pem: bytes) -> None:
    tpm_public = bytes(authority_public_from_pem(pem).marshal())
    assert authority_public(pem).marshal_tpm2b() == tpm_public
    assert parse_public_tpm2b(tpm_public) == authority_public(pem)


@pytest.mark.parametrize(("pem", "says"), [
    (b"not a key", "not a PEM public key"),
    (ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
     "must be P-256"),
    (rsa_pem(1024), "at least 2048 bits"),
], ids=["garbage", "p384", "rsa-1024"])
def test_keys_attest_would_not_accept_are_refused(pem: bytes, says: str) -> None:
    with pytest.raises(MalformedInput, match=says):
        authority_public(pem)
