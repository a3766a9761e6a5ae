"""Revocation: artifacts with their descendants, keys, AKs, hosts; lineage lookups."""

from __future__ import annotations

import dataclasses

import pytest

from attest.errors import UsageError
from attest.store import ApprovalUse, Revocation, RevocationKind, Revoked, Store
from attest.store.schema import artifacts
from tests.store import reads
from tests.store.helpers import AK, HOST, KID, T0, clock, raw_artifact, record

OTHER_KID = "000b" + "77" * 32


@pytest.fixture
def tree(store: Store) -> Store:
    """root -> a -> a1 -> a1x ; root -> a -> a2 ; root -> b -> b1   (plus an unrelated 'solo')."""
    edges = [("root", None, 0), ("a", "root", 1), ("b", "root", 1), ("a1", "a", 2),
             ("a2", "a", 2), ("b1", "b", 2), ("a1x", "a1", 3), ("solo", None, 0)]
    for jti, parent, depth in edges:
        kid = OTHER_KID if jti == "solo" else KID
        store.accept(record(jti, parent, depth=depth, kid=kid), nonce=None, single_use=True,
                     clock=clock(depth), now=T0)
    return store


def test_revoking_an_artifact_cascades_to_descendants_only(tree: Store) -> None:
    revoked = tree.revoke_artifact("a", "approver withdrew", T0 + 10)
    assert revoked[0] == "a"
    assert revoked == ["a", "a1", "a2", "a1x"]  # nearest first
    for jti in ("a", "a1", "a2", "a1x"):
        found = reads.revocation_for(tree, jti=jti)
        assert found is not None and found.reason == "approver withdrew"
        assert reads.artifact(tree, jti).revoked  # type: ignore[union-attr]
    assert reads.revocation_for(tree, jti="a1x") == Revocation(
        RevocationKind.ARTIFACT, "a1x", "approver withdrew", T0 + 10, cascaded_from="a")
    for jti in ("root", "b", "b1", "solo"):  # ancestors and siblings untouched
        assert reads.revocation_for(tree, jti=jti) is None
        assert not reads.artifact(tree, jti).revoked  # type: ignore[union-attr]
        assert reads.ancestry_revoked(tree, jti) is None


def test_ancestry_revoked_finds_the_nearest_revoked_ancestor(tree: Store) -> None:
    tree.revoke_artifact("root", "everything off", T0)
    tree.revoke_artifact("a1", "this branch", T0 + 1)  # already revoked: first reason stands
    found = reads.ancestry_revoked(tree, "a1x")
    assert found is not None and found.subject == "a1x" and found.cascaded_from == "root"
    assert found.reason == "everything off"


def test_ancestry_covers_ancestors_not_cascaded(store: Store) -> None:
    # A child accepted before its ancestor was revoked without cascade reaching it
    # (e.g. revoked in another replica's view): the walk still finds the ancestor.
    store.accept(record("p"), nonce=None, single_use=True, clock=clock(1), now=T0)
    store.accept(record("c", "p"), nonce=None, single_use=True, clock=clock(2), now=T0)
    store.accept(record("g", "c", depth=2), nonce=None, single_use=True, clock=clock(3), now=T0)
    store.revoke_key(KID, "key stolen", T0)
    found = reads.ancestry_revoked(store, "g")
    assert found is not None and found.kind is RevocationKind.KEY


def test_ancestry_revoked_for_unknown_jti_sees_only_its_own_revocation(store: Store) -> None:
    assert reads.ancestry_revoked(store, "in-flight") is None
    assert store.revoke_artifact("in-flight", "leaked", T0) == ["in-flight"]
    found = reads.ancestry_revoked(store, "in-flight")
    assert found is not None and found.reason == "leaked"


def test_ancestry_sees_a_parent_revoked_before_it_was_stored(store: Store) -> None:
    store.revoke_artifact("ghost", "never trust", T0)
    # Stored directly only to build the situation; accept() itself would refuse it.
    with store.write() as conn:
        conn.execute(artifacts.insert(), raw_artifact("orphan", "ghost"))
    found = reads.ancestry_revoked(store, "orphan")
    assert found is not None and found.subject == "ghost"


def test_a_parent_cycle_does_not_hang(store: Store) -> None:
    with store.write() as conn:
        for jti, parent in (("x", "y"), ("y", "x")):
            conn.execute(artifacts.insert(), raw_artifact(jti, parent))
    assert store.revoke_artifact("x", "loop", T0) == ["x", "y"]
    assert reads.ancestry_revoked(store, "y") is not None


def test_key_ak_and_host_revocations(store: Store) -> None:
    store.revoke_key(KID.upper(), "key lost", T0)
    store.revoke_ak(bytes.fromhex(AK), "ak lost", T0 + 1)
    store.revoke_host(HOST, "decommissioned", T0 + 2)
    key = reads.revocation_for(store, kid=KID)
    assert key == Revocation(RevocationKind.KEY, KID, "key lost", T0)
    ak = reads.revocation_for(store, ak=AK)
    assert ak is not None and ak.kind is RevocationKind.AK and ak.reason == "ak lost"
    assert reads.revocation_for(store, ak=bytes.fromhex(AK)) == ak
    host = reads.revocation_for(store, host=HOST)
    assert host is not None and host.reason == "decommissioned"
    assert reads.revocation_for(store, kid=OTHER_KID) is None
    assert reads.revocation_for(store, host="host-2") is None


def test_revocation_for_reports_the_most_specific_first(store: Store) -> None:
    store.revoke_host(HOST, "host", T0)
    store.revoke_ak(AK, "ak", T0)
    store.revoke_artifact("j", "artifact", T0)
    both = reads.revocation_for(store, jti="j", kid=KID, ak=AK, host=HOST)
    assert both is not None and both.reason == "artifact"
    assert reads.revocation_for(store, kid=KID, ak=AK, host=HOST).reason == "ak"  # type: ignore[union-attr]
    assert reads.revocation_for(store, jti="other", host=HOST).reason == "host"  # type: ignore[union-attr]


def test_revoking_twice_keeps_the_first_reason(store: Store) -> None:
    store.revoke_key(KID, "first", T0)
    store.revoke_key(KID, "second", T0 + 5)
    assert reads.revocation_for(store, kid=KID) == Revocation(RevocationKind.KEY, KID, "first", T0)


def test_bad_revocations_are_usage_errors(store: Store) -> None:
    with pytest.raises(UsageError):
        store.revoke_key("zz", "reason", T0)
    with pytest.raises(UsageError):
        store.revoke_artifact("j", "  ", T0)


APPROVAL_ID = "ab" * 32
APPROVAL = ApprovalUse(APPROVAL_ID, "000b" + "11" * 32, "", 1)


def test_a_revoked_approval_is_refused_in_the_snapshot_and_at_commit(store: Store) -> None:
    """Revoked between a verifier's read and its commit: the commit refuses it too."""
    assert store.snapshot(AK, jti="x", now=T0, approval=APPROVAL).revocations == ()
    store.revoke_approval(APPROVAL_ID, "firmware v1 withdrawn", T0)
    seen = store.snapshot(AK, jti="x", now=T0, approval=APPROVAL).revocations
    assert [(r.kind, r.subject) for r in seen] == [(RevocationKind.APPROVAL, APPROVAL_ID)]
    with pytest.raises(Revoked, match="firmware v1 withdrawn"):
        store.accept(record("x"), nonce=None, single_use=True, clock=clock(1), now=T0,
                     approval=APPROVAL)
    assert reads.artifact(store, "x") is None  # nothing consumed
    store.accept(record("y"), nonce=None, single_use=True, clock=clock(2), now=T0,
                 approval=dataclasses.replace(APPROVAL, id="cd" * 32))  # not revoked


@pytest.mark.parametrize("text", ["AB" * 32, "ab" * 31, "ab" * 33, "", "zz" * 32])
def test_an_approval_revocation_needs_an_approval_id(store: Store, text: str) -> None:
    with pytest.raises(UsageError, match="approval id"):
        store.revoke_approval(text, "typo", T0)
    # Anything else in an artifact matches no revocation (and reads nothing odd).
    odd = dataclasses.replace(APPROVAL, id=text)
    assert store.snapshot(AK, jti="x", now=T0, approval=odd).revocations == ()


def test_an_approval_revocation_reaches_what_was_accepted_under_it_and_its_children(
        store: Store) -> None:
    """An artifact rests on the approval its key signed under, as on its key: revoking
    the approval revokes the accepted artifact and its descendants (their lineage)."""
    store.accept(record("p"), nonce=None, single_use=True, clock=clock(1), now=T0,
                 approval=APPROVAL)
    store.accept(record("c", "p"), nonce=None, single_use=True, clock=clock(2), now=T0,
                 approval=dataclasses.replace(APPROVAL, id="cd" * 32))
    store.accept(record("other"), nonce=None, single_use=True, clock=clock(3), now=T0,
                 approval=dataclasses.replace(APPROVAL, id="cd" * 32))
    store.revoke_approval(APPROVAL_ID, "firmware v1 withdrawn", T0 + 1)
    for jti in ("p", "c"):
        stored = reads.artifact(store, jti)
        assert stored is not None and stored.revoked, jti
    assert not reads.artifact(store, "other").revoked  # type: ignore[union-attr]
    # A new child of either is refused: in the verifier's snapshot and at commit.
    for parent in ("p", "c"):
        view = store.snapshot(AK, jti=f"new-{parent}", now=T0, parent=parent)
        assert view.parent_revocation is not None, parent
        assert view.parent_revocation.kind is RevocationKind.APPROVAL
        with pytest.raises(Revoked, match="firmware v1 withdrawn"):
            store.accept(record(f"new-{parent}", parent), nonce=None, single_use=True,
                         clock=clock(4), now=T0)
