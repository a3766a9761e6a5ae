#!/usr/bin/env python3
"""Issue 15's signer figures: signatures per second and p50/p99 latency, one TPM
signature per request against Merkle batches (attest.signing.batcher), with 1, 16 and
256 concurrent requesters, on swtpm and on a simulated slow TPM.

Runnable alone: `.venv/bin/python scripts/bench_signer.py [--seconds S]`, or as section
`signer` of scripts/bench (`scripts/bench --only signer`). Sets up a private swtpm and a
provisioned host with a PCR-bound signing key in a temporary folder; each requester is a
thread in this process that asks for a signature, waits for it, and asks again (closed
loop) for S seconds; then the requests still in flight are waited for and counted.

- unbatched: each request is one TPM2_Sign of SHA-256(its DSSE PAE) with the key inside
  a policy session (attest.tpm.keys.sign_digest), one at a time (one TPM, one command);
- batched: requests go through a Batcher (window 5 ms; also 15 and 25 ms on the slow
  TPM, see WINDOWS for why; cut early after a fifth of the window without a request):
  one TPM2_Sign of the batch value per batch, the tree built and each request's proof
  handed back.
The slow TPM: a 200 ms time.sleep() injected right before the real swtpm TPM2_Sign
call, inside the same serialized section, as a TPM taking 200 ms per ECDSA signature
would hold it (Chrome's measurements: p50 about 200 ms). Unbatched with 256 requesters
on the slow TPM is not run: it is 5 signatures/s whatever the load, and its requests wait
about 256 x 200 ms = 51 s. Nothing asserts on timings.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ATTEST = [sys.executable, "-m", "attest.cli.main"]
SLOW = 0.200  # seconds injected per TPM signature
# Batch windows tried (the quiet time is the Batcher's default, a fifth of the window): 5
# ms everywhere; with the slow TPM also 15 and 25 ms, because waking 256 threads takes
# longer than 5 ms, so a 5 ms window splits them into cohorts that take turns at the TPM
# (each then waits for the other's 200 ms signature).
WINDOWS = {"swtpm": (0.005,), "swtpm + 200 ms": (0.005, 0.015, 0.025)}
CONCURRENCY = (1, 16, 256)
SWITCH = 0.0005  # seconds: the requesters' GIL switch interval (see measure)
TARGET_SWTPM = 2000.0  # batched signatures/s on swtpm
TARGET_SLOW = 1000.0  # batched signatures/s with the 200 ms TPM ...
TARGET_SLOW_P99_MS = 250.0  # ... at this p99


@dataclass(frozen=True)
class Row:
    figure: str
    measure: str
    value: float | None
    unit: str
    target: str = ""
    note: str = ""


@dataclass
class Figures:
    rows: list[Row] = field(default_factory=list)
    tables: list[tuple[str, tuple[str, ...], list[tuple[str, ...]], frozenset[int]]] = field(
        default_factory=list)
    targets: list[tuple[str, str, str]] = field(default_factory=list)  # what, measured, verdict
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Run:
    tpm: str
    way: str
    requesters: int
    done: int
    seconds: float
    p50_ms: float
    p99_ms: float
    steady_p99_ms: float
    batches: int
    window: float | None = None

    @property
    def rate(self) -> float:
        return self.done / self.seconds


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([*ATTEST, *args], env=env, capture_output=True, text=True,
                          check=False, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"attest {' '.join(args)}: {done.returncode}\n{done.stderr}")
    return done.stdout


def _pae(n: int) -> bytes:
    body = b'{"artifact": %d}' % n
    return b"DSSEv1 16 application/json %d %s" % (len(body), body)


def _closed_loop(requesters: int, seconds: float, one: Callable[[int], None]) -> tuple[
        list[float], float, list[float]]:
    """Latencies (s), wall time, and the latencies of requests asked after the first second
    (the start, all requesters asking at once, costs one extra batch to some)."""
    latencies: list[tuple[float, float]] = []
    lock = threading.Lock()
    # The requesters start together (a CI job fanning out), not as each thread comes up:
    # staggered starts split them into cohorts that then take turns at a serial TPM.
    start_line = threading.Barrier(requesters + 1)
    stop = 0.0

    def requester(who: int) -> None:
        n, mine = who * 10**9, list[tuple[float, float]]()
        start_line.wait()
        while time.perf_counter() < stop:
            start = time.perf_counter()
            one(n)
            mine.append((start, time.perf_counter() - start))
            n += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=requester, args=(w,)) for w in range(requesters)]
    for t in threads:
        t.start()
    began = time.perf_counter()
    stop = began + seconds
    start_line.wait()
    for t in threads:
        t.join()
    took = time.perf_counter() - began
    return ([t for _, t in latencies], took,
            [t for at, t in latencies if at >= began + 1.0] or [t for _, t in latencies])


def quantile(values: list[float], q: float) -> float:
    """The nearest-rank quantile of ``values`` (seconds), in milliseconds."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000


def measure(seconds: float, say: Callable[[str], None]) -> Figures:
    from attest.tpm.device import open_tpm
    from attest.tpm.keys import load_key

    runs: list[Run] = []
    # 256 requester threads of one process take turns at the GIL every switch interval
    # (5 ms by default): waking them all after a batch then outlasts the window.
    switch = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH)
    with tempfile.TemporaryDirectory(prefix="attest-bench-signer-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "ATTEST_HOME": str(root / "host"), "TSS2_LOG": "all+NONE",
               "PYTHONPATH": os.pathsep.join([str(ROOT), *(p for p in sys.path if p)])}
        tcti = _cli(env, "swtpm", "start", "--state", str(root / "swtpm")).strip()
        env["ATTEST_TCTI"] = tcti
        try:
            say("provisioning a host and a PCR-bound signing key")
            _cli(env, "provision")
            _cli(env, "key", "create", "--name", "bench")
            key = load_key(root / "host", "bench")
            with open_tpm(tcti) as tpm:
                for tpm_name, delay in (("swtpm", 0.0), ("swtpm + 200 ms", SLOW)):
                    runs += _one_tpm(tpm, key, tpm_name, delay, seconds, say)
        finally:
            sys.setswitchinterval(switch)
            subprocess.run([*ATTEST, "swtpm", "stop", "--state", str(root / "swtpm")],
                           env=env, capture_output=True, check=False, timeout=60)
    return _figures(runs, seconds)


def _one_tpm(tpm: Any, key: Any, tpm_name: str, delay: float, seconds: float,
             say: Callable[[str], None]) -> list[Run]:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    from attest.signing import batch
    from attest.signing.batcher import Batcher, Signed
    from attest.tpm.keys import sign_digest, signature_to_der

    public = serialization.load_pem_public_key(key.public_pem())
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise SystemExit("the signing key is not an EC key")
    tpm_lock = threading.Lock()
    runs: list[Run] = []

    def tpm_sign(digest: bytes) -> bytes:
        with tpm_lock:  # one TPM: one command at a time
            if delay:
                time.sleep(delay)  # the simulated slow TPM
            tss: bytes = sign_digest(tpm, key, digest)
            return tss

    def unbatched(n: int) -> None:
        tpm_sign(hashlib.sha256(_pae(n)).digest())

    for requesters in CONCURRENCY:
        if delay and requesters == CONCURRENCY[-1]:
            continue  # 51 s a round; see the docstring
        say(f"{tpm_name}: unbatched, {requesters} requesters")
        lat, took, steady = _closed_loop(requesters, seconds, unbatched)
        runs.append(Run(tpm_name, "unbatched", requesters, len(lat), took,
                        quantile(lat, 0.5), quantile(lat, 0.99), quantile(steady, 0.99),
                        len(lat)))
    for window, requesters in [(w, r) for w in WINDOWS[tpm_name] for r in CONCURRENCY]:
        say(f"{tpm_name}: batched, window {window * 1000:g} ms, {requesters} requesters")
        sampled: list[tuple[int, Signed[bytes]]] = []
        with Batcher(lambda _key, value: signature_to_der(tpm_sign(value)),
                     window=window) as batcher:
            def batched(n: int, batcher: Batcher[bytes] = batcher,
                        sampled: list[tuple[int, Signed[bytes]]] = sampled) -> None:
                got = batcher.submit("bench", "p", _pae(n)).result(600)
                if n % 1000 == 0:
                    sampled.append((n, got))
            lat, took, steady = _closed_loop(requesters, seconds, batched)
            signs = batcher.batches_signed
        for n, got in sampled[:20]:  # the figures are for signatures that verify
            public.verify(got.signature, batch.signed_value(_pae(n), got.membership),
                          ec.ECDSA(Prehashed(hashes.SHA256())))
        runs.append(Run(tpm_name, "batched", requesters, len(lat), took,
                        quantile(lat, 0.5), quantile(lat, 0.99), quantile(steady, 0.99),
                        signs, window))
    return runs


def _figures(runs: list[Run], seconds: float) -> Figures:
    figures = Figures()
    figures.tables.append((
        f"signatures ({seconds:g} s closed loop per line)",
        ("TPM", "way", "window ms", "requesters", "signatures/s", "p50 ms", "p99 ms",
         "p99 after 1 s", "TPM signs", "per sign"),
        [(r.tpm, r.way, "-" if r.window is None else f"{r.window * 1000:g}",
          str(r.requesters), f"{r.rate:,.0f}", f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}",
          f"{r.steady_p99_ms:.1f}", str(r.batches), f"{r.done / max(1, r.batches):.1f}")
         for r in runs], frozenset({2, 3, 4, 5, 6, 7, 8, 9})))
    for r in runs:
        window = "" if r.window is None else f" (window {r.window * 1000:g} ms)"
        figures.rows.append(Row(f"{r.tpm}, {r.way}{window}, {r.requesters} requesters",
                                "signatures/s", round(r.rate, 1), "/s",
                                note=f"p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms"))
    fast = max((r for r in runs if r.tpm == "swtpm" and r.way == "batched"),
               key=lambda r: r.rate)
    # With the slow TPM: the fastest line within the latency bound, if any is, else the
    # fastest.
    slow = max((r for r in runs if r.tpm != "swtpm" and r.way == "batched"),
               key=lambda r: (r.p99_ms <= TARGET_SLOW_P99_MS and r.rate >= TARGET_SLOW,
                              r.rate))
    figures.targets.append((f"batched >= {TARGET_SWTPM:,.0f} signatures/s on swtpm",
                            f"{fast.rate:,.0f}/s ({fast.requesters} requesters)",
                            "PASS" if fast.rate >= TARGET_SWTPM else "MISS"))
    figures.targets.append((
        f"batched >= {TARGET_SLOW:,.0f}/s with the 200 ms TPM at p99 <= "
        f"{TARGET_SLOW_P99_MS:.0f} ms",
        f"{slow.rate:,.0f}/s, p99 {slow.p99_ms:.0f} ms, after the first second "
        f"{slow.steady_p99_ms:.0f} ms ({slow.requesters} requesters, "
        f"window {(slow.window or 0) * 1000:g} ms)",
        "PASS" if slow.rate >= TARGET_SLOW and slow.p99_ms <= TARGET_SLOW_P99_MS else "MISS"))
    figures.notes.append(
        "slow TPM: a 200 ms time.sleep() before each real swtpm TPM2_Sign, inside the "
        "one-command-at-a-time section; requesters are threads of one Python process "
        f"(GIL switch interval {SWITCH * 1000:g} ms), started together, in a closed loop "
        "(a batch is at most the requesters)")
    figures.notes.append(
        "floor with a serial TPM: a request arriving while the TPM signs waits for that "
        "signature, then for its own: with open-loop arrivals p99 tends to 2 x the sign "
        "time (about 400 ms at 200 ms), whatever the batching")
    figures.notes.append(f"cpus: {os.cpu_count()}, load average (1 min) after: "
                         f"{os.getloadavg()[0]:.1f}")
    return figures


def section_signer(quick: bool) -> Figures:
    return measure(1.5 if quick else 4.0, say=lambda line: print(line, file=sys.stderr))


SECTIONS = {"signer": section_signer}  # scripts/bench's section `signer`


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="closed-loop time per line")
    args = parser.parse_args()
    figures = measure(args.seconds, say=lambda line: print(line, file=sys.stderr))
    for title, header, rows, _ in figures.tables:
        print(f"{title}:")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            print("  " + "  ".join(cell.rjust(w) if i else cell.ljust(w)
                                   for i, (cell, w) in enumerate(zip(row, widths, strict=True))))
    for what, measured, verdict in figures.targets:
        print(f"{verdict}  {what}: {measured}")
    for note in figures.notes:
        print(note)


if __name__ == "__main__":
    main()
