"""The trust material a policy names in files, read once with the policy.

A verification reads no file: the EK roots a policy's ``ek_roots`` names are read
here, when the verifier is set up, and the appraisal (attest.verify.appraisal) uses
the bytes read then. A roots folder changed afterwards takes effect on the next load
(the next `attest verify`; a long-running verifier, when it loads the policy again).
"""

from __future__ import annotations

from dataclasses import dataclass

from attest.certfiles import read_certificates
from attest.policy.model import Enrollment, VerifierPolicy


@dataclass(frozen=True)
class TrustMaterial:
    """What the policy trusts beyond its own text: the EK root certificates (DER or PEM
    bytes, as their files hold them)."""

    ek_roots: tuple[bytes, ...] = ()


def load_trust(policy: VerifierPolicy) -> TrustMaterial:
    """Read the trust material ``policy`` uses. Raises UsageError (exit 2) naming the
    file or folder that cannot be read or holds no certificate. EK roots count only for
    enrollments from the store (``enrollment: policy`` trusts its AKs by name): with
    ``enrollment: policy`` they are not read, as they never were."""
    if policy.enrollment is not Enrollment.STORE:
        return TrustMaterial()
    return TrustMaterial(ek_roots=tuple(read_certificates(policy.ek_roots)))
