"""Freshness tied to the TPM clock, on real artifacts from a swtpm (issue 10 item 12,
issue 11 item 1).

Verifier time moves through ``now=`` instead of sleeping; the TPM clock advances in
real time on swtpm, and the host claims whatever ``iat`` it likes (``issue(now=...)``).
"""

from __future__ import annotations

import random
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from attest.evidence.pcrs import PCRSelection
from attest.policy import NonceMode
from attest.store import Store, default_url
from attest.tpm.pcr import read_pcrs
from tests.store import reads
from tests.verify.rig import Rig, accepted, denied


def test_a_future_iat_minted_while_good_is_denied_once_the_boot_is_seen(rig: Rig) -> None:
    """The host, still good, mints an artifact dated an hour ahead, to use it after a
    compromise: by the TPM clock its quote is an hour older than it claims."""
    now = int(time.time())
    verifier = rig.verifier(rig.policy(nonce=NonceMode.FORBIDDEN))
    accepted(verifier.verify(rig.issue(now=now), now=now))
    future = rig.issue(now=now + 3600)
    decision = verifier.verify(future, now=now + 3610)
    denied(decision, "stale_evidence")
    assert "newer than its evidence" in decision.denials[0].message


def test_a_quote_old_by_the_tpm_clock_is_stale_whatever_its_iat_says(rig: Rig) -> None:
    """iat 25 s after the quote (within the 30 s skew) and 290 s before now (within
    max_age, 300 s): the quote itself, made 315 s before now, is too old."""
    now = int(time.time())
    verifier = rig.verifier(rig.policy(nonce=NonceMode.FORBIDDEN))
    accepted(verifier.verify(rig.issue(now=now), now=now))
    raw = rig.issue(now=now + 25, ttl=600)
    decision = verifier.verify(raw, now=now + 25 + 290)
    denied(decision, "stale_evidence")
    assert "by the TPM clock" in decision.denials[0].message
    # The same artifact at an age the TPM clock allows is accepted.
    accepted(verifier.verify(raw, now=now + 25 + 260))


@pytest.mark.parametrize("deny_reset", [False, True], ids=["lenient", "deny-reset"])
def test_an_artifact_made_before_a_reboot_is_denied_once_the_new_boot_is_seen(
        rig: Rig, deny_reset: bool) -> None:
    store = rig.store()
    verifier = rig.verifier(rig.policy(deny_reset=deny_reset), store)
    accepted(verifier.verify(rig.issue()))
    before = rig.issue()
    rig.host.sim.stop()  # TPM2_Shutdown, then TPM2_Startup(CLEAR): resetCount changes
    rig.host.sim.start()
    rig.host.ok("measure", "command", "--", "ls")  # a new boot's log: measured anew
    after = rig.issue()
    if deny_reset:
        # Refused, but the reboot is now known: it is pending re-admission.
        denied(verifier.verify(after), "tpm_reset")
    else:
        accepted(verifier.verify(after))
    decision = verifier.verify(before)
    denied(decision, "stale_evidence")
    assert "before the TPM restarted" in decision.denials[0].message
    if deny_reset:
        assert store.forget_clock(rig.identity.ak_name)  # attest readmit
        accepted(verifier.verify(after))
        denied(verifier.verify(before), "stale_evidence")


def test_honest_artifacts_of_one_boot_verify_in_any_order(rig: Rig) -> None:
    made = [rig.issue() for _ in range(16)]
    random.Random(11).shuffle(made)  # noqa: S311 (an order, not a secret)
    verifier = rig.verifier()
    for raw in made:
        accepted(verifier.verify(raw))


def test_honest_artifacts_verified_in_parallel_by_several_verifiers(rig: Rig) -> None:
    """16 artifacts of one boot, 8 threads, 4 verifiers (replicas) on one SQLite file."""
    made = [rig.issue() for _ in range(16)]
    random.Random(12).shuffle(made)  # noqa: S311 (an order, not a secret)
    first = rig.store()
    stores = [first, *(Store.open(default_url(rig.tmp / "verifier")) for _ in range(3))]
    policy = rig.policy()
    verifiers = [rig.verifier(policy, store) for store in stores]
    try:
        with ThreadPoolExecutor(8) as pool:
            decisions = list(pool.map(lambda i: verifiers[i % 4].verify(made[i]), range(16)))
    finally:
        for store in stores[1:]:
            store.close()
    for decision in decisions:
        accepted(decision)
    clocks = [verifier_facts["clock"] for verifier_facts in (d.facts for d in decisions)]
    epoch = reads.epoch(first, rig.identity.ak_name)
    assert epoch is not None
    assert (epoch.first_clock, epoch.last_clock) == (min(clocks), max(clocks))


# -- clocks one TPM cannot report: a restored TPM state, and TPM2_ClockSet to place the
# restored clock deterministically (it only moves the clock forward, as the owner may).

HOUR_MS = 3_600_000


def _clock_ahead(rig: Rig, ms: int) -> None:
    """TPM2_ClockSet: the TPM clock moved ``ms`` ahead (owner authorization, empty here)."""
    with rig.tpm() as tpm:
        now = tpm.esapi.read_clock().clockInfo.clock
        tpm.esapi.clock_set(now + ms)


def _reboot(rig: Rig) -> None:
    rig.host.sim.stop()  # TPM2_Shutdown, then TPM2_Startup(CLEAR): resetCount changes
    rig.host.sim.start()
    rig.host.ok("measure", "command", "--", "ls")  # a new boot's log: measured anew


def _save(rig: Rig) -> Path:
    saved = rig.tmp / "saved-tpm"
    rig.host.sim.stop()
    shutil.copytree(rig.host.sim.state_dir, saved)
    rig.host.sim.start()
    rig.host.ok("measure", "command", "--", "ls")  # a new boot's log: measured anew
    return saved


def _restore(rig: Rig, saved: Path) -> None:
    """Put the saved TPM state back, then start it: the boot the copy was started into
    (same counts), its clock from the copy."""
    sim = rig.host.sim
    sim.stop()
    shutil.rmtree(sim.state_dir)
    shutil.copytree(saved, sim.state_dir)
    sim.start()
    rig.host.ok("measure", "command", "--", "ls")  # a new boot's log: measured anew


def test_a_clock_inside_another_boots_range_is_a_rollback(rig: Rig) -> None:
    saved = _save(rig)  # copied before boot A
    verifier = rig.verifier()
    accepted(verifier.verify(rig.issue()))  # boot A, clock c0 + a little
    _clock_ahead(rig, 2 * HOUR_MS)
    accepted(verifier.verify(rig.issue()))  # boot A spans c0 .. c0 + 2 h
    _restore(rig, saved)  # boot A's counts again, clock c0
    _reboot(rig)  # boot B: other counts, clock c0 + a little
    _clock_ahead(rig, HOUR_MS)  # inside boot A's range
    decision = verifier.verify(rig.issue())
    denied(decision, "clock_rollback")
    assert "range of another boot" in decision.denials[0].message


def test_a_clock_an_earlier_boot_passed_is_a_rollback_in_this_one(rig: Rig) -> None:
    saved = _save(rig)  # copied before boot A
    verifier = rig.verifier()
    _clock_ahead(rig, HOUR_MS)
    accepted(verifier.verify(rig.issue()))  # boot A, clock c0 + 1 h
    _reboot(rig)
    accepted(verifier.verify(rig.issue()))  # boot B, beyond c0 + 1 h
    _restore(rig, saved)  # boot A's counts, clock c0
    _reboot(rig)  # boot B's counts again, clock c0 + a little: below boot A's last
    decision = verifier.verify(rig.issue())
    denied(decision, "clock_rollback")
    assert "earlier boot" in decision.denials[0].message


# -- a reboot dressed as a resume: TPM2_Shutdown(STATE) before it, then Startup(CLEAR)
# (a TPM Restart): the PCRs are reset, resetCount is not, restartCount is.


def _restart(rig: Rig) -> None:
    """TPM2_Shutdown(STATE), which any local user may send, then a power cycle into
    TPM2_Startup(CLEAR): what a host root gets by one command before a hard reset."""
    from tpm2_pytss.constants import TPM2_SU

    with rig.tpm() as tpm:
        tpm.esapi.shutdown(TPM2_SU.STATE)
    sim = rig.host.sim
    pid = sim._live_pid()
    assert pid is not None
    sim._terminate(pid)  # no TPM2_Shutdown(CLEAR) on the way down
    sim._clean_stale()
    sim.start()  # --flags startup-clear: TPM2_Startup(CLEAR) after a Shutdown(STATE)


def test_a_reboot_after_shutdown_state_is_a_reset_under_deny_reset(rig: Rig) -> None:
    """The host ran something its reference values deny (PCR 15 holds it), then rebooted
    as a TPM Restart: PCR 15 is empty again and resetCount unchanged. deny_reset must
    see the reboot (tpm_reset), not take it for a resume from suspend."""
    policy = rig.policy(deny_reset=True)  # trusts `ls`
    verifier = rig.verifier(policy)
    accepted(verifier.verify(rig.issue()))
    rig.host.ok("measure", "command", "--", "cat")  # not in the reference values
    denied(verifier.verify(rig.issue()), "reference_value_mismatch")
    _restart(rig)
    with rig.tpm() as tpm:
        pcr15 = read_pcrs(tpm, PCRSelection.of({"sha256": [15]}))[("sha256", 15)]
    assert pcr15 == bytes(32)  # PCR 15 was reset: the `cat` is gone
    rig.host.ok("measure", "command", "--", "ls")  # the new boot's log: `ls` alone
    denied(verifier.verify(rig.issue()), "tpm_reset")


def test_a_lenient_policy_on_the_same_store_does_not_readmit_a_reset(rig: Rig) -> None:
    """A reset refused under deny_reset is re-admitted by `attest readmit` (audited) only:
    the host sending one artifact of the new boot to a verifier whose policy does not deny
    resets, on the same store, must not admit it for the strict one."""
    store = rig.store()
    strict = rig.verifier(rig.policy(deny_reset=True), store)
    lenient = rig.verifier(rig.policy(deny_reset=False), store)
    accepted(strict.verify(rig.issue()))
    _reboot(rig)
    denied(strict.verify(rig.issue()), "tpm_reset")
    accepted(lenient.verify(rig.issue()))  # it does not deny resets: its own business
    denied(strict.verify(rig.issue()), "tpm_reset")
    assert store.forget_clock(rig.identity.ak_name)  # attest readmit
    accepted(strict.verify(rig.issue()))


def test_a_reset_a_lenient_policy_saw_first_is_not_admitted_for_a_strict_one(rig: Rig) -> None:
    store = rig.store()
    strict = rig.verifier(rig.policy(deny_reset=True), store)
    lenient = rig.verifier(rig.policy(deny_reset=False), store)
    accepted(strict.verify(rig.issue()))
    _reboot(rig)
    accepted(lenient.verify(rig.issue()))  # the new boot, recorded by the lenient one
    denied(strict.verify(rig.issue()), "tpm_reset")
