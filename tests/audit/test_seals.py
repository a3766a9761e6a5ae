"""The encoding an enrollment seal covers: no two enrollments share it."""

from __future__ import annotations

from typing import Any

from attest.audit.note import NoteSigner
from attest.audit.seals import seal_data

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
