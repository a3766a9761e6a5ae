"""Mutation: no flipped byte of a valid artifact is ever accepted, or crashes the verifier.

Every artifact of the recorded corpus (tests/corpus: real artifacts made on swtpm, of
three hosts, with lineage, a nonce, an audience and an authority's approval) is swept, no
TPM needed: bytes are flipped in every part of it: the compact serialization's base64
text, the JWS header's JSON, the claims' JSON, each evidence field it carries (decoded
from base64url, flipped, encoded again) and the signature. Every mutant is verified
*before* the original, with a single-use policy: the original is accepted afterwards,
so no mutant consumed its jti (or its nonce). A denial must carry a real reason:
``internal_error`` means an exception escaped a check, which is a verifier bug.

A second sweep re-signs mutated evidence inside the TPM, so that the JWS signature holds
and the evidence checks themselves must catch the change.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from attest.artifact import jws
from attest.artifact.model import Claims, Evidence, b64url
from attest.decision import Decision
from attest.evidence.signatures import public_key
from attest.evidence.structures import parse_public_tpm2b
from attest.verify.verifier import Verifier
from tests.corpus import Bench, Corpus
from tests.verify.rig import Rig, accepted, b64d, denied

SEED = 20261126
EVIDENCE_FIELDS = ("quote", "quote_sig", "key", "certify", "certify_sig", "ak", "runtime_log")


@dataclass(frozen=True)
class Mutant:
    part: str
    position: int
    xor: int
    raw: bytes


def _rng(seed: int) -> random.Random:
    """Reproducible positions and masks: a failure names its seed, byte and mask."""
    return random.Random(seed)  # noqa: S311 - sampling, not secrets


def _flip(data: bytes, position: int, xor: int) -> bytes:
    out = bytearray(data)
    out[position] ^= xor
    return bytes(out)


def mutants(raw: bytes, rng: random.Random,
            fields: Iterable[str] = EVIDENCE_FIELDS) -> Iterator[Mutant]:
    """Every byte of every part (of the evidence: ``fields``), flipped with a random
    non-zero mask (twice for the short header and signature, once with a single bit)."""
    header_b64, payload_b64, signature_b64 = raw.split(b".")
    header, payload, signature = b64d(header_b64), b64d(payload_b64), b64d(signature_b64)
    for i in range(len(raw)):
        xor = rng.randrange(1, 256)
        yield Mutant("base64 text", i, xor, _flip(raw, i, xor))
    for i in range(len(header)):
        for xor in (1 << rng.randrange(8), rng.randrange(1, 256)):
            yield Mutant("header", i, xor, b".".join(
                (b64url(_flip(header, i, xor)).encode(), payload_b64, signature_b64)))
    for i in range(len(payload)):
        xor = rng.randrange(1, 256)
        yield Mutant("claims", i, xor, b".".join(
            (header_b64, b64url(_flip(payload, i, xor)).encode(), signature_b64)))
    evidence = json.loads(payload)["evidence"]
    for name in fields:
        text = evidence[name].encode()
        assert payload.count(text) == 1, name
        value = b64d(text)
        for i in range(len(value)):
            xor = rng.randrange(1, 256)
            mutated = payload.replace(text, b64url(_flip(value, i, xor)).encode())
            yield Mutant(f"evidence.{name}", i, xor, b".".join(
                (header_b64, b64url(mutated).encode(), signature_b64)))
    for i in range(len(signature)):
        for xor in (1 << rng.randrange(8), rng.randrange(1, 256)):
            yield Mutant("signature", i, xor, b".".join(
                (header_b64, payload_b64, b64url(_flip(signature, i, xor)).encode())))


def _sweep(verifier: Verifier, items: Iterator[Mutant], now: int) -> tuple[Counter[str],
                                                                           list[str]]:
    per_part: Counter[str] = Counter()
    wrong: list[str] = []
    for mutant in items:
        if mutant.raw.strip() == b"":
            continue
        per_part[mutant.part] += 1
        decision = verifier.verify(mutant.raw, now=now)
        if decision.accepted or "internal_error" in decision.reasons:
            wrong.append(f"{mutant.part} byte {mutant.position} ^ 0x{mutant.xor:02x}: "
                         f"{decision.to_json()['denials'] or 'ACCEPTED'}")
    return per_part, wrong


# Every byte of web-1-exec is flipped, every other mutant of the artifact with an
# authority's approval (the other shape of evidence), every SAMPLED_STRIDE-th of the
# others. Audited, each denial is appended to the log in a transaction of its own (a disk
# sync): every AUDITED_STRIDE-th mutant of each artifact goes that way.
# ATTEST_MUTATION_FULL=1 flips every byte of every artifact both ways (a minute or two).
STRIDES = {"web-1-exec": 1, "web-3-authorize": 2}
SAMPLED_STRIDE = 8
AUDITED_STRIDE = 50
_FULL = os.environ.get("ATTEST_MUTATION_FULL") == "1"


def _stride(name: str, audited: bool) -> int:
    if _FULL:
        return 1
    if audited:
        return AUDITED_STRIDE
    return STRIDES.get(name, SAMPLED_STRIDE)


@pytest.mark.parametrize("audited", [False, True], ids=["unaudited", "audited"])
def test_no_flipped_byte_is_accepted_or_crashes_the_verifier(corpus: Corpus, bench: Bench,
                                                             audited: bool) -> None:
    """Each artifact of the corpus in the recorded order (a parent is accepted before its
    child is swept), at its time, through the verifier of its policy; audited, a sample
    whose denials are logged too (a mutant's hostile bytes reach the audit entry)."""
    assert all(corpus.artifact(name) for name in STRIDES)
    for recorded in corpus.artifacts:
        verifier = bench.verifier(recorded.policy, audited=audited,
                                  verifier_id=recorded.verifier_id)
        # Every base64url field the evidence carries (a field of another JSON type, as a
        # later format may add, is covered by the claims' flips).
        evidence = json.loads(b64d(recorded.raw.split(b".")[1]))["evidence"]
        fields = tuple(name for name, value in evidence.items() if isinstance(value, str))
        assert set(EVIDENCE_FIELDS) <= set(fields), recorded.name
        stride = _stride(recorded.name, audited)
        swept = itertools.islice(mutants(recorded.raw, _rng(SEED), fields), 0, None, stride)
        per_part, wrong = _sweep(verifier, swept, recorded.now)
        assert wrong == [], (f"{recorded.name}: {len(wrong)} mutants accepted or crashed:\n"
                             + "\n".join(wrong[:20]))
        parts = {"base64 text", "header", "claims", "signature",
                 *(f"evidence.{name}" for name in fields)}
        assert set(per_part) == parts, (recorded.name, per_part)
        assert sum(per_part.values()) >= 7000 // stride, (recorded.name, per_part)
        accepted(verifier.verify(recorded.raw, now=recorded.now))
        # Spent: its jti, and its nonce if it answered a challenge.
        denied(verifier.verify(recorded.raw, now=recorded.now),
               *(("nonce_reused",) if recorded.nonce else ()), "replayed")


def test_a_kid_that_is_not_hex_is_a_plain_denial(rig: Rig) -> None:
    """The header's kid reached the store's revocation lookup, which refuses non-hex names:
    internal_error from one flipped character (found by the sweep above)."""
    raw = rig.reissue(rig.issue(), header=lambda h: {**h, "kid": "zz" + h["kid"][2:]})
    denied(rig.verifier().verify(raw), "key_not_certified")


def test_mutated_evidence_signed_again_is_caught_by_the_evidence_checks(rig: Rig) -> None:
    """The host re-signs the JWS after changing evidence: the signature holds, so the quote,
    the certification, the AK or the log must tell. Sampled positions, signed in the TPM."""
    raw = rig.issue()
    original = jws.parse(raw).claims
    now = original.iat
    verifier = rig.verifier(rig.policy(single_use=False))
    rng = _rng(SEED)
    attrs = {"quote": "quote", "quote_sig": "quote_signature", "key": "key_public",
             "certify": "certify", "certify_sig": "certify_signature", "ak": "ak_public",
             "runtime_log": "runtime_log"}
    wrong: list[str] = []
    tried = 0
    for name, attr in attrs.items():
        value: bytes = getattr(original.evidence, attr)
        positions = sorted({0, 1, len(value) - 1, *rng.sample(range(len(value)), 12)})
        for i in positions:
            xor = rng.randrange(1, 256)
            mutated = _flip(value, i, xor)
            signed = rig.reissue(raw, evidence=_replacing(attr, mutated))
            tried += 1
            decision = verifier.verify(signed, now=now)
            reasons = set(decision.reasons)
            if _passed(decision) and not (name == "runtime_log" and _same_log(value, mutated)):
                wrong.append(f"{name} byte {i} ^ 0x{xor:02x}: passed every check")
            elif reasons & {"internal_error", "invalid_signature"}:
                wrong.append(f"{name} byte {i} ^ 0x{xor:02x}: {decision.to_json()['denials']}")
    assert wrong == [], "\n".join(wrong)
    assert tried >= 7 * 12
    accepted(rig.verifier(store=rig.store("original")).verify(raw, now=now))


def test_mutated_claims_signed_again_are_caught(rig: Rig) -> None:
    """Flipped bytes of the claims' JSON, re-signed: parsing, the binding or the evidence
    checks catch every one that changes a claim."""
    raw = rig.issue()
    header_b64, payload_b64, _ = raw.split(b".")
    payload = b64d(payload_b64)
    original = jws.parse(raw).claims
    verifier = rig.verifier(rig.policy(single_use=False))
    rng = _rng(SEED + 1)
    wrong: list[str] = []
    for i in rng.sample(range(len(payload)), 120):
        xor = rng.randrange(1, 256)
        signing_input = header_b64 + b"." + b64url(_flip(payload, i, xor)).encode()
        signed = jws.assemble(signing_input, rig.sign(signing_input))
        decision = verifier.verify(signed, now=original.iat)
        if _passed(decision) and _claims(signed) != original:
            wrong.append(f"claims byte {i} ^ 0x{xor:02x}: passed every check with other claims")
        elif {"internal_error", "invalid_signature"} & set(decision.reasons):
            wrong.append(f"claims byte {i} ^ 0x{xor:02x}: {decision.to_json()['denials']}")
    assert wrong == [], "\n".join(wrong)


def test_the_jws_verifies_with_pyjwt_given_the_certified_key(rig: Rig) -> None:
    """A standard JOSE library checks the signature layer with the key the evidence
    certifies (tests/artifact does it with the key file in the host's home)."""
    raw = rig.issue()
    evidence = jws.parse(raw).claims.evidence
    key = public_key(parse_public_tpm2b(evidence.key_public))
    pem = key.public_bytes(serialization.Encoding.PEM,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    claims = jwt.decode(raw, pem, algorithms=["ES256"], options={"verify_aud": False})
    assert claims["scope"]["argv"] == ["ls", "-l", "/srv"]
    head, _, signature = raw.rpartition(b".")
    tampered = head + b"." + b64url(_flip(b64d(signature), 7, 0x10)).encode()
    try:
        jwt.decode(tampered, pem, algorithms=["ES256"], options={"verify_aud": False})
    except jwt.InvalidSignatureError:
        pass
    else:
        raise AssertionError("PyJWT accepted a flipped signature")


def _passed(decision: Decision) -> bool:
    """Accepted, or denied only because an earlier mutant that did not change what the
    artifact says (re-signed, so legitimately accepted) took its jti first."""
    return decision.accepted or decision.reasons == ("replayed",)


def _replacing(attr: str, value: bytes) -> Callable[[Evidence], Evidence]:
    return lambda evidence: dataclasses.replace(evidence, **{attr: value})


def _claims(raw: bytes) -> Claims:
    return jws.parse(raw).claims


def _same_log(before: bytes, after: bytes) -> bool:
    """A flip that leaves the runtime log's measurements as they were: what each record
    extends, into which PCR, and what it says it measured. (The reader takes systemd's
    records too, which carry no ``recnum``: a flip in that key's name drops the number,
    and the record reads as numbered by its position, which it is.)"""
    from attest.eventlog.cel import parse_cel

    def measurements(log: bytes) -> list[tuple[object, ...]]:
        return [(r.index, r.pcr, r.digests, r.content_type, r.content, r.other_digests,
                 r.nv_index) for r in parse_cel(log).records]

    try:
        return measurements(before) == measurements(after)
    except Exception:  # noqa: BLE001 - a log that does not parse is not the same log
        return False


# -- crafted claims: JSON the parser takes, that a single flipped byte cannot produce ------
# (from the corpus: the signature no longer holds, so no TPM is needed to make them)


def _crafted(raw: bytes, edit: str, replacement: str) -> bytes:
    """``raw`` with the payload's JSON text edited (the signature no longer holds)."""
    header_b64, payload_b64, signature_b64 = raw.split(b".")
    payload = b64d(payload_b64).decode()
    assert edit in payload
    edited = payload.replace(edit, replacement, 1).encode()
    return b".".join((header_b64, b64url(edited).encode(), signature_b64))


@pytest.mark.parametrize(("edit", "replacement"), [
    pytest.param('"sub":"deploy-bot"', '"sub":"deploy\\ud800bot"', id="lone-surrogate-sub"),
    pytest.param('"argv":["ls"', '"argv":["l\\udc80s"', id="lone-surrogate-argv"),
    pytest.param('"gov":{}', '"gov":{"t":"\\udfff"}', id="lone-surrogate-gov"),
    pytest.param('"gov":{}', '"policy":{"id":1e400,"digest":null},"gov":{}', id="infinite"),
    pytest.param('"gov":{}', '"policy":{"id":NaN,"digest":null},"gov":{}', id="nan"),
    pytest.param('"gov":{}', '"policy":{"id":1208925819614629174706176,"digest":null},"gov":{}',
                 id="beyond-2**53"),
])
def test_claims_without_canonical_json_are_malformed(corpus: Corpus, bench: Bench, edit: str,
                                                     replacement: str) -> None:
    """The binding is SHA-256 of the claims' RFC 8785 form; claims that have none were an
    exception (internal_error) inside the binding's computation."""
    recorded = corpus.artifact("web-2-long")  # `ls`, no gov
    verifier = bench.verifier(audited=False)
    denied(verifier.verify(_crafted(recorded.raw, edit, replacement), now=recorded.now),
           "malformed_artifact")
    accepted(verifier.verify(recorded.raw, now=recorded.now))


@pytest.mark.parametrize(("edit", "replacement"), [
    pytest.param('"pcrs":{', '"pcrs":{"\\u00b2":"' + "00" * 32 + '",', id="superscript-key"),
    pytest.param('"pcrs":{"0":"' + "00" * 32 + '"', '"pcrs":{"0":"' + "0" * 63 + '\\n"',
                 id="hex-with-final-newline"),
])
def test_claims_the_model_once_let_through_are_malformed(corpus: Corpus, bench: Bench,
                                                          edit: str, replacement: str) -> None:
    recorded = corpus.artifact("web-2-exec")
    decision = bench.verifier(audited=False).verify(
        _crafted(recorded.raw, edit, replacement), now=recorded.now)
    assert not decision.accepted  # fails closed either way
    denied(decision, "malformed_artifact")


def test_no_flipped_byte_of_the_runtime_log_base_is_accepted(rig: Rig) -> None:
    """An artifact sent from a prefix its verifier holds (incremental logs): every byte of
    its ``runtime_log_base``, flipped, is denied with a real reason: as it stands (the
    JWS signature) and signed again in the TPM (the prefix look-up and the replay)."""
    from attest.artifact.model import RuntimeLogBase

    rig.host.ok("measure", "data", "--name", "later", "--value", "x")
    verifier = rig.verifier(rig.policy(runtime_reference=None))
    first = verifier.verify(rig.issue())
    accepted(first)
    rig.host.ok("measure", "data", "--name", "later", "--value", "y")
    facts = first.facts["runtime_log"]
    raw = rig.issue(log_base=RuntimeLogBase(facts["count"], bytes.fromhex(facts["digest"])))
    header_b64, payload_b64, signature_b64 = raw.split(b".")
    payload = b64d(payload_b64)
    start = payload.index(b'"runtime_log_base":')
    end = payload.index(b"}", start) + 1
    now = jws.parse(raw).claims.iat
    rng = _rng(SEED + 2)
    wrong: list[str] = []
    for i in range(start, end):
        xor = rng.randrange(1, 256)
        flipped = b64url(_flip(payload, i, xor)).encode()
        signing_input = header_b64 + b"." + flipped
        for signed, mutant in ((False, signing_input + b"." + signature_b64),
                               (True, jws.assemble(signing_input, rig.sign(signing_input)))):
            decision = verifier.verify(mutant, now=now)
            if decision.accepted or "internal_error" in decision.reasons:
                wrong.append(f"byte {i} ^ 0x{xor:02x} (signed again: {signed}): "
                             f"{decision.to_json()['denials'] or 'ACCEPTED'}")
    assert wrong == [], "\n".join(wrong)
    assert end - start > 60
    accepted(verifier.verify(raw, now=now))
