"""Credential activation round trip: attest's software MakeCredential (verifier side)
against swtpm's ActivateCredential (TPM side), for the RSA and the ECC P-384 EK."""

from __future__ import annotations

import os

import pytest

from attest.errors import TPMError
from attest.evidence.credential import make_credential
from attest.evidence.ekcert import parse_ek_certificate
from attest.evidence.ektemplate import ek_public
from attest.evidence.structures import parse_public_tpm2b
from attest.tpm.device import open_tpm
from attest.tpm.hierarchy import EK_ECC, EK_RSA, EKKind, activate_credential, load_identity
from tests.conftest import Host


@pytest.mark.parametrize("kind", [EK_RSA, EK_ECC], ids=["rsa-ek", "ecc-p384-ek"])
def test_activate_credential_round_trip(host: Host, kind: EKKind) -> None:
    identity = load_identity(host.home)
    ek = next(e for e in identity.eks if e.kind == kind.label)
    secret = os.urandom(32)
    credential = make_credential(parse_public_tpm2b(ek.public), secret, identity.ak_name)
    with open_tpm(host.sim.tcti) as tpm:
        recovered = activate_credential(tpm, identity, credential.credential_blob,
                                        credential.encrypted_secret, kind)
    assert recovered == secret


@pytest.mark.parametrize("kind", [EK_RSA, EK_ECC], ids=["rsa-ek", "ecc-p384-ek"])
def test_ek_rebuilt_from_its_certificate_has_the_tpms_name(host: Host, kind: EKKind) -> None:
    """A verifier without a TPM derives the EK's public area and name from the certificate."""
    ek = next(e for e in load_identity(host.home).eks if e.kind == kind.label)
    assert ek.certificate is not None
    rebuilt = ek_public(parse_ek_certificate(ek.certificate).public_key)
    assert rebuilt.name == ek.name
    assert rebuilt.marshal_tpm2b() == ek.public


def test_credential_for_another_key_name_is_refused(host: Host) -> None:
    identity = load_identity(host.home)
    other_name = identity.ak_name[:2] + bytes(32)
    credential = make_credential(parse_public_tpm2b(identity.eks[0].public), b"s" * 16,
                                 other_name)
    with open_tpm(host.sim.tcti) as tpm, pytest.raises(TPMError):
        activate_credential(tpm, identity, credential.credential_blob,
                            credential.encrypted_secret, EK_RSA)
