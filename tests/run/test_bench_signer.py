"""scripts/bench_signer.py: its own arithmetic, its slow TPM, its bare checks, and a smoke run
of the whole script on a real swtpm (its figures are measured, never asserted)."""

from __future__ import annotations

import time

import pytest
from cryptography.exceptions import InvalidSignature

from tests.scripts import SCRIPTS, script


def test_quantiles_are_nearest_rank_in_milliseconds() -> None:
    quantile = script("bench_signer").quantile
    samples = [n / 1000 for n in range(50, 0, -1)]  # seconds, any order
    assert quantile(samples, 0.99) == 50.0
    assert quantile(samples, 0.5) == 25.0
    assert quantile([0.007], 0.99) == 7.0


def test_the_bench_runs_it_as_section_signer() -> None:
    assert "signer" in script("bench_signer").SECTIONS
    bench = (SCRIPTS / "bench").read_text()
    assert '"signer": _issue12_section("signer"' in bench
    assert '"bench_signer")' in bench


def test_the_slow_tpm_wraps_the_calls_production_signing_makes_and_only_inside() -> None:
    import attest.host.sign as host_sign
    from attest.tpm import keys

    bench = script("bench_signer")
    real_sign, real_quote = keys.sign_digest, host_sign.create_quote
    with bench._slow_tpm(0.001, 0.0):
        # sign_evidence looks sign_digest up on attest.tpm.keys at each call: the wrapper is
        # what it finds; the quote is left alone in the sign-only row.
        assert keys.sign_digest is not real_sign
        assert host_sign.create_quote is real_quote
    with bench._slow_tpm(0.001, 0.001):
        assert keys.sign_digest is not real_sign
        assert host_sign.create_quote is not real_quote
    assert keys.sign_digest is real_sign
    assert host_sign.create_quote is real_quote


def test_the_slow_tpm_is_restored_when_a_line_fails() -> None:
    from attest.tpm import keys

    real = keys.sign_digest
    with pytest.raises(RuntimeError), script("bench_signer")._slow_tpm(0.001, 0.001):
        raise RuntimeError("a requester failed")
    assert keys.sign_digest is real


def test_a_smoke_run_measures_each_way_and_the_bare_checks_refuse_a_forgery() -> None:
    """The whole script on one swtpm host, briefly: unbatched and batched production
    signing, on swtpm and the slow TPM, and the verification cost (every bench bundle
    verifies, or the run stops). Then the bare checks must refuse each signature moved
    to another message: they are the ratio's denominator, so they must be real checks."""
    bench = script("bench_signer")
    lines: list[str] = []
    bench.SLOW_CALLS.update(sign=0, quote=0)
    start = time.monotonic()
    figures = bench.measure(0.3, lines.append, concurrency=(1, 4),
                            tpms=(bench.TPMS[0], bench.TPMS[2]), per_host=(1, 2), hosts=1)
    print(f"smoke run: {time.monotonic() - start:.1f} s")
    table = figures.tables[0][2]
    ways = {(row[0], row[1], row[3]) for row in table}
    for tpm in ("swtpm", "200 ms sign + 200 ms quote"):
        for way in ("unbatched", "batched"):
            for requesters in ("1", "4"):
                assert (tpm, way, requesters) in ways
    assert all(int(row[8]) >= 1 for row in table)  # every line signed with the TPM
    # Every TPM signature and quote of the slow lines went through the injected delay:
    # production signing looks both up where the bench wraps them.
    slow_signs = sum(int(row[8]) for row in table if row[0] != "swtpm")
    assert bench.SLOW_CALLS["sign"] == slow_signs
    assert bench.SLOW_CALLS["quote"] == slow_signs
    verdicts = {what: verdict for what, _, verdict in figures.targets}
    assert any("bare signature checks" in what for what in verdicts)
    assert set(verdicts.values()) <= {"PASS", "MISS"}

    bare = bench._bare_of(figures.samples[0])
    bench._bare_checks(bare)  # the real bundle passes
    for moved in (
            bare.__class__(bare.key, bare.ak, (bare.certify[0], *bare.dsse[1:]),
                           bare.certify, bare.quote),
            bare.__class__(bare.key, bare.ak, bare.dsse,
                           (bare.quote[0], bare.certify[1], False), bare.quote),
            bare.__class__(bare.key, bare.ak, bare.dsse, bare.certify,
                           (bare.quote[0], bare.quote[1] + b"\0", False)),
            bare.__class__(bare.ak, bare.ak, bare.dsse, bare.certify, bare.quote)):
        with pytest.raises(InvalidSignature):
            bench._bare_checks(moved)
