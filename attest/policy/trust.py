"""The trust material a policy names in files, read once with the policy.

A verification reads no file: the EK roots a policy's ``ek_roots`` names are read
here, when the verifier is set up, and the appraisal (attest.verify.appraisal) uses
the bytes read then. A roots folder changed afterwards takes effect on the next load
(the next `attest verify`; a long-running verifier, when it loads the policy again).
"""

from __future__ import annotations

from dataclasses import dataclass

from attest.certfiles import read_certificates
from attest.policy.model import VerifierPolicy


@dataclass(frozen=True)
class TrustMaterial:
    """What the policy trusts beyond its own text: the EK root certificates (DER or PEM
    bytes, as their files hold them)."""

    ek_roots: tuple[bytes, ...] = ()


def load_trust(policy: VerifierPolicy) -> TrustMaterial:
    """Read the trust material ``policy`` names. Raises UsageError (exit 2) naming the
    file or folder that cannot be read or holds no certificate."""
    return TrustMaterial(ek_roots=tuple(read_certificates(policy.ek_roots)))
