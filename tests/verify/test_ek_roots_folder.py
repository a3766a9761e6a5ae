"""What a folder in a policy's `ek_roots` holds, as the verifier reads it (docs/policy.md):
certificate files by suffix, symlinks to them, PEM files without a certificate skipped; a
folder left without certificates denies with ek_chain_invalid, never an internal error."""

from __future__ import annotations

import shutil
from pathlib import Path

from attest.decision import Decision
from tests.verify.rig import Rig, accepted, denied

STORE_ENROLLMENT = {"trusted_aks": []}


def test_a_folder_of_ek_roots_is_read_as_the_docs_say(rig: Rig) -> None:
    store = rig.store()
    rig.enroll(store)
    sim = rig.host.sim
    raw = [rig.issue() for _ in range(3)]

    def decide(folder: Path, artifact: bytes) -> Decision:
        # A new Verifier each time: one remembers a good EK check for the clock hour.
        policy = rig.policy(**STORE_ENROLLMENT, ek_roots=[str(folder)])
        return rig.verifier(policy, store).verify(artifact)

    # swtpm's own CA folder: private keys (PEM, no certificate) and a serial file beside
    # the certificates are skipped.
    assert any(p.suffix == ".pem" and b"PRIVATE KEY" in p.read_bytes()
               for p in sim.ca_dir.iterdir())
    accepted(decide(sim.ca_dir, raw[0]))

    # Symlinks to certificate files count; other suffixes and subfolders are not read.
    linked = rig.tmp / "linked"
    linked.mkdir()
    (linked / "root.crt").symlink_to(sim.root_ca_cert)
    (linked / "issuer.cer").symlink_to(sim.intermediate_ca_cert)
    (linked / "README.txt").write_text("not a certificate, not read\n")
    (linked / "old").mkdir()
    (linked / "old" / "junk.pem").write_text("-----BEGIN JUNK-----\n")
    accepted(decide(linked, raw[1]))

    # A folder emptied after the policy loaded: a denial with its reason, not a crash.
    emptied = rig.tmp / "emptied"
    emptied.mkdir()
    shutil.copy(sim.root_ca_cert, emptied)
    policy = rig.policy(**STORE_ENROLLMENT, ek_roots=[str(emptied)])
    (emptied / sim.root_ca_cert.name).unlink()
    decision = rig.verifier(policy, store).verify(raw[2])
    denied(decision, "ek_chain_invalid")
    assert "no certificates" in decision.denials[0].message
