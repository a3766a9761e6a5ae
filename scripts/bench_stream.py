#!/usr/bin/env python3
"""Issue 12's verification figures: a realistic stream, log growth, a 100,000-record boot.

Called by scripts/bench (sections ``stream`` and ``loggrowth``); also runnable alone
(`.venv/bin/python scripts/bench_stream.py [--only stream|loggrowth] [--quick]`).
Progress goes to stderr. Nothing asserts on timings.

``stream``: HOSTS swtpm hosts, each provisioned, with a PCR-bound key, enrolled (logged
and sealed, as `attest enroll` does) in ONE verifier store on disk. Each host measures
before each artifact through :func:`attest.host.run.prepare` (the library path of
`attest run`: seal the executable, measure it, issue), so every artifact carries a
record the verifier has not seen, after the prefix of the host's runtime log that the
verifier acknowledged (see LAGS and :class:`Made`: the version the host's prefix
memory would pick is chosen when the call starts). All artifacts are made before
anything is timed, then verified once each (single use), round-robin across hosts,
through the audited entry point, by 1 caller and by 8, a log_prefix_unknown retried
with the whole log as `attest run` does. The bare signature checks (JWS ES256,
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

``loggrowth``: two hosts whose boots have 10 and 10,000 runtime records; artifacts of
each, alternately, through `attest run`'s steps (:func:`attest_run`) against a verifier
that has seen the host's earlier log (incremental) and, for comparison, whole logs to
a second verifier; their cost and size. Then the long host's boot reaches 100,000
records and goes through segments and incremental artifacts. The bulk records are
written by attest's CEL writer and extended into the PCR one by one, exactly as
`attest measure` would, without its per-record fsync and reconcile.

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
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

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
BREAKDOWN_WARMUPS = 4
TTL_S = 600
MAX_AGE_S = 3600
ARGV = ("/bin/true",)
SEED_PROGRAMS = ("/bin/true", "/bin/sh", "/bin/ls", "/bin/cat", "/bin/echo")
WORKER_TIMEOUT_S = 300
RATIO_TARGET = 2.5  # stream, 8 callers, on disk: x bare
GROWTH_TARGET = 1.3  # verification at 10,000 records / at 10
# The host's side: prepare() (attest run's measure + issue) at 10,000 records / at 10.
PREPARE_TARGET = 1.5
GROWTH_LENGTHS = (10, 10_000)
QUICK_GROWTH_LENGTHS = (10, 1_000)
BIG_BOOT = 100_000
GROWTH_ARTIFACTS = (15, 5)  # incremental, whole log: per length
GROWTH_SEED = 2  # boot records before the first artifacts: the first point is 10 records
SIZE_TOLERANCE = 0.02  # record numbers and counts gain digits: a few bytes
QUICK_GROWTH_ARTIFACTS = (5, 3)
BIG_ARTIFACTS = 2
# The name under which each host remembers what the bench's verifier acknowledged
# (attest.host.runtime.prefixes.PrefixMemory; `attest run` uses "store:<url>" or "url:<base>").
VERIFIER_KEY = "bench-verifier"
# A host sends from the latest prefix its verifier acknowledged (its prefix memory,
# written after each acceptance); under concurrency that lags. Artifacts are made before
# the clock starts, so each is made in several versions, sent from the prefix its host's
# artifact k - lag established for each lag here, and the caller sends the newest whose
# base the verifier has acknowledged when the call starts (what the host's memory would
# hold), or the whole log if none. The lags stay below the prefix table's slots
# (attest.store.prefixes.SLOTS = 16: a prefix of N records sits in slot N % 16 until
# the acceptance of one 16 records longer replaces it), so a base once acknowledged is
# still held.
LAGS = (1, 2, 4, 8)
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
        self.policy = policy
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

    def decide(self, raw: bytes) -> Any:
        """The audited decision itself (attest.decision.Decision): its facts say which
        prefix of the runtime log the verifier now holds."""
        return self.verifier.verify(raw)

    def segment_sender(self, ak_name: bytes) -> Callable[[Any, bytes], Any]:
        """What `attest run` hands prepare() to send a log too large for one artifact in
        segments (as attest.host.run.run_local builds it, under this verifier's seal)."""
        from attest.verify.segments import add_segment

        log = self.verifier.log

        def send(base: Any, segment: bytes) -> Any:
            return add_segment(self.policy, self.store, ak_name, base, segment,
                               int(time.time()),
                               sealed=None if log is None else log.sealed,
                               seal=None if log is None else log.sealed_prefix)
        return send

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
    """One artifact as `attest run -- /bin/true` makes it for a verifier it has never
    heard from: seal, measure, issue, the whole runtime log."""
    from attest.host.run import prepare

    made = prepare(tpm, host.home, list(ARGV), subject="bench", key_name="default",
                   nonce=None, ttl=TTL_S, policy_id=policy.id, policy_digest=policy.digest)
    made.executable.close()
    return made.artifact


@dataclass(frozen=True)
class Made:
    """One command's artifact as `attest run` sends it, in the versions a host could
    send: from one of its earlier artifacts' prefixes, or the whole log (what `attest
    run` sends after log_prefix_unknown)."""

    host: str
    count: int  # records in the host's log as made: the prefix an acceptance holds
    acknowledges: Any  # RuntimeLogBase of that prefix
    whole: bytes
    from_prefix: tuple[tuple[int, bytes], ...] = ()  # (base count, artifact), newest first
    issue_ns: int = 0  # prepare(): seal, measure, issue (the other versions left out)

    @property
    def raw(self) -> bytes:
        """The version a host whose verifier keeps up sends (newest base)."""
        return self.from_prefix[0][1] if self.from_prefix else self.whole

    def pick(self, acknowledged: Callable[[str, int], bool]) -> bytes:
        """What the host sends when ``acknowledged`` says which prefixes its verifier
        has acknowledged: the newest version sent from one of them, else the whole log."""
        return next((raw for count, raw in self.from_prefix
                     if acknowledged(self.host, count)), self.whole)


class Acknowledged:
    """The prefixes the verifier acknowledged, per host, as hosts' memories learn them:
    every count up to ``before`` (earlier runs, all accepted), and this run's."""

    def __init__(self, before: Mapping[str, int]) -> None:
        self.before = dict(before)
        self.lock = threading.Lock()
        self.now: dict[str, set[int]] = {}

    def __call__(self, host: str, count: int) -> bool:
        with self.lock:
            return count <= self.before.get(host, -1) or count in self.now.get(host, ())

    def add(self, host: str, count: int) -> None:
        with self.lock:
            self.now.setdefault(host, set()).add(count)


def current_prefix(host: Host) -> Any:
    """The host's whole runtime log as a prefix (count, digest): what the verifier says
    it holds (decision facts ``runtime_log``) once it accepts an artifact made now."""
    from attest.artifact.model import RuntimeLogBase
    from attest.eventlog import prefix as log_prefix
    from attest.host.runtime.log import RuntimeLog

    log = RuntimeLog(host.home)
    with log.locked():
        data = log.load()[0]
    count = len(log_prefix.records_of(data))
    return RuntimeLogBase(count, log_prefix.prefix_digest(data, count))


def make_from(tpm: Any, host: Host, policy: Any, bases: Sequence[Any]) -> Made:
    """One command's artifact made by prepare() for VERIFIER_KEY, the host's prefix memory
    set to ``bases[0]`` (None: nothing acknowledged), so it carries the records after it
    as `attest run` would send them; then the same request issued from each other base,
    and with the whole log (as attest.host.run._verified issues it for its retry)."""
    import dataclasses

    from attest.host.issue import issue
    from attest.host.run import prepare
    from attest.host.runtime.log import RuntimeLog
    from attest.host.runtime.prefixes import PrefixMemory

    memory = PrefixMemory(host.home)
    first = bases[0] if bases else None
    if first is None:
        memory.path.unlink(missing_ok=True)
    else:
        memory.put(VERIFIER_KEY, RuntimeLog(host.home).read_epoch(), first)
    began = time.perf_counter_ns()
    made = prepare(tpm, host.home, list(ARGV), subject="bench", key_name="default",
                   nonce=None, ttl=TTL_S, policy_id=policy.id, policy_digest=policy.digest,
                   verifier=VERIFIER_KEY)
    took = time.perf_counter_ns() - began
    try:
        if made.request.log_base != first:
            raise RuntimeError(f"{host.name} sent from {made.request.log_base}, not {first}")
        versions = [] if first is None else [(first.count, made.artifact)]
        for base in (*bases[1:], None):
            versions.append((-1 if base is None else base.count, issue(
                tpm, host.home, dataclasses.replace(made.request, log_base=base),
                int(time.time()))))
    finally:
        made.executable.close()
    prefix = current_prefix(host)
    return Made(host.name, prefix.count, prefix, versions[-1][1], tuple(versions[:-1]), took)


def make_chain(host: Host, policy: Any, count: int) -> list[Made]:
    """``count`` artifacts of one host in issuance order, artifact k in a version sent
    from the prefix of artifact k - lag for each of LAGS (those that exist) and whole."""
    made: list[Made] = []
    with host.tpm() as tpm:
        for k in range(count):
            made.append(make_from(tpm, host, policy, [made[k - lag].acknowledges
                                                      for lag in LAGS if k >= lag]))
    return made


def write_policy(rig: Rig, ek_roots: Sequence[Path], *, single_use: bool = True,
                 path: Path | None = None, nonce: Any = None) -> Any:
    """What `attest policy init --from-host --enrollment store` writes for the first host
    (every host is sealed to the same fresh PCRs and measures the same programs), with
    every host's EK root, single use, and ages that allow pre-made artifacts; ``nonce``
    (a NonceMode) optional by default."""
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
        nonce=nonce or NonceMode.OPTIONAL, max_age=MAX_AGE_S, max_lifetime=TTL_S,
        single_use=single_use)
    path = path or rig.policy_path
    path.write_text(text)
    return load_policy(path)


def _ek_roots(hosts: Sequence[Host]) -> list[Path]:
    """Each swtpm's local CA: its root and the intermediate that signs EK certificates."""
    return [p for h in hosts for p in (h.sim.root_ca_cert, h.sim.intermediate_ca_cert)]


def enroll(rig: Rig, hosts: Sequence[Host], home: Path | None = None) -> None:
    """Each host's AK in the verifier's store (the one at ``home``, if given), logged and
    sealed as `attest enroll` does (the library call it makes; the credential activation
    before it is left out)."""
    from attest.store import default_url

    home = home or rig.verifier_home
    home.mkdir(parents=True, exist_ok=True)
    enroll_into(default_url(home), home, hosts)


def enroll_into(store_url: str, home: Path, hosts: Sequence[Host]) -> None:
    """Each host's AK in the store at ``store_url`` (its audit log key in ``home``),
    logged as `attest enroll` does: what this bench and bench_service.py enroll with."""
    from attest.audit.hooks import enroll_logged
    from attest.audit.log import AuditLog
    from attest.evidence.ekcert import ek_id
    from attest.evidence.signatures import public_key
    from attest.evidence.structures import parse_public_tpm2b
    from attest.reasons import Reason
    from attest.store import Store
    from attest.tpm.hierarchy import load_identity

    store = Store.open(store_url)
    try:
        log = AuditLog.open(store, home)
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
    retries: int = 0  # log_prefix_unknown, then the whole-log artifact (in the call's time)
    lags: tuple[int | None, ...] = ()  # per call, the version sent (None: whole)

    def sent(self) -> str:
        """Which versions the callers sent: how far behind its host's log each base was."""
        seen = sorted({lag for lag in self.lags if lag is not None})
        parts = [f"{sum(lag == n for lag in self.lags)} from {n} back" for n in seen]
        whole = sum(lag is None for lag in self.lags)
        return ", ".join([*parts, f"{whole} whole"])

    @property
    def per_verification_us(self) -> float:
        return self.wall_us / self.count

    @property
    def per_second(self) -> float:
        return self.count * 1e6 / self.wall_us


def _made(item: Made | bytes) -> Made:
    """A bare artifact (tests) as a whole-log Made of no host."""
    return item if isinstance(item, Made) else Made("", -1, None, item)


def _encoded(items: Sequence[Made | bytes]) -> list[dict[str, Any]]:
    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()
    return [{"host": m.host, "count": m.count, "whole": b64(m.whole),
             "from_prefix": [[count, b64(raw)] for count, raw in m.from_prefix]}
            for m in map(_made, items)]


def _decoded(items: Sequence[Mapping[str, Any]]) -> list[Made]:
    return [Made(str(m["host"]), int(m["count"]), None, base64.b64decode(m["whole"]),
                 tuple((int(c), base64.b64decode(raw)) for c, raw in m["from_prefix"]))
            for m in items]


@dataclass(frozen=True)
class Sending:
    """How one command went: accepted?, the reasons, the version sent (records behind
    the host's log: its lag; None: the whole log), retried whole after
    log_prefix_unknown?"""

    accepted: bool
    reasons: tuple[str, ...]
    lag: int | None
    retried: bool


def verify_as_run(verifier: VerifierUnderTest, made: Made,
                  acknowledged: Acknowledged) -> Sending:
    """What `attest run` does with a verifier (attest.host.run._verified): the version
    the host's prefix memory picks; on log_prefix_unknown, once more with the whole log;
    an acceptance is acknowledged (the host remembers it)."""
    from attest.reasons import Reason

    raw = made.pick(acknowledged)
    base = next((count for count, version in made.from_prefix if version is raw), None)
    ok, reasons = verifier.verify(raw)
    retried = (not ok and base is not None
               and Reason.LOG_PREFIX_UNKNOWN.value in reasons)
    if retried:
        ok, reasons = verifier.verify(made.whole)
    if ok and made.host:
        acknowledged.add(made.host, made.count)
    return Sending(ok, reasons, None if base is None else made.count - base, retried)


def run_callers(rig: Rig, mode: str, layout: tuple[int, int],
                artifacts: Sequence[Made | bytes], warmups: Sequence[Made | bytes],
                label: str, acknowledged: Mapping[str, int] | None = None) -> Run:
    """``artifacts`` verified (mode ``audited``, as `attest run` does: see
    :func:`verify_as_run`; ``acknowledged``: per host, the count up to which earlier runs
    acknowledged every prefix) or checked bare (``bare``, the version a host whose
    verifier keeps up sends) by ``callers`` callers in ``processes`` worker processes,
    started and warmed before the clock starts. The queue is taken in order: a host's
    artifacts start verification in issuance order."""
    callers, processes = layout
    threads = callers // processes
    # Issuance leaves the hosts' files dirty in the page cache; written back during a
    # run, they would slow its fsyncs (untimed here, before the workers start).
    os.sync()
    spec_dir = Path(tempfile.mkdtemp(prefix="spec-", dir=rig.workdir))
    workers: list[subprocess.Popen[str]] = []
    try:
        for n in range(processes):
            mine = artifacts[n::processes]
            warm = warmups[n::processes] if mode == "audited" else mine[:WARMUP]
            spec = {"mode": mode, "threads": threads, "policy": str(rig.policy_path),
                    "store": rig.store_url, "home": str(rig.verifier_home),
                    "acknowledged": dict(acknowledged or {})}
            path = spec_dir / f"{n}.json"
            path.write_text(json.dumps({**spec, "artifacts": _encoded(mine),
                                        "warmup": _encoded(warm)}))
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
    lags = tuple(lag for r in results for lag in r["lags"])
    return Run(label, callers, len(latencies), (end - start) / 1e3, latencies, denied,
               sum(int(r["retries"]) for r in results), lags)


def worker_main(spec_path: Path) -> int:
    """A worker process: warm up, say ready, wait for go, verify its share with its
    threads, print the timings as one JSON line."""
    spec = json.loads(spec_path.read_text())
    artifacts = _decoded(spec["artifacts"])
    denied: list[str] = []
    sendings: list[Sending] = []
    verifier: VerifierUnderTest | None = None
    if spec["mode"] == "audited":
        verifier = VerifierUnderTest(Path(spec["policy"]), spec["store"], Path(spec["home"]))
        acknowledged = Acknowledged(spec["acknowledged"])
        for made in _decoded(spec["warmup"]):
            sending = verify_as_run(verifier, made, acknowledged)
            if not sending.accepted:
                denied.append("warm-up: " + ",".join(sending.reasons))
        audited = verifier
        calls: list[Callable[[], object]] = [
            functools.partial(_checked, audited, made, acknowledged, denied, sendings)
            for made in artifacts]
    else:
        calls = [bare_checks(made.raw) for made in artifacts]
        for made in _decoded(spec["warmup"]):
            bare_checks(made.raw)()
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
                      "denied": denied[:20], "retries": sum(s.retried for s in sendings),
                      "lags": [s.lag for s in sendings]}), flush=True)
    return 0


def _checked(verifier: VerifierUnderTest, made: Made, acknowledged: Acknowledged,
             denied: list[str], sendings: list[Sending]) -> None:
    sending = verify_as_run(verifier, made, acknowledged)
    sendings.append(sending)  # list.append is atomic: the callers share the list
    if not sending.accepted:
        denied.append(",".join(sending.reasons))


# -- the stream ---------------------------------------------------------------------------

def schedule(per_host: Sequence[Sequence[T]],
             plan: Sequence[tuple[int, int]]) -> list[tuple[list[T], list[T]]]:
    """The verification order: for each (warm-ups, rounds) of ``plan``, one artifact of
    each of the first ``warm-ups`` hosts, then ``rounds`` rounds across all hosts; each
    host's artifacts taken in issuance order, so the plan's batches, verified one after
    the other, verify each host's artifacts in the order they were made."""
    taken = [iter(made) for made in per_host]
    batches: list[tuple[list[T], list[T]]] = []
    for warmups, rounds in plan:
        warm = [next(taken[h]) for h in range(warmups)]
        batches.append((warm, [next(mine) for _ in range(rounds) for mine in taken]))
    return batches


def _plan(per_share: int) -> list[tuple[int, int]]:
    """Each audited run's warm-ups (WARMUP per worker process) and share, in the order
    they run, then the breakdown's."""
    return [*((WARMUP * processes, per_share) for _, processes in LAYOUTS),
            (BREAKDOWN_WARMUPS, per_share)]


def stream(quick: bool) -> Figures:
    from attest.artifact import jws
    from attest.eventlog.cel import parse_cel
    from attest.store.prefixes import SLOTS

    if not 0 < min(LAGS) <= max(LAGS) < SLOTS - 1:
        raise RuntimeError(f"LAGS {LAGS}: the prefixes sent from must outlive {SLOTS} slots")
    figures = Figures()
    per_share = QUICK_PER_SHARE if quick else PER_SHARE
    plan = _plan(per_share)
    if max(warm for warm, _ in plan) > HOSTS:
        raise RuntimeError("more warm-ups per run than hosts: one host twice in a batch")
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
        progress(f"issuing {len(plan) * per_share}+ artifacts on each of {len(hosts)} hosts, "
                 f"each after a measurement (attest run's path), sent from the prefix of "
                 f"each of the {LAGS} artifacts before it and whole...")
        per_host = [make_chain(host, policy, per_share * len(plan)
                               + sum(h < warm for warm, _ in plan))
                    for h, host in enumerate(hosts)]
        batches = schedule(per_host, plan)
        issue_ns = [m.issue_ns for made in per_host for m in made]
        timed = [m for _, share in batches for m in share]
        sizes = [len(raw) for m in timed for _, raw in m.from_prefix]
        carried = [len(parse_cel(jws.parse(raw).claims.evidence.runtime_log).records)
                   for m in timed for _, raw in m.from_prefix]
        whole_sizes = [len(m.whole) for m in timed]
        figures.rows.append(Row(
            "issuance", "prepare() per artifact: seal, measure, issue (median)",
            statistics.median(issue_ns) / 1e6, "ms",
            note=f"p95 {p95(issue_ns) / 1e6:.2f} ms; {len(issue_ns)} artifacts on "
            f"{len(hosts)} hosts; sent from a prefix: {min(sizes):,}-{max(sizes):,} B "
            f"carrying {min(carried)}-{max(carried)} runtime records; whole: "
            f"{min(whole_sizes):,}-{max(whole_sizes):,} B (logs of "
            f"{min(m.count for m in timed)}-{max(m.count for m in timed)} records)"))

        acknowledged: dict[str, int] = {}
        runs = _stream_runs(figures, rig, batches[:len(LAYOUTS)], acknowledged)
        _breakdown(figures, rig, *batches[-1], acknowledged, runs[("audited", 1, 1)])
        _warm_multi_use(figures, rig, runs[("bare", 1, 1)])
    finally:
        progress("stopping swtpm...")
        rig.stop()
    figures.notes += [
        f"stream: {HOSTS} swtpm hosts, each with {SEED_RECORDS} boot measurements, enrolled "
        "in one SQLite store (WAL, synchronous=FULL) on disk; each artifact made by "
        "attest.host.run.prepare (measure /bin/true, then issue), so each carries a record "
        "the verifier has not seen; queued round-robin across hosts, each verified once "
        "through the audited entry point (decision in the audit log).",
        "incremental logs: a host sends the records after the latest prefix its verifier "
        "acknowledged (attest run's prefix memory), which lags under concurrency. Artifacts "
        "are made before the clock starts, so each command's artifact is made by prepare() "
        f"sent from the prefix of the host's artifact k - n for each n in {LAGS} (those "
        "that exist), and with the whole log; the queue gives each host's artifacts in "
        "issuance order, and each caller sends the newest version whose base the verifier "
        "has acknowledged (accepted) when the call starts, else the whole log: what the "
        "host's memory would hold. A log_prefix_unknown would be retried with the whole "
        "log, as attest run does, counted and in the call's time. Every artifact ends "
        "accepted or the bench fails. The prefix table keeps 16 slots per AK, epoch and "
        "policy (record count mod 16): an acknowledged prefix less than 16 records back "
        "is still held.",
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


def _stream_runs(figures: Figures, rig: Rig, batches: list[tuple[list[Made], list[Made]]],
                 acknowledged: dict[str, int]) -> dict[tuple[str, int, int], Run]:
    """The timed runs, audited and bare, with 1 and 8 callers, and their rows;
    ``acknowledged`` (per host, the record count up to which every prefix was accepted)
    follows the runs."""
    runs: dict[tuple[str, int, int], Run] = {}
    for (mine, share), (callers, processes) in zip(batches, LAYOUTS, strict=True):
        for mode in ("audited", "bare"):
            progress(f"{mode}: {len(share)} artifacts, {callers} caller(s) in {processes} "
                     "process(es)...")
            run = run_callers(rig, mode, (callers, processes), share, mine, mode,
                              acknowledged)
            if run.denied:
                raise RuntimeError(f"stream verifications denied: {run.denied[0]}")
            runs[(mode, callers, processes)] = run
        acknowledged.update(_accepted_up_to(mine, share))
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
                f"{p95(audited.latencies_us):.0f} us; {audited.count} artifacts, all "
                f"accepted; sent {audited.sent()}; {audited.retries} retried whole after "
                "log_prefix_unknown"),
        ]
    return runs


def _accepted_up_to(*batches: Sequence[Made]) -> dict[str, int]:
    """Per host, the newest record count of the batches (all accepted, in order)."""
    newest: dict[str, int] = {}
    for made in (m for batch in batches for m in batch):
        newest[made.host] = max(newest.get(made.host, -1), made.count)
    return newest


class _IdOnly:
    """Before the policy exists: the artifact that teaches it `attest run`'s record."""

    id = "bench-stream"
    digest = None


def _breakdown(figures: Figures, rig: Rig, warmups: Sequence[Made],
               artifacts: Sequence[Made], before: Mapping[str, int], plain: Run) -> None:
    """Phases of one audited verification, 1 caller, from wrapped functions; the
    appraisal is what the uninstrumented median leaves once the wrapped phases are
    taken out, so the wrappers' own cost is not charged to it."""
    import attest.artifact.jws as jws_module

    progress(f"phase breakdown over {len(artifacts)} artifacts...")
    os.sync()  # as before each run
    verifier = VerifierUnderTest(rig.policy_path, rig.store_url, rig.verifier_home)
    acknowledged = Acknowledged(before)
    for made in warmups:  # first calls: imports, caches; untimed
        verify_as_run(verifier, made, acknowledged)
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
        # With batch acceptance the shell hands its members to a group commit built
        # around a bound method; the module function it calls is what can be wrapped.
        (shell_module, "commit", "accept + audit + commit (one write transaction, "
         "fsync)", False),
    )
    for owner, name, label, instance in phases:
        wrap_attr(owner, name, label, instance)
    whole: list[int] = []
    retries = 0
    try:
        for made in artifacts:
            began = time.perf_counter_ns()
            sending = verify_as_run(verifier, made, acknowledged)
            whole.append(time.perf_counter_ns() - began)
            retries += sending.retried
            if not sending.accepted:
                raise RuntimeError(f"breakdown verification denied: {sending.reasons}")
    finally:
        for undo in reversed(restore):
            undo()
        verifier.close()
    # In the order the phases are declared (a nested phase finishes before its parent).
    order = {label: n for n, (_, _, label, _) in enumerate(phases)}
    totals = dict(sorted(totals.items(), key=lambda item: order.get(item[0], len(order))))
    _breakdown_table(figures, totals, whole, _wrapper_ns(timed), plain)
    if retries:
        figures.notes.append(f"breakdown: {retries} of {len(whole)} artifacts were retried "
                             "whole after log_prefix_unknown (both verifications counted)")


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


@dataclass(frozen=True)
class Sent:
    """One command through `attest run`'s steps against a verifier in this process."""

    accepted: bool
    reasons: tuple[str, ...]
    verify_ns: int  # the verification(s) alone: the retry's included, issuance not
    verify_cpu_ns: int  # this thread's CPU time in them (leaves out waiting for fsync)
    prepare_ns: int  # prepare(): seal, measure, segments if any, issue
    size: int  # the artifact that was accepted (or last denied)
    carried: int  # runtime records in it (after its base)
    records: int  # records in the host's log when it was made
    retried: bool
    segments: int  # log segments sent before it


def attest_run(tpm: Any, host: Host, policy: Any, verifier: VerifierUnderTest, *,
               remembered: bool, segmented: bool = False) -> Sent:
    """`attest run -- /bin/true` against ``verifier`` in this process, as
    attest.host.run.run_local does it: prepare() (sent from the prefix the host
    remembers for VERIFIER_KEY if ``remembered``, else the whole log; with segments
    first if ``segmented`` and the log is too large for one artifact), verify, retry once
    with the whole log after log_prefix_unknown, remember what an acceptance acknowledges.
    Only the verification is timed."""
    import dataclasses

    from attest.artifact import jws
    from attest.eventlog import prefix as log_prefix
    from attest.host.issue import issue
    from attest.host.run import prepare
    from attest.host.run import segmented as send_segments
    from attest.host.runtime.log import RuntimeLog
    from attest.host.runtime.prefixes import PrefixMemory, acknowledged
    from attest.reasons import Reason
    from attest.tpm.hierarchy import load_identity

    sent_segments = 0
    send = verifier.segment_sender(load_identity(host.home).ak_name)

    def counted(base: Any, segment: bytes) -> Any:
        nonlocal sent_segments
        sent_segments += 1
        return send(base, segment)

    began = time.perf_counter_ns()
    made = prepare(tpm, host.home, list(ARGV), subject="bench", key_name="default",
                   nonce=None, ttl=TTL_S, policy_id=policy.id, policy_digest=policy.digest,
                   verifier=VERIFIER_KEY if remembered else None,
                   send_segment=counted if segmented else None)
    prepared = time.perf_counter_ns() - began
    records = current_prefix(host).count
    retried = False
    try:
        raw = made.artifact
        cpu, began = time.thread_time_ns(), time.perf_counter_ns()
        decision = verifier.decide(raw)
        took = time.perf_counter_ns() - began
        if (not decision.accepted and made.request.log_base is not None
                and Reason.LOG_PREFIX_UNKNOWN in {d.reason for d in decision.denials}):
            retried = True
            base = send_segments(host.home, None, counted) if segmented else None
            raw = issue(tpm, host.home, dataclasses.replace(made.request, log_base=base),
                        int(time.time()))
            began = time.perf_counter_ns()
            decision = verifier.decide(raw)
            took += time.perf_counter_ns() - began
        cpu = time.thread_time_ns() - cpu  # the retry's issuance included: it is rare
    finally:
        made.executable.close()
    if decision.accepted and remembered:
        known = acknowledged(decision.facts)
        if known is not None:
            PrefixMemory(host.home).put(VERIFIER_KEY, RuntimeLog(host.home).read_epoch(), known)
    carried = len(log_prefix.records_of(jws.parse(raw).claims.evidence.runtime_log))
    return Sent(decision.accepted, tuple(decision.reasons), took, cpu, prepared, len(raw),
                carried, records, retried, sent_segments)


def _accepted(sent: Sent, what: str) -> Sent:
    if not sent.accepted:
        raise RuntimeError(f"log growth: {what} was denied: {', '.join(sent.reasons)}")
    return sent


def loggrowth(quick: bool) -> Figures:
    from attest.eventlog.cel import parse_cel
    from attest.host.runtime.log import RuntimeLog
    from attest.store import default_url

    figures = Figures()
    lengths = QUICK_GROWTH_LENGTHS if quick else GROWTH_LENGTHS
    counts = QUICK_GROWTH_ARTIFACTS if quick else GROWTH_ARTIFACTS
    rig = Rig(Path(tempfile.mkdtemp(prefix="attest-bench-growth-")))
    try:
        hosts = start_hosts(rig, ["growth-short", "growth-long"])
        for host in hosts:
            seed(host, GROWTH_SEED)
        with hosts[0].tpm() as tpm:
            make_artifact(tpm, hosts[0], _IdOnly())  # attest run's record, for the policy
        policy = write_policy(rig, _ek_roots(hosts))
        whole_home = rig.workdir / "verifier-whole"
        enroll(rig, hosts)
        enroll(rig, hosts, whole_home)
        template = parse_cel(RuntimeLog(hosts[0].home).path.read_bytes()).records[-1].content
        seen = VerifierUnderTest(rig.policy_path, rig.store_url, rig.verifier_home)
        whole = VerifierUnderTest(rig.policy_path, default_url(whole_home), whole_home)
        try:
            for host in hosts:  # first calls pay imports and the EK check: untimed
                with host.tpm() as tpm:
                    for verifier, remembered in ((seen, True), (seen, True), (whole, False)):
                        _accepted(attest_run(tpm, host, policy, verifier,
                                             remembered=remembered), "a warm-up artifact")
            for host, length in zip(hosts, lengths, strict=True):
                have = len(RuntimeLog(host.home).read().records)
                if length - 1 > have:  # the catch-up artifact adds one
                    progress(f"extending {host.name}'s boot to {length:,} records...")
                    _bulk_measure(host, length - 1 - have, template)
            cost = _growth_points(hosts, policy, seen, whole, counts, figures)
            if quick:
                figures.notes.append(f"the {BIG_BOOT:,}-record boot is skipped with --quick")
            else:
                long = hosts[1]
                have = len(RuntimeLog(long.home).read().records)
                progress(f"extending {long.name}'s boot to {BIG_BOOT:,} records...")
                _bulk_measure(long, BIG_BOOT - have - 1, template)
                _big_boot(long, policy, seen, figures)
        finally:
            seen.close()
            whole.close()
    finally:
        progress("stopping swtpm...")
        rig.stop()
    _growth_rows(figures, cost)
    figures.notes.append(
        "loggrowth: two hosts, one per length (the long one's boot extended by attest's CEL "
        "writer and PCR extend, no per-record fsync or reconcile), both enrolled in two "
        "verifiers (SQLite on disk, audited, single use, 1 caller); their artifacts are "
        "verified alternately, short then long, so the machine's load drifts over both "
        "alike. Incremental: what `attest run` does with a verifier that "
        "has seen the host's earlier log: one untimed artifact through "
        "attest run's steps catches the verifier up (the records measured since, in "
        "segments if too large for one artifact), then each artifact is made by prepare() "
        "from the prefix the last acceptance acknowledged (the host's prefix memory), "
        "verified, and its acknowledged prefix remembered. Whole log: artifacts made by "
        "prepare() without a verifier name (every record since boot, as before issue 12's "
        "incremental logs), verified by the second verifier, which only ever gets whole "
        "logs. Each artifact adds one record (its measurement).")
    return figures


@dataclass(frozen=True)
class Point:
    incremental_us: float
    incremental_cpu_us: float
    incremental_bytes: int
    whole_us: float
    whole_bytes: int
    prepare_ms: float = 0.0  # prepare() of the incremental artifacts (median)


def _growth_points(hosts: Sequence[Host], policy: Any, seen: VerifierUnderTest,
                   whole: VerifierUnderTest, counts: tuple[int, int],
                   figures: Figures) -> dict[int, Point]:
    """Each host (one per length) caught up with ``seen``, then incremental artifacts of
    each, alternately; then whole-log artifacts of each to ``whole``, alternately (as
    many as ``counts`` says); a row per length and kind."""
    count, whole_count = counts
    made: dict[str, list[list[Sent]]] = {"incremental": [[] for _ in hosts],
                                         "whole log": [[] for _ in hosts]}
    with ExitStack() as stack:
        tpms = [stack.enter_context(host.tpm()) for host in hosts]
        catch_ups = [_accepted(attest_run(tpm, host, policy, seen, remembered=True,
                                          segmented=True), "the catch-up artifact")
                     for tpm, host in zip(tpms, hosts, strict=True)]
        for kind, verifier, remembered, times in (("incremental", seen, True, count),
                                                  ("whole log", whole, False, whole_count)):
            for _ in range(times):
                for n, (tpm, host) in enumerate(zip(tpms, hosts, strict=True)):
                    made[kind][n].append(_accepted(
                        attest_run(tpm, host, policy, verifier, remembered=remembered),
                        f"a {kind} artifact"))
    cost: dict[int, Point] = {}
    for n, catch_up in enumerate(catch_ups):
        length = catch_up.records
        medians = []
        for kind, per_host in made.items():
            sent = per_host[n]
            median = statistics.median(s.verify_ns for s in sent) / 1e3
            cpu = statistics.median(s.verify_cpu_ns for s in sent) / 1e3
            sizes = [s.size for s in sent]
            carried = sorted({s.carried for s in sent})
            medians.append((median, cpu, max(sizes)))
            figures.rows.append(Row(
                "log growth", f"{kind}: verification at {length:,} records since boot "
                f"(median of {len(sent)})", median, "us",
                note=f"CPU {cpu:,.0f} us; artifact {min(sizes):,}-{max(sizes):,} B carrying "
                f"{'-'.join(f'{c:,}' for c in sorted({carried[0], carried[-1]}))} records; "
                f"prepare() {statistics.median(s.prepare_ns for s in sent) / 1e6:.1f} ms; "
                f"{sum(s.retried for s in sent)} retried" + (
                    f"; the verifier caught up with {catch_up.carried:,} records in "
                    f"{catch_up.segments} segment(s) + 1 artifact first"
                    if kind == "incremental" else "")))
        (inc_us, inc_cpu, inc_bytes), (whole_us, _, whole_bytes) = medians
        prepare_ms = statistics.median(s.prepare_ns for s in made["incremental"][n]) / 1e6
        cost[length] = Point(inc_us, inc_cpu, inc_bytes, whole_us, whole_bytes, prepare_ms)
    return cost


def _growth_rows(figures: Figures, cost: Mapping[int, Point]) -> None:
    lengths = sorted(cost)
    low, high = (cost[length] for length in lengths)
    ratio = high.incremental_us / low.incremental_us
    verdict = figures.target(f"log growth: verification at {lengths[1]:,} records <= "
                             f"{GROWTH_TARGET}x at {lengths[0]} (incremental)",
                             f"{ratio:.2f}x", ratio <= GROWTH_TARGET)
    sizes = high.incremental_bytes / low.incremental_bytes
    prepare_ratio = high.prepare_ms / low.prepare_ms
    prepare_verdict = figures.target(
        f"log growth: host prepare() at {lengths[1]:,} records <= {PREPARE_TARGET}x at "
        f"{lengths[0]}", f"{prepare_ratio:.2f}x", prepare_ratio <= PREPARE_TARGET)
    size_verdict = figures.target(
        "log growth: artifact size independent of the records before the prefix",
        f"{high.incremental_bytes:,} B at {lengths[1]:,} vs {low.incremental_bytes:,} B at "
        f"{lengths[0]}", abs(sizes - 1) <= SIZE_TOLERANCE)
    figures.rows += [
        Row("log growth", f"incremental: cost at {lengths[1]:,} / at {lengths[0]} records",
            ratio, "x", f"<= {GROWTH_TARGET}x: {verdict}",
            f"CPU {high.incremental_cpu_us / low.incremental_cpu_us:.2f}x; artifact size "
            f"{sizes:.3f}x ({size_verdict} within {SIZE_TOLERANCE:.0%})"),
        Row("log growth", f"host: prepare() at {lengths[1]:,} / at {lengths[0]} records "
            "(incremental)", prepare_ratio, "x", f"<= {PREPARE_TARGET}x: {prepare_verdict}",
            f"median {high.prepare_ms:.1f} ms at {lengths[1]:,}, {low.prepare_ms:.1f} ms at "
            f"{lengths[0]}: seal, reconcile from the checkpoint, measure, issue"),
        Row("log growth", f"whole log: cost at {lengths[1]:,} / at {lengths[0]} records",
            high.whole_us / low.whole_us, "x",
            note=f"artifact size {high.whole_bytes / low.whole_bytes:.0f}x: for comparison"),
    ]


def _big_boot(host: Host, policy: Any, verifier: VerifierUnderTest, figures: Figures) -> None:
    """A boot of BIG_BOOT records through `attest run`'s steps: the first artifact after
    the log in segments, the next ones incremental."""
    sent: list[Sent] = []
    problem = ""
    with host.tpm() as tpm:
        for _ in range(BIG_ARTIFACTS):
            try:
                sent.append(attest_run(tpm, host, policy, verifier, remembered=True,
                                       segmented=True))
            except Exception as exc:  # noqa: BLE001 - reported as the figure, not raised
                problem = f"issuance failed: {type(exc).__name__}: {exc}"[:200]
                break
    accepted = sum(s.accepted for s in sent)
    met = accepted == BIG_ARTIFACTS
    verdict = figures.target(f"a {BIG_BOOT:,}-measurement boot: every artifact accepted",
                             f"{accepted}/{BIG_ARTIFACTS} accepted", met)
    denied = sorted({r for s in sent for r in s.reasons})
    note = problem or "; ".join(
        f"{s.records:,} records: {s.segments} segment(s) then {s.size:,} B carrying "
        f"{s.carried:,}, prepare() {s.prepare_ns / 1e6:,.0f} ms, verification "
        f"{s.verify_ns / 1e3:,.0f} us" for s in sent) + (
        f"; denied: {', '.join(denied)}" if denied else "")
    figures.rows.append(Row("log growth", f"{BIG_BOOT:,}-record boot: artifacts accepted",
                            accepted, f"of {BIG_ARTIFACTS}", f"all: {verdict}", note))


SECTIONS: dict[str, Callable[[bool], Figures]] = {"stream": stream, "loggrowth": loggrowth}


# -- standalone -----------------------------------------------------------------------------

def attest_cli(env: dict[str, str], *args: str) -> str:
    """`attest ARGS` (this Python, this checkout) in ``env``: its stdout; a failure ends
    the bench with attest's own words."""
    done = subprocess.run([sys.executable, "-m", "attest.cli.main", *args], env=env,
                          capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"attest {' '.join(args)}: {done.returncode}\n{done.stderr}")
    return done.stdout


def print_tables(figures: Figures) -> None:
    """A bench script's own output: its tables, targets and notes (scripts/bench prints
    every section with :func:`render`)."""
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
