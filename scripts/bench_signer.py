#!/usr/bin/env python3
"""Issue 15's signer figures: signatures per second and p50/p99 latency of the production
signing path (attest.host.sign), one TPM signature and quote per request against Merkle
batches (attest.signing.batcher), with 1, 16 and 256 concurrent requesters, on swtpm and
on a simulated slow TPM; and the cost of verifying a bundle against its bare signature
checks.

Runnable alone: `.venv/bin/python scripts/bench_signer.py [--seconds S]`, or as section
`signer` of scripts/bench (`scripts/bench --only signer`). Sets up, in a temporary folder,
three private swtpm and three provisioned hosts, each with a PCR-bound signing key and a
few runtime measurements. Signing runs on the first host. Each requester is a thread of
this process that asks for a signature over a payload of its own (never asked before),
waits until the bundle's bytes exist, and asks again (closed loop) for S seconds; the
requests still in flight are then waited for and counted.

- unbatched: each request is attest.host.sign.sign_payload (what `attest sign` does):
  under the runtime log's lock, reconcile, one TPM2_Sign of SHA-256(PAE) with the key in
  a policy session, its certification (cached beside the key), one TPM2_Quote bound to
  the signature; then the bundle's bytes. One TPM: one request at a time.
- batched: requests go through a Batcher whose callback is attest.host.sign.sign_evidence
  over the batch value (the same sign, certification and quote, once per batch); each
  requester makes its bundle with Signing.bundle(payload type, payload, membership) (the
  inclusion proof checked again there) and its bytes.

The slow TPM, in this process only: attest.tpm.keys.sign_digest is wrapped so that it
sleeps 200 ms before calling the real one (a TPM taking 200 ms per ECDSA signature;
Chrome's measurements: p50 about 200 ms). A second slow row also wraps the quote
(attest.host.sign's create_quote) in 200 ms: a real TPM's quote is an ECDSA signature by
the AK too, so each batch then holds the TPM about 400 ms. Unbatched with 256 requesters
on a slow TPM is not run: it is 5 (or 2.5) signatures/s whatever the load, and each
request would wait 256 x 200 (400) ms.

Verification: distinct bundles from the three hosts (unbatched and batched), each
verified once with attest.verify.signature.verify_bundle (the key cache emptied before
each, as in a fresh `attest verify-signature`), against the same bundles' bare signature
checks: the three ECDSA P-256 verifications a bundle holds (the DSSE signature with the
signing key, the certification's and the quote's with the AK), each key built from its
coordinates, done alone with `cryptography`. Both are timed side by side in one run,
alternating bundle by bundle. Nothing asserts on timings.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stream import (  # type: ignore[import-not-found,unused-ignore]
    Figures as StreamFigures,
)
from bench_stream import (  # type: ignore[import-not-found,unused-ignore]
    Row,
    attest_cli,
    print_tables,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ATTEST = [sys.executable, "-m", "attest.cli.main"]
KEY = "bench"
PAYLOAD_TYPE = "application/vnd.attest.bench+json"
SLOW = 0.200  # seconds injected per TPM signature (and per quote, in the second slow row)
TPMS = (("swtpm", 0.0, False), ("200 ms sign", SLOW, False),
        ("200 ms sign + 200 ms quote", SLOW, True))
# Batch windows (the quiet time is the Batcher's default, a fifth of the window). One
# window per TPM, the Batcher's default (None), unless tuning asks for more (--windows).
CONCURRENCY = (1, 16, 256)
SWITCH = 0.0005  # seconds: the requesters' GIL switch interval (see measure)
HOSTS = 3
MEASUREMENTS = ("ls", "true", "cat")  # runtime measurements on each host, one each
VERIFY_PER_HOST = (10, 10)  # bundles per host: unbatched, and in one batch
TARGET_SWTPM = 2000.0  # batched signatures/s on swtpm
TARGET_SLOW = 1000.0  # batched signatures/s with the 200 ms TPM ...
TARGET_SLOW_P99_MS = 250.0  # ... at this p99
TARGET_VERIFY_RATIO = 2.0  # bundle verification / its bare signature checks
# Calls that went through the slow TPM's wrappers: the smoke test checks that production
# signing really reached them (a renamed import would leave the delay out silently).
SLOW_CALLS = {"sign": 0, "quote": 0}


@dataclass
class Figures(StreamFigures):  # type: ignore[misc,unused-ignore]
    samples: list[bytes] = field(default_factory=list)  # bundles verified (for checks)


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


@dataclass(frozen=True)
class Cost:
    bundles: int
    batched: int
    hosts: int
    verify_us: float  # median per bundle
    bare_us: float
    verify_mean_us: float
    bare_mean_us: float
    samples: tuple[bytes, ...] = ()

    @property
    def ratio(self) -> float:
        return self.verify_us / self.bare_us


@dataclass(frozen=True)
class Host:
    home: Path
    tcti: str
    env: dict[str, str]




def _payload(n: int) -> bytes:
    return b'{"artifact": %d, "digest": "%064x"}' % (n, n)


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
    failed: list[BaseException] = []

    def requester(who: int) -> None:
        n, mine = who * 10**9, list[tuple[float, float]]()
        start_line.wait()
        try:
            while time.perf_counter() < stop:
                start = time.perf_counter()
                one(n)
                mine.append((start, time.perf_counter() - start))
                n += 1
        except Exception as exc:  # noqa: BLE001 - reported below: a failed request is no figure
            failed.append(exc)
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
    if failed:
        raise SystemExit(f"{len(failed)} requesters failed: {failed[0]!r}")
    return ([t for _, t in latencies], took,
            [t for at, t in latencies if at >= began + 1.0] or [t for _, t in latencies])


def quantile(values: list[float], q: float) -> float:
    """The nearest-rank quantile of ``values`` (seconds), in milliseconds."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _start_host(root: Path, n: int) -> Host:
    folder = root / f"host-{n}"
    env = {**os.environ, "ATTEST_HOME": str(folder / "home"), "TSS2_LOG": "all+NONE",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *(p for p in sys.path if p)])}
    tcti = attest_cli(env, "swtpm", "start", "--state", str(folder / "swtpm")).strip()
    env["ATTEST_TCTI"] = tcti
    return Host(folder / "home", tcti, env)


def _stop_host(host: Host) -> None:
    subprocess.run([*ATTEST, "swtpm", "stop", "--state", str(host.home.parent / "swtpm")],
                   env=host.env, capture_output=True, check=False, timeout=60)


def _provision(host: Host) -> None:
    attest_cli(host.env, "provision")
    attest_cli(host.env, "key", "create", "--name", KEY)
    for command in MEASUREMENTS:
        attest_cli(host.env, "measure", "command", "--", command)


@contextmanager
def _hosts(count: int, say: Callable[[str], None]) -> Iterator[list[Host]]:
    with tempfile.TemporaryDirectory(prefix="attest-bench-signer-") as tmp:
        started: list[Host] = []
        try:
            for n in range(count):
                say(f"host {n}: swtpm, provisioning, key {KEY!r}, "
                    f"{len(MEASUREMENTS)} runtime measurements")
                started.append(_start_host(Path(tmp), n))
                _provision(started[-1])
            yield started
        finally:
            for host in started:
                _stop_host(host)


@contextmanager
def _slow_tpm(sign_delay: float, quote_delay: float) -> Iterator[None]:
    """The real TPM calls, each held ``delay`` longer (in this process only)."""
    import attest.host.sign as host_sign
    from attest.tpm import keys

    real_sign, real_quote = keys.sign_digest, host_sign.create_quote  # type: ignore[attr-defined]

    def slow_sign(*args: Any, **kwargs: Any) -> bytes:
        SLOW_CALLS["sign"] += 1
        time.sleep(sign_delay)
        signed: bytes = real_sign(*args, **kwargs)
        return signed

    def slow_quote(*args: Any, **kwargs: Any) -> Any:
        SLOW_CALLS["quote"] += 1
        time.sleep(quote_delay)
        return real_quote(*args, **kwargs)

    # sign_evidence calls keys.sign_digest through the module and create_quote through
    # its own name: each is replaced where it is looked up.
    if sign_delay:
        setattr(keys, "sign_digest", slow_sign)  # noqa: B010
    if quote_delay:
        setattr(host_sign, "create_quote", slow_quote)  # noqa: B010
    try:
        yield
    finally:
        setattr(keys, "sign_digest", real_sign)  # noqa: B010
        setattr(host_sign, "create_quote", real_quote)  # noqa: B010


def measure(seconds: float, say: Callable[[str], None], *,
            concurrency: tuple[int, ...] = CONCURRENCY,
            windows: tuple[float | None, ...] = (None,),
            tpms: tuple[tuple[str, float, bool], ...] = TPMS,
            per_host: tuple[int, int] = VERIFY_PER_HOST, hosts: int = HOSTS) -> Figures:
    from attest.tpm.device import open_tpm

    runs: list[Run] = []
    # 256 requester threads of one process take turns at the GIL every switch interval
    # (5 ms by default): waking them all after a batch then outlasts the window.
    switch = sys.getswitchinterval()
    with _hosts(hosts, say) as started:
        # Verification first, in a small heap: after the signing lines, the requesters'
        # leftovers would make the collector's passes part of verify_bundle's figure.
        say(f"verification: {hosts} hosts x ({per_host[0]} unbatched + {per_host[1]} "
            "batched) bundles")
        cost = verification_cost(started, per_host)
        signer = started[0]
        try:
            sys.setswitchinterval(SWITCH)
            with open_tpm(signer.tcti) as tpm:
                for name, delay, quote_too in tpms:
                    with _slow_tpm(delay, delay if quote_too else 0.0):
                        runs += _one_tpm(tpm, signer.home, name, bool(delay), seconds,
                                         concurrency, windows, say)
        finally:
            sys.setswitchinterval(switch)
    return _figures(runs, seconds, cost)


def _one_tpm(tpm: Any, home: Path, tpm_name: str, slow: bool, seconds: float,
             concurrency: tuple[int, ...], windows: tuple[float | None, ...],
             say: Callable[[str], None]) -> list[Run]:
    from attest.host.sign import Signing, sign_evidence, sign_payload
    from attest.signing.batcher import DEFAULT_WINDOW, Batcher, Signed
    from attest.signing.dsse import pae

    tpm_lock = threading.Lock()  # one TPM, one ESAPI context: one command at a time
    runs: list[Run] = []

    def unbatched(n: int) -> None:
        with tpm_lock:
            bundle = sign_payload(tpm, home, PAYLOAD_TYPE, _payload(n), int(time.time()),
                                  key_name=KEY)
        bundle.to_bytes()

    def evidence(_key: str, value: bytes) -> Signing:
        with tpm_lock:
            return sign_evidence(tpm, home, value, int(time.time()), key_name=KEY)

    for requesters in concurrency:
        if slow and requesters >= 256:
            continue  # 51 s (or 102 s) a request; see the docstring
        say(f"{tpm_name}: unbatched, {requesters} requesters")
        lat, took, steady = _closed_loop(requesters, seconds, unbatched)
        runs.append(Run(tpm_name, "unbatched", requesters, len(lat), took,
                        quantile(lat, 0.5), quantile(lat, 0.99), quantile(steady, 0.99),
                        len(lat)))
    for window, requesters in [(w, r) for w in windows for r in concurrency]:
        chosen = DEFAULT_WINDOW if window is None else window
        say(f"{tpm_name}: batched, window {chosen * 1000:g} ms, {requesters} requesters")
        with Batcher(evidence, window=chosen) as batcher:
            def batched(n: int, batcher: Batcher[Signing] = batcher) -> None:
                payload = _payload(n)
                got: Signed[Signing] = batcher.submit(
                    KEY, "bench", pae(PAYLOAD_TYPE, payload)).result(600)
                got.signature.bundle_bytes(PAYLOAD_TYPE, payload, got.membership)
            lat, took, steady = _closed_loop(requesters, seconds, batched)
            signs = batcher.batches_signed
        runs.append(Run(tpm_name, "batched", requesters, len(lat), took,
                        quantile(lat, 0.5), quantile(lat, 0.99), quantile(steady, 0.99),
                        signs, chosen))
    return runs


# -- verification cost ----------------------------------------------------------------

@dataclass(frozen=True)
class _Bare:
    """A bundle's three ECDSA P-256 verifications, prepared (parsed, signatures in DER):
    the signing key's and the AK's coordinates, and (DER signature, data, prehashed) for
    the DSSE signature (signing key), the certification and the quote (AK)."""

    key: bytes  # 0x04 || x || y
    ak: bytes
    dsse: tuple[bytes, bytes, bool]
    certify: tuple[bytes, bytes, bool]
    quote: tuple[bytes, bytes, bool]


def _bare_of(raw: bytes) -> _Bare:
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from attest.evidence.structures import ECCParms, parse_public_tpm2b, parse_signature
    from attest.signing import batch
    from attest.signing.bundle import Bundle, pae_digest

    bundle = Bundle.from_bytes(raw)
    key, ak = (parse_public_tpm2b(bundle.key_public).parms,
               parse_public_tpm2b(bundle.ak_public).parms)
    if not isinstance(key, ECCParms) or not isinstance(ak, ECCParms):
        raise SystemExit("the bench's keys are ECC P-256 keys")
    signed = (pae_digest(bundle.pae) if bundle.batch is None
              else batch.signed_value(bundle.pae, bundle.batch))

    def der(tpmt: bytes) -> bytes:
        sig = parse_signature(tpmt)
        return encode_dss_signature(int.from_bytes(sig.r, "big"), int.from_bytes(sig.s, "big"))

    return _Bare(b"\x04" + key.x + key.y, b"\x04" + ak.x + ak.y,
                 (bundle.signature, signed, True),
                 (der(bundle.certify_signature), bundle.certify, False),
                 (der(bundle.quote_signature), bundle.quote, False))


def _bare_checks(bare: _Bare) -> None:
    """The three verifications alone: each key built once from its coordinates (as a
    verifier must), the AK's used for both of its signatures."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    curve = ec.SECP256R1()
    key = ec.EllipticCurvePublicKey.from_encoded_point(curve, bare.key)
    ak = ec.EllipticCurvePublicKey.from_encoded_point(curve, bare.ak)
    for public, (signature, data, prehashed) in ((key, bare.dsse), (ak, bare.certify),
                                                 (ak, bare.quote)):
        public.verify(signature, data,
                      ec.ECDSA(Prehashed(hashes.SHA256()) if prehashed else hashes.SHA256()))


def _bundles(hosts: list[Host], per_host: tuple[int, int]) -> list[bytes]:
    """Distinct bundles: per host, ``per_host[0]`` signed alone and ``per_host[1]`` in one
    batch, each over a payload of its own, interleaved host by host."""
    from attest.host.sign import sign_batch, sign_payload
    from attest.tpm.device import open_tpm

    made: list[list[bytes]] = []
    for n, host in enumerate(hosts):
        now, mine = int(time.time()), []
        with open_tpm(host.tcti) as tpm:
            for i in range(per_host[0]):
                mine.append(sign_payload(tpm, host.home, PAYLOAD_TYPE,
                                         _payload(n * 10**6 + i), now, key_name=KEY).to_bytes())
            if per_host[1]:
                mine += [b.to_bytes() for b in sign_batch(
                    tpm, host.home, [(PAYLOAD_TYPE, _payload(n * 10**6 + 5000 + i))
                                     for i in range(per_host[1])], now, key_name=KEY)]
        made.append(mine)
    return [raw for group in zip(*made, strict=True) for raw in group]


def _policy(hosts: list[Host], folder: Path) -> Any:
    """One consumer policy trusting the hosts' AKs and their runtime measurements (what
    `attest policy init --from-host` writes, for several hosts)."""
    from attest.eventlog.cel import parse_cel
    from attest.host.runtime.log import RuntimeLog
    from attest.host.runtime.subjects import measured_executables
    from attest.policy import NonceMode, TrustedAK, parse_policy, render_policy
    from attest.tpm import keys as signing
    from attest.tpm.hierarchy import load_identity

    trusted, reference, executables = [], dict[str, list[bytes]](), dict[str, list[bytes]]()
    sealed: dict[int, bytes] = {}
    for n, host in enumerate(hosts):
        identity = load_identity(host.home)
        trusted.append(TrustedAK(f"host-{n}", identity.ak_public,
                                 identity.ak_qualified_name or None))
        record = signing.load_key(host.home, KEY)
        sealed = {i: v for (_, i), v in record.sealed_values.items()}  # swtpm: all alike
        records = parse_cel(RuntimeLog(host.home).path.read_bytes()).records
        for rec in records:
            name, measured = rec.content.get("name"), rec.content.get("digest")
            if isinstance(name, str) and isinstance(measured, dict):
                values = reference.setdefault(name, [])
                if bytes.fromhex(measured["sha256"]) not in values:
                    values.append(bytes.fromhex(measured["sha256"]))
        for name, digests in measured_executables(records).items():
            values = executables.setdefault(name, [])
            values += [d for d in digests if d not in values]
    text = render_policy(policy_id="bench-signer", sealed_values=sealed, trusted_aks=trusted,
                         runtime_reference=reference, executables=executables,
                         nonce=NonceMode.OPTIONAL)
    path = folder / "policy.yaml"
    path.write_text(text)
    return parse_policy(text.encode(), source=str(path), base_dir=folder, path=path)


def verification_cost(hosts: list[Host], per_host: tuple[int, int]) -> Cost:
    from attest.evidence.signatures import clear_key_cache
    from attest.verify.signature import verify_bundle

    bundles = _bundles(hosts, per_host)
    policy = _policy(hosts, hosts[0].home.parent)
    bare = [_bare_of(raw) for raw in bundles]  # parsing for the bare side: not timed
    now = int(time.time())
    gc.collect()
    verify_s: list[float] = []
    bare_s: list[float] = []
    for raw, checks in zip(bundles, bare, strict=True):  # side by side, bundle by bundle
        clear_key_cache()  # a fresh consumer: no key built from an earlier bundle
        start = time.perf_counter()
        decision = verify_bundle(raw, policy, now)
        verify_s.append(time.perf_counter() - start)
        if not decision.accepted:
            raise SystemExit(f"a bench bundle is denied: {decision.reasons}")
        start = time.perf_counter()
        _bare_checks(checks)
        bare_s.append(time.perf_counter() - start)
    return Cost(len(bundles), len(hosts) * per_host[1], len(hosts),
                median(verify_s) * 1e6, median(bare_s) * 1e6,
                sum(verify_s) / len(verify_s) * 1e6, sum(bare_s) / len(bare_s) * 1e6,
                tuple(bundles[:4]))


# -- the figures ----------------------------------------------------------------------

def _figures(runs: list[Run], seconds: float, cost: Cost) -> Figures:
    figures = Figures(samples=list(cost.samples))
    figures.tables.append((
        f"signatures: bundles made, production path ({seconds:g} s closed loop per line)",
        ("TPM", "way", "window ms", "requesters", "bundles/s", "p50 ms", "p99 ms",
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
    figures.tables.append((
        f"verification: {cost.bundles} distinct bundles from {cost.hosts} hosts "
        f"({cost.batched} batched), each once, side by side",
        ("what", "median us/bundle", "mean us/bundle"),
        [("verify_bundle", f"{cost.verify_us:.0f}", f"{cost.verify_mean_us:.0f}"),
         ("bare: 3 ECDSA P-256 verifications", f"{cost.bare_us:.0f}",
          f"{cost.bare_mean_us:.0f}"),
         ("ratio", f"{cost.ratio:.2f}", f"{cost.verify_mean_us / cost.bare_mean_us:.2f}")],
        frozenset({0})))
    figures.rows.append(Row("bundle verification / its bare signature checks", "ratio",
                            round(cost.ratio, 2), "x", f"<= {TARGET_VERIFY_RATIO:g}",
                            f"{cost.verify_us:.0f} us against {cost.bare_us:.0f} us"))
    _targets(figures, runs, cost)
    figures.notes.append(
        "slow TPM: a 200 ms time.sleep() before each real swtpm TPM2_Sign "
        "(attest.tpm.keys.sign_digest wrapped in the bench process), and in the last rows "
        "before each TPM2_Quote too; requesters are threads of one Python process "
        f"(GIL switch interval {SWITCH * 1000:g} ms), started together, in a closed loop "
        "(a batch is at most the requesters)")
    figures.notes.append(
        "floor with a serial TPM: a request arriving while the TPM works waits for that "
        "batch, then for its own: with open-loop arrivals p99 tends to 2 x the TPM time "
        "per batch (400 ms with a 200 ms sign; 800 ms with sign and quote at 200 ms each)")
    figures.notes.append(f"cpus: {os.cpu_count()}, load average (1 min) after: "
                         f"{os.getloadavg()[0]:.1f}")
    return figures


def _targets(figures: Figures, runs: list[Run], cost: Cost) -> None:
    fast = max((r for r in runs if r.tpm == TPMS[0][0] and r.way == "batched"),
               key=lambda r: r.rate, default=None)
    if fast is not None:
        figures.targets.append((f"batched >= {TARGET_SWTPM:,.0f} signatures/s on swtpm",
                                f"{fast.rate:,.0f}/s ({fast.requesters} requesters)",
                                "PASS" if fast.rate >= TARGET_SWTPM else "MISS"))
    for name, _, _ in TPMS[1:]:
        # The fastest line within the latency bound, if any is, else the fastest.
        slow = max((r for r in runs if r.tpm == name and r.way == "batched"),
                   key=lambda r: (r.p99_ms <= TARGET_SLOW_P99_MS and r.rate >= TARGET_SLOW,
                                  r.rate), default=None)
        if slow is None:
            continue
        figures.targets.append((
            f"batched >= {TARGET_SLOW:,.0f}/s with a {name} TPM at p99 <= "
            f"{TARGET_SLOW_P99_MS:.0f} ms",
            f"{slow.rate:,.0f}/s, p99 {slow.p99_ms:.0f} ms, after the first second "
            f"{slow.steady_p99_ms:.0f} ms ({slow.requesters} requesters, "
            f"window {(slow.window or 0) * 1000:g} ms)",
            "PASS" if slow.rate >= TARGET_SLOW and slow.p99_ms <= TARGET_SLOW_P99_MS
            else "MISS"))
    figures.targets.append((
        f"bundle verification <= {TARGET_VERIFY_RATIO:g}x its bare signature checks",
        f"{cost.ratio:.2f}x ({cost.verify_us:.0f} us against {cost.bare_us:.0f} us, "
        f"median of {cost.bundles} bundles)",
        "PASS" if cost.ratio <= TARGET_VERIFY_RATIO else "MISS"))


def section_signer(quick: bool) -> Figures:
    return measure(1.5 if quick else 4.0, say=lambda line: print(line, file=sys.stderr))


SECTIONS = {"signer": section_signer}  # scripts/bench's section `signer`




def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="closed-loop time per line")
    parser.add_argument("--windows", default="",
                        help="batch windows to try, ms, comma-separated (default: the "
                        "Batcher's)")
    parser.add_argument("--tpms", default="",
                        help="only these TPM rows, comma-separated indexes (0 swtpm, 1 slow "
                        "sign, 2 slow sign and quote)")
    parser.add_argument("--concurrency", default="",
                        help="requesters per line, comma-separated (default 1,16,256)")
    parser.add_argument("--per-host", default="",
                        help="verification bundles per host: unbatched,batched (default "
                        f"{VERIFY_PER_HOST[0]},{VERIFY_PER_HOST[1]})")
    args = parser.parse_args()
    windows: tuple[float | None, ...] = tuple(
        float(w) / 1000 for w in args.windows.split(",") if w) or (None,)
    tpms = tuple(TPMS[int(i)] for i in args.tpms.split(",") if i) or TPMS
    concurrency = tuple(int(c) for c in args.concurrency.split(",") if c) or CONCURRENCY
    per_host = VERIFY_PER_HOST
    if args.per_host:
        a, b = args.per_host.split(",")
        per_host = (int(a), int(b))
    figures = measure(args.seconds, lambda line: print(line, file=sys.stderr),
                      concurrency=concurrency, windows=windows, tpms=tpms,
                      per_host=per_host)
    print_tables(figures)


if __name__ == "__main__":
    main()
