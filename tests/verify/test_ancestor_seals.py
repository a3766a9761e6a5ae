"""Revocations of an artifact's ancestors above its parent hold on the audited path even
when a database writer deletes or edits the ancestors' rows (red team rt3).

The store finds an ancestor's key, AK, host or approval revocation by walking the
``artifacts`` rows from the parent up. Only the parent's row was checked against its
seal: a grandparent row deleted (or its kid edited) by SQL cut the walk short, and its
key's revocation no longer reached the grandchildren.
"""

from __future__ import annotations

from tpm2_pytss import TPMA_OBJECT

from attest.audit.hooks import revoke_logged
from attest.policy import Rule
from attest.store import RevocationKind
from tests.verify.rig import Rig, accepted, denied, split

ANY_RULE = [Rule(("*",), ("*",), ("*",), ("*",))]
ROWS_CHANGED = "ancestor"


def _jti(raw: bytes) -> str:
    return str(split(raw)[1]["jti"])


def _kid(raw: bytes) -> str:
    return str(split(raw)[0]["kid"])


def _line(rig: Rig) -> tuple[object, bytes, bytes]:
    """A verifier, a grandparent signed by a second key (since revoked), its child."""
    verifier = rig.verifier(rig.policy(rules=ANY_RULE))
    rig.create_key("second", TPMA_OBJECT(0))
    grandparent = rig.issue("ls", "-l", "/srv/*", ttl=300, key="second")
    accepted(rig.verify_logged(verifier, grandparent))
    parent = rig.issue("ls", "-l", "/srv/*", ttl=250, parent=grandparent)  # exp within its parent's
    accepted(rig.verify_logged(verifier, parent))
    assert _kid(grandparent) != _kid(parent)
    store = verifier.store
    revoke_logged(store, rig.log(store), RevocationKind.KEY, _kid(grandparent), "stolen")
    denied(rig.verify_logged(verifier, rig.issue("ls", "-l", "/srv/data", ttl=60,
                                                 parent=parent)), "lineage_broken")
    return verifier, grandparent, parent


def test_a_deleted_grandparent_row_does_not_lift_its_key_revocation(rig: Rig) -> None:
    verifier, grandparent, parent = _line(rig)
    with verifier.store.write() as tx:  # type: ignore[attr-defined]
        tx.execute("DELETE FROM artifacts WHERE jti = :jti", {"jti": _jti(grandparent)})
    decision = rig.verify_logged(verifier, rig.issue(  # type: ignore[arg-type]
        "ls", "-l", "/srv/data", ttl=60, parent=parent))
    assert not decision.accepted, decision
    assert ROWS_CHANGED in " ".join(d.message for d in decision.denials), decision


def test_an_edited_grandparent_row_does_not_lift_its_key_revocation(rig: Rig) -> None:
    verifier, grandparent, parent = _line(rig)
    with verifier.store.write() as tx:  # type: ignore[attr-defined]
        tx.execute("UPDATE artifacts SET kid = :kid WHERE jti = :jti",
                   {"kid": "000b" + "ee" * 32, "jti": _jti(grandparent)})
    decision = rig.verify_logged(verifier, rig.issue(  # type: ignore[arg-type]
        "ls", "-l", "/srv/data", ttl=60, parent=parent))
    assert not decision.accepted, decision
    assert ROWS_CHANGED in " ".join(d.message for d in decision.denials), decision


def test_a_multi_use_row_unlinked_and_a_revocation_replaced_in_place_stay_caught(
        rig: Rig) -> None:
    """A running verifier holds the key revocation it checked; the writer rewrites that
    row in place (the table no longer says it) and unlinks the multi-use artifact's
    stored row from its parent (the walk from the row no longer reaches the revoked
    key). The accepted values still name the parent: the revocation stays in force."""
    verifier = rig.verifier(rig.policy(rules=ANY_RULE, single_use=False))
    rig.create_key("second", TPMA_OBJECT(0))
    parent = rig.issue("ls", "-l", "/srv/*", ttl=300, key="second")
    accepted(rig.verify_logged(verifier, parent))
    child = rig.issue("ls", "-l", "/srv/data", ttl=120, parent=parent)
    accepted(rig.verify_logged(verifier, child))
    store = verifier.store
    revoke_logged(store, rig.log(store), RevocationKind.KEY, _kid(parent), "stolen")
    denied(rig.verify_logged(verifier, child), "lineage_broken")
    accepted(rig.verify_logged(verifier, rig.issue()))  # the running verifier holds it
    with store.write() as tx:
        tx.execute("UPDATE revocations SET subject = :other WHERE kind = 'key'",
                   {"other": "000b" + "ee" * 32})
        tx.execute("UPDATE artifacts SET parent_jti = NULL WHERE jti = :jti",
                   {"jti": _jti(child)})
    decision = rig.verify_logged(verifier, child)
    denied(decision, "audit_unavailable")
    assert "still in force" in decision.denials[0].message, decision
