"""Red team of the agent's watcher (attest.host.agent.watch) against a real `attest
serve` on loopback: a cursor the verifier's store never handed out must not make the
watcher wait, silently, past every revocation up to it."""

from __future__ import annotations

from attest.host.agent.watch import Credential
from tests.run.test_watch import Heard, Verifier, verifier, watching
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
