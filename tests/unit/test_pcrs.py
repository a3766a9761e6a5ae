"""PCR selections in tpm2-tools syntax and their TPML_PCR_SELECTION bytes."""

from __future__ import annotations

import pytest
from tpm2_pytss import TPML_PCR_SELECTION

from attest.errors import UsageError
from attest.evidence.pcrs import PCRSelection, composite_digest, hash_name


@pytest.mark.parametrize(("text", "canonical"), [
    ("sha256:0,1,2", "sha256:0,1,2"),
    ("sha256:2,0,1,1", "sha256:0,1,2"),
    ("SHA256:0-3", "sha256:0,1,2,3"),
    ("sha256:0x0f", "sha256:15"),
    ("sha1:0+sha256:7,0", "sha1:0+sha256:0,7"),
    ("sha256:all", "sha256:" + ",".join(map(str, range(24)))),
])
def test_parse_and_print(text: str, canonical: str) -> None:
    assert str(PCRSelection.parse(text)) == canonical


@pytest.mark.parametrize("text", ["", "  ", "sha256", "sha256:", "sha256:a", "sha256:24",
                                  "sha256:-1", "sha256:5-2", "md5:0", "sha256:0,,1"])
def test_malformed_lists_raise_usage_error(text: str) -> None:
    with pytest.raises(UsageError):
        PCRSelection.parse(text)


@pytest.mark.parametrize("text", ["sha256:0", "sha256:0,1,2,3,4,5,6,7", "sha1:0+sha256:23",
                                  "sha256:all", "sha384:8,16"])
def test_marshal_matches_tpm2_pytss(text: str) -> None:
    ours = PCRSelection.parse(text).marshal()
    theirs = TPML_PCR_SELECTION.parse(text).marshal()
    assert ours == bytes(theirs)


def test_iteration_is_bank_then_ascending_index() -> None:
    assert list(PCRSelection.parse("sha256:7,1+sha1:3")) == [
        ("sha256", 1), ("sha256", 7), ("sha1", 3)]


def test_composite_digest_is_hash_of_values_in_selection_order() -> None:
    import hashlib

    selection = PCRSelection.parse("sha256:1,0")
    values = {("sha256", 0): b"\x00" * 32, ("sha256", 1): b"\x11" * 32}
    assert composite_digest(selection, values, "sha256") == hashlib.sha256(
        b"\x00" * 32 + b"\x11" * 32).digest()


@pytest.mark.parametrize(("given", "name"), [("sha256", "sha256"), ("SHA-256", "sha256"),
                                             ("0x000b", "sha256"), ("sha1", "sha1")])
def test_hash_names(given: str, name: str) -> None:
    assert hash_name(given) == name


@pytest.mark.parametrize("text", [
    "sha256:0-99999999999",  # a range is checked before it is expanded
    "sha256:0-" + "9" * 200,
    "sha256:0x100", "sha256:0-0x18", "sha256:010", "sha256:1_0", "sha256:+1", "sha256:\u0661",
    "sha256:1 2", "sha256:all,1", "sha256:" + ",".join(["0"] * 300), "sha256:0+",
])
def test_hostile_selections_are_refused_before_any_work(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        PCRSelection.parse(text)
    assert caught.value.hint is not None and "sha256:0-7,15" in caught.value.hint


@pytest.mark.parametrize(("text", "canonical"), [
    ("sha256:0-7,15", "sha256:0,1,2,3,4,5,6,7,15"),
    ("sha256: 1 - 3 ", "sha256:1,2,3"),
    ("sha256:0x0-0x2", "sha256:0,1,2"),
    ("sha256:23", "sha256:23"),
])
def test_the_forms_people_and_tpm2_tools_write(text: str, canonical: str) -> None:
    assert str(PCRSelection.parse(text)) == canonical


def test_an_approval_with_a_huge_range_is_malformed_not_a_memory_error() -> None:
    """The attack: an artifact carries an approval whose pcrs is sha256:0-999999999. The
    verifier parses it before any signature; the old parser built a list of 10^9 ints
    before it checked the range (gigabytes, per request). Now: malformed, at once."""
    import json

    from attest.errors import EvidenceError
    from attest.evidence.approval import FORMAT, parse_approval

    document = {"format": FORMAT, "authority_public": "", "pcrs": "sha256:0-999999999",
                "values": {}, "policy_ref": "", "approved_policy": "", "serial": 1,
                "not_after": None, "signature": "", "document_signature": ""}
    with pytest.raises(EvidenceError, match="pcrs: malformed PCR index"):
        parse_approval(json.dumps(document).encode())
