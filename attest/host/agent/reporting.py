"""The agent's periodic reports (`attest agent --interval`): the host side of continuous
attestation.

At each tick the report loop asks the verifier for a challenge, issues a report (an
artifact for action ``report`` over the key's PCRs, with the runtime log since the
prefix the verifier last acknowledged), POSTs it to ``/v1/reports`` and believes only
the answer's signed attestation result, as `attest run --verifier` does
(attest.host.run.decision_from). What it learns goes into :class:`AgentTrust`, the
agent's own view of its trust, whose listeners hear when trust is lost.

Fail closed: a denied report, an answer saying the host is untrusted or stale, or no
accepted report for longer than the allowed age (the verifier's ``report_max_age``;
before it has said one, the agent's ``--max-silence``) is a loss of trust. An
unreachable verifier is not forgiven: past the age it is the same as stale.

The TPM is shared with the clients' authorizations (ESAPI is not thread-safe): the loop
holds the agent's TPM lock while it issues, and only then; challenges and POSTs go over
the network without it, so a client waits at most one issuance for a report.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from attest.artifact.model import RuntimeLogBase
from attest.decision import Decision
from attest.errors import AttestError
from attest.host.agent.turns import TurnLock
from attest.host.http import post_json
from attest.host.issue import Request, issue
from attest.host.run import Remote, decision_from
from attest.host.runtime.log import RuntimeLog
from attest.host.runtime.prefixes import PrefixMemory, acknowledged
from attest.reasons import Reason
from attest.tpm.device import TPM

REPORT_ACTION = "report"
REPORT_ARGV = ("attest", "agent")  # what the report's scope names: the policy's rule matches it
MIN_INTERVAL_S = 0.2
MAX_INTERVAL_S = 3600.0
MAX_SILENCE_S = 24 * 3600.0  # --max-silence: a day without a report is stale whatever is said
DEFAULT_SILENCES = 3  # --max-silence's default: this many intervals
# The verifier's report_max_age is believed up to a day: an answer cannot make the agent
# wait for ever before it calls a silent verifier stale.
MAX_REPORT_AGE_S = 86400
MAX_WATCH_BYTES = 4096  # the watch credential is kept opaque, but bounded
TRUSTED, UNTRUSTED, STALE = "trusted", "untrusted", "stale"


class TrustListener(Protocol):
    """Hears that the host's trust is lost (the Supervisor stops what it supervises).

    Called from the report loop's thread, at each check that finds trust lost (every
    tick while it stays lost, not only at the change): it must be idempotent and quick.
    ``reason_code`` is a code of attest.reasons (``host_untrusted``, ``host_stale``, or
    the report's own denial reason); ``message`` is for people (escape it to print it).
    """

    def on_trust_lost(self, reason_code: str, message: str) -> None: ...


@dataclasses.dataclass(frozen=True)
class HostState:
    """What the verifier's last answer said of this host (unsigned: it can only make the
    agent more careful, never trusted without a signed acceptance)."""

    state: str
    reasons: tuple[str, ...]
    report_max_age: int | None

    @classmethod
    def from_answer(cls, answer: dict[str, Any]) -> HostState | None:
        found = answer.get("host_state")
        if not isinstance(found, dict):
            return None
        state, reasons, age = found.get("state"), found.get("reasons"), found.get(
            "report_max_age")
        if state not in (TRUSTED, UNTRUSTED, STALE):
            state = UNTRUSTED  # a state the agent does not know is not trust
        kept = tuple(str(r)[:64] for r in reasons[:16]) if isinstance(reasons, list) else ()
        if isinstance(age, bool) or not isinstance(age, int) or age <= 0:
            age = None
        return cls(str(state), kept, None if age is None else min(age, MAX_REPORT_AGE_S))


class AgentTrust:
    """The agent's own view of its trust: the monotonic time of its last accepted report,
    the host state the verifier answered, the last error, and the ``watch`` credential
    of the last accepted answer (opaque; absent when the verifier sends none).
    Thread-safe; listeners are called outside its lock."""

    def __init__(self, max_silence: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_silence = max_silence
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self.last_accepted: float | None = None
        self.host_state: HostState | None = None
        self.last_error: str | None = None
        self.watch: dict[str, Any] | None = None
        self.lost: tuple[str, str] | None = None  # (reason code, message) while lost
        self._listeners: list[TrustListener] = []
        self._restored: list[Callable[[], None]] = []

    def add_listener(self, listener: TrustListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def add_restored(self, callback: Callable[[], None]) -> None:
        """``callback()`` when trust comes (the first accepted report with the host
        trusted) or comes back after a loss: the Supervisor may then admit supervised runs."""
        with self._lock:
            self._restored.append(callback)

    def allowed_age(self) -> float:
        """How long without an accepted report before the host counts as stale: the
        shorter of --max-silence and the verifier's report_max_age once it has said one.
        Never longer than --max-silence: the answered age is unsigned, so it may only
        make the agent more careful (a rewritten answer saying a day must not keep
        supervised runs alive for a day once the traffic is dropped)."""
        with self._lock:
            age = None if self.host_state is None else self.host_state.report_max_age
        return self.max_silence if age is None else min(self.max_silence, float(age))

    def deadline(self) -> float:
        """The monotonic time past which silence is a loss of trust."""
        age = self.allowed_age()
        with self._lock:
            since = self._started if self.last_accepted is None else self.last_accepted
        return since + age

    @property
    def trusted(self) -> bool:
        """Whether the agent holds itself trusted now: a report accepted, no loss since,
        and the last acceptance within the allowed age (even before a check says so)."""
        deadline = self.deadline()
        with self._lock:
            return (self.lost is None and self.last_accepted is not None
                    and self._clock() <= deadline)

    def now(self) -> float:
        """This view's clock (monotonic): the report loop reads it before it asks for
        a challenge, to hand to ``accepted``."""
        return self._clock()

    def accepted(self, state: HostState | None, watch: object, *,
                 asked_at: float | None = None) -> list[str]:
        """An accepted report (its signed result checked); returns what to log.
        ``asked_at``: when the report's challenge was asked for. The verifier counts the
        report fresh from its challenge's issue time, so the agent counts from before
        it (never later): the round trip (quote, POST) does not stretch its trust."""
        now = self._clock() if asked_at is None else min(asked_at, self._clock())
        with self._lock:
            first = self.last_accepted is None
            self.last_accepted = now if first else max(now, self.last_accepted or now)
            self.last_error = None
            if state is not None:
                self.host_state = state
            if _watch_ok(watch):
                assert isinstance(watch, dict)  # noqa: S101 - _watch_ok checked it
                self.watch = dict(watch)
        if state is not None and state.state != TRUSTED:
            # The evidence was good, yet the verifier holds the host untrusted or stale.
            return self._lose(_state_reason(state), _state_message(state))
        return self._restore(first)

    def denied(self, decision: Decision, state: HostState | None) -> list[str]:
        """A denied report (or an answer whose signed result did not check). Its
        host_state only names the loss: kept, its report_max_age could stretch the
        silence allowed, and nothing signed vouches for it."""
        first = decision.denials[0] if decision.denials else None
        said = "; ".join(f"{d.reason.value}: {d.message}" for d in decision.denials)
        if state is not None and state.state != TRUSTED:
            return self._lose(_state_reason(state), f"report denied ({said}); "
                              + _state_message(state))
        code = first.reason.value if first is not None else Reason.INTERNAL_ERROR.value
        return self._lose(code, f"report denied: {said or 'no reason given'}")

    def failed(self, error: str) -> list[str]:
        """No decision this tick (the verifier unreachable, the TPM busy...): only the
        silence check can make it a loss."""
        with self._lock:
            self.last_error = error
        return self.check_silence()

    def check_silence(self) -> list[str]:
        """A loss of trust (host_stale) when no report was accepted within the allowed
        age; the verifier being unreachable that long counts the same."""
        if self._clock() <= self.deadline():
            return []
        with self._lock:
            last, error, lost = self.last_accepted, self.last_error, self.lost
        if lost is not None and lost[0] != Reason.HOST_STALE.value:
            # Lost already for a reason that says more (untrusted, a denial): heard again,
            # not replaced, so the log does not flip between the two at every tick.
            return self._lose(*lost)
        since = "no report accepted yet" if last is None else (
            f"no report accepted for {self._clock() - last:.1f} s")
        age = self.allowed_age()
        return self._lose(Reason.HOST_STALE.value, f"{since} (allowed {age:g} s)"
                          + (f"; last error: {error}" if error else ""))

    def lose(self, code: str, message: str) -> list[str]:
        """Trust lost for ``code``: the listeners hear it; returns what to log."""
        return self._lose(code, message)

    def _lose(self, code: str, message: str) -> list[str]:
        with self._lock:
            changed = self.lost is None or self.lost[0] != code
            self.lost = (code, message)
            listeners = list(self._listeners)
        lines = [f"TRUST LOST: {code}: {message}"] if changed else []
        for listener in listeners:
            try:
                listener.on_trust_lost(code, message)
            except Exception as exc:  # noqa: BLE001 - logged; the other listeners still hear
                lines.append(f"a trust listener failed: {type(exc).__name__}: {exc}")
        return lines

    def _restore(self, first: bool = False) -> list[str]:
        # The first acceptance is heard too: a Supervisor admits nothing before it
        # (attest.host.agent.supervision.PENDING), trust being unknown until then.
        with self._lock:
            was = self.lost
            self.lost = None
            callbacks = list(self._restored) if was is not None or first else []
        lines = ["TRUST RESTORED: the verifier accepted a report"] if was is not None else []
        for callback in callbacks:
            try:
                callback()
            except Exception as exc:  # noqa: BLE001 - logged; the others still hear
                lines.append(f"a trust listener failed: {type(exc).__name__}: {exc}")
        return lines


def _state_reason(state: HostState) -> str:
    return (Reason.HOST_STALE if state.state == STALE else Reason.HOST_UNTRUSTED).value


def _state_message(state: HostState) -> str:
    why = f" ({', '.join(state.reasons)})" if state.reasons else ""
    return f"the verifier holds this host {state.state}{why}"


def _watch_ok(watch: object) -> bool:
    return (isinstance(watch, dict) and all(isinstance(k, str) for k in watch)
            and len(repr(watch)) <= MAX_WATCH_BYTES)


@dataclasses.dataclass
class Reporter:
    """The report loop: one report per ``interval`` seconds, on a fixed schedule (a
    failed one is retried at the next tick, never sooner: a verifier that is down is not
    hammered), and a silence check at the allowed age between ticks."""

    tpm: TPM
    tpm_lock: TurnLock  # the agent's (Agent.tpm_lock): shared with its clients
    home: Path
    remote: Remote
    interval: float
    trust: AgentTrust
    subject: str
    key_name: str
    say: Callable[[str], None]  # one line for stderr, already escaped
    ttl: int = 60
    _stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _warned: bool = False

    @property
    def verifier(self) -> str:
        return f"url:{self.remote.base}"  # the key attest run's prefix memory uses

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="attest-agent-reports",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # noqa: BLE001 - said, and heard as a loss: see below
            # No more reports, so nothing will notice a loss either: fail closed now.
            self.say(f"the report loop stopped: internal error: {type(exc).__name__}: "
                     f"{_escaped(str(exc))}")
            self._log(self.trust.lose(Reason.INTERNAL_ERROR.value,
                                      "the agent's report loop stopped"))

    def _loop(self) -> None:
        tick = time.monotonic()
        while not self._stop.is_set():
            self.report_once()
            tick += self.interval
            now = time.monotonic()
            if tick <= now:  # a report that took longer than the interval: next tick on
                tick = now + self.interval - (now - tick) % self.interval
            # Until the next tick; at the silence deadline in between, check it.
            while not self._stop.is_set():
                deadline = self.trust.deadline()
                # Just past the deadline: at it, silence is still allowed.
                wake = min(tick, deadline + 0.01) if deadline > time.monotonic() else tick
                if self._stop.wait(max(0.0, wake - time.monotonic())):
                    return
                if time.monotonic() >= tick:
                    break
                self._log(self.trust.check_silence())

    def report_once(self) -> None:
        """One report and what it changes; never raises for the verifier's or the TPM's
        failure (an error is logged and counts toward the silence)."""
        asked = self.trust.now()  # before the challenge: see AgentTrust.accepted
        try:
            decision, answer = self._report()
        except AttestError as exc:
            self.say(f"report failed: {_escaped(exc.message)}")
            self._log(self.trust.failed(exc.message))
            return
        except Exception as exc:  # noqa: BLE001 - a bug costs this report, not the loop
            self.say(f"report failed: internal error: {type(exc).__name__}: "
                     f"{_escaped(str(exc))}")
            self._log(self.trust.failed(f"internal error: {type(exc).__name__}"))
            return
        state = HostState.from_answer(answer)
        shown = "" if state is None else f", host {state.state}" + (
            f" ({_escaped(', '.join(state.reasons))})" if state.reasons else "")
        if decision.accepted:
            self.say(f"report accepted{shown}")
            age = None if state is None else state.report_max_age
            if age is not None and age <= self.interval and not self._warned:
                self._warned = True  # once: the operator's setting, not an event
                self.say(f"warning: the verifier's report_max_age ({age} s) is not longer "
                         f"than --interval ({self.interval:g} s): the host turns stale "
                         "between reports")
            self._log(self.trust.accepted(state, answer.get("watch"), asked_at=asked))
        else:
            said = ", ".join(d.reason.value for d in decision.denials)
            shown = "" if state is None or state.state == TRUSTED else shown
            self.say(f"report denied: {said}{shown}")
            self._log(self.trust.denied(decision, state))

    def _log(self, lines: list[str]) -> None:
        for line in lines:
            self.say(f"*** {_escaped(line)} ***")

    def _report(self) -> tuple[Decision, dict[str, Any]]:
        nonce = self.remote.challenge()
        epoch = RuntimeLog(self.home).read_epoch()
        base = PrefixMemory(self.home).get(self.verifier, epoch)
        raw = self._issue(nonce, base)
        decision, answer = self._post(raw, nonce)
        if (not decision.accepted and base is not None
                and Reason.LOG_PREFIX_UNKNOWN in {d.reason for d in decision.denials}):
            # The verifier does not hold that prefix (a new store): the whole log, with
            # the same challenge (a denial consumes nothing).
            raw = self._issue(nonce, None)
            decision, answer = self._post(raw, nonce)
        if decision.accepted:
            known = acknowledged(decision.facts)
            if known is not None and known != base:  # unchanged: no write every tick
                try:
                    with self.tpm_lock:  # the clients' runs write the same memory
                        PrefixMemory(self.home).put(self.verifier, epoch, known)
                except (OSError, AttestError) as exc:
                    # A hint lost (the next report sends more), not the acceptance.
                    self.say("could not remember the prefix the verifier acknowledged: "
                             + _escaped(str(exc)))
        return decision, answer

    def _issue(self, nonce: str, base: RuntimeLogBase | None) -> bytes:
        request = Request(subject=self.subject, action=REPORT_ACTION, argv=REPORT_ARGV,
                          key_name=self.key_name, nonce=nonce, ttl=self.ttl, log_base=base)
        with self.tpm_lock:
            return issue(self.tpm, self.home, request, int(time.time()))

    def _post(self, raw: bytes, nonce: str) -> tuple[Decision, dict[str, Any]]:
        # Never retried: the verification consumes the challenge.
        answer = post_json(f"{self.remote.base}/v1/reports", raw, "application/jose",
                           cacert=self.remote.cacert, insecure=self.remote.insecure)
        decision = decision_from(answer, raw, nonce, self.remote.keys, int(time.time()),
                                 log_key=self.remote.log_key)
        return decision, answer


def _escaped(text: str) -> str:
    """The verifier's and the host's strings on one line, control characters escaped
    (attest.cli.terminal.visible, a module of no dependencies), bounded."""
    from attest.cli.terminal import visible

    return visible(text)[:500]
