"""`attest audit`: heads, proofs, export, offline checks, and the exit codes 0/1/2/3."""

from __future__ import annotations

import base64
import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from attest.audit import AuditLog, HeadPolicy, NoteSigner, merkle
from attest.cli.main import cli
from attest.store import Store, default_url
from tests.audit.conftest import fill, run


@pytest.fixture
def logged(home: Path) -> Path:
    """A home whose store (the CLI's default, SQLite) holds a 10-entry log."""
    with Store.open(default_url(home)) as store:
        fill(AuditLog.open(store, home, heads=HeadPolicy(every=4, interval=1e9)), 10)  # heads 4, 8
    return home


def _vkey(home: Path) -> str:
    result = run(home, "key")
    assert result.exit_code == 0, result.output
    return result.output.strip()


def _save(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_head_prints_the_latest_signed_checkpoint(logged: Path) -> None:
    result = run(logged, "head")
    assert result.exit_code == 0, result.output
    assert result.output.split("\n")[1] == "8"
    signed = run(logged, "head", "--sign")
    assert signed.output.split("\n")[1] == "10"


def test_a_receipt_checks_offline_with_only_the_verifier_key(logged: Path,
                                                             tmp_path: Path) -> None:
    proof = run(logged, "prove", "--index", "9")
    assert proof.exit_code == 0, proof.output
    receipt = json.loads(proof.output)
    assert (receipt["index"], receipt["tree_size"]) == (9, 10)  # a head was signed for it
    path = _save(tmp_path / "receipt.json", proof.output)
    for key in (_vkey(logged), _save(tmp_path / "log.vkey", _vkey(logged))):
        checked = run(tmp_path / "elsewhere", "check-proof", path, "--key", key)
        assert checked.exit_code == 0, checked.output
        assert checked.output.startswith("ok: entry 9 is in ")


def test_a_consistency_proof_between_heads_checks_offline(logged: Path, tmp_path: Path) -> None:
    proof = run(logged, "consistency", "--from", "4")
    assert proof.exit_code == 0, proof.output
    assert json.loads(proof.output)["new_size"] == 8
    path = _save(tmp_path / "consistency.json", proof.output)
    checked = run(tmp_path, "check-proof", path, "--key", _vkey(logged))
    assert checked.exit_code == 0, checked.output
    assert "at size 8 extends size 4" in checked.output


@pytest.mark.parametrize("change", ["proof", "index", "entry", "checkpoint"])
def test_a_changed_receipt_is_refused(logged: Path, tmp_path: Path, change: str) -> None:
    receipt = json.loads(run(logged, "prove", "--index", "5").output)
    if change == "proof":
        receipt["proof"][0] = base64.b64encode(bytes(32)).decode()
    elif change == "index":
        receipt["index"] = 4
    elif change == "entry":
        receipt["entry"] = receipt["entry"].replace("jti-5", "jti-X")
    else:
        receipt["checkpoint"] = receipt["checkpoint"].replace("\n8\n", "\n9\n")
    path = _save(tmp_path / "receipt.json", json.dumps(receipt))
    assert run(logged, "check-proof", path, "--key", _vkey(logged)).exit_code == 1


def test_a_receipt_under_another_key_is_refused(logged: Path, tmp_path: Path) -> None:
    path = _save(tmp_path / "receipt.json", run(logged, "prove", "--index", "1").output)
    stranger = NoteSigner.generate(_vkey(logged).split("+")[0]).verifier_key.encode()
    result = run(logged, "check-proof", path, "--key", stranger)
    assert result.exit_code == 1
    assert "not signed by the log key" in result.output


def test_a_proof_without_a_signed_head_is_not_a_receipt(logged: Path, tmp_path: Path) -> None:
    proof = run(logged, "prove", "--index", "1", "--size", "6")
    assert json.loads(proof.output)["checkpoint"] is None
    path = _save(tmp_path / "proof.json", proof.output)
    assert run(logged, "check-proof", path, "--key", _vkey(logged)).exit_code == 1


def test_export_streams_the_leaf_data_that_makes_the_signed_root(logged: Path) -> None:
    result = run(logged, "export", "--to", "8")
    assert result.exit_code == 0, result.output
    lines = result.stdout_bytes.split(b"\n")[:-1]
    assert [json.loads(line)["index"] for line in lines] == list(range(8))
    head = run(logged, "head").output.split("\n")
    assert head[1] == "8"
    assert merkle.root([merkle.leaf_hash(line) for line in lines]) == base64.b64decode(head[2])
    assert len(run(logged, "export", "--from", "7").stdout_bytes.split(b"\n")) == 3 + 1


def test_bad_input_exits_2(logged: Path, tmp_path: Path) -> None:
    assert run(logged, "prove", "--index", "10", "--size", "10").exit_code == 2
    assert run(logged, "prove", "--index", "99").exit_code == 2
    assert run(logged, "consistency", "--from", "11").exit_code == 2
    not_json = _save(tmp_path / "x.json", "{")
    # A proof is evidence: one that does not parse is refused (proof_invalid), not usage.
    refused = run(logged, "check-proof", not_json, "--key", _vkey(logged))
    assert refused.exit_code == 1 and "proof_invalid" in refused.stderr
    receipt = _save(tmp_path / "r.json", run(logged, "prove", "--index", "1").output)
    assert run(logged, "check-proof", receipt, "--key", "not-a-key").exit_code == 2
    assert run(logged, "verify", "--trusted-head", str(tmp_path / "missing")).exit_code == 2


def test_an_unreachable_store_exits_3(tmp_path: Path) -> None:
    result = run(tmp_path, "verify", "--store", f"sqlite:///{tmp_path}/no/such/dir/x.db")
    assert result.exit_code == 3, result.output


def test_verify_with_an_outside_key_and_json(logged: Path) -> None:
    result = run(logged / "auditor", "verify", "--store", f"sqlite:///{logged}/verifier.db",
                 "--key", _vkey(logged), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) | {"root": None} == {
        "ok": True, "valid": True, "entries": 10, "heads": 2, "root": None}


def test_verify_without_any_key_for_signed_heads_is_bad_input(logged: Path) -> None:
    result = run(logged / "auditor", "verify", "--store", f"sqlite:///{logged}/verifier.db")
    assert result.exit_code == 2
    assert "--key" in result.output


def test_the_store_default_is_the_homes(home: Path) -> None:
    with Store.open(f"sqlite:///{home}/verifier.db") as store:
        fill(AuditLog.open(store, home), 3)
    assert run(home, "verify").output.startswith("ok: 3 entries")


@pytest.mark.parametrize("flag", ["--ak", "--key"])
def test_a_revocation_named_in_upper_case_reconciles(tmp_path: Path, flag: str) -> None:
    """The store keys TPM names in lowercase; the entry must name what the store holds, or
    every later audit reports the revocation missing from the log (and lifted)."""
    name = "000B" + "A1" * 32
    revoked = CliRunner().invoke(cli, ["revoke", flag, f" {name}", "--reason", "stolen"],
                                 env={"ATTEST_HOME": str(tmp_path), "ATTEST_STORE": None},
                                 catch_exceptions=False)
    assert revoked.exit_code == 0, revoked.output
    result = run(tmp_path, "verify")
    assert result.exit_code == 0, result.output


def test_revoke_ek_revokes_the_tpm_and_its_aks_with_their_entries(tmp_path: Path) -> None:
    from attest.audit.hooks import enrollment_entry

    ak, ek = "000b" + "a1" * 32, "e1" * 32
    with Store.open(default_url(tmp_path)) as store:
        log = AuditLog.open(store, tmp_path)
        store.enroll("web-1", bytes.fromhex(ak), b"pub", b"qn", None, 1, ek=ek,
                     in_transaction=lambda tx, _move: log.append(
                         tx, enrollment_entry("web-1", ak, time=1)) and None)
    revoked = CliRunner().invoke(cli, ["revoke", "--ek", ek.upper(), "--reason", "lost",
                                       "--json"],
                                 env={"ATTEST_HOME": str(tmp_path), "ATTEST_STORE": None},
                                 catch_exceptions=False)
    assert revoked.exit_code == 0, revoked.output
    assert json.loads(revoked.output)["subjects"] == [ek, ak]
    with Store.open(default_url(tmp_path)) as store:
        enrolled = store.enrollment(ak)
        assert enrolled is not None and enrolled.revoked
    assert run(tmp_path, "verify").exit_code == 0


@pytest.mark.sqlite_only
def test_head_never_prints_a_stored_note_it_cannot_vouch_for(logged: Path) -> None:
    """Whoever can write the database writes the heads table: a "head" with terminal
    escapes (or any note the log key did not sign) is refused, not printed."""
    import sqlite3

    forged = "attest\n8\n\x1b[2J\x1b]0;owned\x07accepted: everything\n\n— attest AAAA\n"
    with sqlite3.connect(logged / "verifier.db") as db:
        db.execute("UPDATE audit_heads SET note = ? WHERE size = 8", (forged,))
    result = run(logged, "head")
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert result.exit_code == 1, result.output


def test_heads_lists_every_signed_head_with_its_root_and_checked_signature(logged: Path) -> None:
    result = run(logged, "heads", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["ok"] is True
    listed = document["heads"]
    assert [(h["size"], h["signature"]) for h in listed] == [(4, "ok"), (8, "ok")]
    lines = run(logged, "export").stdout_bytes.split(b"\n")[:-1]
    for head in listed:
        leaves = [merkle.leaf_hash(line) for line in lines[:head["size"]]]
        assert base64.b64decode(head["root"]) == merkle.root(leaves)
        assert head["signed_at"].endswith("Z")
    text = run(logged, "heads")
    assert text.exit_code == 0, text.output
    assert [line.split()[0] for line in text.output.splitlines()] == ["4", "8"]
    assert all(line.endswith("  ok") for line in text.output.splitlines())


def test_heads_without_the_log_key_are_listed_unchecked(logged: Path, tmp_path: Path) -> None:
    result = run(tmp_path / "auditor", "heads", "--json",
                 "--store", f"sqlite:///{logged}/verifier.db")
    assert result.exit_code == 0, result.output
    assert {h["signature"] for h in json.loads(result.output)["heads"]} == {"unchecked"}
    checked = run(tmp_path / "auditor", "heads", "--json", "--key", _vkey(logged),
                  "--store", f"sqlite:///{logged}/verifier.db")
    assert {h["signature"] for h in json.loads(checked.output)["heads"]} == {"ok"}


@pytest.mark.sqlite_only
def test_heads_names_a_head_signed_by_another_key_and_exits_1(logged: Path) -> None:
    stranger = NoteSigner.generate(_vkey(logged).split("+")[0])
    forged = stranger.sign(4, bytes(32))
    with closing(sqlite3.connect(logged / "verifier.db", isolation_level=None)) as db:
        db.execute("UPDATE audit_heads SET note = ? WHERE size = 4", (forged,))
    result = run(logged, "heads")
    assert result.exit_code == 1, result.output
    first, second = result.output.splitlines()
    assert first.split()[0] == "4" and "bad (it is not signed by the log key" in first
    assert second.split()[0] == "8" and second.endswith("  ok")


def test_heads_on_an_empty_log_lists_none(home: Path) -> None:
    result = run(home, "heads", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"ok": True, "heads": []}


def test_a_consistency_proof_from_an_unsigned_size_names_the_signed_sizes(logged: Path) -> None:
    result = run(logged, "consistency", "--from", "6")
    assert result.exit_code == 2, result.output
    assert "no signed tree head of size 6" in result.output
    assert "signed sizes: 4, 8" in result.output
    to_unsigned = run(logged, "consistency", "--from", "4", "--to", "9")
    assert to_unsigned.exit_code == 2, to_unsigned.output
    assert "no signed tree head of size 9" in to_unsigned.output
