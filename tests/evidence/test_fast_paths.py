"""The shortcuts that make verify_quote cheap agree with the field-by-field code they skip.

Each fast path (one-struct TPMS_ATTEST read, TPMT_SIGNATURE read, PCR values at C
speed, QuoteFacts/ClockInfo built without __init__, key and selection caches)
either gives what the plain code gives or hands over to it; these tests hold
them to that on real vectors, software-signed quotes and mutations of both.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from evidence_helpers import AK_ATTRIBUTES, SoftTPM, ecc_public, vector_dir
from hypothesis import given, settings
from hypothesis import strategies as st

from attest.errors import AttestError
from attest.evidence import quote as quote_module
from attest.evidence.pcrs import HASH_ALGS, PCRSelection
from attest.evidence.quote import QuoteFacts, attested_pcrs, verify_quote
from attest.evidence.signatures import clear_key_cache, public_key
from attest.evidence.structures import (
    Alg,
    ClockInfo,
    Public,
    QuoteInfo,
    RSAParms,
    Scheme,
    SymDef,
    parse_attest,
    parse_signature,
)

NONCE = b"fast-path-nonce!" * 2


def _outcome(fn: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        return ("ok", fn())
    except AttestError as exc:
        return ("error", type(exc), exc.message, exc.reason, exc.hint)


def _by_reader(parse: Callable[[bytes], Any], data: bytes | bytearray) -> Any:
    """``parse`` on a bytearray: the parsers' fast paths take only bytes."""
    return parse(bytearray(data))  # type: ignore[arg-type]


def _rsa_public(key: rsa.RSAPublicKey) -> Public:
    numbers = key.public_numbers()
    return Public(Alg.RSA, "sha256", AK_ATTRIBUTES, b"",
                  RSAParms(SymDef(), Scheme(Alg.RSASSA, HASH_ALGS["sha256"]), 2048, 0,
                           numbers.n.to_bytes(256, "big")))


def _material(public: Public) -> tuple[int, ...]:
    parms = public.parms
    if isinstance(parms, RSAParms):
        return (int.from_bytes(parms.modulus, "big"), parms.exponent or 65537)
    return (int.from_bytes(parms.x, "big"), int.from_bytes(parms.y, "big"))


def _numbers(key: Any) -> tuple[int, ...]:
    numbers = key.public_numbers()
    if isinstance(numbers, rsa.RSAPublicNumbers):
        return (numbers.n, numbers.e)
    return (numbers.x, numbers.y)


# --- key cache ------------------------------------------------------------------


@pytest.fixture(scope="module")
def publics() -> list[Public]:
    rsa_keys = [rsa.generate_private_key(65537, 2048).public_key() for _ in range(3)]
    ecc_keys = [ec.generate_private_key(ec.SECP256R1()).public_key() for _ in range(3)]
    return ([_rsa_public(key) for key in rsa_keys]
            + [ecc_public(key, AK_ATTRIBUTES, scheme=Scheme(Alg.ECDSA, HASH_ALGS["sha256"]))
               for key in ecc_keys])


def test_the_key_cache_never_returns_a_key_for_other_key_material(
    publics: list[Public],
) -> None:
    clear_key_cache()
    for _ in range(3):  # cold, then from the caches
        for public in publics + publics[::-1]:
            assert _numbers(public_key(public)) == _material(public)
    # equal material in another object: the same (immutable) key object
    for public in publics:
        twin = dataclasses.replace(public)
        assert twin is not public
        assert public_key(twin) is public_key(public)


def test_a_reused_object_id_never_finds_the_previous_objects_key(publics: list[Public]) -> None:
    clear_key_cache()
    for _ in range(20):
        for public in publics:
            copy = dataclasses.replace(public)  # a new object, often at a freed address
            assert _numbers(public_key(copy)) == _material(public)
            del copy
            gc.collect()


def test_mutable_key_material_is_never_cached(publics: list[Public]) -> None:
    public = publics[0]
    assert isinstance(public.parms, RSAParms)
    modulus = bytearray(public.parms.modulus)
    parms = dataclasses.replace(public.parms, modulus=modulus)  # type: ignore[arg-type]
    mutable = dataclasses.replace(public, parms=parms)
    assert _numbers(public_key(mutable)) == _material(public)
    other = publics[1]
    assert isinstance(other.parms, RSAParms)
    modulus[:] = other.parms.modulus
    assert _numbers(public_key(mutable)) == _material(other)


# --- TPMS_ATTEST and TPMT_SIGNATURE readers -----------------------------------------


def _vector_quotes() -> list[tuple[bytes, bytes]]:
    root = vector_dir("quotes")
    pairs = [
        ("gce_cos85_nonce9009/quote_sha256.tpms_attest.bin",
         "gce_cos85_nonce9009/sig_sha256.tpmt_signature.bin"),
        ("gce_cos85_nonce9009/quote_sha1.tpms_attest.bin",
         "gce_cos85_nonce9009/sig_sha1.tpmt_signature.bin"),
        ("ga_windows_gcp_shielded_vm/quote.tpms_attest.bin",
         "ga_windows_gcp_shielded_vm/sig.tpmt_signature.bin"),
        ("ga_windows_gcp_shielded_vm/ak_certify_creation.tpms_attest.bin",
         "ga_windows_gcp_shielded_vm/ak_certify_creation_sig.tpmt_signature.bin"),
        ("cmc_rsa_ak_pcr1_4/quote.tpms_attest.bin",
         "cmc_rsa_ak_pcr1_4/sig_valid.tpmt_signature.bin"),
    ]
    return [((root / Path(a)).read_bytes(), (root / Path(b)).read_bytes()) for a, b in pairs]


def _software_quotes(tpm: SoftTPM) -> list[bytes]:
    out = []
    for text in ("sha256:0-23", "sha256:7", "sha1:0,1+sha256:7,16", "sha384:0,2,4"):
        selection = PCRSelection.parse(text)
        values = {key: bytes([key[1]]) * _SIZES[key[0]] for key in selection}
        out.append(tpm.quote(selection, values, extra=NONCE))
    out.append(tpm.quote(PCRSelection.parse("sha256:1"), {("sha256", 1): bytes(32)}))
    return out


_SIZES = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}


def test_every_quote_reads_the_same_through_either_reader(soft_tpm: SoftTPM) -> None:
    messages = [m for m, _ in _vector_quotes()] + _software_quotes(soft_tpm)
    for message in messages:
        for _ in range(2):  # the second read finds the layout the first one learnt
            # bytearray input always takes the field-by-field Reader
            assert parse_attest(message) == _by_reader(parse_attest, message)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_mutated_quotes_read_the_same_or_fail_the_same(
    soft_tpm: SoftTPM, data: st.DataObject
) -> None:
    messages = [m for m, _ in _vector_quotes()] + _software_quotes(soft_tpm)
    raw = bytearray(data.draw(st.sampled_from(messages)))
    parse_attest(bytes(raw))  # its layout is known from here on
    action = data.draw(st.sampled_from(["flip", "truncate", "extend", "insert"]))
    if action == "flip":
        for _ in range(data.draw(st.integers(1, 3))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    elif action == "truncate":
        del raw[data.draw(st.integers(0, len(raw) - 1)):]
    elif action == "extend":
        raw += data.draw(st.binary(min_size=1, max_size=4))
    else:
        at = data.draw(st.integers(0, len(raw)))
        raw[at:at] = data.draw(st.binary(min_size=1, max_size=4))
    assert _outcome(lambda: parse_attest(bytes(raw))) == _outcome(
        lambda: _by_reader(parse_attest, raw))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_signatures_read_the_same_or_fail_the_same(
    soft_tpm: SoftTPM, data: st.DataObject
) -> None:
    signatures = [s for _, s in _vector_quotes()] + [soft_tpm.sign(b"message")]
    raw = bytearray(data.draw(st.sampled_from(signatures)))
    for _ in range(data.draw(st.integers(0, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        del raw[data.draw(st.integers(0, len(raw))):]
    result = _outcome(lambda: parse_signature(bytes(raw)))
    assert result == _outcome(lambda: _by_reader(parse_signature, raw))


# --- PCR values --------------------------------------------------------------------


class _Bytes(bytes):
    """A bytes subclass: attested_pcrs returns bytes(value), a plain bytes copy."""


_SELECTIONS = ["sha256:0-23", "sha256:0,7", "sha256:3", "sha1:0,1+sha256:7,16",
               "sha384:0,2,4"]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(_SELECTIONS), st.sampled_from(["sha256", "sha384", "sha1"]),
       st.data())
def test_pcr_values_attest_the_same_as_the_plain_loop(
    text: str, hash_alg: str, data: st.DataObject
) -> None:
    selection = PCRSelection.parse(text)
    good: dict[tuple[str, int], Any] = {
        key: bytes([key[1], 0x5A]) * (_SIZES[key[0]] // 2) for key in selection
    }
    digest = hashlib.new(hash_alg, b"".join(good[key] for key in selection)).digest()
    values: dict[tuple[str, int], Any] = dict(good)
    keys = list(values)
    for _ in range(data.draw(st.integers(0, 2))):
        key = data.draw(st.sampled_from(keys))
        change = data.draw(st.sampled_from(
            ["drop", "short", "long", "none", "bytearray", "memoryview", "subclass", "other",
             "extra"]))
        if change == "drop":
            values.pop(key, None)
        elif change == "short":
            values[key] = good[key][:-1]
        elif change == "long":
            values[key] = good[key] + b"\0"
        elif change == "none":
            values[key] = None
        elif change == "bytearray":
            values[key] = bytearray(good[key])
        elif change == "memoryview":
            values[key] = memoryview(good[key])
        elif change == "subclass":
            values[key] = _Bytes(good[key])
        elif change == "other":
            values[key] = bytes(len(good[key]))
        else:
            values[("sha512", 23)] = bytes(64)
    if data.draw(st.booleans()):
        digest = bytes(len(digest))
    mapping: Mapping[tuple[str, int], Any] = (
        MappingProxyType(values) if data.draw(st.booleans()) else values
    )
    info = QuoteInfo(selection, digest)

    def plain() -> Any:
        out = quote_module._attested_pcrs_slow(selection, digest, mapping, hash_alg)
        return [(bank, [(i, type(v), v) for i, v in pcrs.items()]) for bank, pcrs in out.items()]

    def fast() -> Any:
        out = attested_pcrs(info, mapping, hash_alg)
        return [(bank, [(i, type(v), v) for i, v in pcrs.items()]) for bank, pcrs in out.items()]

    def view() -> Any:
        out = quote_module._attested_view(selection, digest, mapping, hash_alg)
        assert isinstance(out, MappingProxyType)
        assert all(isinstance(pcrs, MappingProxyType) for pcrs in out.values())
        return [(bank, [(i, type(v), v) for i, v in pcrs.items()]) for bank, pcrs in out.items()]

    expected = _outcome(plain)
    assert _outcome(fast) == expected
    assert _outcome(view) == expected


# --- selections --------------------------------------------------------------------


_selection_maps = st.dictionaries(
    st.sampled_from(["sha1", "sha256", "sha384"]),
    st.sets(st.integers(0, 23), max_size=24),
    max_size=3,
)


@settings(max_examples=300, deadline=None)
@given(_selection_maps, _selection_maps)
def test_covers_is_contains_for_every_pcr(
    have: dict[str, set[int]], want: dict[str, set[int]]
) -> None:
    quoted, required = PCRSelection.of(have), PCRSelection.of(want)
    expected = all(quoted.contains(bank, index) for bank, index in required)
    assert quoted.covers(required) is expected
    assert quoted.covers(required) is expected  # cached sets, same answer


def test_a_covered_pair_never_lets_another_required_selection_pass(soft_tpm: SoftTPM) -> None:
    selection = PCRSelection.parse("sha256:0,7,16")
    values = {key: bytes([key[1]]) * 32 for key in selection}
    message = soft_tpm.quote(selection, values, extra=NONCE)
    signature = soft_tpm.sign(message)

    def verify(required: PCRSelection) -> tuple[Any, ...]:
        return _outcome(lambda: verify_quote(message, signature, soft_tpm.public,
                                             expected_extra_data=NONCE, pcr_values=values,
                                             required_pcrs=required))

    covered, uncovered = PCRSelection.parse("sha256:0,7"), PCRSelection.parse("sha256:0,8")
    for _ in range(2):
        assert verify(covered)[0] == "ok"
        assert verify(uncovered)[2] == "the quote does not cover sha256:8"
        assert verify(PCRSelection.parse("sha256:0,7"))[0] == "ok"
        assert verify(PCRSelection.parse("sha1:0"))[2] == "the quote does not cover sha1:0"


# --- objects built without __init__ ------------------------------------------------------


def test_quote_facts_and_clock_info_are_the_objects_their_constructors_make(
    soft_tpm: SoftTPM,
) -> None:
    # The fast builders fill __dict__ directly: valid only while these stay plain
    # frozen dataclasses with these fields and no __post_init__.
    assert [f.name for f in dataclasses.fields(QuoteFacts)] == [
        "signer", "extra_data", "clock_info", "firmware_version", "selection",
        "pcr_digest", "pcrs", "signature_scheme", "signature_hash"]
    assert [f.name for f in dataclasses.fields(ClockInfo)] == [
        "clock", "reset_count", "restart_count", "safe"]
    for cls in (QuoteFacts, ClockInfo):
        assert not hasattr(cls, "__post_init__")
        assert getattr(cls, "__dataclass_params__").frozen  # noqa: B009
    selection = PCRSelection.parse("sha256:0-23")
    values = {key: bytes([key[1]]) * 32 for key in selection}
    message = soft_tpm.quote(selection, values, extra=NONCE, safe=1, clock=77)
    for _ in range(2):
        facts = verify_quote(message, soft_tpm.sign(message), soft_tpm.public,
                             expected_extra_data=NONCE, pcr_values=values)
        rebuilt = QuoteFacts(**{f.name: getattr(facts, f.name)
                                for f in dataclasses.fields(QuoteFacts)})
        assert facts == rebuilt and hash(facts.clock_info) == hash(rebuilt.clock_info)
        assert vars(facts) == vars(rebuilt) and list(vars(facts)) == list(vars(rebuilt))
        assert repr(facts) == repr(rebuilt)
        clock = facts.clock_info
        assert vars(clock) == vars(ClockInfo(clock.clock, clock.reset_count,
                                             clock.restart_count, clock.safe))
        assert clock.safe is True and clock.clock == 77
        with pytest.raises(dataclasses.FrozenInstanceError):
            facts.signer = b""  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            clock.clock = 0  # type: ignore[misc]
        with pytest.raises(TypeError):
            facts.pcrs["sha256"][0] = b""  # type: ignore[index]


def test_the_layout_cache_is_bounded() -> None:
    from attest.evidence import structures

    soft = struct.pack(">IH", 0xFF544347, 0x8018) + struct.pack(">H", 0)
    assert structures._MAX_QUOTE_LAYOUTS < structures.MAX_DATA + 1
    for size in range(structures.MAX_DATA + 1):  # as many lengths, as many layouts
        extra = bytes(size)
        message = (soft + struct.pack(">H", len(extra)) + extra
                   + struct.pack(">QIIBQ", 1, 2, 3, 1, 4)
                   + PCRSelection.parse("sha256:0").marshal() + struct.pack(">H", 32)
                   + bytes(32))
        assert parse_attest(message) == _by_reader(parse_attest, message)
        assert len(structures._QUOTE_LAYOUTS) <= structures._MAX_QUOTE_LAYOUTS
