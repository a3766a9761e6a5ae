"""The pure parts of signature bundles: DSSE's PAE and envelope, in-toto statements, the
bundle's strict parser. No TPM."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from attest.errors import BatchProofError, EvidenceError
from attest.reasons import Reason
from attest.signing.batch import Membership
from attest.signing.bundle import Bundle, quote_binding
from attest.signing.dsse import Envelope, Signature, pae, unb64
from attest.signing.statement import Statement, Subject

# The DSSE specification's worked example (secure-systems-lab/dsse, protocol.md), and the
# edge cases its grammar implies: lengths in bytes, decimal, no leading zero.
PAE_VECTORS = [
    ("http://example.com/HelloWorld", b"hello world",
     b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"),
    ("", b"", b"DSSEv1 0  0 "),
    ("t", b"\x00 \n", b"DSSEv1 1 t 3 \x00 \n"),
    ("caf\u00e9", b"x" * 10, b"DSSEv1 5 caf\xc3\xa9 10 " + b"x" * 10),
]


@pytest.mark.parametrize(("kind", "body", "expected"), PAE_VECTORS)
def test_pae_follows_the_dsse_grammar(kind: str, body: bytes, expected: bytes) -> None:
    assert pae(kind, body) == expected


def _envelope(**overrides: Any) -> dict[str, Any]:
    made = Envelope("text/plain", b"hi", (Signature("0b", b"\x30\x06"),)).to_json()
    made.update(overrides)
    return made


def test_an_envelope_round_trips() -> None:
    data = _envelope()
    assert Envelope.from_json(data, max_payload=10).to_json() == data


@pytest.mark.parametrize("change", [
    {"extra": 1},
    {"payload": "aGk"},  # unpadded
    {"payload": "aGl="},  # not canonical: unused bits set
    {"payload": "aG k="},
    {"payload": base64.b64encode(b"x" * 11).decode()},  # over the bound
    {"payloadType": ""},
    {"payloadType": "a\nb"},
    {"signatures": []},
    {"signatures": [{"keyid": "0b", "sig": "MAY="}] * 2},
    {"signatures": [{"keyid": "0B", "sig": "MAY="}]},
    {"signatures": [{"keyid": "0b", "sig": "MAY=", "cert": "x"}]},
])
def test_envelopes_are_parsed_strictly(change: dict[str, Any]) -> None:
    with pytest.raises(EvidenceError) as caught:
        Envelope.from_json(_envelope(**change), max_payload=10)
    assert caught.value.reason is Reason.MALFORMED_ARTIFACT


def test_base64_is_canonical_only() -> None:
    assert unb64("AA==", "x", 1) == b"\x00"
    for text in ("AB==", "AA", "AA=", "A A=", "AA==\n", "-_8="):
        with pytest.raises(EvidenceError):
            unb64(text, "x", 4)


@pytest.mark.parametrize(("text", "words"), [
    # Outside the alphabet or padding out of place: strict decoding refuses them.
    ("A A=", "not standard"), ("AA==\n", "not standard"), (" AA=", "not standard"),
    ("-_8=", "not standard"), ("\uff41w==", "not standard"), ("=AA=", "not standard"),
    ("AA==AA==", "not standard"), ("AA===", "not standard"), ("A===", "not standard"),
    ("AA=A", "not standard"), ("A", "not standard"), ("AA", "not standard"),
    # Decodable, but not the one encoding of its bytes (unused bits set).
    ("AB==", "not canonical"), ("AAB=", "not canonical"), ("QR==", "not canonical"),
])
def test_base64_refusals_keep_their_reason(text: str, words: str) -> None:
    """unb64 decodes with binascii's strict mode, then compares the re-encoding: every
    text but the one encoding of its bytes is refused, as malformed_artifact."""
    with pytest.raises(EvidenceError) as caught:
        unb64(text, "x", 4)
    assert caught.value.reason is Reason.MALFORMED_ARTIFACT
    assert words in caught.value.message


@pytest.mark.parametrize("size", range(0, 7))
def test_every_canonical_base64_text_decodes(size: int) -> None:
    for data in (bytes(size), bytes(range(255, 255 - size, -1))):
        assert unb64(base64.b64encode(data).decode(), "x", 8) == data


def test_a_statement_round_trips_and_is_strict() -> None:
    made = Statement((Subject("a.tar", "00" * 32), Subject("b", "ff" * 32)))
    assert Statement.from_bytes(made.to_bytes()) == made
    body = json.loads(made.to_bytes())
    for bad in (
        {**body, "extra": 1},
        {**body, "_type": "https://in-toto.io/Statement/v0.1"},
        {**body, "subject": []},
        {**body, "subject": [{"name": "a", "digest": {"sha256": "AA" * 32}}]},
        {**body, "subject": [{"name": "a", "digest": {"sha256": "00" * 32, "sha1": "00"}}]},
        {**body, "predicate": []},
    ):
        with pytest.raises(EvidenceError):
            Statement.from_bytes(json.dumps(bad).encode())
    twice = made.to_bytes().replace(b'"predicate":{}', b'"predicate":{},"predicate":{}')
    with pytest.raises(EvidenceError):
        Statement.from_bytes(twice)


def _bundle() -> Bundle:
    return Bundle(envelope=Envelope("text/plain", b"hi", (Signature("0b", b"\x30\x06"),)),
                  batch=None, time=1, key_public=b"k", certify=b"c", certify_signature=b"s",
                  quote=b"q", quote_signature=b"qs", bank="sha256", pcrs={15: b"\x00" * 32},
                  ak_public=b"a", ak_qualified_name=b"\x00\x0b", eks=("ab" * 32,),
                  runtime_log=b"", boot_log=None)


def test_a_bundle_round_trips() -> None:
    made = _bundle()
    assert Bundle.from_bytes(made.to_bytes()) == made
    batched = Bundle.from_bytes(json.dumps(dict(
        json.loads(made.to_bytes()),
        batch={"root": "11" * 32, "index": 1, "size": 2, "proof": ["22" * 32]})).encode())
    assert batched.batch == Membership(1, 2, b"\x11" * 32, (b"\x22" * 32,))


@pytest.mark.parametrize(("path", "value"), [
    (("version",), 2), (("version",), True), (("version",), 1.0),
    (("type",), "other"),
    (("time",), -1), (("time",), "1"), (("time",), 1 << 41),
    (("quote", "bank"), "md5"),
    (("quote", "pcrs"), {"24": "00" * 32}), (("quote", "pcrs"), {"01": "00" * 32}),
    (("quote", "pcrs"), {"1": "AA" * 32}),
    # Every other spelling of an index: each PCR has one key.
    (("quote", "pcrs"), {"-1": "00" * 32}), (("quote", "pcrs"), {" 1": "00" * 32}),
    (("quote", "pcrs"), {"1 ": "00" * 32}), (("quote", "pcrs"), {"+1": "00" * 32}),
    (("quote", "pcrs"), {"\uff11": "00" * 32}), (("quote", "pcrs"), {"1_0": "00" * 32}),
    (("quote", "pcrs"), {"": "00" * 32}), (("quote", "pcrs"), {"99": "00" * 32}),
    (("quote", "pcrs"), {"1": "00" * 19 + "0"}), (("quote", "pcrs"), {"1": 1}),
    (("ak", "qualified_name"), "0"),
    (("ek",), ["ab"]), (("ek",), ["ab" * 32] * 9),
    (("key", "extra"), "AA=="),
    (("boot_log",), 0),
])
def test_bundles_are_parsed_strictly(path: tuple[str, ...], value: Any) -> None:
    data = json.loads(_bundle().to_bytes())
    target = data
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with pytest.raises(EvidenceError) as caught:
        Bundle.from_bytes(json.dumps(data).encode())
    assert caught.value.reason is Reason.MALFORMED_ARTIFACT


@pytest.mark.parametrize("member", [
    {"root": "11" * 32, "index": 2, "size": 2, "proof": []},
    {"root": "11" * 32, "index": 0, "size": 1, "proof": ["22" * 32]},  # 1 of 1: no hash
    {"root": "11" * 32, "index": 0, "size": 2, "proof": []},  # 0 of 2: exactly one
    {"root": "11" * 32, "index": 0, "size": 1, "proof": ["22" * 32] * 65},
    {"root": "11" * 32, "index": 0, "size": 1},
    {"root": "11" * 32, "index": 0, "size": 1 << 17, "proof": ["22" * 32] * 17},
    {"root": "11" * 32, "index": True, "size": 2, "proof": ["22" * 32]},
    {"root": "AA" * 32, "index": 0, "size": 1, "proof": []},
    [],
])
def test_batch_members_are_parsed_strictly(member: Any) -> None:
    data = json.loads(_bundle().to_bytes())
    data["batch"] = member
    with pytest.raises(BatchProofError) as caught:
        Bundle.from_bytes(json.dumps(data).encode())
    assert caught.value.reason is Reason.BATCH_PROOF_INVALID


def test_a_bundle_is_one_json_object_of_bounded_size() -> None:
    for raw in (b"", b"[]", b"\xff", b'{"version": 1, "version": 1}', b"{" * 100000,
                b" " * (17 << 20)):
        with pytest.raises(EvidenceError):
            Bundle.from_bytes(raw)


def test_the_quote_binding_changes_with_every_input() -> None:
    base = (b"\x01" * 32, 5, b"\x00\x0bkey", ("ab" * 32,), b"log", None)
    seen = {quote_binding(*base)}
    variants = [
        (b"\x02" * 32, *base[1:]), (base[0], 6, *base[2:]),
        (*base[:2], b"\x00\x0bkez", *base[3:]), (*base[:3], ("cd" * 32,), *base[4:]),
        (*base[:3], (), *base[4:]), (*base[:4], b"loh", None), (*base[:5], b"boot"),
        (*base[:5], b""), (*base, b"approval"),
    ]
    for variant in variants:
        seen.add(quote_binding(*variant))
    # A boot log that is empty and none bind alike: neither carries a record.
    assert len(seen) == len(variants)
    assert quote_binding(*base, b"approval") != quote_binding(*base, b"approvam")
