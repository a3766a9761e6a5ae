"""Freshness tied to the TPM clock, on real artifacts from a swtpm (issue 10 item 12,
issue 11 item 1).

Verifier time moves through ``now=`` instead of sleeping; the TPM clock advances in
real time on swtpm, and the host claims whatever ``iat`` it likes (``issue(now=...)``).
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from attest.policy import NonceMode
from attest.store import Store, default_url
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
    epoch = first.epoch(rig.identity.ak_name)
    assert epoch is not None
    assert (epoch.first_clock, epoch.last_clock) == (min(clocks), max(clocks))
