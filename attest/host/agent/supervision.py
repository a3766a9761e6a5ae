"""The agent's side of `attest run --supervise`: an authorize request that asks
``"supervise": {"grace": SECONDS}`` is admitted here, around the decision.

Before anything is measured: the grace is checked (0 to MAX_GRACE_S), trust must not be
lost (else a denial naming the loss's reason: fail closed), and the asking process is
pinned by a pidfd that this agent may signal (attest.host.agent.pinning; else exit 2).
After an acceptance and before the answer is sent, the run is registered with the
Supervisor: from the moment the client can exec CMD, CMD is supervised. A stop of
everything that came in the meantime refuses it there (the sealed copy is never
handed back).
"""

from __future__ import annotations

import math
import os
import socket
from typing import Any

from attest.errors import UsageError
from attest.host.agent.pinning import pinned_peer
from attest.host.agent.supervisor import MAX_GRACE_S, SupervisedRun, Supervisor, TrustLost

# What a Supervisor of `attest agent` starts with: trust unknown until the first accepted
# report. Admitted before it, a run would be watched by nothing that knows where the
# host's feed stands (the watcher's first cursor comes with that report's answer, after
# any revocation of the run committed in between) nor whether the host is trusted.
PENDING = ("host_stale", "no report accepted yet: this agent does not know it is trusted")
UNSUPERVISED = ("this agent does not supervise runs: it sends no reports (start it with "
                "--interval), so nothing would tell it that trust is lost")


def requested_grace(request: dict[str, Any]) -> float | None:
    """The grace asked for, in seconds; None when the request does not ask supervision."""
    asked = request.get("supervise")
    if asked is None:
        return None
    grace = asked.get("grace") if isinstance(asked, dict) and set(asked) == {"grace"} else None
    if (not isinstance(grace, int | float) or isinstance(grace, bool)
            or not math.isfinite(grace) or not 0 <= grace <= MAX_GRACE_S):
        raise UsageError(f"supervise: {{\"grace\": seconds}}, 0 to {MAX_GRACE_S}")
    return float(grace)


class Admission:
    """A supervised run being decided: holds the asking process's pidfd until the run is
    admitted (the Supervisor then holds it) or refused (closed here)."""

    def __init__(self, supervisor: Supervisor, grace: float, pidfd: int, pid: int,
                 program: str) -> None:
        self.supervisor, self.grace = supervisor, grace
        self.pidfd, self.pid, self.program = pidfd, pid, program
        self._held = True

    @classmethod
    def asked(cls, supervisor: Supervisor | None, request: dict[str, Any],
              conn: socket.socket) -> Admission | None:
        """None for an unsupervised request; else the pinned admission. UsageError (or
        TrustLost) when supervision is refused: nothing is to be measured then."""
        grace = requested_grace(request)
        if grace is None:
            return None
        if supervisor is None:
            raise UsageError(UNSUPERVISED)
        supervisor.check_admissible()
        argv = request.get("argv")
        program = argv[0] if isinstance(argv, list) and argv and isinstance(argv[0], str) else "?"
        pidfd, pid = pinned_peer(conn)
        return cls(supervisor, grace, pidfd, pid, program)

    def admit(self, jti: str, subject: str) -> None:
        """Register the accepted run; TrustLost when trust went meanwhile."""
        self.supervisor.admit(SupervisedRun(jti=jti, pidfd=self.pidfd, pid=self.pid,
                                            grace=self.grace, subject=subject,
                                            program=self.program))
        self._held = False

    def close(self) -> None:
        """Release the pidfd unless the Supervisor took it."""
        if self._held:
            self._held = False
            os.close(self.pidfd)


def refusal(exc: TrustLost) -> dict[str, Any]:
    """The answer to a supervised run refused because trust is lost: a denial naming
    the loss's reason (exit 1), never an error that might read as retryable."""
    return {"accepted": False, "denials": [[exc.reason, f"supervised runs are refused "
                                            f"until trust returns: {exc.message}"]]}
