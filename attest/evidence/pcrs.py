"""PCR banks and selections: names, TPM algorithm ids, TPML_PCR_SELECTION bytes.

The textual form is tpm2-tools' (`sha256:0,1,2+sha1:0`), so lists written for
tpm2_quote or tpm2_pcrread work unchanged.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from operator import itemgetter
from typing import Any

from attest.errors import UsageError

# TPM_ALG_ID values (TPM 2.0 Part 2, table 9) for the hashes attest computes.
HASH_ALGS: dict[str, int] = {"sha1": 0x0004, "sha256": 0x000B, "sha384": 0x000C, "sha512": 0x000D}
HASH_NAMES: dict[int, str] = {v: k for k, v in HASH_ALGS.items()}
DIGEST_SIZES: dict[str, int] = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}
PCR_COUNT = 24
# PCRs that TPM2_PCR_Reset can reset from locality 0 (PC Client profile): a log
# kept in them could be replayed from a clean start by anyone with TPM access.
RESETTABLE_PCRS = frozenset({16, 23})
# TPM_PCR_SELECT_MIN: a PC Client TPM has 24 PCRs, i.e. 3 bytes of bitmap.
SIZEOF_SELECT = 3
# Longer than any selection a person writes (every PCR of four banks as lists is ~250).
MAX_SELECTION_TEXT = 512
PCR_SELECTION_HINT = ("write BANK:LIST, e.g. sha256:0-7,15 or sha256:all; banks joined by +, "
                      "e.g. sha256:0-7+sha1:0; indices 0-23")
# An index: decimal without a leading zero (tpm2-tools reads 010 as octal), or hex; two
# digits at most, so nothing long reaches int() and nothing past 0xff reaches range().
_NUMBER = r"(0|[1-9][0-9]?|0[xX][0-9a-fA-F]{1,2})"
_INDEX_OR_RANGE = re.compile(rf"{_NUMBER}(?:\s*-\s*{_NUMBER})?")


def hash_name(value: str) -> str:
    """Normalise a bank name ("SHA256", "sha-256", "0x0b") or raise UsageError."""
    text = value.strip().lower().replace("-", "")
    if text in HASH_ALGS:
        return HASH_NAMES[HASH_ALGS[text]]  # the one str object per name: faster dict keys
    try:
        alg = int(text, 0)
    except ValueError:
        alg = -1
    if alg in HASH_NAMES:
        return HASH_NAMES[alg]
    raise UsageError(f"unknown hash algorithm {value!r}; use one of {', '.join(HASH_ALGS)}")


def digest(bank: str, data: bytes) -> bytes:
    return hashlib.new(bank, data).digest()


# bank, indices, len(indices), the bank's digest size, and an itemgetter of the
# (bank, index) keys in selection order (it returns a tuple: there are two or more).
OneBank = tuple[str, tuple[int, ...], int, int, Callable[[Mapping[tuple[str, int], bytes]], Any]]


@dataclass(frozen=True)
class PCRSelection:
    """Banks and PCR indices, in the order the TPM reports them (bank order, ascending PCRs)."""

    banks: tuple[tuple[str, tuple[int, ...]], ...]

    @classmethod
    def of(cls, selection: Mapping[str, Iterable[int]]) -> PCRSelection:
        banks: list[tuple[str, tuple[int, ...]]] = []
        for bank, indices in selection.items():
            name = hash_name(bank)
            pcrs = tuple(sorted(set(indices)))
            for index in pcrs:
                if not 0 <= index < PCR_COUNT:
                    raise UsageError(f"PCR index {index} out of range 0-{PCR_COUNT - 1}")
            if pcrs:
                banks.append((name, pcrs))
        return cls(tuple(banks))

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, int]]) -> PCRSelection:
        """The selection of these (bank, index) pairs."""
        grouped: dict[str, list[int]] = {}
        for bank, index in pairs:
            grouped.setdefault(bank, []).append(index)
        return cls.of(grouped)

    @classmethod
    def parse(cls, text: str) -> PCRSelection:
        """Parse `sha256:0,1,2+sha1:0` (also `sha256:all`, ranges `0-7`): the one syntax of
        every PCR selection attest reads (options, arguments, key records, approvals).

        Strict and bounded, for text from anyone: indices 0-23 in decimal (no leading
        zero: tpm2-tools would read 010 as octal) or hex (0x0f), each checked before a
        range is expanded; at most :data:`MAX_SELECTION_TEXT` characters."""
        if not text or not text.strip():
            raise UsageError("empty PCR selection", hint=PCR_SELECTION_HINT)
        if len(text) > MAX_SELECTION_TEXT:
            raise UsageError(f"a PCR selection of {len(text)} characters; at most "
                             f"{MAX_SELECTION_TEXT}", hint=PCR_SELECTION_HINT)
        banks: dict[str, list[int]] = {}
        for part in text.strip().split("+"):
            bank, sep, rest = part.partition(":")
            if not sep or not rest.strip():
                raise UsageError(f"malformed PCR selection {text!r}: expected BANK:LIST",
                                 hint=PCR_SELECTION_HINT)
            name = hash_name(bank)
            indices = banks.setdefault(name, [])
            if rest.strip() == "all":
                indices.extend(range(PCR_COUNT))
                continue
            for item in rest.split(","):
                indices.extend(_parse_index_or_range(item, text))
        return cls.of(banks)

    def __str__(self) -> str:
        return "+".join(f"{bank}:{','.join(map(str, pcrs))}" for bank, pcrs in self.banks)

    def __iter__(self) -> Iterator[tuple[str, int]]:
        """(bank, index) pairs in selection order: the order of a quote's PCR digest."""
        for bank, pcrs in self.banks:
            for index in pcrs:
                yield bank, index

    def __len__(self) -> int:
        return sum(len(pcrs) for _, pcrs in self.banks)

    def contains(self, bank: str, index: int) -> bool:
        return any(b == bank and index in pcrs for b, pcrs in self.banks)

    def covers(self, other: PCRSelection) -> bool:
        """True when every (bank, index) of ``other`` is in this selection."""
        have = self._index_sets
        for bank, indices in other._index_sets.items():
            got = have.get(bank)
            if got is None or not got >= indices:
                return False
        return True

    # Derived from ``banks`` on first use and kept with the (immutable) selection; not
    # fields, so equality, hashing and repr are unchanged.
    @cached_property
    def _index_sets(self) -> Mapping[str, frozenset[int]]:
        sets: dict[str, frozenset[int]] = {}
        for bank, pcrs in self.banks:
            sets[bank] = sets.get(bank, frozenset()).union(pcrs)
        return sets

    @cached_property
    def pairs(self) -> tuple[tuple[str, int], ...]:
        """The (bank, index) pairs of ``iter(self)``, made once."""
        return tuple(self)

    @cached_property
    def one_bank(self) -> OneBank | None:
        """For one bank of two or more PCRs (every quote attest makes): how to read them."""
        if len(self.banks) != 1 or len(self.pairs) < 2 or self.banks[0][0] not in DIGEST_SIZES:
            return None
        bank, indices = self.banks[0]
        return bank, indices, len(self.pairs), DIGEST_SIZES[bank], itemgetter(*self.pairs)

    def marshal(self) -> bytes:
        """TPML_PCR_SELECTION in TPM wire format (big-endian, sizeofSelect 3)."""
        out = bytearray(struct.pack(">I", len(self.banks)))
        for bank, pcrs in self.banks:
            bitmap = bytearray(SIZEOF_SELECT)
            for index in pcrs:
                bitmap[index // 8] |= 1 << (index % 8)
            out += struct.pack(">HB", HASH_ALGS[bank], SIZEOF_SELECT) + bitmap
        return bytes(out)


def _parse_index_or_range(item: str, text: str) -> range:
    found = _INDEX_OR_RANGE.fullmatch(item.strip())
    if found is None:
        raise UsageError(f"malformed PCR index {item.strip()!r} in {text!r}",
                         hint=PCR_SELECTION_HINT)
    low = _index(found.group(1))
    high = low if found.group(2) is None else _index(found.group(2))
    if low > high:
        raise UsageError(f"PCR range {item.strip()!r} in {text!r} runs backwards",
                         hint=PCR_SELECTION_HINT)
    return range(low, high + 1)


def parse_index(text: str) -> int:
    """One PCR index as every selection writes it (``15``, ``0x0f``): UsageError unless
    0-23, with the selections' hint."""
    found = _INDEX_OR_RANGE.fullmatch(text.strip())
    if found is None or found.group(2) is not None:
        raise UsageError(f"malformed PCR index {text.strip()[:24]!r}: expected one of 0-23",
                         hint=PCR_SELECTION_HINT)
    return _index(found.group(1))


def _index(digits: str) -> int:
    index = int(digits, 0)
    if index >= PCR_COUNT:
        raise UsageError(f"PCR index {index} out of range 0-{PCR_COUNT - 1}",
                         hint=PCR_SELECTION_HINT)
    return index


PCRValues = Mapping[tuple[str, int], bytes]


def composite_digest(selection: PCRSelection, values: PCRValues, hash_alg: str) -> bytes:
    """H(concatenation of the selected PCR values, in selection order)."""
    h = hashlib.new(hash_alg)
    for key in selection:
        h.update(values[key])
    return h.digest()
