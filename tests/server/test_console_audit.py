"""The console's Audit page (attest.console.pages.audit): the log's signed head as the log
holds it, the last `attest audit verify` as recorded in the store, and receipts checked
server-side against the log's own key, their path shown. Decisions are real verifies of
artifacts from a host on swtpm (tests/verify/rig.py), so the log has entries to prove."""

from __future__ import annotations

import base64
import html
import json
import re
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from click.testing import CliRunner

from attest.audit import verifications
from attest.audit.hashing import leaf_hash, node_hash
from attest.audit.note import NoteSigner
from attest.cli.main import cli
from attest.console import session
from attest.console.pages.audit import RECEIPT_BODY_BYTES
from attest.console.receipt import LEFT, RIGHT, check, walk
from attest.store import Store, default_url
from tests.server.conftest import Service
from tests.server.serving import admin_token, audit_verifies, challenge, verify

FORM = {"content-type": "application/x-www-form-urlencoded"}


def _login(service: Service) -> str:
    """Signed in: the page's form token."""
    answer = service.client.post("/ui/login", content=f"token={admin_token(service.home)}",
                                 headers=FORM, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    page = service.client.get("/ui/audit")
    assert page.status_code == 200, page.text
    assert re.search(r'<form id="receipt" method="post" action="/ui/audit/receipt">',
                     page.text)
    csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert csrf is not None
    return csrf.group(1)


def _decide(service: Service, count: int) -> list[dict[str, Any]]:
    """``count`` real decisions: accepted, then one denied (a nonce never issued)."""
    answers = [verify(service.client, service.rig.issue(nonce=challenge(service.client)))
               for _ in range(count - 1)]
    answers.append(verify(service.client, service.rig.issue(nonce="never-issued-nonce")))
    assert [a["accepted"] for a in answers] == [True] * (count - 1) + [False]
    return answers


def _claims(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return claims


def _receipt_of(answer: dict[str, Any]) -> dict[str, Any]:
    receipt: dict[str, Any] = _claims(answer["result"])["submods"]["attest"]["attest.audit"]
    return receipt


def _check(service: Service, csrf: str, receipt: str, **headers: str) -> Any:
    body = f"csrf={csrf}&receipt=" + quote_plus(receipt)
    return service.client.post("/ui/audit/receipt", content=body,
                               headers={**FORM, **headers}, follow_redirects=False)


def _result(page: str) -> tuple[str, str]:
    """The result section's data-valid and its text (tags stripped)."""
    found = re.search(r'<section id="receipt-result" data-valid="(true|false)"[^>]*>(.*?)'
                      r'</section>', page, re.S)
    assert found is not None, page
    return found.group(1), html.unescape(re.sub(r"<[^>]+>", "", found.group(2)))


def _field(page: str, name: str) -> str:
    found = re.search(rf'<dd data-field="{name}">(.*?)</dd>', page, re.S)
    assert found is not None, name
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(1)))


def _path(page: str) -> list[str]:
    """The siblings of ``ol#path`` (between its leaf and its root), checking those ends."""
    found = re.search(r'<ol id="path"[^>]*>(.*?)</ol>', page, re.S)
    assert found is not None, page
    items = re.findall(r'<li data-step="(leaf|sibling|root)"[^>]*>(.*?)</li>', found.group(1),
                       re.S)
    steps = [kind for kind, _ in items]
    assert steps[0] == "leaf" and steps[-1] == "root" and set(steps[1:-1]) <= {"sibling"}
    return [text for _, text in items[1:-1]]


def test_the_head_shown_is_the_logs_signed_head_and_its_last_verification(
        service: Service) -> None:
    _decide(service, 3)
    _login(service)
    head = service.client.get("/v1/audit/head").json()
    origin, size, root = head["checkpoint"].split("\n")[:3]
    page = service.client.get("/ui/audit").text
    assert _field(page, "size") == size == str(head["size"])
    assert _field(page, "root") == base64.b64decode(root).hex()
    signed_at = re.search(r'<dd data-field="signed-at"><time datetime="([^"]+)"', page)
    assert signed_at is not None and signed_at.group(1).startswith("20")
    name, key_id = head["key"].split("+")[:2]
    assert name == origin and _field(page, "key") == f"{name} (key ID {key_id})"
    assert _field(page, "verified").startswith("never on this deployment")
    assert "<script" not in page and " style=" not in page
    # `attest audit verify` records its result where every replica's console reads it.
    audit_verifies(service.home, service.url)
    verified = _field(service.client.get("/ui/audit").text, "verified")
    assert verified.startswith("valid at ")
    assert f": {head['size']} entries and" in verified


def test_a_failed_verification_is_recorded_and_shown_escaped(service: Service) -> None:
    _decide(service, 2)
    _login(service)
    # An entry changed in the database: `attest audit verify` fails and says so, here too.
    db = service.home / "verifier.db"
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE audit_entries SET data = CAST(X'7B7D' AS BLOB) "
                           "WHERE idx = 1")
    failed = CliRunner().invoke(cli, ["--home", str(service.home), "audit", "verify",
                                      "--store", service.url])
    assert failed.exit_code == 1, failed.output
    verified = _field(service.client.get("/ui/audit").text, "verified")
    assert verified.startswith("invalid at ") and "entry 1 was changed" in verified
    # The record is the database's to hold: whatever it holds is text on the page.
    hostile = '<script>alert(1)</script><img src=x onerror=alert(2)>'
    with Store.open(service.url) as store:
        verifications.record(store, verifications.Verification(
            checked_at=1, valid=False, problem=hostile, findings=3))
    page = service.client.get("/ui/audit").text
    assert "<script>alert" not in page and "<img" not in page
    assert _field(page, "verified").endswith(hostile + " (2 more findings)")


def test_a_head_or_a_record_changed_in_the_database_is_said_not_shown(
        service: Service) -> None:
    _decide(service, 2)
    _login(service)
    audit_verifies(service.home, service.url)
    head = service.client.get("/v1/audit/head").json()
    origin = head["checkpoint"].split("\n")[0]
    # The latest head row replaced by one the database's writer signed with a key of its
    # own under the log's name, over a root of its choosing: refused, its root not shown.
    forged = NoteSigner.generate(origin).sign(head["size"], b"\x07" * 32)
    with sqlite3.connect(service.home / "verifier.db") as connection:
        connection.execute("UPDATE audit_heads SET note = ? WHERE size = ?",
                           (forged, head["size"]))
        # And the recorded verification given a value attest never writes there.
        connection.execute("UPDATE audit_verifications SET valid = 'yes'")
    answer = service.client.get("/ui/audit")
    assert answer.status_code == 200
    root = _field(answer.text, "root")
    assert root.startswith("refused: the latest head is not one the log key signed")
    assert "not signed by the log key" in root
    assert "07" * 32 not in answer.text
    assert _field(answer.text, "verified").startswith("the recorded verification is unreadable")


def test_a_receipt_from_a_verify_answer_checks_valid_with_its_path(service: Service) -> None:
    answers = _decide(service, 3)
    csrf = _login(service)
    head = service.client.get("/v1/audit/head").json()
    head_root = base64.b64decode(head["checkpoint"].split("\n")[2]).hex()
    # The whole /v1/verify answer, its result token, and the receipt the token carries.
    last = answers[-1]
    receipt = _receipt_of(last)
    for pasted in (json.dumps(last), last["result"], json.dumps(receipt)):
        answer = _check(service, csrf, pasted)
        assert answer.status_code == 200, answer.text
        valid, said = _result(answer.text)
        assert valid == "true", said
        steps = _path(answer.text)
        assert len(steps) == len(receipt["proof"])
        for step, sibling in zip(steps, receipt["proof"], strict=True):
            assert base64.b64decode(sibling).hex() in step
        assert f"Entry index{receipt['index']}" in said
        assert base64.b64decode(receipt["leaf_hash"]).hex() in said
        assert f"Root reached{base64.b64decode(receipt['root']).hex()}" in said
    # An earlier entry proven to the latest head (the public proof route): a longer path,
    # reaching the root the page shows as the head's.
    proof = service.client.get("/v1/audit/proof/inclusion",
                               params={"index": answers[0]["audit_index"]}).json()
    assert len(proof["proof"]) >= 1
    answer = _check(service, csrf, json.dumps(proof))
    valid, said = _result(answer.text)
    assert valid == "true", said
    assert len(_path(answer.text)) == len(proof["proof"])
    if proof["tree_size"] == head["size"]:
        assert f"Root reached{head_root}" in said


def test_the_path_names_each_siblings_level_and_side() -> None:
    """The walk the page shows, against trees of known shape (RFC 9162, 2.1.1)."""
    leaves = [leaf_hash(bytes([i])) for i in range(8)]

    def root(hashes: list[bytes]) -> bytes:
        if len(hashes) == 1:
            return hashes[0]
        split = 1 << ((len(hashes) - 1).bit_length() - 1)
        return node_hash(root(hashes[:split]), root(hashes[split:]))

    cases = {  # (index, size): (the proof, each step's (level, side))
        (0, 3): ((leaves[1], leaves[2]), ((0, RIGHT), (1, RIGHT))),
        (2, 3): ((root(leaves[:2]),), ((1, LEFT),)),
        (4, 5): ((root(leaves[:4]),), ((2, LEFT),)),
        (5, 8): ((leaves[4], root(leaves[6:8]), root(leaves[:4])),
                 ((0, LEFT), (1, RIGHT), (2, LEFT))),
    }
    for (index, size), (proof, shape) in cases.items():
        steps, reached = walk(leaves[index], index, size, proof)
        assert tuple((s.level, s.side) for s in steps) == shape, (index, size)
        assert reached == root(leaves[:size]), (index, size)
        assert [s.sibling for s in steps] == list(proof)
    assert walk(leaves[0], 3, 3, ()) == ((), None)  # an index outside the tree


def _refused_receipt(service: Service, csrf: str, receipt: str, reason: str) -> None:
    answer = _check(service, csrf, receipt)
    assert answer.status_code == 200, answer.text
    valid, said = _result(answer.text)
    assert valid == "false", said
    assert reason in said, said
    assert '<span id="receipt-reason">' in answer.text


def test_a_receipt_changed_in_any_part_is_invalid_with_its_reason(service: Service) -> None:
    answers = _decide(service, 3)
    csrf = _login(service)
    proof = service.client.get("/v1/audit/proof/inclusion",
                               params={"index": answers[0]["audit_index"]}).json()
    good = json.dumps(proof)
    assert _result(_check(service, csrf, good).text)[0] == "true"
    # One path hash with one bit flipped.
    flipped = bytearray(base64.b64decode(proof["proof"][0]))
    flipped[0] ^= 1
    changed = {**proof, "proof": [base64.b64encode(bytes(flipped)).decode(),
                                  *proof["proof"][1:]]}
    _refused_receipt(service, csrf, json.dumps(changed), "is not in the tree of size")
    # The same proof claimed for another entry.
    other = {**proof, "index": (proof["index"] + 1) % proof["tree_size"]}
    _refused_receipt(service, csrf, json.dumps(other), "is not in the tree of size")
    # Past the tree: no path at all.
    _refused_receipt(service, csrf, json.dumps({**proof, "index": proof["tree_size"]}),
                     "outside a tree of size")
    # The same size and root signed by a key that is not the log's: under the log's own
    # name (a look-alike), and under another name.
    origin, size, root = proof["checkpoint"].split("\n")[:3]
    raw_root = base64.b64decode(root)
    for name in (origin, "other.example/log"):
        forged = NoteSigner.generate(name).sign(int(size), raw_root)
        _refused_receipt(service, csrf, json.dumps({**proof, "checkpoint": forged}),
                         "not signed by the log key")
    # A receipt without its signed head, and a consistency proof: nothing to vouch for.
    _refused_receipt(service, csrf, json.dumps({**proof, "checkpoint": None}),
                     "no signed checkpoint")
    consistency = service.client.get("/v1/audit/proof/consistency", params={"old": 1}).json()
    _refused_receipt(service, csrf, json.dumps(consistency), "consistency proof")
    # Cut short, not JSON, a JSON array, a token that holds no receipt, nothing.
    _refused_receipt(service, csrf, good[: len(good) // 2], "not JSON")
    _refused_receipt(service, csrf, "[1, 2]", "not a JSON object")
    _refused_receipt(service, csrf, answers[0]["result"][:40], "neither a receipt")
    _refused_receipt(service, csrf, '{"type": "inclusion"}', "not a receipt")
    _refused_receipt(service, csrf, "   ", "holds no receipt")


def test_an_oversized_or_malformed_body_is_a_clear_page(service: Service) -> None:
    csrf = _login(service)
    client = service.client
    big = _check(service, csrf, "x" * RECEIPT_BODY_BYTES)
    assert big.status_code == 413
    assert "The receipt was not read" in big.text and "exceeds 65536 bytes" in big.text
    malformed = [
        (f"csrf={csrf}", FORM),  # no receipt field
        (f"csrf={csrf}&receipt=a&receipt=b", FORM),  # twice
        (f"csrf={csrf}&receipt=a&extra=1", FORM),
        (json.dumps({"csrf": csrf, "receipt": "{}"}), {"content-type": "application/json"}),
        (f"csrf={csrf}&receipt=a", {"content-type": "text/plain"}),
    ]
    for body, headers in malformed:
        answer = client.post("/ui/audit/receipt", content=body, headers=headers,
                             follow_redirects=False)
        assert answer.status_code == 400, body
        assert "The form could not be read" in answer.text
        assert "Traceback" not in answer.text and 'id="receipt-result"' not in answer.text
    assert big.headers["content-type"].startswith("text/html")
    assert "Traceback" not in big.text and 'id="receipt-result"' not in big.text
    non_ascii = client.post("/ui/audit/receipt", content=f"csrf={csrf}&receipt=é".encode(),
                            headers=FORM, follow_redirects=False)
    assert non_ascii.status_code == 400


def test_a_receipt_post_without_this_sessions_form_is_refused(service: Service) -> None:
    answers = _decide(service, 2)
    receipt = json.dumps(_receipt_of(answers[0]))
    client = service.client
    # No session: to the login form, nothing checked.
    answer = client.post("/ui/audit/receipt", content="csrf=x&receipt=" + quote_plus(receipt),
                         headers=FORM, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/login"
    csrf = _login(service)
    # An empty or wrong form token, another session's, another site's page.
    for sent in ("", "0" * 64, csrf[:-1] + ("0" if csrf[-1] != "0" else "1")):
        refused = _check(service, sent, receipt)
        assert refused.status_code == 403, sent
        assert 'id="receipt-result"' not in refused.text
    other = session.csrf(session.session_key(b"k" * 32), client.cookies[session.COOKIE])
    assert _check(service, other, receipt).status_code == 403
    assert _check(service, csrf, receipt, origin="https://evil.example").status_code == 403
    assert _check(service, csrf, receipt, origin="null").status_code == 403
    # A forged cookie: no session.
    cookie = client.cookies[session.COOKIE]
    ident, expires, mac = cookie.split(".")
    client.cookies.set(session.COOKIE, f"{ident}.{int(expires) + 60}.{mac}", path="/ui")
    assert _check(service, csrf, receipt).status_code == 303
    client.cookies.set(session.COOKIE, cookie, path="/ui")
    accepted = _check(service, csrf, receipt, origin="http://testserver")
    assert _result(accepted.text)[0] == "true"


def test_hostile_strings_in_a_receipt_are_text_on_the_result_page(service: Service) -> None:
    answers = _decide(service, 2)
    csrf = _login(service)
    receipt = _receipt_of(answers[0])
    hostile = '</textarea><script>alert(1)</script>"><img src=x onerror=alert(2)>'
    # In the entry (then its hash no longer matches), in the checkpoint (then it does
    # not verify), in the type, and as the whole text (it stays in the form).
    entry = {**receipt, "entry": hostile}
    note = {**receipt, "checkpoint": hostile + "\n1\n" + receipt["root"] + "\n\n— x AAAA\n"}
    kind = {**receipt, "type": hostile}
    for pasted, reason in ((json.dumps(entry), "does not hash to the proof's leaf hash"),
                           (json.dumps(note), ""),
                           (json.dumps(kind), "unknown proof type"),
                           (hostile, "neither a receipt")):
        answer = _check(service, csrf, pasted)
        assert answer.status_code == 200
        page = answer.text
        assert "<script>alert" not in page and "<img" not in page, pasted
        assert "</textarea><script" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        valid, said = _result(page)
        assert valid == "false" and reason in said


def test_no_receipt_text_makes_the_check_raise_and_only_the_signed_one_holds() -> None:
    """Every member of a receipt given each kind of wrong value (types, sizes, a lone
    surrogate, a huge number), and texts that are no receipt: an answer, never an
    exception (which would be a 500 page), and valid only for the receipt as signed
    (with its entry, or with the leaf hash alone)."""
    signer = NoteSigner.generate("log.example/console-test")
    leaf = leaf_hash(b"{}")
    encoded = base64.b64encode(leaf).decode()
    signed = {"type": "inclusion", "index": 0, "leaf_hash": encoded, "tree_size": 1,
              "proof": [], "root": encoded, "checkpoint": signer.sign(1, leaf), "entry": "{}"}
    wrong: tuple[Any, ...] = (None, True, -1, 10**400, 1.5, "x", "\ud800", [], [1], {},
                              "A" * 1000, [encoded] * 2000, "\u2014 log.example/x AAAA\n")
    texts = [json.dumps({**signed, name: value}) for name in signed for value in wrong]
    claims = {"submods": {"attest": {"attest.audit": {**signed, "entry": "\ud800"}}}}
    token = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    texts += ['{"a":' * 50 + "1" + "}" * 50, '"\\ud800"', "[]", "null", "1e999", "\x00",
              '{"result": "a.b.c"}', '{"result": "e30.e30.e30"}', '{"result": 5}',
              f"e30.{token}.e30", json.dumps(signed)]
    holding = {json.dumps(signed), json.dumps({**signed, "entry": None})}
    for text in texts:
        checked = check(text, signer.verifier_key)
        assert checked.valid == (text in holding), text[:200]
        assert checked.valid or checked.reason


def test_the_recorded_verification_is_the_last_one_and_bounded(tmp_path: Path) -> None:
    with Store.open(default_url(tmp_path)) as store:
        verifications.ensure(store)
        assert verifications.last(store) is None
        first = verifications.Verification(checked_at=10, valid=True, entries=5, heads=2,
                                           root=b"\x01" * 32)
        verifications.record(store, first)
        assert verifications.last(store) == first
        verifications.record(store, verifications.Verification(
            checked_at=20, valid=False, problem="x" * 10_000, findings=7))
        found = verifications.last(store)
        assert found is not None and not found.valid and found.checked_at == 20
        assert found.problem == "x" * verifications.MAX_PROBLEM and found.findings == 7
        with store.read() as tx:
            assert tx.scalar("SELECT COUNT(*) FROM audit_verifications") == 1


def test_a_receipt_signed_by_the_key_but_not_held_by_this_log_is_not_valid(
        service: Service, tmp_path: Path) -> None:
    """Attack: a receipt the log's key signed for another tree (a log restored from an
    older backup, a second deployment given the same key, a forked log) proves nothing
    of this log, yet its signature and path hold: the page said valid. It must say the
    log here does not hold that tree."""
    import shutil

    from attest.audit import AuditLog, keys
    from tests.audit.conftest import entry

    _decide(service, 2)
    csrf = _login(service)
    size = service.client.get("/v1/audit/head").json()["size"]
    other = tmp_path / "other"
    folder = keys._folder(service.home, create=False)  # the key's folder
    copied = keys._folder(other, create=True)
    shutil.copy2(folder / keys.PRIVATE_FILE, copied / keys.PRIVATE_FILE)  # the key alone
    with Store.open(default_url(other)) as elsewhere:
        fork = AuditLog.open(elsewhere, other)  # the same key, another tree
        fork.record_many([entry(n) for n in range(size)])
        within = fork.receipt(0)  # signed at this log's size, over another tree
        fork.record_many([entry(n) for n in range(size, size + 3)])
        beyond = fork.receipt(size + 2)  # signed at a size this log never reached
    assert within.tree_size == size and beyond.tree_size > size
    for receipt in (within, beyond):
        answer = _check(service, csrf, json.dumps(receipt.to_json()))
        assert answer.status_code == 200, answer.text
        valid, said = _result(answer.text)
        assert valid == "false", said
        assert "this log" in said, said
    # A receipt of a tree this log holds stays valid.
    proof = service.client.get("/v1/audit/proof/inclusion", params={"index": 0}).json()
    assert _result(_check(service, csrf, json.dumps(proof)).text)[0] == "true"
