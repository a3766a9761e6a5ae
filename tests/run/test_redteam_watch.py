"""Red team of the agent's watcher (attest.host.agent.watch) against a real `attest
serve` on loopback: a cursor the verifier's store never handed out must not make the
watcher wait, silently, past every revocation up to it."""

from __future__ import annotations

from attest.host.agent.watch import Credential, Watcher
from tests.run.test_watch import FAST, Heard, Verifier, verifier, watching
from tests.verify.conftest import rig

__all__ = ["rig", "verifier"]


def test_a_cursor_past_the_verifiers_events_cuts_everything_then_follows(
        verifier: Verifier) -> None:
    """The attack (or the accident): the verifier moves to a new store, or its store is
    restored from a backup, while the agent keeps its cursor (the first cursor is kept
    for good). Event ids start again below it: before the fix the feed answered "no
    events after it" and every revocation up to the old cursor went by unheard, the
    supervised runs going on. Now the feed says 409 with its newest id; the watcher cuts
    everything of the host (what was cut meanwhile is unknown) and follows from there."""
    credential = verifier.report()
    from_before = Credential(credential.token, credential.expires_at, credential.events,
                             after=10**6)  # the old store's cursor
    jti = verifier.run()
    verifier.revoke("jti", jti)
    heard = Heard()
    with watching(verifier.base, lambda: from_before, heard) as watcher:
        first = heard.wait_for(1)[0]
        assert first[0] is None and "restored store" in first[1], first
        assert watcher.cursor is not None and watcher.cursor < 10**6
        later = verifier.run()
        verifier.revoke("jti", later)
        assert heard.wait_for(2)[1][0] == frozenset({later})


def test_after_a_restored_store_supervised_runs_come_back_with_an_answer_after_the_cut(
        verifier: Verifier) -> None:
    """The cut of a 409 is recorded against the new store's numbering: an accepted report
    answered at or after the verifier's newest event readmits supervised runs (before the
    fix the cut stood at the old store's cursor, 10**6, and runs were refused until this
    host's own events passed it: for ever, in practice)."""
    from attest.host.agent.continuous import Enforcement
    from attest.host.agent.supervisor import Stop, Supervisor

    stops: list[Stop] = []
    supervisor = Supervisor(stops.append)
    enforcement = Enforcement(supervisor)
    credential = verifier.report()
    from_before = Credential(credential.token, credential.expires_at, credential.events,
                             after=10**6)
    heard = Heard()

    def listener(jtis: frozenset[str] | None, reason: str) -> None:  # Continuous.wire's
        enforcement.on_revoked(jtis, reason)
        heard(jtis, reason)

    watcher = Watcher(verifier.base, lambda: from_before, listener, backoff=FAST)
    enforcement.feed = watcher
    watcher.start()
    try:
        assert heard.wait_for(1)[0][0] is None
        assert supervisor.lost is not None and "restored store" in supervisor.lost[1]
        newest = watcher.cursor
        assert newest is not None and newest < 10**6
        # An answer decided before the cut's event does not undo it ...
        assert enforcement.report_accepted(newest - 1, has_feed=True) == []
        assert supervisor.lost is not None
        # ... the next accepted report, answered after it, does.
        fresh = verifier.report()
        assert fresh.after is not None and fresh.after >= newest
        assert enforcement.report_accepted(fresh.after, has_feed=True) == [
            "supervised runs are admitted again"]
        assert supervisor.lost is None
    finally:
        watcher.stop()
    assert not watcher.alive
