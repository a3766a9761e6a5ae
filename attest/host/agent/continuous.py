"""Continuous attestation in the agent (`attest agent --interval`): the report loop, the
watcher of the host's own event feed, and the Supervisor both drive.

How the parts fit: the report loop (attest.host.agent.reporting) pushes a report each
interval; each accepted answer's ``watch`` credential goes into a CredentialSlot, which
the watcher (attest.host.agent.watch) reads to hold the host's feed open. Either can
stop supervised runs: the report loop on a loss of trust (``on_trust_lost``), the
watcher on a revocation or a state change of the host (``on_revoked``). Both go through
:class:`Enforcement`, the one place that decides when supervised runs are admitted
again.

Fail closed, and the rule for coming back: supervised runs are refused from the start
until the first accepted report of a trusted host, and after any stop of everything until
an accepted report of a trusted host that

- follows no loss of the report loop's own (AgentTrust holds itself trusted again),
- was answered after the feed's cut was recorded (the answer's ``watch.after``, the
  verifier's newest event id when it answered, is at least the event that cut: an
  answer decided before a revocation does not undo it),
- and finds the feed alive (some bytes from it within ``feed_silence``: its heartbeat
  is every 15 s). A feed silent longer than that, or none at all (a verifier whose
  answers carry no watch credential), while reports are accepted, is a loss too:
  revocations could not reach this agent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from attest.host.agent.reporting import AgentTrust, HostState, Reporter
from attest.host.agent.supervisor import Supervisor
from attest.host.agent.watch import READ_TIMEOUT_S, CredentialSlot, Watcher
from attest.reasons import Reason

# A feed with no bytes (events or the 15 s heartbeat) for this long is cut: the watcher's
# own read timeout, after which it reconnects.
FEED_SILENCE_S = READ_TIMEOUT_S
NOT_YET = "no report of this agent accepted yet"


class FeedHealth(Protocol):
    """What Enforcement reads of the watcher (attest.host.agent.watch.Watcher)."""

    @property
    def cursor(self) -> int | None: ...

    @property
    def last_contact(self) -> float | None: ...


class Enforcement:
    """Between the triggers and the Supervisor (see the module): a TrustListener of the
    report loop, the watcher's listener, and the report loop's word on each accepted
    report. Thread-safe: the watcher's cuts and the report loop's restorations take one
    lock, so a cut is never undone by a restoration decided before it."""

    def __init__(self, supervisor: Supervisor, *, feed_silence: float = FEED_SILENCE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.supervisor = supervisor
        self.feed: FeedHealth | None = None  # the watcher, once made
        self._feed_silence = feed_silence
        self._clock = clock
        self._lock = threading.Lock()
        self._cut_at: int | None = None  # the feed's cursor when it cut everything
        self._feed_since: float | None = None  # since when the feed has a credential
        # Nothing is known yet: refused until the first accepted report of a trusted host.
        supervisor.stop(None, Reason.HOST_STALE.value, NOT_YET)

    def on_trust_lost(self, reason_code: str, message: str) -> None:
        """The report loop's listener (called at every check while lost: idempotent)."""
        self.supervisor.on_trust_lost(reason_code, message)

    def on_revoked(self, jtis: frozenset[str] | None, reason: str) -> None:
        """The watcher's listener, on its thread: the cursor it reads is the event before
        the one that cuts."""
        with self._lock:
            if jtis is None:
                cursor = None if self.feed is None else self.feed.cursor
                mark = -1 if cursor is None else cursor
                self._cut_at = mark if self._cut_at is None else min(self._cut_at, mark)
            self.supervisor.stop(jtis, _code(reason), reason)

    def report_accepted(self, after: int | None, *, has_feed: bool) -> list[str]:
        """An accepted report of a host the agent holds trusted (AgentTrust not lost);
        ``after`` the answer's watch cursor. Readmits supervised runs when nothing holds
        them back; returns what to log."""
        now = self._clock()
        with self._lock:
            if has_feed and self._feed_since is None:
                self._feed_since = now
            message = None
            if not has_feed:
                message = ("the verifier's answer carries no watch credential, so this "
                           "agent has no feed: a revocation could not reach it")
            else:
                message = self._silence_message(now)
            if message is not None:
                return self._feed_lost(message)
            if self._cut_at is not None:
                cursor = None if self.feed is None else self.feed.cursor
                if cursor is None or cursor <= self._cut_at or after is None or after < cursor:
                    return []  # this answer may predate the cut: the next one decides
                self._cut_at = None
            if self.supervisor.lost is None:
                return []
            self.supervisor.on_trust_restored()
        return ["supervised runs are admitted again"]

    def check_feed(self) -> list[str]:
        """The feed's silence checked without an accepted report (the report loop's own
        checks, also while reports fail): a silent feed stops supervised runs whatever
        the reports do. Returns what to log."""
        with self._lock:
            message = self._silence_message(self._clock())
            return [] if message is None else self._feed_lost(message)

    def _silence_message(self, now: float) -> str | None:
        silent = self._silent_for(now)
        if silent is None:
            return None
        return (f"the host's event feed has said nothing for {silent:.0f} s (allowed "
                f"{self._feed_silence:g} s): a revocation could not reach this agent")

    def _feed_lost(self, message: str) -> list[str]:
        held = self.supervisor.lost
        first = held is None or held[1] == NOT_YET  # said once, not every tick
        self.supervisor.stop(None, Reason.HOST_STALE.value, message)
        return [f"TRUST LOST: host_stale: {message}"] if first else []

    def _silent_for(self, now: float) -> float | None:
        """How long the feed has been silent, when longer than allowed; else None."""
        if self._feed_since is None or self.feed is None:
            return None  # no credential yet: the feed has not been asked to open
        contact = self.feed.last_contact
        since = self._feed_since if contact is None else max(contact, self._feed_since)
        quiet = now - since
        return quiet if quiet > self._feed_silence else None


class ContinuousTrust(AgentTrust):
    """AgentTrust that also hands each accepted answer's watch credential to the slot the
    watcher reads, and tells Enforcement of each accepted report of a trusted host."""

    def __init__(self, max_silence: float, slot: CredentialSlot,
                 enforcement: Enforcement) -> None:
        super().__init__(max_silence)
        self.slot = slot
        self.enforcement = enforcement
        self.add_listener(enforcement)

    def accepted(self, state: HostState | None, watch: object, *,
                 asked_at: float | None = None) -> list[str]:
        lines = super().accepted(state, watch, asked_at=asked_at)
        after: int | None = None
        if watch is not None:
            try:
                self.slot.offer({"accepted": True, "watch": watch})
            except ValueError as exc:  # the kept one stays; said, not fatal
                lines.append(f"the answer's watch credential is refused: {exc}")
            else:
                after = _after(watch)
        if self.lost is None:
            lines += self.enforcement.report_accepted(after, has_feed=self.slot() is not None)
        return lines

    def check_silence(self) -> list[str]:
        """The report's silence, then the feed's (also while reports fail: ``failed``
        comes here)."""
        return super().check_silence() + self.enforcement.check_feed()


def _after(watch: object) -> int | None:
    found = watch.get("after") if isinstance(watch, dict) else None
    return found if isinstance(found, int) and not isinstance(found, bool) else None


class Continuous:
    """The report loop and the watcher, started and stopped together (the watcher after
    the first so that a credential is there to read; both before the TPM closes)."""

    def __init__(self, reporter: Reporter, watcher: Watcher) -> None:
        self.reporter = reporter
        self.watcher = watcher

    @classmethod
    def wire(cls, supervisor: Supervisor, make_reporter: Callable[[AgentTrust], Reporter],
             verifier: str, max_silence: float, *, cacert: Path | None = None,
             insecure: bool = False, feed_silence: float = FEED_SILENCE_S,
             **watcher_options: Any) -> Continuous:
        enforcement = Enforcement(supervisor, feed_silence=feed_silence)
        slot = CredentialSlot()
        trust = ContinuousTrust(max_silence, slot, enforcement)
        watcher = Watcher(verifier, slot, enforcement.on_revoked, cacert=cacert,
                          insecure=insecure, **watcher_options)
        enforcement.feed = watcher
        return cls(make_reporter(trust), watcher)

    def start(self) -> None:
        self.reporter.start()
        self.watcher.start()

    def stop(self) -> None:
        """Both threads ended (the watcher's stream shut, the report in hand finished)."""
        self.watcher.stop()
        self.reporter.stop()


def _code(reason: str) -> str:
    """The reason code of a feed's cut (attest.host.agent.watch.cuts says ``host_<state>:
    ...`` or ``revoked ...``): the audit entry holds a code, the verifier's words go to
    the message only."""
    for state in (Reason.HOST_UNTRUSTED, Reason.HOST_STALE):
        if reason == state.value or reason.startswith(f"{state.value}:"):
            return state.value
    return Reason.REVOKED.value
