"""Fixtures for the evidence tests; the helpers live in evidence_helpers.py."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from evidence_helpers import AK_ATTRIBUTES, SoftTPM, ecc_public

from attest.evidence.pcrs import HASH_ALGS
from attest.evidence.structures import Alg, Scheme


@pytest.fixture(scope="session")
def soft_tpm() -> SoftTPM:
    key = ec.generate_private_key(ec.SECP256R1())
    public = ecc_public(key.public_key(), AK_ATTRIBUTES,
                        scheme=Scheme(Alg.ECDSA, HASH_ALGS["sha256"]))
    return SoftTPM(key, public)
