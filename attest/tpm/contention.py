"""Other processes changing PCRs under a multi-command TPM operation: retry, bounded.

A policy session records the TPM's PCR update counter at PolicyPCR; any extend of
any PCR before the session is used (TPM2_Sign) makes the TPM refuse it with
TPM_RC_PCR_CHANGED. A quote is read-then-quote, so an extend in between yields a
digest that no longer matches the values read. Neither is a fault of the request:
attest's own measurements are kept out of those windows by the runtime log's lock
(attest.host.issue holds it from the log snapshot to the signature), and this retry covers
every other extender (IMA, systemd, another TPM user). When an extender never
pauses, the caller gives up with an environment error (exit 3), not a refusal.
"""

from __future__ import annotations

import secrets
import time

from attest.errors import TPMEnvironmentError

ATTEMPTS = 8
# Full jitter, exponential: concurrent retries spread out instead of colliding again.
_FIRST_PAUSE_US = 2_000
_LONGEST_PAUSE_US = 100_000
PCR_CHANGED_RC = 0x128  # TPM_RC_PCR_CHANGED


def pause(attempt: int) -> None:
    """Sleep before attempt ``attempt + 1`` (``attempt`` counts from 0)."""
    ceiling = min(_LONGEST_PAUSE_US, _FIRST_PAUSE_US << attempt)
    time.sleep(secrets.randbelow(ceiling + 1) / 1e6)


def is_pcr_changed(rc: int) -> bool:
    """TPM_RC_PCR_CHANGED: a PCR moved between PolicyPCR and the session's use."""
    return rc >> 16 == 0 and rc & 0xFFFF == PCR_CHANGED_RC


def exhausted(doing: str, *, rc: int) -> TPMEnvironmentError:
    """The error once every attempt met a PCR that changed in between."""
    return TPMEnvironmentError(
        f"{doing} failed: PCRs kept changing under it (PCR contention): another process "
        f"extended PCRs during each of {ATTEMPTS} attempts",
        rc=rc,
        hint="something extends PCRs without pause (compare two `tpm2_pcrread` outputs to "
        "see which); retry when it settles")
