"""Authority approvals seen by the verifier: which one a key signed under, whether it is
the authority's, whether it approves the quoted state, and whether it still counts.

The host is a real swtpm whose boot PCRs the test owns: "firmware v2" is an extend of
PCR 4, and a rollback to v1 is a TPM restart (the PCRs reset to the v1 values). A lying
host re-signs altered artifacts inside its TPM (tests.verify.rig), under the key's
authority-bound policy exactly as attest would.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attest.artifact import jws
from attest.artifact.model import Claims, Evidence, binding
from attest.evidence.approval import Approval, parse_approval
from attest.evidence.pcrs import PCRSelection
from attest.policy import VerifierPolicy
from attest.tpm import keys as signing
from attest.tpm.pcr import read_pcrs
from attest.tpm.quote import create_quote
from tests.verify.rig import QUOTED, Rig, accepted, denied

SEALED = PCRSelection.parse("sha256:0-7")


@dataclass
class Authority:
    """An approval authority's key pair (software, as `attest policy approve` uses it)."""

    private_pem: bytes
    public_pem: bytes

    @classmethod
    def make(cls) -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        return cls(key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()),
                   key.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo))


@dataclass
class Approvals:
    """A rig whose key ``signed`` is bound to ``authority`` (PolicyAuthorize)."""

    rig: Rig
    authority: Authority

    def approve(self, serial: int, *, selection: PCRSelection = SEALED,
                authority: Authority | None = None, **options: Any) -> Approval:
        """An approval of the PCR values the TPM holds now."""
        with self.rig.tpm() as tpm:
            values = read_pcrs(tpm, selection)
        return signing.approve((authority or self.authority).private_pem, selection, values,
                               serial=serial, **options)

    def issue(self, *approvals: Approval) -> bytes:
        return self.rig.issue(approvals=approvals)

    def policy(self, **overrides: Any) -> VerifierPolicy:
        return self.rig.policy(sealed_values={}, sealed_pcrs=range(8),
                               authority_pem=self.authority.public_pem, **overrides)

    def carrying(self, raw: bytes, approval: bytes | None, *, used: Approval,
                 requote: bool = False) -> bytes:
        """``raw`` with ``approval`` (bytes) as its evidence's approval, re-quoted (of the
        policy's PCRs) when asked, and re-signed in the TPM under the approval ``used``:
        what a lying host can make."""
        parsed = jws.parse(raw)
        claims = parsed.claims
        if requote:
            made: dict[str, Claims] = {}

            def bind(values: Mapping[tuple[str, int], bytes]) -> bytes:
                made["claims"] = dataclasses.replace(
                    claims, env_pcrs={i: v.hex() for (_, i), v in values.items()})
                return binding(made["claims"])

            with self.rig.tpm() as tpm:
                quote = create_quote(tpm, self.rig.identity, QUOTED, bind)
            claims = dataclasses.replace(made["claims"], evidence=dataclasses.replace(
                claims.evidence, quote=quote.message, quote_signature=quote.signature))
        claims = dataclasses.replace(
            claims, evidence=dataclasses.replace(claims.evidence, approval=approval))
        signing_input = jws.signing_input(parsed.header, claims)
        key = signing.load_key(self.rig.home, self.rig.key)
        with self.rig.tpm() as tpm:
            tss = signing.sign_digest(tpm, key, hashlib.sha256(signing_input).digest(), used)
        return jws.assemble(signing_input, signing.ecdsa_r_s(tss))


@pytest.fixture
def approvals(rig: Rig) -> Iterator[Approvals]:
    authority = Authority.make()
    public = rig.tmp / "authority.pub"
    public.write_bytes(authority.public_pem)
    rig.host.ok("key", "create", "--name", "signed", "--authority", str(public))
    rig.key = "signed"
    yield Approvals(rig, authority)


def _carried(raw: bytes) -> Approval:
    evidence: Evidence = jws.parse(raw).claims.evidence
    assert evidence.approval is not None
    return parse_approval(evidence.approval)


def _firmware_v2(rig: Rig) -> None:
    rig.host.ok("pcr", "extend", "4", "--data", "boot loader v2")


def _roll_back(rig: Rig) -> None:
    """Boot the v1 firmware again: a TPM restart resets PCRs 0-7 to the v1 values."""
    rig.host.sim.stop()
    rig.host.sim.start()
    rig.host.ok("measure", "command", "--", "ls")  # a new boot's log: measured anew


def test_a_rollback_to_a_superseded_approval_is_denied(approvals: Approvals) -> None:
    rig = approvals.rig
    v1 = approvals.approve(1)
    _firmware_v2(rig)
    v2 = approvals.approve(2)
    current = approvals.issue(v1, v2)
    assert _carried(current).id == v2.id  # the host picks the approval of its state
    retiring = rig.verifier(approvals.policy(min_approval_serial=2), rig.store("retiring"))
    revoking = rig.verifier(approvals.policy(revoked_approvals=[v1.id]), rig.store("revoking"))

    _roll_back(rig)
    # The TPM signs under v1 again (it cannot forget an approval) ...
    rolled_back = approvals.issue(v1, v2)
    assert _carried(rolled_back).id == v1.id
    # ... so the verifier must: by serial, or by naming the approval.
    decision = retiring.verify(rolled_back)
    denied(decision, "key_policy_mismatch")
    assert "superseded" in decision.denials[0].message
    decision = revoking.verify(rolled_back)
    denied(decision, "key_policy_mismatch")
    assert "revoked" in decision.denials[0].message
    # Honest use of the newest approval stays accepted under both, and says which it was.
    decision = retiring.verify(current)
    accepted(decision)
    assert decision.facts["approval"] == {"id": v2.id, "serial": 2}
    accepted(revoking.verify(current))


def test_a_host_that_used_a_newer_approval_cannot_go_back(approvals: Approvals) -> None:
    """No policy edit needed: once an AK's artifact is accepted under serial 2, the
    verifier refuses it serial 1; going back takes a new approval with a higher serial."""
    rig = approvals.rig
    v1 = approvals.approve(1)
    _firmware_v2(rig)
    v2 = approvals.approve(2)
    verifier = rig.verifier(approvals.policy())
    accepted(verifier.verify(approvals.issue(v1, v2)))
    _roll_back(rig)
    rolled_back = approvals.issue(v1, v2)
    decision = verifier.verify(rolled_back)
    denied(decision, "key_policy_mismatch")
    assert "(serial 1): approval serial 1 is older than serial 2" in decision.denials[0].message
    # The authority approves the old values again, as a new approval: accepted.
    v1_again = approvals.approve(3)
    accepted(verifier.verify(approvals.issue(v1, v2, v1_again)))


def test_an_approval_of_other_values_than_the_quoted_ones_is_denied(
        approvals: Approvals) -> None:
    """A host in the v1 state signs under v1 but shows v2, the approval the policy wants."""
    rig = approvals.rig
    v1 = approvals.approve(1)
    _firmware_v2(rig)
    v2 = approvals.approve(2)
    verifier = rig.verifier(approvals.policy(min_approval_serial=2))
    _roll_back(rig)
    lying = approvals.carrying(approvals.issue(v1), v2.to_bytes(), used=v1)
    decision = verifier.verify(lying)
    denied(decision, "key_policy_mismatch")
    assert "does not approve the quoted sealed PCRs" in decision.denials[0].message
    assert "sha256:4" in decision.denials[0].message


def test_an_artifact_without_its_approval_is_denied(approvals: Approvals) -> None:
    v1 = approvals.approve(1)
    raw = approvals.carrying(approvals.issue(v1), None, used=v1)
    decision = approvals.rig.verifier(approvals.policy()).verify(raw)
    denied(decision, "key_policy_mismatch")
    assert "evidence.approval" in decision.denials[0].message


def test_an_expired_approval_is_denied(approvals: Approvals) -> None:
    live = approvals.approve(1)
    expired = approvals.approve(1, not_after=int(time.time()) - 1)
    # The host can't sign with it (issuance skips expired approvals) ...
    with pytest.raises(signing.PCRPolicyMismatch, match="expired"):
        approvals.issue(expired)
    # ... but the TPM would: it knows no time. The verifier does.
    raw = approvals.carrying(approvals.issue(live), expired.to_bytes(), used=live)
    decision = approvals.rig.verifier(approvals.policy()).verify(raw)
    denied(decision, "key_policy_mismatch")
    assert "expired" in decision.denials[0].message


def _edited(approval: Approval, **members: Any) -> bytes:
    document = json.loads(approval.to_bytes())
    document.update(members)
    return json.dumps(document).encode()


def test_a_forged_or_altered_approval_is_denied(approvals: Approvals) -> None:
    rig = approvals.rig
    v1 = approvals.approve(1)
    raw = approvals.issue(v1)
    strict = rig.verifier(approvals.policy(min_approval_serial=2))
    rogue = approvals.approve(7, authority=Authority.make())
    tpm_signature_as_document = dataclasses.replace(
        v1, serial=7, document_signature=v1.signature).to_bytes()
    cases = {
        # The serial the TPM signature does not cover, raised past min_approval_serial.
        "serial raised": (_edited(v1, serial=7), "document signature"),
        "expiry dropped": (_edited(approvals.approve(1, not_after=int(time.time()) + 5),
                                   not_after=None), "document signature"),
        "TPM signature reused as the document's": (tpm_signature_as_document,
                                                   "document signature"),
        "another authority's": (rogue.to_bytes(), "another authority"),
    }
    for name, (document, says) in cases.items():
        decision = strict.verify(approvals.carrying(raw, document, used=v1))
        denied(decision, "key_policy_mismatch")
        assert says in decision.denials[0].message, name
    garbage = approvals.carrying(raw, b'{"format": "attest-approval/1", "serial": 7}', used=v1)
    denied(strict.verify(garbage), "malformed_artifact")


def test_an_approval_with_a_huge_pcr_range_is_malformed_at_once(approvals: Approvals) -> None:
    """The attack: a host's artifact carries an approval whose pcrs is
    sha256:0-999999999 (inside the 256 characters the parser takes). Before, the
    verifier expanded the range into 10^9 ints before checking it, gigabytes per request,
    before any signature was checked. Now it is refused as it is read."""
    rig = approvals.rig
    v1 = approvals.approve(1)
    raw = approvals.issue(v1)
    strict = rig.verifier(approvals.policy())
    for pcrs in ("sha256:0-999999999", "sha256:0-7,999999999", "sha256:0-" + "9" * 200):
        decision = strict.verify(approvals.carrying(raw, _edited(v1, pcrs=pcrs), used=v1))
        denied(decision, "malformed_artifact")
        assert "malformed PCR index" in decision.denials[0].message


def test_an_approval_of_fewer_pcrs_than_the_sealed_ones_is_denied(
        approvals: Approvals) -> None:
    """The authority approved PCRs 0-3 only: the key signs whatever PCRs 4-7 hold."""
    narrow = approvals.approve(1, selection=PCRSelection.parse("sha256:0-3"))
    # Issuance quotes the approval's PCRs; the host quotes the policy's, as it must.
    raw = approvals.carrying(approvals.issue(narrow), narrow.to_bytes(), used=narrow,
                             requote=True)
    decision = approvals.rig.verifier(approvals.policy()).verify(raw)
    denied(decision, "key_policy_mismatch")
    assert "the policy's sealed PCRs are sha256:0,1,2,3,4,5,6,7" in decision.denials[0].message


def test_the_cli_approves_with_a_serial_and_issues_under_the_newest(
        approvals: Approvals, tmp_path: Path) -> None:
    rig = approvals.rig
    key = tmp_path / "authority.key"
    key.write_bytes(approvals.authority.private_pem)
    files = []
    for serial in (1, 2):
        out = tmp_path / f"approval-{serial}.json"
        made = rig.host.ok("policy", "approve", "--authority-key", str(key), "--pcrs",
                           "sha256:0-7", "--serial", str(serial), "--expires", "1d",
                           "--out", str(out))
        files += ["--approval", str(out)]
        approval = Approval.from_json(out.read_bytes())
        assert f"approval id {approval.id}" in made.output
    artifact = tmp_path / "a.jws"
    rig.host.ok("authorize", "--subject", "deploy-bot", "--key", "signed", *files,
                "--out", str(artifact), "--", "ls")
    raw = artifact.read_bytes()
    assert _carried(raw).serial == 2
    accepted(rig.verifier(approvals.policy(min_approval_serial=2)).verify(raw))


def test_an_approval_revoked_in_the_store_is_denied_and_logged(approvals: Approvals,
                                                              tmp_path: Path) -> None:
    rig = approvals.rig
    v1 = approvals.approve(1)
    first, second = approvals.issue(v1), approvals.issue(v1)
    policy = approvals.policy().path
    assert policy is not None
    for name, raw in (("first", first), ("second", second)):
        (tmp_path / f"{name}.jws").write_bytes(raw)

    def verify(name: str) -> tuple[int, dict[str, Any]]:
        result = rig.host.run("verify", str(tmp_path / f"{name}.jws"), "--policy", str(policy),
                              "--json")
        return result.exit_code, json.loads(result.stdout)

    assert verify("first")[0] == 0
    refused = rig.host.run("revoke", "--approval", v1.id.upper(), "--reason", "typo")
    assert refused.exit_code == 2 and "approval id" in refused.stderr
    said = json.loads(rig.host.ok("revoke", "--approval", v1.id, "--reason",
                                  "firmware v1 withdrawn", "--json").stdout)
    assert said == {"revoked": "approval", "subjects": [v1.id],
                    "reason": "firmware v1 withdrawn"}
    code, out = verify("second")
    assert (code, out["reasons"]) == (1, ["revoked"])
    assert "firmware v1 withdrawn" in out["denials"][0]["message"]
    entries = [json.loads(line) for line in rig.host.ok("audit", "export").stdout.splitlines()]
    assert any(e["kind"] == "revocation" and e.get("subject") == f"approval:{v1.id}"
               for e in entries)
    rig.host.ok("audit", "verify")


def _new_ak(rig: Rig) -> None:
    """The host "lost" its AK: evicted (owner authorization, empty), provisioned anew."""
    from tpm2_pytss.constants import ESYS_TR

    from attest.tpm.hierarchy import AK_HANDLE

    with rig.tpm() as tpm:
        handle = tpm.esapi.tr_from_tpmpublic(AK_HANDLE)
        tpm.esapi.evict_control(ESYS_TR.OWNER, handle, AK_HANDLE)
    rig.host.ok("provision", "--replace-identity")


def test_a_new_ak_of_the_same_tpm_and_host_cannot_go_back_either(
        approvals: Approvals) -> None:
    """The serial mark belongs to the TPM, not to one AK: a host that moved on to v2,
    got a new AK of the same TPM enrolled under its host id (no move needed: same EK),
    and rolled back, is refused v1 as before."""
    rig = approvals.rig
    store = rig.store()
    rig.enroll(store)
    v1 = approvals.approve(1)
    _firmware_v2(rig)
    v2 = approvals.approve(2)
    verifier = rig.verifier(approvals.policy(trusted_aks=[]), store)
    accepted(verifier.verify(approvals.issue(v1, v2)))
    old_ak = rig.identity.ak_name
    _new_ak(rig)
    assert rig.identity.ak_name != old_ak
    rig.enroll(store)  # same EK, same host id: an ordinary re-enrollment
    _roll_back(rig)
    decision = verifier.verify(approvals.issue(v1, v2))
    denied(decision, "key_policy_mismatch")
    assert "older than serial 2" in decision.denials[0].message
