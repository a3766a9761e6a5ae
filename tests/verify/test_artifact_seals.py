"""Lineage rests only on parent rows the audited verifier sealed when it accepted them
(attest.audit.seals): a parent's ``artifacts`` row that whoever can write the database
widens, revives or invents vouches for no child (issue 10, class 15).

Real artifacts from a swtpm, a real SQLite store, the attacks as SQL on it. Each attack
is shown to work on a plain Verifier (which trusts its store, as documented) and to be
denied lineage_broken on the audited path.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import pytest

from attest.artifact import jws
from attest.audit import AuditLog
from attest.audit.seals import artifact_data
from attest.policy import Rule
from attest.store import Store
from attest.verify.verifier import Verifier
from tests.store import reads
from tests.verify.rig import Rig, accepted, denied, verify_logged

ANY_RULE = [Rule(("*",), ("*",), ("*",), ("*",))]
NOT_WRITTEN = "was not written by this verifier"


@pytest.fixture
def verifier(rig: Rig) -> Verifier:
    return rig.verifier(rig.policy(rules=ANY_RULE))


def _jti(raw: bytes) -> str:
    return jws.parse(raw).claims.jti


def _seal(store: Store, jti: str) -> bytes | None:
    with store.read() as tx:
        mac = tx.scalar("SELECT mac FROM artifact_seals WHERE jti = :jti", {"jti": jti})
    return None if mac is None else bytes(mac)


def _lineage_denied(decision: object) -> None:
    denied(decision, "lineage_broken")  # type: ignore[arg-type]
    assert NOT_WRITTEN in decision.denials[0].message  # type: ignore[attr-defined]


def test_an_honest_parent_and_child_are_accepted_and_sealed(rig: Rig,
                                                             verifier: Verifier) -> None:
    parent = rig.issue("ls", "-l", "/srv/*", resources=("db1", "db2"), ttl=300)
    accepted(rig.verify_logged(verifier, parent))
    record = reads.artifact(verifier.store, _jti(parent))
    assert record is not None and record.seal is not None
    # The seal covers the row as the store reads it back.
    assert record.seal == rig.log(verifier.store)._keyed("test").trust_mac(
        artifact_data(record))
    child = rig.issue("ls", "-l", "/srv/data", resources=("db1",), ttl=60, parent=parent)
    accepted(rig.verify_logged(verifier, child))
    assert _seal(verifier.store, _jti(child)) is not None
    accepted(rig.verify_logged(verifier, rig.issue("ls", "-l", "/srv/data", ttl=30,
                                                   parent=child)))


def test_a_parent_scope_widened_by_sql_vouches_for_no_child(rig: Rig,
                                                            verifier: Verifier) -> None:
    parent = rig.issue("ls", "-l", "/srv/*", resources=("db1",), ttl=300)
    accepted(rig.verify_logged(verifier, parent))
    beyond = rig.issue("ls", "-l", "/srv/data", resources=("db1", "db2"), ttl=60,
                       parent=parent)
    denied(rig.verify_logged(verifier, beyond), "scope_escalation")  # as issued
    with verifier.store.write() as tx:
        scope = json.loads(tx.scalar("SELECT scope FROM artifacts WHERE jti = :jti",
                                     {"jti": _jti(parent)}))
        scope["resources"] = ["db1", "db2"]
        tx.execute("UPDATE artifacts SET scope = :scope WHERE jti = :jti",
                   {"scope": json.dumps(scope, sort_keys=True), "jti": _jti(parent)})
    wider = rig.issue("ls", "-l", "/srv/data", resources=("db1", "db2"), ttl=60,
                      parent=parent)
    # The attack: a verifier that trusts its store takes the widened scope.
    accepted(rig.verifier(verifier.policy, verifier.store).verify(wider))
    _lineage_denied(rig.verify_logged(verifier, rig.issue(
        "ls", "-l", "/srv/data", resources=("db1", "db2"), ttl=60, parent=parent)))
    # Not only the child that exceeds it: the row vouches for nothing any more.
    _lineage_denied(rig.verify_logged(verifier, rig.issue(
        "ls", "-l", "/srv/data", resources=("db1",), ttl=60, parent=parent)))


def test_a_parent_row_inserted_by_sql_vouches_for_no_child(rig: Rig,
                                                           verifier: Verifier) -> None:
    parent = rig.issue("ls", "-l", "/srv/*", ttl=300)  # never presented to the verifier
    claims = jws.parse(parent).claims
    with verifier.store.write() as tx:
        tx.execute("INSERT INTO artifacts (jti, sha256, parent_jti, depth, exp, host, kid, "
                   "ak_name, subject, scope, accepted_at) VALUES (:jti, :sha256, NULL, 0, "
                   ":exp, 'web-1', :kid, :ak, :sub, :scope, :exp)",
                   {"jti": claims.jti, "sha256": jws.parse(parent).sha256, "exp": claims.exp,
                    "kid": jws.parse(parent).header.kid, "ak": claims.iss,
                    "sub": claims.sub,
                    "scope": json.dumps(claims.scope.to_json(), sort_keys=True)})
    # The attack: a verifier that trusts its store takes the invented parent.
    accepted(rig.verifier(verifier.policy, verifier.store).verify(
        rig.issue("ls", "-l", "/srv/data", ttl=60, parent=parent)))
    _lineage_denied(rig.verify_logged(verifier, rig.issue("ls", "-l", "/srv/data", ttl=60,
                                                          parent=parent)))


def test_a_seal_moved_to_another_row_vouches_for_nothing(rig: Rig,
                                                         verifier: Verifier) -> None:
    honest = rig.issue(ttl=300)
    accepted(rig.verify_logged(verifier, honest))
    parent = rig.issue(ttl=300)
    accepted(verifier.verify(parent))  # accepted unaudited: no seal
    with verifier.store.write() as tx:
        tx.execute("INSERT INTO artifact_seals (jti, mac) VALUES (:jti, :mac)",
                   {"jti": _jti(parent), "mac": _seal(verifier.store, _jti(honest))})
    _lineage_denied(rig.verify_logged(verifier, rig.issue(ttl=60, parent=parent)))


def test_an_expired_parent_revived_by_sql_vouches_for_no_child(rig: Rig,
                                                               verifier: Verifier) -> None:
    parent = rig.issue(ttl=60)
    accepted(rig.verify_logged(verifier, parent))
    iat, parent_exp = jws.parse(parent).claims.iat, jws.parse(parent).claims.exp
    child = rig.issue(ttl=60, now=iat, parent=parent)  # expires with its parent
    log = rig.log(verifier.store)
    # The child is still within the 30 s clock skew; its parent is over (no skew there).
    denied(verify_logged(verifier, log, child, now=parent_exp + 5), "lineage_broken")
    with verifier.store.write() as tx:
        tx.execute("UPDATE artifacts SET exp = exp + 3600 WHERE jti = :jti",
                   {"jti": _jti(parent)})
    # The attack: a verifier that trusts its store takes the revived parent.
    accepted(rig.verifier(verifier.policy, verifier.store).verify(
        rig.issue(ttl=60, now=iat, parent=parent), now=parent_exp + 5))
    _lineage_denied(verify_logged(verifier, log, rig.issue(ttl=60, now=iat, parent=parent),
                                  now=parent_exp + 5))


def test_a_parent_accepted_before_seals_vouches_for_no_child(rig: Rig,
                                                             verifier: Verifier) -> None:
    """Existing stores: artifacts accepted without the audit log have no seal. Parents are
    short-lived (max_lifetime): their children are denied until they are issued again."""
    parent = rig.issue(ttl=300)
    accepted(verifier.verify(parent))  # no audit hook: nothing sealed
    assert _seal(verifier.store, _jti(parent)) is None
    _lineage_denied(rig.verify_logged(verifier, rig.issue(ttl=60, parent=parent)))
    reissued = rig.issue(ttl=300)
    accepted(rig.verify_logged(verifier, reissued))
    accepted(rig.verify_logged(verifier, rig.issue(ttl=60, parent=reissued)))


def test_a_parent_seal_is_checked_under_the_log_key_or_the_decision_is_audit_unavailable(
        rig: Rig, verifier: Verifier) -> None:
    """A log opened without its key cannot check the parent's seal: a named failure,
    never a silent skip and never internal_error."""
    parent = rig.issue(ttl=300)
    accepted(rig.verify_logged(verifier, parent))
    decision = verify_logged(verifier, AuditLog.open(verifier.store, None),
                             rig.issue(ttl=60, parent=parent))
    assert not decision.accepted
    assert set(decision.reasons) == {"audit_unavailable"}, decision.reasons
    # Denied at the parent's seal, before any acceptance is attempted.
    assert any("check an artifact's seal" in d.message for d in decision.denials)


def test_attest_verify_seals_a_parent_and_denies_a_child_of_its_widened_row(
        rig: Rig) -> None:
    host = rig.host
    policy = rig.tmp / "policy.yaml"
    host.ok("policy", "init", "--from-host", "--out", str(policy))
    parent = rig.tmp / "parent.jws"
    host.ok("authorize", "--subject", "ops", "--resource", "db1", "--ttl", "300s",
            "--out", str(parent), "--", "ls")
    assert json.loads(host.ok("verify", str(parent), "--policy", str(policy),
                              "--json").stdout)["accepted"]
    child = rig.tmp / "child.jws"
    # Children expire before their parent (their exp may not pass it).
    host.ok("authorize", "--subject", "ops", "--resource", "db1", "--ttl", "60s",
            "--parent", str(parent), "--out", str(child), "--", "ls")
    assert json.loads(host.ok("verify", str(child), "--policy", str(policy),
                              "--json").stdout)["accepted"]
    jti = _jti(parent.read_bytes())
    with closing(sqlite3.connect(host.home / "verifier.db")) as attacker, attacker:
        scope = json.loads(attacker.execute("SELECT scope FROM artifacts WHERE jti = ?",
                                            (jti,)).fetchone()[0])
        scope["resources"] = ["db1", "db2"]
        attacker.execute("UPDATE artifacts SET scope = ? WHERE jti = ?",
                         (json.dumps(scope, sort_keys=True), jti))
    wider = rig.tmp / "wider.jws"
    host.ok("authorize", "--subject", "ops", "--resource", "db1", "--resource", "db2",
            "--ttl", "60s", "--parent", str(parent), "--out", str(wider), "--", "ls")
    refused = host.run("verify", str(wider), "--policy", str(policy), "--json")
    assert refused.exit_code == 1, refused.output
    assert json.loads(refused.stdout)["reasons"] == ["lineage_broken"]


def test_a_row_prepared_under_a_multi_use_parent_jti_is_not_sealed_as_it_stands(
        rig: Rig) -> None:
    """An artifact allowed several uses keeps its first row (attest.store.acceptance): a
    writer who inserts that row ahead of the first use, with a wider scope, must not get
    it sealed. The seal covers the values the verifier accepted, never the row read back."""
    verifier = rig.verifier(rig.policy(rules=ANY_RULE, single_use=False))
    parent = rig.issue("ls", "-l", "/srv/*", resources=("db1",), ttl=300)
    claims = jws.parse(parent).claims
    scope = claims.scope.to_json()
    scope["resources"] = ["db1", "db2"]
    with verifier.store.write() as tx:
        tx.execute("INSERT INTO artifacts (jti, sha256, parent_jti, depth, exp, host, kid, "
                   "ak_name, subject, scope, accepted_at) VALUES (:jti, :sha256, NULL, 0, "
                   ":exp, 'web-1', :kid, :ak, :sub, :scope, 0)",
                   {"jti": claims.jti, "sha256": jws.parse(parent).sha256, "exp": claims.exp,
                    "kid": jws.parse(parent).header.kid, "ak": claims.iss,
                    "sub": claims.sub, "scope": json.dumps(scope, sort_keys=True)})
    accepted(rig.verify_logged(verifier, parent))  # the same digest: a second use
    _lineage_denied(rig.verify_logged(verifier, rig.issue(
        "ls", "-l", "/srv/data", resources=("db1", "db2"), ttl=60, parent=parent)))
