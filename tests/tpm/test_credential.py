"""Credential activation, TPM side: a secret wrapped to the EK and the AK's name comes back."""

from __future__ import annotations

import os

import pytest
from tpm2_pytss import TPM2B_NAME, TPM2B_PUBLIC
from tpm2_pytss.utils import make_credential

from attest.errors import TPMError
from attest.tpm.device import open_tpm
from attest.tpm.hierarchy import EK_ECC, EK_RSA, EKKind, activate_credential, load_identity
from tests.conftest import Host


@pytest.mark.parametrize("kind", [EK_RSA, EK_ECC], ids=["rsa-ek", "ecc-p384-ek"])
def test_activate_credential_round_trip(host: Host, kind: EKKind) -> None:
    identity = load_identity(host.home)
    ek = next(e for e in identity.eks if e.kind == kind.label)
    ek_public, _ = TPM2B_PUBLIC.unmarshal(ek.public)
    secret = os.urandom(32)
    blob, encrypted = make_credential(ek_public, secret, TPM2B_NAME(identity.ak_name))
    with open_tpm(host.sim.tcti) as tpm:
        recovered = activate_credential(tpm, identity, bytes(blob), bytes(encrypted), kind)
    assert recovered == secret


def test_credential_for_another_key_name_is_refused(host: Host) -> None:
    identity = load_identity(host.home)
    ek_public, _ = TPM2B_PUBLIC.unmarshal(identity.eks[0].public)
    other_name = identity.ak_name[:2] + bytes(32)
    blob, encrypted = make_credential(ek_public, b"s" * 16, TPM2B_NAME(other_name))
    with open_tpm(host.sim.tcti) as tpm, pytest.raises(TPMError):
        activate_credential(tpm, identity, bytes(blob), bytes(encrypted), EK_RSA)
