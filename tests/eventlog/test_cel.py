"""The CEL-JSON runtime log: systemd's JSON-SEQ form, attest's records, and broken files."""

from __future__ import annotations

import hashlib
import json

import pytest

from attest.errors import EventLogError, ReplayMismatch
from attest.eventlog.cel import (
    RS,
    CelRecord,
    attest_record,
    canonical_json,
    content_digests,
    encode_log,
    encode_record,
    measurement_content,
    parse_cel,
)
from attest.eventlog.replay import check_replay, replay
from tests.eventlog.logbuilder import extend

BANKS = ["sha1", "sha256"]


def _systemd_record(pcr: int, word: str) -> bytes:
    # The shape systemd-pcrextend writes (no recnum; digest of the phase word).
    item = {"pcr": pcr,
            "digests": [{"hashAlg": bank, "digest": hashlib.new(bank, word.encode()).hexdigest()}
                        for bank in BANKS],
            "content_type": "systemd",
            "content": {"string": word, "bootId": "0" * 32, "timestamp": 1234,
                        "eventType": "phase"}}
    return RS + json.dumps(item).encode() + b"\n"


def _records(count: int, pcr: int = 14) -> list[CelRecord]:
    return [attest_record(n, pcr, measurement_content(
        "file", f"/usr/bin/tool{n}", {"sha256": hashlib.sha256(b"%d" % n).digest()},
        path=f"/usr/bin/tool{n}"), BANKS) for n in range(count)]


def test_systemd_log_parses_and_replays() -> None:
    data = _systemd_record(11, "enter-initrd") + _systemd_record(11, "leave-initrd")
    records = parse_cel(data).records
    assert [r.recnum for r in records] == [None, None]
    assert records[0].content["eventType"] == "phase"
    assert "phase enter-initrd" in records[0].label
    expected = extend(extend(bytes(32), b"enter-initrd", "sha256"), b"leave-initrd", "sha256")
    assert replay(records)["sha256"][11] == expected


def test_nv_index_records_extend_no_pcr() -> None:
    item = {"nv_index": 0x01D10200, "digests": [{"hashAlg": "sha256", "digest": "00" * 32}],
            "content_type": "systemd", "content": {"string": "product-id:x"}}
    record = parse_cel(RS + json.dumps(item).encode() + b"\n").records[0]
    assert not record.extends and replay([record]) == {}


def test_attest_records_round_trip_byte_for_byte() -> None:
    records = _records(3)
    data = encode_log(records)
    assert data.count(RS) == 3 and data.endswith(b"\n") and data.count(b"\n") == 3
    parsed = parse_cel(data).records
    assert [(r.recnum, r.pcr, dict(r.digests), dict(r.content)) for r in parsed] == \
        [(r.recnum, r.pcr, dict(r.digests), dict(r.content)) for r in records]
    assert encode_log(parsed) == data


def test_a_writer_appends_one_record_at_a_time() -> None:
    log = b""
    for n in range(3):
        recnum = parse_cel(log).next_recnum()
        assert recnum == n
        content = measurement_content("data", "step", {"sha256": bytes(32)}, value=str(n))
        log += encode_record(attest_record(recnum, 14, content, BANKS))
    assert len(parse_cel(log).records) == 3


def test_the_extended_digest_binds_the_content() -> None:
    content = measurement_content("command", "/usr/bin/backup",
                                  {"sha256": hashlib.sha256(b"elf").digest()},
                                  argv=["/usr/bin/backup", "--full"])
    record = attest_record(0, 14, content, BANKS)
    assert record.digests["sha256"] == hashlib.sha256(canonical_json(content)).digest()
    altered = dict(content, argv=["/usr/bin/backup", "--delete"])
    assert content_digests(altered, BANKS) != dict(record.digests)


def test_canonical_json_is_sorted_and_compact() -> None:
    expected = '{"a":["é",true,null],"b":1}'.encode()
    assert canonical_json({"b": 1, "a": ["é", True, None]}) == expected
    with pytest.raises(EventLogError, match="float"):
        canonical_json({"a": 1.5})


def test_a_cel_json_array_is_read_too() -> None:
    records = _records(2)
    array = json.dumps([json.loads(encode_record(r)[1:]) for r in records]).encode()
    assert [r.recnum for r in parse_cel(array).records] == [0, 1]


def test_an_empty_file_is_an_empty_log() -> None:
    assert parse_cel(b"").records == () and parse_cel(b"").next_recnum() == 0


def test_a_torn_last_record_is_an_error_unless_the_caller_recovers_it() -> None:
    whole = encode_log(_records(2))
    torn = whole + encode_record(_records(3)[2])[:25]
    with pytest.raises(EventLogError, match="did not finish"):
        parse_cel(torn)
    log = parse_cel(torn, allow_torn_tail=True)
    assert len(log.records) == 2 and log.torn_tail.startswith(RS) and len(log.torn_tail) == 25


def _json_seq(*items: object) -> bytes:
    return b"".join(RS + json.dumps(item).encode() + b"\n" for item in items)


DIGESTS: list[dict[str, str]] = [{"hashAlg": "sha256", "digest": "00" * 32}]
GOOD: dict[str, object] = {"recnum": 0, "pcr": 14, "digests": DIGESTS,
        "content_type": "attest", "content": {}}

MALFORMED: dict[str, tuple[bytes, str]] = {
    "not cel": (b"hello", "not a CEL-JSON log"),
    "bad json": (RS + b"{nope\n", "not valid JSON"),
    "deep nesting": (RS + b"[" * 100_000 + b"\n", "not valid JSON"),
    "huge integer": (RS + b'{"pcr": ' + b"9" * 5000 + b"}\n", "not valid JSON"),
    "not an object": (_json_seq([1, 2]), "not a JSON object"),
    "no pcr": (_json_seq({k: v for k, v in GOOD.items() if k != "pcr"}), "exactly one of"),
    "pcr out of range": (_json_seq(dict(GOOD, pcr=24)), "pcr must be an integer 0-23"),
    "pcr is a bool": (_json_seq(dict(GOOD, pcr=True)), "pcr must be"),
    "no digests": (_json_seq(dict(GOOD, digests=[])), "no digests"),
    "digest not hex": (_json_seq(dict(GOOD, digests=[{"hashAlg": "sha256", "digest": "zz"}])),
                       "hex digest"),
    "digest with spaces": (_json_seq(dict(GOOD, digests=[{"hashAlg": "sha256",
                                                          "digest": "00 " * 32}])), "hex digest"),
    "digest of the wrong size": (
        _json_seq(dict(GOOD, digests=[{"hashAlg": "sha256", "digest": "00" * 20}])), "32 bytes"),
    "the same bank twice": (_json_seq(dict(GOOD, digests=DIGESTS * 2)), "two sha256"),
    "too many digests": (_json_seq(dict(GOOD, digests=[
        {"hashAlg": f"alg{i}", "digest": "00"} for i in range(17)])), "1-16 entries"),
    "no content type": (_json_seq({k: v for k, v in GOOD.items() if k != "content_type"}),
                        "content_type"),
    "recnum gap": (_json_seq(GOOD, dict(GOOD, recnum=2)), "recnum 2 follows recnum 0"),
    "recnum repeated": (_json_seq(GOOD, GOOD), "recnum 0 follows recnum 0"),
    "recnum on some records only": (
        _json_seq(GOOD, {k: v for k, v in GOOD.items() if k != "recnum"}), "some records"),
    "array of non-records": (b"[1]", "not a JSON object"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_cel_raises_a_log_error_naming_the_fault(case: str) -> None:
    data, words = MALFORMED[case]
    with pytest.raises(EventLogError) as caught:
        parse_cel(data)
    assert words in caught.value.message
    assert caught.value.reason == "eventlog_malformed"


def test_unknown_banks_are_kept_but_not_replayed() -> None:
    item = dict(GOOD, digests=[*DIGESTS, {"hashAlg": "sm3_256", "digest": "11" * 32}])
    record = parse_cel(_json_seq(item)).records[0]
    assert record.other_digests == (("sm3_256", b"\x11" * 32),)
    assert set(replay([record])) == {"sha256"}


@pytest.mark.parametrize(("kind", "name", "details", "words"), [
    ("exec", "x", {}, "unknown measurement type"),
    ("file", "", {}, "needs a name"),
    ("file", "x", {"digest": "x"}, "set by measurement_content"),
    ("data", "x", {"value": "\ud800"}, "lone surrogate"),
])
def test_measurement_content_refuses_what_it_cannot_write(kind: str, name: str,
                                                          details: dict[str, str],
                                                          words: str) -> None:
    with pytest.raises(EventLogError, match=words):
        measurement_content(kind, name, {}, **details)


def test_deleting_or_reordering_records_is_detected() -> None:
    records = _records(4)
    quoted = {("sha256", 14): replay(records)["sha256"][14]}
    check_replay(records, quoted)
    with pytest.raises(ReplayMismatch) as caught:
        check_replay([records[0], records[1], records[3]], quoted)
    assert caught.value.pcr == 14 and "tool3" in caught.value.last_events[-1]
    swapped = encode_log([records[0], records[2], records[1], records[3]])
    with pytest.raises(EventLogError, match="recnum 2 follows recnum 0"):
        parse_cel(swapped)


# parse_cel reads many records per json.loads (attest.eventlog.cel._json_seq_batches)
# and falls back to reading record by record; both must give the same records and
# the same first error, wherever in a long log it is.

def _long_log(count: int = 1500) -> list[bytes]:
    """One encoded record per item, over several of parse_cel's batches (64 KiB)."""
    return [encode_record(record) for record in _records(count)]


def test_a_long_log_reads_whole_and_round_trips() -> None:
    lines = _long_log()
    data = b"".join(lines)
    assert len(data) > 4 * 65536
    parsed = parse_cel(data).records
    assert [r.recnum for r in parsed] == list(range(len(lines)))
    assert [r.index for r in parsed] == list(range(len(lines)))
    assert encode_log(parsed) == data
    assert replay(parsed) == replay(_records(len(lines)))


def test_in_a_long_log_a_later_json_error_comes_before_an_earlier_bad_record() -> None:
    # Record by record, every record's JSON is read before any record is checked.
    lines = _long_log()
    lines[5] = lines[5].replace(b'"pcr":14', b'"pcr":99')
    with pytest.raises(EventLogError, match="record 5: pcr must be an integer 0-23"):
        parse_cel(b"".join(lines))
    lines[1200] = lines[1200][:40] + b"\n"
    with pytest.raises(EventLogError, match="record 1200 is not valid JSON"):
        parse_cel(b"".join(lines))


def test_in_a_long_log_a_fault_is_named_by_its_record() -> None:
    lines = _long_log()
    lines[900] = lines[900].replace(b'"sha256","digest":"', b'"sha256","digest":"zz', 1)
    with pytest.raises(EventLogError, match="record 900: a digest needs"):
        parse_cel(b"".join(lines))
    lines = _long_log()
    del lines[700]
    with pytest.raises(EventLogError, match="recnum 701 follows recnum 699"):
        parse_cel(b"".join(lines))


@pytest.mark.parametrize(("data", "words"), [
    # Two records that make one JSON value between them, and one that makes two.
    (RS + b'{"a":[1\n' + RS + b'2]}\n' + RS + b"{},{}\n", "record 0 is not valid JSON"),
    (RS + json.dumps(GOOD).encode() + RS + json.dumps(GOOD).encode() + b"\n",
     "record 0 is not valid JSON: it does not end after one value and a line feed"),
    (RS + json.dumps(GOOD).encode() + b" x\n", "record 0 is not valid JSON"),
    (RS + b"\xff" + json.dumps(GOOD).encode() + b"\n", "not UTF-8"),
])
def test_records_that_do_not_frame_one_value_each_are_named(data: bytes, words: str) -> None:
    with pytest.raises(EventLogError, match=words):
        parse_cel(data)


@pytest.mark.parametrize("spelled", [b"\\u001e", b"\\u001E"])
def test_content_may_hold_an_escaped_record_separator(spelled: bytes) -> None:
    item = json.dumps(dict(GOOD, content={"note": "x"})).encode().replace(b'"x"',
                                                                          b'"' + spelled + b'"')
    record = parse_cel(RS + item + b"\n").records[0]
    assert record.content == {"note": "\x1e"}


def test_blank_lines_and_carriage_returns_around_a_record_are_blanks() -> None:
    data = RS + b"\r\n  " + json.dumps(GOOD).encode() + b"\r\n"
    assert parse_cel(data).records[0].recnum == 0


@pytest.mark.parametrize("content", [
    {"a": {"b": [1]}},  # a list in an object in the content
    {"a": [{"b": 1}]},  # an object in a list in the content
    {"a": [[1]]},
    {"a": {"b": {"c": 1}}},
])
def test_nesting_inside_a_content_value_is_counted(content: dict[str, object]) -> None:
    """The inline record path counts a record's depth only when its content nests a
    container in a container (_nested): each way of nesting is found, so a record
    nested past strictjson.MAX_DEPTH there is refused, not built."""
    deep: object = 1
    for _ in range(40):
        deep = [deep]
    key = next(iter(content))
    inner = content[key]
    nested = ({k: [deep] for k in inner} if isinstance(inner, dict) else [[deep]])
    record = {"recnum": 0, "pcr": 14, "digests": [{"hashAlg": "sha256", "digest": "00" * 32}],
              "content_type": "attest", "content": {key: nested}}
    with pytest.raises(EventLogError, match="deeper"):
        parse_cel(RS + json.dumps(record).encode() + b"\n")
    shallow = dict(record, content=content)
    assert parse_cel(RS + json.dumps(shallow).encode() + b"\n").records[0].content == content


@pytest.mark.parametrize("data", [
    b'\x1e{"pcr": 14, "digests": [], "content_type": "x", "content": {}}\n',  # refused
    RS + b"{not json}\n",  # refused, record by record
    b'[{"pcr": 14}]',  # a CEL-JSON array, refused
])
def test_the_collector_is_restored_after_parsing_whatever_the_outcome(data: bytes) -> None:
    """parse_cel pauses the cyclic collector while it builds records: running again after,
    an error included, and left off when it was off."""
    import gc

    assert gc.isenabled()
    with pytest.raises(EventLogError):
        parse_cel(data)
    assert gc.isenabled()
    parse_cel(encode_log(_records(2)))
    assert gc.isenabled()
    gc.disable()
    try:
        parse_cel(encode_log(_records(2)))
        with pytest.raises(EventLogError):
            parse_cel(data)
        assert not gc.isenabled()
    finally:
        gc.enable()
