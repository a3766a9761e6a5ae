"""The agent's stock of one challenge: fetched after a run, used by the next.

Each authorization needs a nonce from the verifier (``POST /v1/challenges``), a round
trip of a few milliseconds on the run's path. The agent fetches the next one once it
has answered a client (the client is exec'ing by then), so the following run finds it
in stock.

What this changes, and what it does not:
- The verifier checks every nonce as before: issued by it, used once (an acceptance
  records it), within its lifetime (freshness.nonce TTL, ``attest serve``'s). A stocked
  nonce is used for one run only: taken out of the stock, never handed out twice, and
  gone when that run fails.
- The quote is still made when the run asks, after the command is measured: the
  decision is on the TPM's state at the run, not at the stocking. What the nonce proves
  (evidence made after the verifier issued it) now spans up to MAX_AGE_S instead of
  milliseconds. This widens nothing an attacker on the host could not do without the
  stock: anyone who can reach the verifier can ask it for challenges and hold them for
  their whole lifetime.
- A nonce is used only while younger than half the lifetime the verifier gave it (its
  ``expires``, read against this host's clock: a host clock behind the verifier's by
  more than that half would see it expire; no ``expires``, or a lifetime under
  MIN_LIFETIME_S, is not stocked) and than MAX_AGE_S; else a fresh one is fetched, as
  without the stock.
- An idle agent asks for nothing: only a run triggers the next fetch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from attest.errors import AttestError

MAX_AGE_S = 30.0  # a stocked nonce older than this is not used
MIN_LIFETIME_S = 4  # a verifier giving nonces shorter lives: fetched at each run

Fetch = Callable[[], tuple[str, int | None]]
"""A nonce and when it expires (Unix seconds, the verifier's word), or None: Remote's
challenge_expiring."""


class ChallengeStock:
    """At most one unused nonce, with the monotonic time before which it is used."""

    def __init__(self, fetch: Fetch, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self._fetch, self._clock, self._wall = fetch, clock, wall
        self._lock = threading.Lock()
        self._stocked: tuple[str, float] | None = None  # nonce, use before (monotonic)
        self._refilling: threading.Thread | None = None
        self.last_error: AttestError | None = None  # why the last refill stocked nothing

    def take(self) -> str:
        """A nonce for one run: the stocked one if still young enough, else a fresh one
        from the verifier (its errors raised, as Remote.challenge's)."""
        with self._lock:
            stocked, self._stocked = self._stocked, None
        if stocked is not None and self._clock() < stocked[1]:
            return stocked[0]
        return self._fetch()[0]

    def refill(self) -> None:
        """Fetch the next nonce in the background (one fetch at a time), unless one is
        in stock already."""
        with self._lock:
            if self._stocked is not None or (self._refilling is not None
                                             and self._refilling.is_alive()):
                return
            self._refilling = threading.Thread(target=self._refill_now,
                                               name="attest-agent-challenge", daemon=True)
            self._refilling.start()

    def wait(self, timeout: float) -> None:
        """Until a refill in flight ends (tests; a stopping agent need not wait)."""
        with self._lock:
            refilling = self._refilling
        if refilling is not None:
            refilling.join(timeout)

    def _refill_now(self) -> None:
        started = self._clock()  # before asking: the nonce's age counts from here
        try:
            nonce, expires = self._fetch()
        except AttestError as exc:  # unreachable, or an answer without a nonce
            # The stock stays empty: the next run asks itself and says why, if it fails.
            self.last_error = exc
            return
        self.last_error = None
        if expires is None:
            return
        lifetime = expires - self._wall()
        if lifetime < MIN_LIFETIME_S:
            return
        with self._lock:
            self._stocked = (nonce, started + min(MAX_AGE_S, lifetime / 2))
