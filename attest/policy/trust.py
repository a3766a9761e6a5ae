"""The trust material a policy names in files, read once with the policy.

A verification reads no file: the EK roots a policy's ``ek_roots`` names are read
here, when the verifier is set up, and the appraisal (attest.verify.appraisal) uses
the bytes read then. A roots folder changed afterwards takes effect on the next load
(the next `attest verify`; a long-running verifier, when it loads the policy again).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from attest.certfiles import read_certificates
from attest.errors import EvidenceError, UsageError
from attest.policy.model import EnrollmentMode, VerifierPolicy
from attest.reasons import Reason

if TYPE_CHECKING:
    from attest.evidence.ekcert import VerifiedChain


@dataclass(frozen=True)
class TrustMaterial:
    """What the policy trusts beyond its own text: the EK root certificates (DER or PEM
    bytes, as their files hold them), or why they could not be read."""

    ek_roots: tuple[bytes, ...] = ()
    # Why the policy's ek_roots could not be read when it loaded (a folder emptied or a
    # file gone since the policy was checked): each EK check is then ek_chain_invalid.
    ek_roots_problem: str | None = None

    def verify_ek_certificate(self, certificate: bytes, now: int,
                              intermediates: Iterable[bytes] = ()) -> VerifiedChain:
        """``certificate`` verified as an EK certificate chaining to the policy's ek_roots
        at ``now`` (enrollment and every appraisal check it alike). Roots that could not
        be read refuse every certificate. Raises EvidenceError(ek_chain_invalid)."""
        from attest.evidence.ekcert import verify_ek_certificate

        if self.ek_roots_problem is not None:
            raise EvidenceError(self.ek_roots_problem, reason=Reason.EK_CHAIN_INVALID)
        return verify_ek_certificate(certificate, self.ek_roots, intermediates,
                                     at=datetime.fromtimestamp(now, UTC))


def load_trust(policy: VerifierPolicy) -> TrustMaterial:
    """Read the trust material ``policy`` uses. EK roots count only for enrollments
    from the store (``enrollment: policy`` trusts its AKs by name): with ``enrollment:
    policy`` they are not read, as they never were. Roots that can't be read are a
    problem the appraisal reports as ek_chain_invalid, naming them, never a crash."""
    if policy.enrollment is not EnrollmentMode.STORE or not policy.ek_roots:
        return TrustMaterial()
    try:
        return TrustMaterial(ek_roots=tuple(read_certificates(policy.ek_roots)))
    except UsageError as exc:
        return TrustMaterial(ek_roots_problem=f"the policy's ek_roots: {exc.message}")
