#!/usr/bin/env python3
"""Issue 12's verification figures: a realistic stream, log growth, a 100,000-record boot.

Called by scripts/bench (sections ``stream`` and ``loggrowth``); also runnable alone
(`.venv/bin/python scripts/bench_stream.py [--only stream|loggrowth] [--quick]`).
Progress goes to stderr. Nothing asserts on timings.

``stream``: HOSTS swtpm hosts, each provisioned, with a PCR-bound key, enrolled (logged
and sealed, as `attest enroll` does) in ONE verifier store on disk. Each host measures
before each artifact through :func:`attest.host.run.prepare` (the library path of
`attest run`: seal the executable, measure it, issue), so every artifact carries a
runtime log the verifier has not seen. All artifacts are made before anything is
timed, then verified once each (single use), round-robin across hosts, through the
audited entry point, by 1 caller and by 8. The bare signature checks (JWS ES256,
quote and certification ECDSA on keys parsed beforehand) run over the same artifacts
with the same callers, in the same run.

Concurrency, as a service would run it: the verification is synchronous, so an async
server runs it in a thread pool, and threads of one process share one verifier, store
and audit log (a Store and an AuditLog are one per process; the log groups the commits
of concurrent callers in-process). The headline's 8 callers are 8 threads in one
worker process; 2 processes x 4 threads (one uvicorn worker per core, both writing the
one SQLite file) is measured beside it. Each worker is a fresh interpreter that
verifies a few warm-up artifacts of its own first; µs per verification is the wall
time from the first call to the last return over all workers, divided by the count.

``loggrowth``: one host whose boot has 10, then 10,000, then 100,000 runtime records;
a few artifacts at each length, verified as above (1 caller); their cost and size.
The bulk records are written by attest's CEL writer and extended into the PCR one by
one, exactly as `attest measure` would, without its per-record fsync and reconcile.

All verifier calls go through :class:`VerifierUnderTest`: the one place to adapt when
the verifier's API changes.
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOSTS = 6
SEED_RECORDS = 10  # measured at each host's boot, before its first artifact
# (callers, worker processes): the headline is 8 threads sharing one verifier process (one
# SQLite store per process, its commits grouped in-process); 2 processes x 4 threads (one
# per core) is measured beside it.
LAYOUTS = ((1, 1), (8, 1), (8, 2))
HEADLINE = (8, 1)
SHARES = (*(f"{c} caller(s), {p} process(es)" for c, p in LAYOUTS), "breakdown")
PER_SHARE = 40  # artifacts per host and share
QUICK_PER_SHARE = 4
WARMUP = 2  # artifacts each worker verifies before it is timed
WARM_PER_HOST = 2  # 12 warm-up artifacts: 2 per audited worker (4), 4 for the breakdown
TTL_S = 600
MAX_AGE_S = 3600
ARGV = ("/bin/true",)
SEED_PROGRAMS = ("/bin/true", "/bin/sh", "/bin/ls", "/bin/cat", "/bin/echo")
WORKER_TIMEOUT_S = 300
RATIO_TARGET = 2.5  # stream, 8 callers, on disk: x bare
GROWTH_TARGET = 1.3  # verification at 10,000 records / at 10
GROWTH_LENGTHS = (10, 10_000)
QUICK_GROWTH_LENGTHS = (10, 1_000)
BIG_BOOT = 100_000
GROWTH_ARTIFACTS = 5
QUICK_GROWTH_ARTIFACTS = 3
BIG_ARTIFACTS = 2
# Keylime (issue 12): appraising only new IMA entries of a known agent, per quote.
KEYLIME_STEADY_MS = (0.3, 0.8)


# -- results ----------------------------------------------------------------------------

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
    targets: list[tuple[str, str, str]] = field(default_factory=list)  # target, measured, verdict
    notes: list[str] = field(default_factory=list)

    def target(self, what: str, measured: str, met: bool) -> str:
        verdict = "PASS" if met else "MISS"
        self.targets.append((what, measured, verdict))
        return verdict


def progress(message: str) -> None:
    with suppress(OSError):
        print(f"[stream] {message}", file=sys.stderr, flush=True)


def p95(samples: Sequence[float]) -> float:
    ordered = sorted(samples)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


@contextmanager
def signals_deferred() -> Iterator[None]:
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT,
                                                                   signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- the verifier's API, in one place ----------------------------------------------------

class VerifierUnderTest:
    """The public, audited way to verify, on a store and audit log of its own.

    Every verification in this file goes through :meth:`verify` (audited: what
    `attest verify` and `attest run` do) or :meth:`verify_unaudited` (the old warm
    figure only). Adapt this class, and nothing else, when the verifier's API changes.
    """

    def __init__(self, policy_path: Path, store_url: str, home: Path) -> None:
        from attest.audit.log import AuditLog
        from attest.policy import load_policy
        from attest.policy.trust import load_trust
        from attest.store import Store
        from attest.verify.verifier import Verifier

        policy = load_policy(policy_path)
        trust = load_trust(policy)
        self.store = Store.open(store_url)
        self.verifier = Verifier(policy, self.store, AuditLog.open(self.store, home),
                                 trust=trust)
        self.unaudited = Verifier.unaudited(policy, self.store, trust=trust)

    def verify(self, raw: bytes) -> tuple[bool, tuple[str, ...]]:
        decision = self.verifier.verify(raw)
        return decision.accepted, tuple(decision.reasons)

    def verify_unaudited(self, raw: bytes) -> tuple[bool, tuple[str, ...]]:
        decision = self.unaudited.verify(raw)
        return decision.accepted, tuple(decision.reasons)

    def close(self) -> None:
        self.store.close()


def bare_checks(raw: bytes) -> Callable[[], None]:
    """The cryptographic minimum for ``raw``: its three ECDSA P-256 verifications with
    `cryptography`, keys and DER signatures built now (outside any timing)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from attest.artifact import jws
    from attest.evidence.signatures import public_key
    from attest.evidence.structures import parse_public_tpm2b, parse_signature

    parsed = jws.parse(raw)
    evidence = parsed.claims.evidence
    ecdsa = ec.ECDSA(hashes.SHA256())

    def key(public: bytes) -> ec.EllipticCurvePublicKey:
        made = public_key(parse_public_tpm2b(public))
        if not isinstance(made, ec.EllipticCurvePublicKey):
            raise RuntimeError("the bench expects ECC P-256 keys")
        return made

    def der(r: bytes, s: bytes) -> bytes:
        return encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))

    signing_key, ak = key(evidence.key_public), key(evidence.ak_public)
    quote_sig = parse_signature(evidence.quote_signature)
    certify_sig = parse_signature(evidence.certify_signature)
    checks = (
        (signing_key, der(parsed.signature[:32], parsed.signature[32:]), parsed.signing_input),
        (ak, der(quote_sig.r, quote_sig.s), evidence.quote),
        (ak, der(certify_sig.r, certify_sig.s), evidence.certify),
    )

    def run() -> None:
        for public, signature, message in checks:
            public.verify(signature, message, ecdsa)
    return run


# -- hosts -------------------------------------------------------------------------------

@dataclass
class Host:
    name: str
    sim: Any  # attest.simulator.Simulator
    home: Path
    tcti: str = ""

    @contextmanager
    def tpm(self) -> Iterator[Any]:
        from attest.tpm.device import open_tpm

        with open_tpm(self.tcti) as tpm:
            yield tpm


@dataclass
class Rig:
    """Hosts, the verifier's home and store on disk, and the policy that trusts them."""

    workdir: Path
    hosts: list[Host] = field(default_factory=list)
    started: list[Any] = field(default_factory=list)

    @property
    def verifier_home(self) -> Path:
        return self.workdir / "verifier"

    @property
    def store_url(self) -> str:
        from attest.store import default_url

        return default_url(self.verifier_home)

    @property
    def policy_path(self) -> Path:
        return self.workdir / "policy.yaml"

    def stop(self) -> None:
        with signals_deferred():
            for sim in self.started:
                with suppress(Exception):
                    sim.stop()
            shutil.rmtree(self.workdir, ignore_errors=True)


def start_hosts(rig: Rig, names: Sequence[str]) -> list[Host]:
    """Provision and start one swtpm per name (in parallel: swtpm_setup is a process),
    then provision each host's identity and create its PCR-bound key."""
    from attest.evidence.pcrs import PCRSelection
    from attest.simulator import Simulator
    from attest.tpm.hierarchy import provision
    from attest.tpm.keys import DEFAULT_SEALED_PCRS, create_key

    hosts = [Host(name, Simulator(rig.workdir / name / "swtpm"), rig.workdir / name / "home")
             for name in names]
    progress(f"provisioning {len(hosts)} swtpm states...")
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        list(pool.map(lambda h: h.sim.provision(), hosts))
    for host in hosts:
        rig.started.append(host.sim)
        host.tcti, _ = host.sim.start()
        with host.tpm() as tpm:
            provision(tpm, host.home)
            create_key(tpm, host.home, "default", PCRSelection.parse(DEFAULT_SEALED_PCRS))
    rig.hosts += hosts
    return hosts


def seed(host: Host, records: int) -> None:
    """The host's boot: ``records`` commands measured (as `attest measure command`)."""
    from attest.host.runtime.log import DEFAULT_RUNTIME_PCR, measure
    from attest.host.runtime.subjects import command_content
    from attest.tpm.pcr import active_banks

    with host.tpm() as tpm:
        banks = active_banks(tpm)
        for n in range(records):
            program = SEED_PROGRAMS[n % len(SEED_PROGRAMS)]
            measure(tpm, host.home, DEFAULT_RUNTIME_PCR, command_content([program], banks))


def make_artifact(tpm: Any, host: Host, policy: Any) -> bytes:
    """One artifact as `attest run -- /bin/true` makes it: seal, measure, issue."""
    from attest.host.run import prepare

    made = prepare(tpm, host.home, list(ARGV), subject="bench", key_name="default",
                   nonce=None, ttl=TTL_S, policy_id=policy.id, policy_digest=policy.digest)
    made.executable.close()
    return made.artifact


def write_policy(rig: Rig, ek_roots: Sequence[Path], *, single_use: bool = True,
                 path: Path | None = None) -> Any:
    """What `attest policy init --from-host --enrollment store` writes for the first host
    (every host is sealed to the same fresh PCRs and measures the same programs), with
    every host's EK root, single use, and ages that allow pre-made artifacts."""
    from attest.eventlog.cel import parse_cel
    from attest.host.runtime.log import DEFAULT_RUNTIME_PCR, RuntimeLog
    from attest.host.runtime.subjects import measured_executables
    from attest.policy import NonceMode, load_policy, render_policy
    from attest.tpm import keys as signing

    host = rig.hosts[0]
    key = signing.load_key(host.home, "default")
    records = parse_cel(RuntimeLog(host.home).path.read_bytes()).records
    reference: dict[str, list[bytes]] = {}
    for record in records:
        name, measured = record.content.get("name"), record.content.get("digest")
        if isinstance(name, str) and isinstance(measured, dict) and "sha256" in measured:
            digest = bytes.fromhex(measured["sha256"])
            if digest not in reference.setdefault(name, []):
                reference[name].append(digest)
    text = render_policy(
        policy_id="bench-stream",
        sealed_values={i: v for (b, i), v in key.sealed_values.items() if b == "sha256"},
        bank="sha256", runtime_pcr=DEFAULT_RUNTIME_PCR, ek_roots=[str(p) for p in ek_roots],
        runtime_reference=reference, executables=measured_executables(records),
        nonce=NonceMode.OPTIONAL, max_age=MAX_AGE_S, max_lifetime=TTL_S,
        single_use=single_use)
    path = path or rig.policy_path
    path.write_text(text)
    return load_policy(path)


def _ek_roots(hosts: Sequence[Host]) -> list[Path]:
    """Each swtpm's local CA: its root and the intermediate that signs EK certificates."""
    return [p for h in hosts for p in (h.sim.root_ca_cert, h.sim.intermediate_ca_cert)]


def enroll(rig: Rig, hosts: Sequence[Host]) -> None:
    """Each host's AK in the verifier's store, logged and sealed as `attest enroll` does
    (the library call it makes; the credential activation before it is left out)."""
    from attest.audit.hooks import enroll_logged
    from attest.audit.log import AuditLog
    from attest.evidence.ekcert import ek_id
    from attest.evidence.signatures import public_key
    from attest.evidence.structures import parse_public_tpm2b
    from attest.reasons import Reason
    from attest.store import Store
    from attest.tpm.hierarchy import load_identity

    rig.verifier_home.mkdir(parents=True, exist_ok=True)
    store = Store.open(rig.store_url)
    try:
        log = AuditLog.open(store, rig.verifier_home)
        for host in hosts:
            identity = load_identity(host.home)
            ek = next(e for e in identity.eks if e.kind == "rsa")
            enroll_logged(store, log, host.name, identity.ak_name, identity.ak_public,
                          identity.ak_qualified_name, ek.certificate,
                          ek=ek_id(public_key(parse_public_tpm2b(ek.public),
                                              Reason.EK_CHAIN_INVALID)),
                          now=int(time.time()))
    finally:
        store.close()


# -- timed callers in worker processes ----------------------------------------------------

@dataclass(frozen=True)
class Run:
    """One timed run: µs per verification (wall / count), per-call latencies (µs)."""

    label: str
    callers: int
    count: int
    wall_us: float
    latencies_us: tuple[float, ...]
    denied: tuple[str, ...]

    @property
    def per_verification_us(self) -> float:
        return self.wall_us / self.count

    @property
    def per_second(self) -> float:
        return self.count * 1e6 / self.wall_us


def run_callers(rig: Rig, mode: str, layout: tuple[int, int], artifacts: Sequence[bytes],
                warmups: Sequence[bytes], label: str) -> Run:
    """``artifacts`` verified (mode ``audited``) or checked bare (``bare``) by ``callers``
    callers in ``processes`` worker processes, started and warmed before the clock starts."""
    callers, processes = layout
    threads = callers // processes
    spec_dir = Path(tempfile.mkdtemp(prefix="spec-", dir=rig.workdir))
    workers: list[subprocess.Popen[str]] = []
    try:
        for n in range(processes):
            mine = artifacts[n::processes]
            warm = warmups[n::processes] if mode == "audited" else mine[:WARMUP]
            spec = {"mode": mode, "threads": threads, "policy": str(rig.policy_path),
                    "store": rig.store_url, "home": str(rig.verifier_home)}
            path = spec_dir / f"{n}.json"
            path.write_text(json.dumps({**spec, "artifacts": [
                base64.b64encode(a).decode() for a in mine], "warmup": [
                base64.b64encode(a).decode() for a in warm]}))
            workers.append(subprocess.Popen(  # this file, by the running python
                [sys.executable, str(Path(__file__).resolve()), "--worker", str(path)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        for worker in workers:  # each says "ready" once warm
            assert worker.stdout is not None and worker.stdin is not None  # noqa: S101
            line = worker.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"a {mode} worker did not start: {line!r}")
        for worker in workers:
            assert worker.stdin is not None  # noqa: S101 - PIPE
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = []
        for worker in workers:
            out, _ = worker.communicate(timeout=WORKER_TIMEOUT_S)
            if worker.returncode != 0:
                raise RuntimeError(f"a {mode} worker failed (exit {worker.returncode})")
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        shutil.rmtree(spec_dir, ignore_errors=True)
    start = min(r["start_ns"] for r in results)
    end = max(r["end_ns"] for r in results)
    latencies = tuple(x / 1e3 for r in results for x in r["latencies_ns"])
    denied = tuple(d for r in results for d in r["denied"])
    return Run(label, callers, len(latencies), (end - start) / 1e3, latencies, denied)


def worker_main(spec_path: Path) -> int:
    """A worker process: warm up, say ready, wait for go, verify its share with its
    threads, print the timings as one JSON line."""
    spec = json.loads(spec_path.read_text())
    artifacts = [base64.b64decode(a) for a in spec["artifacts"]]
    denied: list[str] = []
    verifier: VerifierUnderTest | None = None
    if spec["mode"] == "audited":
        verifier = VerifierUnderTest(Path(spec["policy"]), spec["store"], Path(spec["home"]))
        for raw in spec["warmup"]:
            ok, reasons = verifier.verify(base64.b64decode(raw))
            if not ok:
                denied.append("warm-up: " + ",".join(reasons))
        audited = verifier
        calls: list[Callable[[], object]] = [
            functools.partial(_checked, audited, raw, denied) for raw in artifacts]
    else:
        calls = [bare_checks(raw) for raw in artifacts]
        for raw in spec["warmup"]:
            bare_checks(base64.b64decode(raw))()
    threads = int(spec["threads"])
    lock = threading.Lock()
    queue = iter(calls)
    latencies: list[int] = []
    marks: list[int] = []
    barrier = threading.Barrier(threads + 1)

    def caller() -> None:
        mine: list[int] = []
        barrier.wait()
        marks.append(time.monotonic_ns())
        while True:
            with lock:
                call = next(queue, None)
            if call is None:
                break
            began = time.perf_counter_ns()
            call()
            mine.append(time.perf_counter_ns() - began)
        marks.append(time.monotonic_ns())
        with lock:
            latencies.extend(mine)

    pool = [threading.Thread(target=caller) for _ in range(threads)]
    for thread in pool:
        thread.start()
    print("ready", flush=True)
    sys.stdin.readline()
    barrier.wait()
    for thread in pool:
        thread.join()
    if verifier is not None:
        verifier.close()
    print(json.dumps({"start_ns": min(marks), "end_ns": max(marks), "latencies_ns": latencies,
                      "denied": denied[:20]}), flush=True)
    return 0


def _checked(verifier: VerifierUnderTest, raw: bytes, denied: list[str]) -> None:
    ok, reasons = verifier.verify(raw)
    if not ok:
        denied.append(",".join(reasons))


# -- the stream ---------------------------------------------------------------------------

def deal(per_host: list[list[bytes]], shares: int) -> list[list[bytes]]:
    """Each host's artifacts dealt in turn to ``shares`` piles, each pile round-robin
    across hosts: every pile sees the same spread of log lengths."""
    piles: list[list[bytes]] = [[] for _ in range(shares)]
    length = min(len(made) for made in per_host)
    for k in range(length):
        for made in per_host:
            piles[k % shares].append(made[k])
    return piles


def stream(quick: bool) -> Figures:
    from attest.artifact import jws
    from attest.eventlog.cel import parse_cel

    figures = Figures()
    per_share = QUICK_PER_SHARE if quick else PER_SHARE
    rig = Rig(Path(tempfile.mkdtemp(prefix="attest-bench-stream-")))
    try:
        hosts = start_hosts(rig, [f"host-{n + 1}" for n in range(HOSTS)])
        progress(f"seeding {SEED_RECORDS} measurements per host, writing the policy, "
                 "enrolling...")
        for host in hosts:
            seed(host, SEED_RECORDS)
        # The policy must know the record `attest run` writes: one artifact on host 1 first.
        with hosts[0].tpm() as tpm:
            make_artifact(tpm, hosts[0], _IdOnly())
        policy = write_policy(rig, _ek_roots(hosts))
        enroll(rig, hosts)
        total = len(SHARES) * per_share + WARM_PER_HOST
        progress(f"issuing {total} artifacts on each of {len(hosts)} hosts, each after a "
                 "measurement (attest run's path)...")
        per_host: list[list[bytes]] = []
        issue_ns: list[int] = []
        for host in hosts:
            made: list[bytes] = []
            with host.tpm() as tpm:
                for _ in range(total):
                    began = time.perf_counter_ns()
                    made.append(make_artifact(tpm, host, policy))
                    issue_ns.append(time.perf_counter_ns() - began)
            per_host.append(made)
        warm, = deal([made[:WARM_PER_HOST] for made in per_host], 1)
        piles = deal([made[WARM_PER_HOST:] for made in per_host], len(SHARES))
        sizes = [len(raw) for pile in piles for raw in pile]
        records = [len(parse_cel(jws.parse(raw).claims.evidence.runtime_log).records)
                   for raw in piles[0]]
        figures.rows.append(Row(
            "issuance", "prepare() per artifact: seal, measure, issue (median)",
            statistics.median(issue_ns) / 1e6, "ms",
            note=f"p95 {p95(issue_ns) / 1e6:.2f} ms; {len(issue_ns)} artifacts on "
            f"{len(hosts)} hosts; artifact {min(sizes):,}-{max(sizes):,} B; "
            f"{min(records)}-{max(records)} runtime records"))

        runs = _stream_runs(figures, rig, piles, warm)
        # The runs' workers take the first warm-up artifacts; the breakdown, the last.
        spare = warm[WARMUP * sum(p for _, p in LAYOUTS):]
        _breakdown(figures, rig, piles[-1], spare, runs[("audited", 1, 1)])
        _warm_multi_use(figures, rig, runs[("bare", 1, 1)])
    finally:
        progress("stopping swtpm...")
        rig.stop()
    figures.notes += [
        f"stream: {HOSTS} swtpm hosts, each with {SEED_RECORDS} boot measurements, enrolled "
        "in one SQLite store (WAL, synchronous=FULL) on disk; each artifact made by "
        "attest.host.run.prepare (measure /bin/true, then issue), so each carries a log "
        "one record longer than the host's last; artifacts dealt round-robin across hosts; "
        "each verified once through the audited entry point (decision in the audit log).",
        "callers: threads sharing one verifier, store and audit log in a worker process (the "
        "headline: 8 threads, 1 process; beside it 2 processes x 4 threads, one per core as "
        "uvicorn --workers, on the same SQLite file); each worker is warmed on artifacts of "
        "its own first; us per verification = wall time over all workers / count; x bare = "
        "that against the bare checks run by the same callers over the same artifacts.",
        "bare: cryptography's ECDSA P-256 verify of the JWS signing input, the quote and the "
        "key certification, keys and DER signatures built before the clock starts; same "
        "artifacts, same callers, same run.",
        f"Keylime (issue 12): once it knows an agent it appraises only new IMA entries, "
        f"{KEYLIME_STEADY_MS[0]}-{KEYLIME_STEADY_MS[1]} ms per quote at any log length.",
    ]
    return figures


def _stream_runs(figures: Figures, rig: Rig, piles: list[list[bytes]],
                 warm: list[bytes]) -> dict[tuple[str, int, int], Run]:
    """The timed runs, audited and bare, with 1 and 8 callers, and their rows."""
    runs: dict[tuple[str, int, int], Run] = {}
    for share, (callers, processes) in zip(piles, LAYOUTS, strict=False):
        mine, warm = warm[:WARMUP * processes], warm[WARMUP * processes:]
        for mode in ("audited", "bare"):
            progress(f"{mode}: {len(share)} artifacts, {callers} caller(s) in {processes} "
                     "process(es)...")
            run = run_callers(rig, mode, (callers, processes), share, mine, mode)
            if run.denied:
                raise RuntimeError(f"stream verifications denied: {run.denied[0]}")
            runs[(mode, callers, processes)] = run
    for callers, processes in LAYOUTS:
        audited = runs[("audited", callers, processes)]
        bare = runs[("bare", callers, processes)]
        ratio = audited.per_verification_us / bare.per_verification_us
        medians = statistics.median(audited.latencies_us) / statistics.median(bare.latencies_us)
        target, label = "-", "audited, single use, store on disk"
        if (callers, processes) == HEADLINE:
            verdict = figures.target(
                f"stream, {callers} callers, on disk <= {RATIO_TARGET}x bare",
                f"{ratio:.2f}x", ratio <= RATIO_TARGET)
            target, label = f"<= {RATIO_TARGET}x: {verdict}", label + " (HEADLINE)"
        figure = f"stream, {callers} caller(s), {processes} process(es)"
        figures.rows += [
            Row(figure, "bare: JWS + quote + certify ECDSA", bare.per_verification_us, "us",
                note=f"{bare.per_second:,.0f}/s; per call median "
                f"{statistics.median(bare.latencies_us):.0f} us, p95 "
                f"{p95(bare.latencies_us):.0f} us; {callers // processes} thread(s) each"),
            Row(figure, label, audited.per_verification_us, "us", target,
                f"{audited.per_second:,.0f}/s; {ratio:.2f}x bare (medians: "
                f"{medians:.2f}x); "
                f"per call median {statistics.median(audited.latencies_us):.0f} us, p95 "
                f"{p95(audited.latencies_us):.0f} us; {audited.count} artifacts"),
        ]
    return runs


class _IdOnly:
    """Before the policy exists: the artifact that teaches it `attest run`'s record."""

    id = "bench-stream"
    digest = None


def _breakdown(figures: Figures, rig: Rig, artifacts: Sequence[bytes],
               warmups: Sequence[bytes], plain: Run) -> None:
    """Phases of one audited verification, 1 caller, from wrapped functions; the
    appraisal is what the uninstrumented median leaves once the wrapped phases are
    taken out, so the wrappers' own cost is not charged to it."""
    import attest.artifact.jws as jws_module

    progress(f"phase breakdown over {len(artifacts)} artifacts...")
    verifier = VerifierUnderTest(rig.policy_path, rig.store_url, rig.verifier_home)
    for raw in warmups:  # first calls: imports, caches; untimed
        verifier.verify(raw)
    totals: dict[str, list[int]] = {}
    restore: list[Callable[[], None]] = []

    def timed(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter_ns()
            try:
                return fn(*args, **kwargs)
            finally:
                totals.setdefault(label, []).append(time.perf_counter_ns() - began)
        return wrapper

    def wrap_attr(owner: Any, name: str, label: str, instance: bool) -> None:
        original = getattr(owner, name, None)
        if original is None:
            return  # renamed since: left out of the breakdown
        if instance:
            object.__setattr__(owner, name, timed(label, original))
            restore.append(lambda: object.__delattr__(owner, name))
        else:
            setattr(owner, name, timed(label, original))
            restore.append(lambda: setattr(owner, name, original))

    import attest.verify.appraisal as appraisal_module
    import attest.verify.verifier as shell_module

    # The shell's steps (attest.verify.verifier), and the one plain function inside the
    # appraisal worth its own row; the other checks are generators, timed as a whole.
    phases = (
        (jws_module, "parse", "parse (jws.parse: split, base64url, JSON, claims)", False),
        (shell_module, "read_snapshot", "snapshot read (one read transaction)", False),
        (verifier.verifier, "_seals", "seal checks of the snapshot's rows (log key MACs)",
         True),
        (shell_module, "appraise", "appraisal (pure: signatures, EK chain, quote, logs, "
         "times, state, rules)", False),
        (appraisal_module._Appraiser, "_log_view",
         "  of which: runtime log (parse, replay, appraise)", False),
        (verifier.verifier, "_accept", "accept + audit + commit (one write transaction, "
         "fsync)", True),
    )
    for owner, name, label, instance in phases:
        wrap_attr(owner, name, label, instance)
    whole: list[int] = []
    try:
        for raw in artifacts:
            began = time.perf_counter_ns()
            ok, reasons = verifier.verify(raw)
            whole.append(time.perf_counter_ns() - began)
            if not ok:
                raise RuntimeError(f"breakdown verification denied: {reasons}")
    finally:
        for undo in reversed(restore):
            undo()
        verifier.close()
    # In the order the phases are declared (a nested phase finishes before its parent).
    order = {label: n for n, (_, _, label, _) in enumerate(phases)}
    totals = dict(sorted(totals.items(), key=lambda item: order.get(item[0], len(order))))
    _breakdown_table(figures, totals, whole, _wrapper_ns(timed), plain)


def _breakdown_table(figures: Figures, totals: dict[str, list[int]], whole: list[int],
                     overhead: float, plain: Run) -> None:
    calls = len(whole)
    totals.pop("(calibration)", None)
    wrapped_calls = sum(len(samples) for samples in totals.values()) / calls
    instrumented = sum(whole) / calls / 1e3
    corrected = instrumented - wrapped_calls * overhead / 1e3
    rows: list[tuple[str, ...]] = []
    outside = 0.0
    for label, samples in totals.items():
        mean = sum(samples) / calls / 1e3
        if not label.startswith("  "):
            outside += mean
        rows.append((label, f"{mean:.0f}", f"{100 * mean / corrected:.0f} %"))
    appraisal = corrected - outside
    at = len(rows)  # after the shell's own steps
    rows.insert(at, ("the rest of the shell (between its steps: query, decision objects)",
                     f"{appraisal:.0f}", f"{100 * appraisal / corrected:.0f} %"))
    rows += [
        ("one verification (instrumented mean - wrapper cost)", f"{corrected:.0f}", "100 %"),
        ("the same run's uninstrumented counterpart (1-caller stream, mean)",
         f"{statistics.fmean(plain.latencies_us):.0f}", "-"),
    ]
    figures.tables.append(("one audited verification by phase (stream, 1 caller, mean us)",
                           ("phase", "us", "share"), rows, frozenset({0})))
    figures.notes.append(
        f"breakdown: each phase timed by a wrapper (its own cost, {overhead:.0f} ns a call "
        f"measured on a no-op, x {wrapped_calls:.1f} calls per verification, taken off the "
        "total); the appraisal is what the corrected total leaves once the outer phases are "
        "taken out, so no wrapper cost is charged to it. Indented rows are inside it.")


def _wrapper_ns(timed: Callable[[str, Callable[..., Any]], Callable[..., Any]]) -> float:
    """What one timing wrapper adds to a call, in ns (median of 20 rounds of 1,000)."""
    def noop() -> None:
        return None

    wrapped = timed("(calibration)", noop)
    rounds: list[float] = []
    for _ in range(20):
        began = time.perf_counter_ns()
        for _ in range(1000):
            noop()
        plain = time.perf_counter_ns() - began
        began = time.perf_counter_ns()
        for _ in range(1000):
            wrapped()
        rounds.append((time.perf_counter_ns() - began - plain) / 1000)
    return max(0.0, statistics.median(rounds))


def _warm_multi_use(figures: Figures, rig: Rig, bare: Run) -> None:
    """The old headline, kept as a labelled secondary row: one artifact verified again
    and again (single use off, unaudited, every cache warm, nothing inserted)."""
    path = rig.workdir / "policy-multi.yaml"
    policy = write_policy(rig, _ek_roots(rig.hosts), single_use=False,
                          path=path)
    with rig.hosts[0].tpm() as tpm:
        raw = make_artifact(tpm, rig.hosts[0], policy)
    verifier = VerifierUnderTest(path, rig.store_url, rig.verifier_home)
    try:
        ok, reasons = verifier.verify_unaudited(raw)
        if not ok:
            raise RuntimeError(f"the warm artifact was denied: {reasons}")
        samples: list[int] = []
        for _ in range(300):
            began = time.perf_counter_ns()
            verifier.verify_unaudited(raw)
            samples.append(time.perf_counter_ns() - began)
    finally:
        verifier.close()
    median = statistics.median(samples) / 1e3
    per_bare = statistics.median(bare.latencies_us)
    figures.rows.append(Row(
        "secondary (old headline)", "warm multi-use: one artifact again, unaudited",
        median, "us", note=f"{median / per_bare:.2f}x bare; single_use false, store on "
        "disk, every cache warm, nothing inserted: a case no user has"))


# -- log growth ----------------------------------------------------------------------------

def _bulk_measure(host: Host, count: int, template: Mapping[str, Any]) -> None:
    """``count`` more records like ``template`` in the host's runtime log, each extended
    into the runtime PCR in order, as `attest measure` would (one fsync at the end)."""
    from attest.eventlog.cel import attest_record, encode_record
    from attest.host.runtime.log import DEFAULT_RUNTIME_PCR, RuntimeLog
    from attest.tpm.pcr import active_banks, extend

    log = RuntimeLog(host.home)
    with host.tpm() as tpm, log.locked():
        banks = active_banks(tpm)
        first = log.read().next_recnum()
        with open(log.path, "ab") as handle:
            for n in range(first, first + count):
                record = attest_record(n, DEFAULT_RUNTIME_PCR, dict(template), banks)
                handle.write(encode_record(record))
                extend(tpm, DEFAULT_RUNTIME_PCR, dict(record.digests))
            handle.flush()
            os.fsync(handle.fileno())


def loggrowth(quick: bool) -> Figures:
    from attest.eventlog.cel import parse_cel
    from attest.host.runtime.log import RuntimeLog

    figures = Figures()
    lengths = QUICK_GROWTH_LENGTHS if quick else GROWTH_LENGTHS
    count = QUICK_GROWTH_ARTIFACTS if quick else GROWTH_ARTIFACTS
    rig = Rig(Path(tempfile.mkdtemp(prefix="attest-bench-growth-")))
    try:
        host, = start_hosts(rig, ["growth-1"])
        seed(host, SEED_RECORDS - 1 - WARMUP)
        with host.tpm() as tpm:
            make_artifact(tpm, host, _IdOnly())  # attest run's record, for the policy
        policy = write_policy(rig, _ek_roots([host]))
        enroll(rig, [host])
        template = parse_cel(RuntimeLog(host.home).path.read_bytes()).records[-1].content
        verifier = VerifierUnderTest(rig.policy_path, rig.store_url, rig.verifier_home)
        cost: dict[int, tuple[float, int, int]] = {}
        try:
            with host.tpm() as tpm:  # first calls pay imports and the EK check: untimed
                warm = [make_artifact(tpm, host, policy) for _ in range(WARMUP)]
            for raw in warm:
                ok, reasons = verifier.verify(raw)
                if not ok:
                    raise RuntimeError(f"log growth: a warm-up artifact was denied: {reasons}")
            for length in lengths:
                have = len(RuntimeLog(host.home).read().records)
                if length > have:
                    progress(f"extending the boot to {length:,} records...")
                    _bulk_measure(host, length - have - 1, template)
                cost[length] = _growth_point(host, policy, verifier, count, length, figures)
            if quick:
                figures.notes.append(f"the {BIG_BOOT:,}-record boot is skipped with --quick")
            else:
                have = len(RuntimeLog(host.home).read().records)
                progress(f"extending the boot to {BIG_BOOT:,} records...")
                _bulk_measure(host, BIG_BOOT - have - 1, template)
                _big_boot(host, policy, verifier, figures)
        finally:
            verifier.close()
    finally:
        progress("stopping swtpm...")
        rig.stop()
    low, high = lengths
    ratio = cost[high][0] / cost[low][0]
    verdict = figures.target(f"log growth: verification at {high:,} records <= "
                             f"{GROWTH_TARGET}x at {low}", f"{ratio:.1f}x",
                             ratio <= GROWTH_TARGET)
    figures.rows.insert(len(lengths), Row(
        "log growth", f"cost at {high:,} / at {low} records", ratio, "x",
        f"<= {GROWTH_TARGET}x: {verdict}", f"artifact {cost[high][1]:,} B vs {cost[low][1]:,} B "
        f"({cost[high][1] / cost[low][1]:.0f}x)"))
    figures.notes.append(
        "loggrowth: one host, its boot extended by attest's CEL writer and PCR extend (no "
        "per-record fsync or reconcile); at each length, artifacts made by prepare() (a "
        "measurement, then issuance: each log one record longer), each verified once, "
        "audited, single use, store on disk, 1 caller, one verifier that has seen the "
        "host's earlier artifacts (as a running service would).")
    return figures


def _growth_point(host: Host, policy: Any, verifier: VerifierUnderTest, count: int,
                  length: int, figures: Figures) -> tuple[float, int, int]:
    made: list[bytes] = []
    issued: list[int] = []
    with host.tpm() as tpm:
        for _ in range(count):
            began = time.perf_counter_ns()
            made.append(make_artifact(tpm, host, policy))
            issued.append(time.perf_counter_ns() - began)
    samples: list[int] = []
    for raw in made:
        began = time.perf_counter_ns()
        ok, reasons = verifier.verify(raw)
        samples.append(time.perf_counter_ns() - began)
        if not ok:
            raise RuntimeError(f"log growth: an artifact at {length} records was denied: "
                               f"{reasons}")
    median = statistics.median(samples) / 1e3
    size = max(len(raw) for raw in made)
    figures.rows.append(Row(
        "log growth", f"verification at {length:,} records since boot (median of {count})",
        median, "us", note=f"artifact {size:,} B; issuance {statistics.median(issued) / 1e6:.1f}"
        " ms"))
    return median, size, count


def _big_boot(host: Host, policy: Any, verifier: VerifierUnderTest, figures: Figures) -> None:
    accepted = 0
    reasons_seen: set[str] = set()
    sizes: list[int] = []
    issue_problem = ""
    with host.tpm() as tpm:
        made: list[bytes] = []
        for _ in range(BIG_ARTIFACTS):
            try:
                made.append(make_artifact(tpm, host, policy))
            except Exception as exc:  # noqa: BLE001 - reported as the figure, not raised
                issue_problem = f"issuance failed: {type(exc).__name__}: {exc}"[:200]
                break
    for raw in made:
        sizes.append(len(raw))
        ok, reasons = verifier.verify(raw)
        accepted += ok
        reasons_seen.update(reasons)
    met = accepted == BIG_ARTIFACTS
    verdict = figures.target(f"a {BIG_BOOT:,}-measurement boot: every artifact accepted",
                             f"{accepted}/{BIG_ARTIFACTS} accepted", met)
    note = issue_problem or (f"artifact {max(sizes):,} B" + (
        f"; denied: {', '.join(sorted(reasons_seen))}" if reasons_seen else ""))
    figures.rows.append(Row("log growth", f"{BIG_BOOT:,}-record boot: artifacts accepted",
                            accepted, f"of {BIG_ARTIFACTS}", f"all: {verdict}", note))


SECTIONS: dict[str, Callable[[bool], Figures]] = {"stream": stream, "loggrowth": loggrowth}


# -- standalone -----------------------------------------------------------------------------

def render(name: str, figures: Figures) -> list[str]:
    def align(rows: list[tuple[str, ...]], left: frozenset[int]) -> list[str]:
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        return ["  ".join(c.ljust(w) if i in left else c.rjust(w)
                          for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()
                for row in rows]

    lines = [f"== {name} =="]
    rows: list[tuple[str, ...]] = [("figure", "measure", "value", "target", "note")]
    rows += [(r.figure, r.measure, "-" if r.value is None else f"{r.value:,.1f} {r.unit}",
              r.target or "-", r.note) for r in figures.rows]
    lines += align(rows, frozenset({0, 1, 3, 4}))
    for title, header, table, left in figures.tables:
        lines += ["", f"-- {title} --", *align([header, *table], left)]
    lines += ["", *(f"{verdict}: {what} (measured {measured})"
                    for what, measured, verdict in figures.targets)]
    lines += ["", *(f"note: {note}" for note in figures.notes), ""]
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        return worker_main(args.worker)
    for name in args.only or list(SECTIONS):
        print("\n".join(render(name, SECTIONS[name](args.quick))), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TSS2_LOG", "all+NONE")
    sys.exit(main(sys.argv[1:]))
