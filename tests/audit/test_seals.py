"""The encodings enrollment and artifact seals cover: no two records share one."""

from __future__ import annotations

import dataclasses
from typing import Any

from attest.audit.note import NoteSigner
from attest.audit.seals import artifact_data, artifact_sealed, seal_data
from attest.store.records import ArtifactRecord

BASE: dict[str, Any] = {"ak_name": "000b" + "aa" * 32, "host": "web-1",
                        "ak_public": b"public", "ak_qualified_name": b"qn",
                        "ek_certificate": b"cert", "ek": "cd" * 32}


def test_a_byte_moved_across_a_field_boundary_changes_the_encoding() -> None:
    shifted = seal_data(**{**BASE, "host": "web-1p", "ak_public": b"ublic"})
    assert shifted != seal_data(**BASE)


def test_an_absent_field_is_not_an_empty_one() -> None:
    assert (seal_data(**{**BASE, "ek_certificate": None})
            != seal_data(**{**BASE, "ek_certificate": b""}))
    assert seal_data(**{**BASE, "ek": None}) != seal_data(**{**BASE, "ek": ""})


def test_every_field_is_covered() -> None:
    changed = {"ak_name": "000b" + "ab" * 32, "host": "web-2", "ak_public": b"other",
               "ak_qualified_name": b"other", "ek_certificate": None, "ek": "ce" * 32}
    base = seal_data(**BASE)
    for field, value in changed.items():
        assert seal_data(**{**BASE, field: value}) != base, field


def test_a_seal_is_keyed_apart_from_entry_macs_and_other_keys() -> None:
    signer = NoteSigner.generate("example.org/attest-audit")
    data = seal_data(**BASE)
    assert signer.trust_mac(data) == signer.trust_mac(data)
    assert signer.trust_mac(data) != NoteSigner.generate("example.org/attest-audit").trust_mac(data)
    # Same bytes under the entry-MAC derivation: a different key.
    index, leaf = int.from_bytes(data[:8], "big"), data[8:]
    assert signer.entry_mac(index, leaf) != signer.trust_mac(data)


# -- artifact seals ---------------------------------------------------------------------

ARTIFACT = ArtifactRecord(jti="j-1", sha256="ab" * 32, parent_jti="p-1", depth=1, exp=1000,
                          host="web-1", kid="000b" + "cc" * 32, ak_name="000b" + "aa" * 32,
                          subject="ops", scope='{"action": "exec"}', approval="dd" * 32)


def test_every_artifact_field_lineage_rests_on_is_covered() -> None:
    changed: dict[str, Any] = {
        "jti": "j-2", "sha256": "ac" * 32, "parent_jti": None, "depth": 2, "exp": 1001,
        "host": "web-2", "kid": "000b" + "cd" * 32, "ak_name": "000b" + "ab" * 32,
        "subject": "dev", "scope": '{"action": "read"}', "approval": None}
    base = artifact_data(ARTIFACT)
    for field, value in changed.items():
        assert artifact_data(dataclasses.replace(ARTIFACT, **{field: value})) != base, field
    # What the seal does not rest on: when it was accepted, the revocations (own table).
    assert artifact_data(dataclasses.replace(ARTIFACT, accepted_at=5, revoked=True)) == base


def test_an_artifact_field_cannot_run_into_the_next_and_absent_is_not_empty() -> None:
    assert (artifact_data(dataclasses.replace(ARTIFACT, host="web-1x", kid="000b"))
            != artifact_data(dataclasses.replace(ARTIFACT, host="web-1", kid="x000b")))
    assert (artifact_data(dataclasses.replace(ARTIFACT, parent_jti=None))
            != artifact_data(dataclasses.replace(ARTIFACT, parent_jti="")))


def test_an_artifact_seal_is_never_an_enrollment_seal() -> None:
    """Distinct version labels: no bytes are both an enrollment's and an artifact's."""
    assert artifact_data(ARTIFACT)[:24] != seal_data(**BASE)[:24]
    assert artifact_data(ARTIFACT).split(b"\0", 1)[0] == b"attest artifact seal v1"
    assert seal_data(**BASE).split(b"\0", 1)[0] == b"attest enrollment seal v1"


def test_artifact_sealed_checks_the_mac_over_the_values_held() -> None:
    signer = NoteSigner.generate("example.org/attest-audit")
    sealed = dataclasses.replace(ARTIFACT, seal=signer.trust_mac(artifact_data(ARTIFACT)))
    assert artifact_sealed(signer, sealed)
    assert not artifact_sealed(signer, dataclasses.replace(sealed, exp=2000))
    assert not artifact_sealed(signer, ARTIFACT)  # no seal
    assert not artifact_sealed(NoteSigner.generate("example.org/attest-audit"), sealed)
