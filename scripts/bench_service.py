#!/usr/bin/env python3
"""Issue 13's figures: the verifier service (`attest serve --workers 2`) under load.

Called by scripts/bench (section ``service``); also runnable alone
(`.venv/bin/python scripts/bench_service.py [--quick] [--store sqlite|postgresql]`).
Progress goes to stderr. Nothing asserts on timings.

What is measured, for each store (SQLite in the verifier's home; PostgreSQL started
here from /usr/lib/postgresql/*/bin in a temporary folder, as an unprivileged user when
run as root), against a real `attest serve --workers 2` on loopback:

- HOSTS swtpm hosts, provisioned, enrolled in that store (logged, as `attest enroll`
  does), under a policy that requires a nonce and makes each artifact single use.
- For each concurrency in CLIENTS: the nonces are fetched from POST /v1/challenges by
  that many clients (challenges/s and latency), then each host makes one artifact per
  nonce with :func:`attest.host.run.prepare` (what `attest run` does: seal, measure a
  new record, issue), so every artifact carries a runtime record the verifier has not
  seen, sent from the prefix its host's artifact LAG rounds earlier established (the
  host's prefix memory under load). All of it happens before the clock starts; then
  the artifacts are sent to POST /v1/verify, round robin across hosts, by that many
  clients, each only once its base's artifact was answered (as a host sends from a
  prefix its verifier acknowledged): verifications/s and p50/p99 latency. Each run is
  bounded by RUN_BOUND_S; its size is chosen from the previous run's rate to last about
  RUN_TARGET_S.
- The peak RSS of each worker (VmHWM in /proc/PID/status) once its store is done.

The load generator is here, in this process: asyncio with a minimal HTTP/1.1 client
(one keep-alive connection per client, Content-Length bodies only), cheaper per request
than a general client, so that more of the two cores goes to the server. It reads only
``accepted`` (and ``reasons`` when denied) from a decision: other members may come and go.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_stream  # type: ignore[import-not-found,unused-ignore]  # beside this file
from bench_stream import Figures, Host, Row  # type: ignore[import-not-found,unused-ignore]

HOSTS = 16
SEED_RECORDS = 5
CLIENTS = (1, 8, 32)
WORKERS = 2
STORES = ("sqlite", "postgresql")
# A host's artifact k is sent from the prefix its artifact k - LAG established, and only
# once that one has been answered (a host sends from a prefix its verifier acknowledged;
# without the wait, a straggler at 32 clients, p99 ~800 ms, let later artifacts overtake
# their base: log_prefix_unknown, each denying its host's artifact LAG later in turn).
# Round robin, the base is LAG * HOSTS = 128 places back, so the wait rarely holds a
# client; and the base's slot (attest.store.prefixes: a prefix of N records in slot
# N % 16) is taken over only by artifact k + LAG's acceptance, which waits for k.
LAG = 8
FIRST_RUN = 240  # artifacts for the first run (1 client); later runs sized by rate
QUICK_FIRST_RUN = 48
RUN_TARGET_S = 6.0
QUICK_RUN_TARGET_S = 1.5
RUN_BOUND_S = 10.0
MAX_RUN = 3600  # artifacts per run at most: issuance is ~10 ms each on swtpm
DRAIN_BOUND_S = 30.0  # a run cut by RUN_BOUND_S: its rest verified untimed, this long at most
NONCE_TTL = "30m"
TTL_S = bench_stream.TTL_S  # within the policy's max_lifetime
START_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 30.0
MAX_RESPONSE_BYTES = 1 << 20
TARGET_RATE = 1000.0  # issue 13: verifications/s on PostgreSQL
TARGET_P99_MS = 50.0
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
PG_USER = "attest"


def progress(message: str) -> None:
    with suppress(OSError):
        print(f"[service] {message}", file=sys.stderr, flush=True)


def quantile(samples: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest sample that at least ``q`` of the samples do not exceed."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# -- the load generator -------------------------------------------------------------------

class HTTPError(Exception):
    """An answer the generator could not read as HTTP/1.1 with a Content-Length body."""


class Connection:
    """One keep-alive HTTP/1.1 connection to the service on loopback."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, f"127.0.0.1:{port}")

    async def post(self, path: str, body: bytes | None) -> tuple[int, bytes]:
        """POST ``body`` as JSON to ``path``, or GET it when ``body`` is None."""
        if body is None:
            head = f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n"
            body = b""
        else:
            head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: "
                    f"application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        self.writer.write(head.encode("ascii") + body)
        await self.writer.drain()
        header = await self.reader.readuntil(b"\r\n\r\n")  # bounded by the reader's limit
        lines = header.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise HTTPError(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
            elif name.strip().lower() == "transfer-encoding":
                raise HTTPError("a chunked answer: the generator reads Content-Length only")
        if length is None or not 0 <= length <= MAX_RESPONSE_BYTES:
            raise HTTPError(f"an answer without a usable Content-Length ({length})")
        return int(parts[1]), await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()
        with suppress(OSError, ConnectionError):
            await self.writer.wait_closed()


@dataclass
class Load:
    """What one run of the generator saw: per-request latencies (s) and outcomes."""

    clients: int
    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    answers: list[bytes] = field(default_factory=list)  # kept only when asked
    unsent: int = 0  # cut by the time bound

    @property
    def count(self) -> int:
        return len(self.latencies_s)

    @property
    def per_second(self) -> float:
        return self.count / self.wall_s if self.wall_s > 0 else 0.0

    def ms(self, q: float) -> float:
        return quantile(self.latencies_s, q) * 1e3 if self.latencies_s else math.nan


def decision_outcome(status: int, body: bytes) -> str:
    """``accepted``, ``denied: REASONS``, or what else came back: reads ``accepted`` and,
    for a denial, ``reasons``, nothing more of the decision."""
    if status != 200:
        return f"HTTP {status}"
    try:
        answer = json.loads(body)
    except ValueError:
        return "not JSON"
    accepted = answer.get("accepted") if isinstance(answer, dict) else None
    if accepted is True:
        return "accepted"
    if accepted is False:
        reasons = answer.get("reasons")
        named = ",".join(str(r) for r in reasons) if isinstance(reasons, list) else "?"
        return f"denied: {named}"
    return "no decision"


def status_outcome(status: int, _body: bytes) -> str:
    return "ok" if status == 200 else f"HTTP {status}"


async def _generate(port: int, path: str, bodies: Sequence[bytes | None], clients: int,
                    bound_s: float, outcome: Callable[[int, bytes], str],
                    keep: bool, after: int) -> Load:
    load = Load(clients)
    answers: list[bytes | None] = [None] * len(bodies) if keep else []
    answered = [asyncio.Event() for _ in bodies] if after else []
    connections = [await Connection.open(port) for _ in range(clients)]
    next_index = 0
    began = time.perf_counter()
    deadline = began + bound_s

    async def client(connection: Connection) -> None:
        nonlocal next_index
        while next_index < len(bodies) and time.perf_counter() < deadline:
            index = next_index
            next_index += 1  # one event loop: no other client runs between these lines
            if after and index >= after:
                # As a host does: it sends from a prefix only once that was acknowledged.
                await answered[index - after].wait()
            sent = time.perf_counter()
            status, answer = await asyncio.wait_for(connection.post(path, bodies[index]),
                                                    REQUEST_TIMEOUT_S)
            load.latencies_s.append(time.perf_counter() - sent)
            load.outcomes[outcome(status, answer)] += 1
            if keep:
                answers[index] = answer
            if after:
                answered[index].set()

    try:
        await asyncio.gather(*(client(c) for c in connections))
        load.wall_s = time.perf_counter() - began
    finally:
        for connection in connections:
            await connection.close()
    load.unsent = len(bodies) - next_index
    load.answers = [a for a in answers if a is not None]
    return load


def generate(port: int, path: str, bodies: Sequence[bytes | None], clients: int, bound_s: float,
             outcome: Callable[[int, bytes], str], *, keep: bool = False,
             after: int = 0) -> Load:
    """``bodies`` POSTed to ``path`` (None: a GET) in order by ``clients`` concurrent
    clients, each taking the next body when its previous answer is in, until all are sent
    or ``bound_s`` has passed. With ``after``, body i is sent only once body i - after
    has been answered (its latency counts from the send)."""
    return asyncio.run(_generate(port, path, bodies, clients, bound_s, outcome, keep, after))


# -- PostgreSQL, started here ---------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def postgres_bin() -> Path | None:
    import glob

    found = sorted(glob.glob(PG_BIN_GLOB), key=lambda p: int(Path(p).parent.name)
                   if Path(p).parent.name.isdigit() else 0)
    return Path(found[-1]) if found and (Path(found[-1]) / "initdb").is_file() else None


@contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL cluster in a temporary folder on a free loopback port, durable (fsync and
    synchronous_commit on, the defaults), owned by ``nobody`` when this runs as root
    (PostgreSQL refuses root); yields its SQLAlchemy URL. Stopped and removed after."""
    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError(f"no PostgreSQL binaries in {PG_BIN_GLOB}")
    # Its own temporary folder: the bench's own is private to this user.
    data = Path(tempfile.mkdtemp(prefix="attest-bench-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(data, "nobody", "nogroup")
        prefix = ["runuser", "-u", "nobody", "--"]
    port = _free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120,
                              check=False, cwd="/")
        if done.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {done.stderr.strip()[-500:]}")

    progress(f"starting PostgreSQL ({bindir.parent.name}) on port {port}...")
    run(str(bindir / "initdb"), "-D", str(data / "cluster"), "-U", PG_USER, "--auth=trust",
        "-E", "UTF8", "--no-instructions")
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c max_connections=200"
    run(str(bindir / "pg_ctl"), "-D", str(data / "cluster"), "-l", str(data / "log"), "-w",
        "-o", options, "start")
    try:
        yield f"postgresql+psycopg://{PG_USER}@127.0.0.1:{port}/postgres"
    finally:
        try:
            run(str(bindir / "pg_ctl"), "-D", str(data / "cluster"), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(data, ignore_errors=True)


# -- the service ----------------------------------------------------------------------------

@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    stderr: Path

    def workers(self) -> list[int]:
        """The worker processes: the server's children that run uvicorn's spawned
        workers (not multiprocessing's resource tracker); with one worker, the server."""
        if WORKERS == 1:
            return [self.process.pid]
        found = []
        for child in (Path("/proc") / str(self.process.pid) / "task").glob("*/children"):
            for pid in child.read_text().split():
                with suppress(OSError):  # a child gone between the listing and the read
                    if b"resource_tracker" not in (Path("/proc") / pid / "cmdline").read_bytes():
                        found.append(int(pid))
        return sorted(found)


def peak_rss_mib(pid: int) -> float | None:
    with suppress(OSError):
        for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


@contextmanager
def serve(policy: Path, store_url: str, home: Path, log: Path) -> Iterator[Served]:
    """`attest serve --workers 2` on a free loopback port, until it answers /v1/health."""
    port = _free_port()
    command = [sys.executable, "-m", "attest.cli.main", "serve", "--policy", str(policy),
               "--store", store_url, "--port", str(port), "--workers", str(WORKERS),
               "--nonce-ttl", NONCE_TTL]
    env = {**os.environ, "ATTEST_HOME": str(home)}
    with log.open("wb") as err:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                   start_new_session=True)
    served = Served(process, port, log)
    try:
        _wait_ready(served)
        yield served
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_ready(served: Served) -> None:
    import http.client

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise RuntimeError(f"attest serve exited ({served.process.returncode}): "
                               f"{served.stderr.read_text(errors='replace')[-800:]}")
        connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=2)
        try:
            connection.request("GET", "/v1/health")
            if connection.getresponse().status == 200 and len(served.workers()) >= WORKERS:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.2)
    raise RuntimeError("attest serve did not answer /v1/health in time")


# -- hosts and artifacts ------------------------------------------------------------------

@dataclass
class Chain:
    """One host's artifacts for one store, in issuance order, and what its prefix memory
    would hold: the prefix after each artifact (count and digest), tracked from the
    log's new bytes only."""

    host: Host
    made: list[bytes] = field(default_factory=list)
    prefixes: list[Any] = field(default_factory=list)  # RuntimeLogBase after each artifact
    log_size: int = 0
    log_count: int = 0
    log_digest: bytes = b""


def start_chain(host: Host) -> Chain:
    from attest.eventlog import prefix as log_prefix
    from attest.host.runtime.log import RuntimeLog

    data = RuntimeLog(host.home).path.read_bytes()
    records = log_prefix.records_of(data)
    return Chain(host, log_size=len(data), log_count=len(records),
                 log_digest=log_prefix.extend(log_prefix.EMPTY, records))


def extend_chain(tpm: Any, chain: Chain, policy: Any, nonce: str) -> None:
    """The host's next artifact, with ``nonce``, sent from the prefix its artifact LAG
    earlier established (the whole log for the first LAG of this store)."""
    from attest.artifact.model import RuntimeLogBase
    from attest.eventlog import prefix as log_prefix
    from attest.host.run import prepare
    from attest.host.runtime.log import RuntimeLog
    from attest.host.runtime.prefixes import PrefixMemory

    home = chain.host.home
    memory = PrefixMemory(home)
    k = len(chain.made)
    if k < LAG:
        memory.path.unlink(missing_ok=True)
    else:
        memory.put(bench_stream.VERIFIER_KEY, RuntimeLog(home).read_epoch(),
                   chain.prefixes[k - LAG])
    made = prepare(tpm, home, list(bench_stream.ARGV), subject="bench", key_name="default",
                   nonce=nonce, ttl=TTL_S, policy_id=policy.id, policy_digest=policy.digest,
                   verifier=bench_stream.VERIFIER_KEY)
    made.executable.close()
    with RuntimeLog(home).path.open("rb") as log:
        log.seek(chain.log_size)
        tail = log.read()
    records = log_prefix.records_of(tail)
    chain.log_size += len(tail)
    chain.log_count += len(records)
    chain.log_digest = log_prefix.extend(chain.log_digest, records)
    chain.made.append(made.artifact)
    chain.prefixes.append(RuntimeLogBase(chain.log_count, chain.log_digest))


def issue_round_robin(chains: Sequence[Chain], policy: Any, nonces: Sequence[str]) -> list[bytes]:
    """len(nonces) / HOSTS more artifacts of each host (hosts in parallel: each its own
    swtpm), returned round robin: host 0's, host 1's, ..., then the next round."""
    rounds = len(nonces) // len(chains)
    first = len(chains[0].made)

    def host_part(h: int) -> None:
        with chains[h].host.tpm() as tpm:
            for r in range(rounds):
                extend_chain(tpm, chains[h], policy, nonces[r * len(chains) + h])

    with ThreadPoolExecutor(max_workers=len(chains)) as pool:
        list(pool.map(host_part, range(len(chains))))
    return [chains[h].made[first + r] for r in range(rounds) for h in range(len(chains))]


# -- the section ----------------------------------------------------------------------------

@dataclass
class Measured:
    store: str
    clients: int
    challenges: Load
    verifications: Load
    drained: int = 0


@dataclass
class StoreResult:
    store: str
    runs: list[Measured] = field(default_factory=list)
    warmup: Counter[str] = field(default_factory=Counter)
    rss_mib: list[float] = field(default_factory=list)
    health: Load | None = None


def _nonces(load: Load) -> list[str]:
    nonces = []
    for answer in load.answers:
        nonce = json.loads(answer).get("nonce")
        if not isinstance(nonce, str):
            raise RuntimeError("a challenge without a nonce")
        nonces.append(nonce)
    return nonces


def _bodies(artifacts: Sequence[bytes]) -> list[bytes]:
    return [b'{"artifact":"' + raw + b'"}' for raw in artifacts]


def bench_store(kind: str, store_url: str, workdir: Path, hosts: Sequence[Host], policy: Any,
                quick: bool) -> StoreResult:
    home = workdir / f"verifier-{kind}"
    home.mkdir(mode=0o700)
    bench_stream.enroll_into(store_url, home, hosts)
    result = StoreResult(kind)
    chains = [start_chain(h) for h in hosts]
    with serve(bench_stream.Rig(workdir).policy_path, store_url, home,
               workdir / f"serve-{kind}.log") as served:
        # Warm-up, untimed: each host's first LAG artifacts carry its whole log.
        nonces = _nonces(generate(served.port, "/v1/challenges", [b"{}"] * (LAG * len(hosts)),
                                  4, START_TIMEOUT_S, status_outcome, keep=True))
        progress(f"{kind}: issuing {len(nonces)} warm-up artifacts (whole logs)...")
        warm = issue_round_robin(chains, policy, nonces)
        result.warmup = generate(served.port, "/v1/verify", _bodies(warm), 1, START_TIMEOUT_S,
                                 decision_outcome).outcomes
        # The ceiling of HTTP alone (uvicorn, FastAPI, this generator; no store): GET
        # /v1/health by as many clients as the largest run, for as long as a run.
        result.health = generate(served.port, "/v1/health", [None] * 1_000_000, max(CLIENTS),
                                 QUICK_RUN_TARGET_S if quick else RUN_TARGET_S / 2,
                                 status_outcome)
        size = QUICK_FIRST_RUN if quick else FIRST_RUN
        target = QUICK_RUN_TARGET_S if quick else RUN_TARGET_S
        for clients in CLIENTS:
            size = max(len(hosts), size - size % len(hosts))
            challenges = generate(served.port, "/v1/challenges", [b"{}"] * size, clients,
                                  START_TIMEOUT_S, status_outcome, keep=True)
            nonces = _nonces(challenges)
            progress(f"{kind}: issuing {len(nonces)} artifacts for {clients} client(s)...")
            began = time.perf_counter()
            bodies = _bodies(issue_round_robin(chains, policy, nonces))
            progress(f"{kind}: issued in {time.perf_counter() - began:.1f} s; verifying...")
            os.sync()  # the hosts' dirty pages are not the server's fsyncs to wait behind
            # Artifact k of a host is sent from the prefix its artifact k - LAG
            # established: sent once that one is answered, as the host's prefix memory
            # would have it (LAG * HOSTS places back, round robin).
            load = generate(served.port, "/v1/verify", bodies, clients, RUN_BOUND_S,
                            decision_outcome, after=LAG * len(hosts))
            run = Measured(kind, clients, challenges, load)
            if load.unsent:
                # Cut by the bound: the rest goes untimed, so that later artifacts' bases
                # are acknowledged as they would be.
                rest = generate(served.port, "/v1/verify", bodies[-load.unsent:], clients,
                                DRAIN_BOUND_S, decision_outcome, after=LAG * len(hosts))
                run.drained = rest.count
            result.runs.append(run)
            progress(f"{kind}, {clients} client(s): {load.per_second:,.0f} verifications/s, "
                     f"p50 {load.ms(0.5):.1f} ms, p99 {load.ms(0.99):.1f} ms, "
                     f"{dict(load.outcomes)}")
            size = min(MAX_RUN, int(load.per_second * target) + len(hosts))
        result.rss_mib = [r for r in map(peak_rss_mib, served.workers()) if r is not None]
    return result


def service(quick: bool, stores: Sequence[str] = STORES) -> Figures:
    figures = Figures()
    figures.notes.append(f"load average (1 min) before: {os.getloadavg()[0]:.1f}")
    rig = bench_stream.Rig(Path(tempfile.mkdtemp(prefix="attest-bench-service-")))
    results: list[StoreResult] = []
    try:
        hosts = bench_stream.start_hosts(rig, [f"host{n}" for n in range(HOSTS)])
        for host in hosts:
            bench_stream.seed(host, SEED_RECORDS)
        from attest.policy import NonceMode

        policy = bench_stream.write_policy(rig, bench_stream._ek_roots(hosts),
                                           nonce=NonceMode.REQUIRED)
        for kind in stores:
            with ExitStack() as stack:
                if kind == "sqlite":
                    url = "sqlite:///" + str(rig.workdir / "service.db")
                else:
                    url = stack.enter_context(postgres())
                results.append(bench_store(kind, url, rig.workdir, hosts, policy, quick))
    finally:
        rig.stop()
    _report(figures, results, quick)
    return figures


def _report(figures: Figures, results: Sequence[StoreResult], quick: bool) -> None:
    table: list[tuple[str, ...]] = []
    for result in results:
        for run in result.runs:
            load, ch = run.verifications, run.challenges
            other = {k: v for k, v in load.outcomes.items() if k != "accepted"}
            table.append((result.store, str(run.clients), f"{load.per_second:,.0f}",
                          f"{load.ms(0.5):.1f}", f"{load.ms(0.99):.1f}",
                          f"{load.outcomes['accepted']}/{load.count}",
                          f"{ch.per_second:,.0f}", f"{ch.ms(0.5):.1f}", f"{ch.ms(0.99):.1f}",
                          "; ".join(f"{v} {k}" for k, v in other.items())
                          + (f"{run.drained} past the bound, untimed" if run.drained else "")))
            figures.rows.append(Row(f"{result.store}, {run.clients} client(s)",
                                    "verifications/s", load.per_second, "/s",
                                    note=f"p50 {load.ms(0.5):.1f} ms, p99 {load.ms(0.99):.1f} ms"))
        if result.health is not None:
            health = result.health
            figures.rows.append(Row(f"{result.store}: GET /v1/health, {health.clients} clients",
                                    "requests/s", health.per_second, "/s",
                                    note=f"HTTP alone; p50 {health.ms(0.5):.1f} ms, "
                                    f"p99 {health.ms(0.99):.1f} ms"))
        rss = ", ".join(f"{r:.0f}" for r in result.rss_mib) or "-"
        figures.notes.append(f"{result.store}: peak RSS per worker (VmHWM) {rss} MiB; "
                             f"warm-up (whole logs, 1 client): {dict(result.warmup)}")
    figures.tables.append((
        f"POST /v1/verify and /v1/challenges, `attest serve --workers {WORKERS}`, "
        f"{HOSTS} swtpm hosts, single-use artifacts with nonces",
        ("store", "clients", "verify/s", "p50 ms", "p99 ms", "accepted", "challenges/s",
         "p50 ms", "p99 ms", "other outcomes"),
        table, frozenset({0, 9})))
    for result in results:
        if result.store != "postgresql" or not result.runs:
            continue
        best = max(result.runs, key=lambda r: r.verifications.per_second)
        load = best.verifications
        met = load.per_second >= TARGET_RATE and load.ms(0.99) <= TARGET_P99_MS
        figures.target(f">= {TARGET_RATE:,.0f} verifications/s with p99 <= {TARGET_P99_MS:.0f} "
                       "ms on PostgreSQL", f"{load.per_second:,.0f}/s, p99 "
                       f"{load.ms(0.99):.1f} ms at {best.clients} clients", met)
    figures.notes.append(
        f"loopback, the load generator (asyncio, this process) on the same {os.cpu_count()} "
        f"cores as the {WORKERS} workers; each artifact made by prepare() (`attest run`'s "
        f"measure + issue) with its own nonce, sent from its host's prefix {LAG} artifacts "
        "back once that artifact was answered; issuance is untimed"
        + ("; --quick: small runs" if quick else ""))


SECTIONS: dict[str, Callable[[bool], Figures]] = {"service": service}


def main(argv: list[str]) -> int:
    global WORKERS  # noqa: PLW0603 - one setting for the whole run, read where it is used
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--store", choices=STORES, action="append")
    parser.add_argument("--workers", type=int, default=WORKERS,
                        help=f"attest serve --workers (default {WORKERS}: the issue's figure)")
    args = parser.parse_args(argv)
    WORKERS = args.workers
    figures = service(args.quick, args.store or STORES)
    print("\n".join(bench_stream.render("service", figures)), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TSS2_LOG", "all+NONE")
    sys.exit(main(sys.argv[1:]))
