"""The runtime measurement log: TCG Canonical Event Log (CEL), JSON form.

Written the way systemd writes ``/run/log/systemd/tpm2-measure.log``: RFC 7464
JSON text sequences, each record an ASCII RS (0x1e), one JSON object, a line
feed. A record follows CEL-JSON (TCG Canonical Event Log Format 1.0, the JSON
encoding)::

    {"recnum": 0, "pcr": 14,
     "digests": [{"hashAlg": "sha256", "digest": "<hex>"}, ...],
     "content_type": "attest", "content": {...}}

Reading also accepts what systemd writes (no ``recnum``; NvPCR records with
``nv_index`` instead of ``pcr``, which extend no PCR) and a CEL-JSON array.

attest's own records (:data:`ATTEST_CONTENT_TYPE`) carry ``content``
``{"type": "file" | "command" | "data", "name": ..., "digest": {"sha256": <hex of
what was measured>}, ...}`` and the digest extended into the PCR is the hash of
the content's canonical JSON (RFC 8785 for the strings, integers, lists and
objects with ASCII keys attest writes), so the description is bound to the PCR:
editing a record's name or digest breaks the replay, like IMA-ng's template hash.

The writer side is :func:`encode_record`: one record's bytes, to be appended to
the file as they are; nothing has to be read back or rewritten.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from attest import strictjson
from attest.errors import EventLogError, EventLogMismatch
from attest.eventlog.eventtypes import EventType, event_type_name
from attest.evidence.pcrs import DIGEST_SIZES, PCR_COUNT

RS = b"\x1e"
ATTEST_CONTENT_TYPE = "attest"
# CEL's content type for an event in PC Client form (event_type, base64 event_data).
PCCLIENT_CONTENT_TYPE = "pcclient_std"
# What systemd writes into /run/log/systemd/tpm2-measure.log (attest copies those records).
SYSTEMD_CONTENT_TYPE = "systemd"
MEASUREMENT_KINDS = ("file", "command", "data")
# No record of attest or systemd comes near these; beyond them a record is hostile.
MAX_DIGESTS = 16
MAX_LABEL_CHARS = 120

_MAX_RECNUM = 2**63 - 1
_MAX_NV_INDEX = 2**32 - 1


@dataclass(frozen=True, slots=True)
class CelRecord:
    """One CEL-JSON record. ``index`` is its position in the file, from 0."""

    index: int
    recnum: int | None
    pcr: int | None
    digests: Mapping[str, bytes]
    content_type: str
    content: Mapping[str, Any]
    other_digests: tuple[tuple[str, bytes], ...] = ()
    nv_index: int | None = None
    # Boot-log notions (see TcgEvent) a CEL record never has; plain class values,
    # not properties, as replay asks every record for them.
    startup_locality: ClassVar[int | None] = None
    hcrtm: ClassVar[bool] = False

    @property
    def extends(self) -> bool:
        if self.pcr is None:
            return False
        # A PC Client EV_NO_ACTION event carried in CEL extends nothing, as in the boot log.
        return not (self.content_type == PCCLIENT_CONTENT_TYPE
                    and self.content.get("event_type") == EventType.EV_NO_ACTION)

    @property
    def label(self) -> str:
        number = self.recnum if self.recnum is not None else self.index
        where = f"PCR {self.pcr}" if self.pcr is not None else f"NV 0x{self.nv_index or 0:08x}"
        return f"record {number} {where} {self.content_type}: {describe_content(self)}"


@dataclass(frozen=True)
class CelLog:
    """The records of a CEL file; ``torn_tail`` holds an incomplete last record, if allowed."""

    records: tuple[CelRecord, ...]
    torn_tail: bytes = field(default=b"")

    def next_recnum(self) -> int:
        """The recnum the next appended record gets."""
        last = next((r.recnum for r in reversed(self.records) if r.recnum is not None), None)
        return len(self.records) if last is None else last + 1


def parse_cel(data: bytes, *, allow_torn_tail: bool = False) -> CelLog:
    """Parse a CEL-JSON log (JSON-SEQ as systemd writes it, or a JSON array).

    A last record without its final line feed is a write that did not finish
    (RFC 7464, 2.4): an error, unless ``allow_torn_tail``, which returns its
    bytes in :attr:`CelLog.torn_tail` for the caller to recover from.
    """
    stripped = data.lstrip(b" \t\r\n")
    if stripped.startswith(b"["):
        with _cyclic_gc_paused():
            records = _checked(_build_records(_json_array(stripped), 0, []))
        return CelLog(records)
    if not stripped:
        return CelLog(())
    if not stripped.startswith(RS):
        raise EventLogError("not a CEL-JSON log: it starts with neither RS (0x1e) nor '['",
                            hint="a JSON-SEQ log has an RS byte before every record")
    torn = b""
    last = stripped.rfind(RS)
    if not stripped.endswith(b"\n"):
        if not allow_torn_tail:
            raise EventLogError(f"the last record ({stripped.count(RS) - 1}) does not end in a "
                                "line feed: an append that did not finish",
                                hint="a crash while writing the log leaves such a record")
        stripped, torn = stripped[:last], stripped[last:]
    with _cyclic_gc_paused():
        records = _seq_records(stripped)
    # The decoded JSON is gone by now: the collector, back, finds only the records.
    return CelLog(records, torn)


class _cyclic_gc_paused:  # lowercase: read as a function, with _cyclic_gc_paused():
    # Parsing makes ~10 containers per record, none in a cycle, 2-3 of them
    # surviving; CPython's collector would rescan that growing heap over and over
    # (3x slower at 100,000 records). Paused only when it was running, restored after.
    # A class rather than @contextmanager: its generator machinery cost as much as
    # parsing a small log's records (a bundle's log is parsed once per verification).
    __slots__ = ("_enabled",)

    def __enter__(self) -> None:
        self._enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *_: object) -> None:
        if self._enabled:
            gc.enable()


# Duplicate members and NaN/Infinity refused (attest.strictjson); nesting beyond
# strictjson.MAX_DEPTH by each record's check (_check_depth), and beyond the scanner's
# recursion limit by the RecursionError caught below.
_DECODER = strictjson.DECODER
# What every RS becomes in a batch (see _json_seq_batches): a JSON
# string holding RS, as an array element of its own between the records.
_MARK = "\x1e"
_SEPARATOR = b',"\\u001e",'
# How a JSON text can spell RS inside a string; raw RS is the record separator.
_ESCAPED_RS = (b"\\u001e", b"\\u001E")
# Bytes of log per json.loads: small enough that the text stays in the CPU's
# cache and its buffers are reused, large enough to share keys among records.
_BATCH_BYTES = 1 << 16


class _Unbatchable(Exception):
    """A batch whose one-call reading :func:`_json_seq_batches` cannot vouch for."""


def _seq_records(seq: bytes) -> tuple[CelRecord, ...]:
    """The records of a JSON-SEQ log (``seq`` starts with RS), checked.

    Batch by batch: a batch's JSON is decoded in one call and its records
    built before the next batch is read, so that only one batch's decoded
    objects are ever alive. That finds the first fault in file order only when
    there is none: on any fault, or a batch that can't be read that way, the
    log is read again record by record, every record's JSON first and then the
    checks of each, which is the order of the errors a log gets.
    """
    records: list[CelRecord] = []
    try:
        for first, items in _json_seq_batches(seq):
            _build_records(items, first, records)
    except (_Unbatchable, EventLogError):
        records.clear()  # what the batches built goes first
        _build_records(_json_seq_one_by_one(seq), 0, records)
    return _checked(records)


def _json_seq_one_by_one(seq: bytes) -> list[Any]:
    """Each record's JSON value, read on its own; an error names the record at fault."""
    try:
        text = seq.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EventLogError(f"the log is not UTF-8 text: {exc}") from None
    chunks = text.split("\x1e")[1:]
    return [_json_text(chunk, number) for number, chunk in enumerate(chunks)]


def _json_seq_batches(seq: bytes) -> Iterator[tuple[int, list[Any]]]:
    """What :func:`_json_seq_one_by_one` reads, a batch of records per json.loads.

    Yields the number of a batch's first record and the batch's values; raises
    _Unbatchable where it can't vouch for that. In a batch (whole records),
    every RS becomes ``,"\u001e",`` and the text is wrapped as ``[0`` ... ``]``:
    the records come out as the array elements between the n marker strings.
    That is the record-by-record reading exactly when (a) every record ends in
    a line feed, so no string spans a separator, (b) the log spells RS nowhere,
    so only the separators decode to the marker, and (c) the array holds 2n+1
    elements with the n markers at the odd positions: then every separator is
    at the top level, and each record between two of them is one value and
    blanks. Anything else, a JSON or UTF-8 error included, is _Unbatchable.
    """
    if b"\\" in seq and any(escaped in seq for escaped in _ESCAPED_RS):
        raise _Unbatchable
    find, total, grown = seq.find, len(seq), len(_SEPARATOR) - 1
    start = first = 0
    while start < total:
        end = find(RS, start + _BATCH_BYTES)
        if end < 0:
            end = total
        batch = seq[start:end]  # from an RS to the next batch's RS, or the end
        body = batch.replace(RS, _SEPARATOR)
        count = (len(body) - len(batch)) // grown
        if not batch.endswith(b"\n") or batch.count(b"\n" + RS) != count - 1:
            raise _Unbatchable
        try:
            items = _DECODER.decode(b"".join((b"[0", body, b"]")).decode("utf-8"))
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise _Unbatchable from None
        if len(items) != 2 * count + 1 or items[1::2].count(_MARK) != count:
            raise _Unbatchable
        yield first, items[2::2]
        first += count
        start = end


def _json_text(chunk: str, number: int) -> Any:
    # One JSON value per RS-framed record, then only blanks (RFC 7464).
    start = len(chunk) - len(chunk.lstrip(" \t\r\n")) if chunk[:1].isspace() else 0
    try:
        value, end = _DECODER.raw_decode(chunk, start)
    except (ValueError, RecursionError) as exc:
        raise EventLogError(f"record {number} is not valid JSON: {exc}") from None
    if not chunk.endswith("\n") or chunk[end:].strip(" \t\r\n"):
        raise EventLogError(f"record {number} is not valid JSON: it does not end after one "
                            "value and a line feed")
    return value


def _json_array(text: bytes) -> list[Any]:
    try:
        items = _DECODER.decode(text.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        # ValueError covers bad JSON, bad UTF-8 and over-long integers.
        raise EventLogError(f"the CEL-JSON array is not valid JSON: {exc}") from None
    if not isinstance(items, list):
        raise EventLogError("a CEL-JSON file is an array of records")
    return items


# The banks replay computes: name, digest size, hex length. The name is this very
# string, so that no record keeps a copy of its own.
_BANKS: dict[str, tuple[str, int, int]] = {name: (name, size, 2 * size)
                                           for name, size in DIGEST_SIZES.items()}
_CONTENT_TYPES = {name: name for name in (ATTEST_CONTENT_TYPE, PCCLIENT_CONTENT_TYPE,
                                                 SYSTEMD_CONTENT_TYPE)}


def _record_builder() -> Callable[[int, int | None, int, dict[str, bytes], str, dict[str, Any]],
                                  CelRecord]:
    """CelRecord(index, recnum, pcr, digests, content_type, content), twice as fast.

    A frozen dataclass's __init__ sets each field with object.__setattr__, which
    looks the name up every time: half the cost of building a record. This sets
    the slots through their descriptors instead, every field of the class (the
    last two at their defaults), and CelRecord has no __post_init__ to skip.
    """
    names = tuple(f.name for f in fields(CelRecord))
    if names != ("index", "recnum", "pcr", "digests", "content_type", "content",
                 "other_digests", "nv_index") or hasattr(CelRecord, "__post_init__"):
        raise RuntimeError("CelRecord changed: update _record_builder")
    setters = tuple(vars(CelRecord)[name].__set__ for name in names)
    (set_index, set_recnum, set_pcr, set_digests, set_content_type, set_content,
     set_other_digests, set_nv_index) = setters
    create = object.__new__

    def build(index: int, recnum: int | None, pcr: int, digests: dict[str, bytes],
              content_type: str, content: dict[str, Any]) -> CelRecord:
        record: CelRecord = create(CelRecord)
        set_index(record, index)
        set_recnum(record, recnum)
        set_pcr(record, pcr)
        set_digests(record, digests)
        set_content_type(record, content_type)
        set_content(record, content)
        set_other_digests(record, ())
        set_nv_index(record, None)
        return record

    return build


_new_record = _record_builder()


def _build_records(items: Sequence[Any], first: int,
                   records: list[CelRecord]) -> list[CelRecord]:
    """Check and build each record, numbered from ``first``, onto ``records``.

    The first fault, in order, is raised.

    A record in the shape attest and systemd write (a PCR, a recnum or none, a
    content type and object, digests of known banks under their lowercase
    names in hex of the right length) is checked and built inline. Anything
    else, well formed or not, goes through :func:`_record`, which checks it all
    from the start: the inline path takes only what _record would accept as the
    very same record, and leaves every error to it.
    """
    append = records.append
    banks = _BANKS
    content_types = _CONTENT_TYPES
    fromhex = bytes.fromhex
    max_pcr = PCR_COUNT - 1
    max_recnum = _MAX_RECNUM
    new_record = _new_record
    for index, item in enumerate(items, first):
        if type(item) is dict:
            pcr = item.get("pcr")
            recnum = item.get("recnum")
            content_type = item.get("content_type")
            content = item.get("content")
            raw = item.get("digests")
            if (type(pcr) is int and 0 <= pcr <= max_pcr
                    and (recnum is None or (type(recnum) is int and 0 <= recnum <= max_recnum))
                    and type(content_type) is str and content_type and type(content) is dict
                    and type(raw) is list and 0 < len(raw) <= MAX_DIGESTS
                    and "nv_index" not in item):
                digests: dict[str, bytes] = {}
                for entry in raw:
                    try:
                        # A TypeError: the entry is not an object, or its hashAlg
                        # or digest not a string.
                        name, size, hex_size = banks[entry["hashAlg"]]
                        text = entry["digest"]
                        value = fromhex(text)
                    except (KeyError, TypeError, ValueError):
                        break
                    # fromhex skips blanks: size bytes out of 2 * size characters
                    # means hex digits only, as _digests asks.
                    if len(value) != size or len(text) != hex_size or name in digests:
                        break
                    digests[name] = value
                else:
                    if recnum == index:
                        recnum = index  # one int object for both, as attest writes them
                    if len(item) - ("recnum" in item) > _RECORD_MEMBERS or _nested(content):
                        _check_depth(item, index)  # rare: attest and systemd nest no deeper
                    append(new_record(index, recnum, pcr, digests,
                                      content_types.get(content_type, content_type), content))
                    continue
        append(_record(index, item))
    return records


# pcr, digests, content_type, content (and recnum): a record with other members is
# checked whole.
_RECORD_MEMBERS = 4


def _nested(content: dict[str, Any]) -> bool:
    """Whether ``content`` holds a container inside a container (a record nests deeper
    than record -> content -> value -> scalar): only then is its depth counted."""
    # Plain loops: a generator per value (any(...)) cost more than the values it reads.
    for value in content.values():
        kind = type(value)
        if kind is dict:
            for inner in value.values():
                kind = type(inner)
                if kind is dict or kind is list:
                    return True
        elif kind is list:
            for inner in value:
                kind = type(inner)
                if kind is dict or kind is list:
                    return True
    return False


def _check_depth(item: Any, index: int) -> None:
    """EventLogError when record ``index`` nests deeper than strictjson.MAX_DEPTH (the C
    scanner allows up to the interpreter's recursion limit; what reads content later
    recurses)."""
    try:
        strictjson.check_depth(item)
    except strictjson.StrictJSONError as exc:
        raise EventLogError(f"record {index}: {exc}") from None


def _checked(records: list[CelRecord]) -> tuple[CelRecord, ...]:
    """The records, once their recnums (all or none) are found to count up by one."""
    recnums = [record.recnum for record in records]
    first = recnums[0] if recnums else None
    if first is None:
        if recnums.count(None) == len(recnums):
            return tuple(records)
    elif recnums == list(range(first, first + len(recnums))):
        return tuple(records)
    numbered = [recnum for recnum in recnums if recnum is not None]
    if numbered and len(numbered) != len(records):
        raise EventLogError("some records have a recnum and some do not")
    for before, after in itertools.pairwise(numbered):
        if after != before + 1:
            raise EventLogError(f"recnum {after} follows recnum {before}: a record is "
                                "missing, repeated or out of order")
    return tuple(records)


def _record(index: int, item: Any) -> CelRecord:
    if type(item) is not dict:
        raise EventLogError(f"record {index} is not a JSON object")
    recnum = _optional_int(item, "recnum", index, _MAX_RECNUM)
    pcr = _optional_int(item, "pcr", index, PCR_COUNT - 1)
    nv_index = _optional_int(item, "nv_index", index, _MAX_NV_INDEX)
    if (pcr is None) == (nv_index is None):
        raise EventLogError(f"record {index} must name exactly one of pcr and nv_index")
    content_type = item.get("content_type")
    if type(content_type) is not str or not content_type:
        raise EventLogError(f"record {index} has no content_type string")
    content = item.get("content", {})
    if type(content) is not dict:
        raise EventLogError(f"record {index}: content is not a JSON object")
    _check_depth(item, index)
    digests, others = _digests(item.get("digests"), index)
    return CelRecord(index, recnum, pcr, digests, content_type, content, others, nv_index)


def _optional_int(item: dict[str, Any], key: str, index: int, high: int) -> int | None:
    value = item.get(key)
    # type() rather than isinstance(): a JSON true must not pass as the integer 1.
    if value is None or (type(value) is int and 0 <= value <= high):
        return value
    raise EventLogError(f"record {index}: {key} must be an integer 0-{high}, not {value!r}")


def _digests(raw: Any, index: int) -> tuple[dict[str, bytes], tuple[tuple[str, bytes], ...]]:
    if type(raw) is not list or not raw or len(raw) > MAX_DIGESTS:
        raise EventLogError(f"record {index} has no digests list of 1-{MAX_DIGESTS} entries")
    known: dict[str, bytes] = {}
    others: list[tuple[str, bytes]] = []
    for entry in raw:
        if type(entry) is not dict:
            raise EventLogError(f"record {index}: a digest is not a JSON object")
        alg, text = entry.get("hashAlg"), entry.get("digest")
        # bytes.fromhex alone would accept spaces: ASCII letters and digits only.
        if type(alg) is not str or type(text) is not str or not text.isascii() or \
                not (text.isalnum() or not text):
            raise EventLogError(f"record {index}: a digest needs a hashAlg name and a hex digest")
        try:
            value = bytes.fromhex(text)
        except ValueError:
            raise EventLogError(f"record {index}: a digest needs a hashAlg name and a hex "
                                "digest") from None
        name = alg.lower()
        size = DIGEST_SIZES.get(name)
        if name in known or (others and any(name == other for other, _ in others)):
            raise EventLogError(f"record {index} has two {name} digests")
        if size is None:
            # An algorithm attest doesn't compute (sm3_256, sha3_*): kept, not replayed.
            others.append((name, value))
        elif len(value) != size:
            raise EventLogError(f"record {index}: a {name} digest is {size} bytes, "
                                f"not {len(value)}")
        else:
            known[name] = value
    return known, tuple(others)


def describe_content(record: CelRecord) -> str:
    """A short, readable summary of a record's content."""
    content = record.content
    if record.content_type == ATTEST_CONTENT_TYPE:
        kind = content.get("type", "?")
        name = content.get("name", "?")
        measured = content.get("digest")
        digest = ""
        if isinstance(measured, dict) and measured:
            bank = "sha256" if "sha256" in measured else next(iter(measured))
            digest = f" {bank}:{measured[bank]}"
        text = f"{kind} {name}{digest}"
    elif record.content_type == "systemd":
        text = " ".join(str(content[k]) for k in ("eventType", "string", "nvIndexName")
                        if k in content)
    elif record.content_type == PCCLIENT_CONTENT_TYPE:
        event_type = content.get("event_type")
        text = event_type_name(event_type) if isinstance(event_type, int) else "?"
    else:
        text = json.dumps(content, sort_keys=True)
    return text if len(text) <= MAX_LABEL_CHARS else text[:MAX_LABEL_CHARS - 3] + "..."


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) bytes for the JSON attest writes: no floats, ASCII object keys.

    For that subset Python's sorted, compact, non-ASCII-preserving json.dumps is
    JCS: key order by code point equals order by UTF-16 unit for ASCII keys, and
    integers and string escapes print the same.
    """
    _check_canonical(value, depth=0)
    text = _CANONICAL_ENCODER.encode(value)
    try:
        # A string that is not valid Unicode (a lone surrogate), as a key or a value, is
        # refused here: one encode of the whole text, not one per string.
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise EventLogError("content holds a string that is not valid Unicode "
                            "(a lone surrogate)") from None


_SCALARS = (str, int, bool, type(None))  # exact types: most values, decided at once
# json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False), with its
# encoder made once rather than per call (a third of the cost for a record's content);
# encode() keeps no state between calls.
_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"),
                                      ensure_ascii=False)


def _check_canonical(value: Any, depth: int) -> None:
    if depth > 32:
        raise EventLogError("content nests deeper than 32 levels")
    kind = type(value)
    if kind in _SCALARS:
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not key.isascii():
                _check_key(key)
            if type(item) not in _SCALARS or depth >= 32:  # the depth rule, as for any
                _check_canonical(item, depth + 1)
        return
    # Lists, and subclasses of the JSON types (rare), the general way.
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return
    if isinstance(value, list):
        for item in value:
            _check_canonical(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _check_key(key)
            _check_canonical(item, depth + 1)
        return
    raise EventLogError(f"content holds a {type(value).__name__}; attest writes only "
                        "strings, integers, booleans, null, lists and objects")


def _check_key(key: Any) -> None:
    if not isinstance(key, str) or not key.isascii():
        raise EventLogError(f"content keys must be ASCII strings, not {key!r}")


def content_digests(content: Mapping[str, Any], banks: Sequence[str]) -> dict[str, bytes]:
    """What an attest record extends: H(canonical JSON of its content), per bank."""
    encoded = canonical_json(dict(content))
    return {bank: hashlib.new(bank, encoded).digest() for bank in banks}


def is_command(record: CelRecord) -> bool:
    """Whether ``record`` is attest's measurement of a command (its executable) that
    extended a PCR: what `policy init` lists as executables and the verifier looks for."""
    return (record.extends and record.content_type == ATTEST_CONTENT_TYPE
            and record.content.get("type") == "command")


def check_content_bound(records: Sequence[CelRecord]) -> None:
    """Raise EventLogMismatch for an attest record whose content is not what it extended.

    Replay uses the digests a record carries; only this check ties them to the
    content that says what was measured, so an edited name or digest shows.
    """
    for record in records:
        if (record.extends and record.content_type == ATTEST_CONTENT_TYPE
                and content_digests(record.content, list(record.digests)) != dict(record.digests)):
            raise EventLogMismatch(f"{record.label}: the content does not hash to the "
                                       "digests that were extended; the record was altered")


def measurement_content(kind: str, name: str, measured: Mapping[str, bytes],
                        **details: Any) -> dict[str, Any]:
    """The content of an attest record: what was measured, under what name.

    ``measured`` holds the digests of the measured thing (the file, the executable,
    the data), by bank; ``details`` adds fields such as ``path`` or ``argv``.
    """
    if kind not in MEASUREMENT_KINDS:
        raise EventLogError(f"unknown measurement type {kind!r}; one of {MEASUREMENT_KINDS}")
    if not name:
        raise EventLogError("a measurement needs a name")
    for reserved in ("type", "name", "digest"):
        if reserved in details:
            raise EventLogError(f"{reserved!r} is set by measurement_content itself")
    content: dict[str, Any] = {"type": kind, "name": name,
                               "digest": {bank: value.hex() for bank, value in measured.items()}}
    content.update(details)
    canonical_json(content)
    return content


def attest_record(recnum: int, pcr: int, content: Mapping[str, Any],
                  banks: Sequence[str]) -> CelRecord:
    """The record that goes with extending ``pcr`` by :func:`content_digests` of ``content``."""
    if not 0 <= pcr < PCR_COUNT:
        raise EventLogError(f"PCR {pcr} out of range 0-{PCR_COUNT - 1}")
    return CelRecord(recnum, recnum, pcr, content_digests(content, banks),
                     ATTEST_CONTENT_TYPE, dict(content))


def record_json(record: CelRecord) -> dict[str, Any]:
    """A record as its CEL-JSON object."""
    item: dict[str, Any] = {}
    if record.recnum is not None:
        item["recnum"] = record.recnum
    if record.pcr is not None:
        item["pcr"] = record.pcr
    if record.nv_index is not None:
        item["nv_index"] = record.nv_index
    digests = [{"hashAlg": bank, "digest": value.hex()} for bank, value in record.digests.items()]
    digests += [{"hashAlg": name, "digest": value.hex()} for name, value in record.other_digests]
    item["digests"] = digests
    item["content_type"] = record.content_type
    item["content"] = dict(record.content)
    return item


def encode_record(record: CelRecord) -> bytes:
    """One JSON-SEQ record: RS, compact JSON on one line, LF. Append it to the log as is."""
    try:
        text = json.dumps(record_json(record), separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
        return RS + text.encode("utf-8") + b"\n"
    except (TypeError, ValueError) as exc:
        raise EventLogError(f"record {record.index} cannot be written as JSON: {exc}") from None


def encode_log(records: Sequence[CelRecord]) -> bytes:
    return b"".join(encode_record(record) for record in records)

