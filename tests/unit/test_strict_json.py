"""attest.strictjson: one meaning per JSON text, for every parser of outside input."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest

from attest import strictjson
from attest.artifact.model import Lineage, Scope
from attest.errors import AttestError, EventLogError
from attest.eventlog.cel import RS, attest_record, encode_record, parse_cel
from attest.host.http import VerifierUnreachable, post_json
from attest.host.runtime.log import RuntimeLog
from attest.policy.model import LineageLimits
from attest.store import ArtifactRecord
from attest.tpm.keys import Approval
from attest.verify.lineage import check_lineage

REFUSED = {
    "a member twice": ('{"a": 1, "b": 2, "a": 3}', "'a' appears twice"),
    "a member twice, nested": ('[{"x": {"k": 1, "k": 1}}]', "'k' appears twice"),
    "NaN": ('{"n": NaN}', "NaN is not JSON"),
    "Infinity": ("[Infinity]", "Infinity is not JSON"),
    "-Infinity": ("[-Infinity]", "-Infinity is not JSON"),
    # Python reads a number beyond a double's range as an infinity (another reader
    # refuses it, or keeps it exact): the same constant by another spelling.
    "a number beyond a double": ('{"n": 1e400}', "1e400 is beyond"),
    "a negative number beyond a double": ("[-2E+999]", "-2E\\+999 is beyond"),
    "too deep": ("[" * 33 + "]" * 33, "deeper than 32"),
    "deeper than the interpreter's stack": ("[" * 100_000 + "]" * 100_000, "deeper than"),
    "deep objects": ('{"a":' * 40 + "1" + "}" * 40, "deeper than 32"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_the_loader_refuses_texts_without_one_meaning(case: str) -> None:
    text, message = REFUSED[case]
    if "stack" not in case:
        json.loads(text)  # Python's own reader takes it: one of two meanings, or none
    with pytest.raises(strictjson.StrictJSONError, match=message):
        strictjson.loads(text)
    with pytest.raises(ValueError, match=message):
        strictjson.loads(text.encode())


def test_the_loader_takes_plain_json_up_to_the_depth_bound() -> None:
    assert strictjson.loads("[" * 32 + "]" * 32) is not None
    assert strictjson.loads(b'{"a": [1, 2.5, "x", null, true], "b": {"a": 1}}') == {
        "a": [1, 2.5, "x", None, True], "b": {"a": 1}}
    assert strictjson.loads("[" + "[], " * 1000 + "[]]") == [[]] * 1001


def _record(n: int) -> bytes:
    return encode_record(attest_record(n, 14, {"type": "file", "name": f"/bin/t{n}",
                                               "digest": {"sha256": "00" * 32}}, ["sha256"]))


@pytest.mark.parametrize("form", ["seq", "seq, many records", "array"])
@pytest.mark.parametrize("fault", ["twice", "NaN"])
def test_cel_logs_are_strict_in_every_form(form: str, fault: str) -> None:
    records = [_record(n) for n in range(200 if "many" in form else 1)]
    parse_cel(b"".join(records))
    bad = b'{"pcr":16,' if fault == "twice" else b'{"nan":NaN,'
    records[-1] = records[-1].replace(b"{", bad, 1)
    if form == "array":
        text = b"[" + b",".join(r.removeprefix(RS).strip() for r in records) + b"]"
    else:
        text = b"".join(records)
    with pytest.raises(EventLogError, match="appears twice" if fault == "twice" else "NaN"):
        parse_cel(text)


def test_an_approval_file_with_a_member_twice_is_refused() -> None:
    with pytest.raises(AttestError, match="'pcrs' appears twice"):
        Approval.from_json('{"pcrs": "sha256:0", "pcrs": "sha256:7"}')


def test_a_runtime_epoch_with_a_member_twice_is_refused(tmp_path: Path) -> None:
    log = RuntimeLog(tmp_path)
    log.epoch_path.write_text('{"reset_count": 1, "restart_count": 0, "reset_count": 2}')
    with pytest.raises(EventLogError, match="appears twice"):
        log.read_epoch()


def test_a_stored_parent_scope_with_a_member_twice_is_refused() -> None:
    # Whoever writes the database must not widen a parent by a shadowed member.
    scope = Scope("exec", ("ls",))
    text = json.dumps(scope.to_json())
    parent = ArtifactRecord(jti="p", sha256=hashlib.sha256(b"p").hexdigest(), parent_jti=None,
                            depth=0, exp=2_000_000_000, host="h", kid="00", ak_name="00",
                            subject="s", scope='{"argv": ["*"],' + text[1:])
    lineage = Lineage("p", parent.sha256, 1)
    with pytest.raises(strictjson.StrictJSONError):
        list(check_lineage(parent, None, lineage, scope, 1_000, LineageLimits(), 0))


class _Answer(http.server.BaseHTTPRequestHandler):
    """A 'verifier' on loopback whose decision names "accepted" twice."""

    body = b'{"accepted": false, "reasons": ["replayed"], "accepted": true}'

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_verifier_answer_with_a_member_twice_is_no_decision() -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1/verify"
        with pytest.raises(VerifierUnreachable, match="appears twice"):
            post_json(url, b"artifact", "application/jose")
    finally:
        thread.join(timeout=10)
        server.server_close()


def test_a_member_twice_among_many_is_found_in_linear_time() -> None:
    """The error path names the member given twice: finding it must not compare every
    member with every other (an artifact-sized object of 300,000 members with its
    duplicate last took hours of a verifier's CPU, before any signature was checked)."""
    count = 300_000
    text = "{" + ",".join(f'"k{i}":0' for i in range(count)) + f',"k{count - 1}":1}}'
    with pytest.raises(strictjson.StrictJSONError, match=f"'k{count - 1}' appears twice"):
        strictjson.loads(text)
    from attest.artifact import jws
    from attest.artifact.model import b64url
    from attest.errors import EvidenceError

    header = b64url(b'{"alg":"ES256","typ":"attest-artifact+jwt","kid":"00"}')
    artifact = f"{header}.{b64url(text.encode())}.{'A' * 86}".encode()
    with pytest.raises(EvidenceError, match="appears twice"):
        jws.parse(artifact)


@pytest.mark.parametrize("form", ["seq", "array"])
@pytest.mark.parametrize("where", ["content", "extra member"])
def test_a_cel_record_nested_beyond_the_bound_is_refused(form: str, where: str) -> None:
    """The bound is the same for logs as for artifacts (docs/verification.md): a record
    200 deep was read, up to the interpreter's recursion limit, for whatever reads its
    content later to recurse into."""
    deep = '{"a":' * 200 + "1" + "}" * 200
    record = ('{"pcr":15,"digests":[{"hashAlg":"sha256","digest":"' + "00" * 32 + '"}],'
              '"content_type":"systemd",'
              + ('"content":' + deep if where == "content" else '"content":{},"x":' + deep)
              + "}")
    data = (RS + record.encode() + b"\n") if form == "seq" else f"[{record}]".encode()
    with pytest.raises(EventLogError, match="deeper than 32"):
        parse_cel(data)
    shallow = record.replace(deep, '{"a":{"b":[1]}}')
    parse_cel((RS + shallow.encode() + b"\n") if form == "seq" else f"[{shallow}]".encode())
