#!/usr/bin/env python3
"""Issue 14's fleet figures: the verifier under 500 agents reporting every 2 s, and an
agent's own cost.

Called by scripts/bench (sections ``fleet`` and ``agentcost``); also runnable alone
(`.venv/bin/python scripts/bench_fleet.py [--quick] [--only fleet|agentcost]
[--store sqlite|postgresql]`). Progress goes to stderr. Nothing asserts on timings.

Section ``fleet``: AGENTS agents, each reporting every INTERVAL_S, against a real
`attest serve --workers 2` on loopback, on SQLite (in the verifier's home) and on a
PostgreSQL started here (bench_service.postgres: initdb in a temporary folder, fsync
and synchronous_commit on). How 500 agents are simulated honestly:

- TPMS swtpm hosts are provisioned (EK certificates, SRK, AK at 0x81000002). On each,
  AGENTS / TPMS - 1 more AKs are created from attest's AK template under its SRK and
  persisted at handles of their own (swtpm holds about 60 persistent objects), each in
  a home of its own with its own PCR-bound signing key: AGENTS host identities, each a
  distinct AK and key in a real TPM, enrolled under its own host id (logged, as `attest
  enroll` does; the credential activation before it is left out). The homes of one TPM
  share its runtime PCR, so they share one runtime log (SEED_RECORDS commands measured
  at "boot", before the homes are cloned): a quiet host, whose reports carry no new
  record once the verifier acknowledged its log.
- The policy requires the service's nonce, makes every artifact single use and sets
  freshness.report_max_age (REPORT_MAX_AGE_S), so the host gate and the stale sweep run
  as in production.
- Untimed preparation: the service mints, through POST /v1/challenges, one challenge
  for every report (1 warm-up + ROUNDS timed per agent); each agent's reports are then
  issued by attest.host.issue.issue (action ``report``, as an agent would: quote over
  the policy's PCRs, certified key, signature in the TPM), each with its own challenge
  in its quote, in the order the agent sends them. The warm-up report carries the whole
  runtime log; each timed report carries the records after the prefix the warm-up
  established (none). The warm-up reports are then sent (untimed, they make every host
  trusted: the common case afterwards is a report that changes nothing).
- Timed: open loop. Agent i has a random phase in [0, INTERVAL_S) and report k is
  scheduled at start + phase + k * INTERVAL_S, on the agent's own keep-alive connection,
  one report in flight per agent (a late agent sends its next report when its previous
  one is answered). Latency is from the SCHEDULED time to the answer, so queueing counts.
  The first RAMP_ROUNDS rounds of the same schedule are sent but not timed (fresh
  connections after the warm-up burst; their p99 and outcomes are printed in a note).
  Every timed report is a distinct artifact (its own jti, its own nonce, a fresh quote)
  that the verifier has never seen: fully verified and written (nonce consumed, jti
  stored, audit entry, trust state) in a durable store before the answer.

Printed per store: offered and achieved rates, p50/p99/max latency, errors (any answer
that is not an acceptance leaving the host trusted), the workers' CPU per report, and
the ratio to issue 14's target (>= 500 agents at 2 s, p99 <= 100 ms).

The service and the agent are started as `python -m attest.cli.main`, which imports
attest from the working directory first: to measure another tree, run from it (or
from a folder without one) with PYTHONPATH set to it.

BENCH_FLEET_TRACE=PATH writes each timed report's (scheduled time, latency) to
PATH.STORE, to see when a window fell behind.

Section ``agentcost``: one swtpm host enrolled in an `attest serve` (SQLite) on loopback,
`attest agent --verifier URL --interval 2s` run for AGENT_COST_S, its CPU seconds
(utime + stime from /proc) and RSS (VmRSS sampled, VmHWM at the end). While the
agent refuses --interval (the report loop is not merged yet), the same agent without
it is measured idle, and the row says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_service  # type: ignore[import-not-found,unused-ignore]  # beside this file
import bench_stream  # type: ignore[import-not-found,unused-ignore]
from bench_service import Connection, generate, quantile, status_outcome  # type: ignore[import-not-found,unused-ignore]
from bench_stream import Figures, Host, Row  # type: ignore[import-not-found,unused-ignore]

AGENTS = 500
QUICK_AGENTS = 100
TPMS = 10  # 50 identities each: below swtpm's ~60 persistent objects
INTERVAL_S = 2.0
ROUNDS = 5  # timed reports per agent: a 10 s window at 2 s
# Open-loop rounds sent before the timed ones, untimed: 500 fresh connections and the
# first incremental reports after the warm-up burst queue for about 3 s (measured:
# 200-350 ms average, against 25-70 ms after), which a running fleet does not see.
RAMP_ROUNDS = 1
QUICK_ROUNDS = 2
SEED_RECORDS = 5
REPORT_MAX_AGE_S = 60
EXTRA_AK_BASE = 0x81000100
TTL_S = bench_stream.TTL_S
CHALLENGE_CLIENTS = 8
WARMUP_CLIENTS = 8
TARGET_AGENTS = 500
TARGET_P99_MS = 100.0
SCHEDULE_SEED = 14
REQUEST_TIMEOUT_S = 30.0
AGENT_COST_S = 60.0
QUICK_AGENT_COST_S = 10.0
AGENT_INTERVAL = "2s"
SAMPLE_S = 1.0
ISSUE_SAMPLES = 20


def progress(message: str) -> None:
    with suppress(OSError):
        print(f"[fleet] {message}", file=sys.stderr, flush=True)


# -- identities -------------------------------------------------------------------------------

@dataclass
class Agent:
    """One simulated agent: a host id, its home (AK, key, the TPM's runtime log) and its TPM."""

    name: str
    home: Path
    tpm_host: Host
    reports: list[bytes] = field(default_factory=list)  # warm-up first, then timed


def clone_identity(tpm: Any, base: Host, home: Path, handle: int) -> None:
    """A second host identity on ``base``'s TPM: a new AK from attest's template under the
    SRK, persisted at ``handle``, and a new PCR-bound signing key, in ``home`` (a copy of
    the base home's runtime log: the TPM's runtime PCR is shared)."""
    import dataclasses

    from tpm2_pytss import ESYS_TR, TPM2B_SENSITIVE_CREATE

    from attest.evidence.pcrs import PCRSelection
    from attest.tpm import hierarchy
    from attest.tpm.keys import DEFAULT_SEALED_PCRS, create_key

    shutil.copytree(base.home, home, ignore=shutil.ignore_patterns("keys", "*.json*", "ak.*",
                                                                  "prefixes*"))
    srk = tpm.persistent(hierarchy.SRK_HANDLE)
    private, public, _, _, _ = tpm.call("creating an AK", tpm.esapi.create, srk,
                                        TPM2B_SENSITIVE_CREATE(), hierarchy.ak_template())
    loaded = tpm.call("loading the AK", tpm.esapi.load, srk, private, public)
    try:
        qualified = hierarchy._qualified_name(tpm, loaded)
        tpm.call("persisting the AK", tpm.esapi.evict_control, ESYS_TR.OWNER, loaded, handle)
    finally:
        tpm.flush(loaded)
    identity = dataclasses.replace(
        hierarchy.load_identity(base.home), ak_public=bytes(public.marshal()),
        ak_name=bytes(public.get_name()), ak_qualified_name=qualified, ak_handle=handle)
    hierarchy._write_identity(home, identity, public)
    create_key(tpm, home, "default", PCRSelection.parse(DEFAULT_SEALED_PCRS))


def make_agents(rig: Any, count: int) -> list[Agent]:
    tpms = min(TPMS, count)
    hosts = bench_stream.start_hosts(rig, [f"tpm{n}" for n in range(tpms)])
    per = count // tpms
    agents: list[Agent] = []

    def on_tpm(t: int) -> list[Agent]:
        host = hosts[t]
        bench_stream.seed(host, SEED_RECORDS)
        mine = [Agent(f"agent{t * per:03d}", host.home, host)]
        with host.tpm() as tpm:
            for n in range(1, per):
                home = rig.workdir / f"agent{t * per + n:03d}"
                clone_identity(tpm, host, home, EXTRA_AK_BASE + n)
                mine.append(Agent(f"agent{t * per + n:03d}", home, host))
        return mine

    progress(f"{count} identities on {tpms} swtpm hosts...")
    with ThreadPoolExecutor(max_workers=tpms) as pool:
        for mine in pool.map(on_tpm, range(tpms)):
            agents += mine
    return agents


def write_policy(rig: Any, hosts: Sequence[Host]) -> Any:
    """What bench_stream writes (every host sealed to the same fresh PCRs, the seeded
    programs as reference values), with reports allowed and report_max_age set."""
    from attest.eventlog.cel import parse_cel
    from attest.host.runtime.log import DEFAULT_RUNTIME_PCR, RuntimeLog
    from attest.host.runtime.subjects import measured_executables
    from attest.policy import NonceMode, Rule, load_policy, render_policy
    from attest.tpm import keys as signing

    host = hosts[0]
    key = signing.load_key(host.home, "default")
    records = parse_cel(RuntimeLog(host.home).path.read_bytes()).records
    reference: dict[str, list[bytes]] = {}
    for record in records:
        name, measured = record.content.get("name"), record.content.get("digest")
        if isinstance(name, str) and isinstance(measured, dict) and "sha256" in measured:
            reference.setdefault(name, [])
            if bytes.fromhex(measured["sha256"]) not in reference[name]:
                reference[name].append(bytes.fromhex(measured["sha256"]))
    text = render_policy(
        policy_id="bench-fleet",
        sealed_values={i: v for (b, i), v in key.sealed_values.items() if b == "sha256"},
        bank="sha256", runtime_pcr=DEFAULT_RUNTIME_PCR,
        ek_roots=[str(p) for p in bench_stream._ek_roots(hosts)],
        runtime_reference=reference, executables=measured_executables(records),
        nonce=NonceMode.REQUIRED, max_age=bench_stream.MAX_AGE_S, max_lifetime=TTL_S,
        report_max_age=REPORT_MAX_AGE_S, single_use=True,
        rules=[Rule(("*",), ("exec",), ("*",), ("*",)),
               Rule(("*",), ("report",), ("*",), ("*",))])
    rig.policy_path.write_text(text)
    return load_policy(rig.policy_path)


def issue_reports(agents: Sequence[Agent], policy: Any, nonces: Sequence[str],
                  rounds: int) -> None:
    """Each agent's 1 + ``rounds`` reports, in the order it sends them (its TPM clock
    grows), one thread per TPM: the warm-up with the whole runtime log, the others from
    the prefix the warm-up's acceptance establishes."""
    from attest.host.issue import Request, issue

    for agent in agents:
        agent.reports.clear()
    by_tpm: dict[str, list[tuple[int, Agent]]] = {}
    for i, agent in enumerate(agents):
        by_tpm.setdefault(agent.tpm_host.name, []).append((i, agent))
    per = 1 + rounds

    def on_tpm(mine: list[tuple[int, Agent]]) -> None:
        with mine[0][1].tpm_host.tpm() as tpm:
            for i, agent in mine:
                base = bench_stream.current_prefix(Host(agent.name, None, agent.home))
                for k in range(per):
                    request = Request(subject="agent", action="report", argv=(),
                                      key_name="default", nonce=nonces[i * per + k], ttl=TTL_S,
                                      policy_id=policy.id, policy_digest=policy.digest,
                                      log_base=None if k == 0 else base)
                    agent.reports.append(issue(tpm, agent.home, request, int(time.time())))

    with ThreadPoolExecutor(max_workers=len(by_tpm)) as pool:
        list(pool.map(on_tpm, by_tpm.values()))


# -- the timed window -------------------------------------------------------------------------

def report_outcome(status: int, body: bytes) -> str:
    """``accepted`` when the report was accepted and left its host trusted; else what came."""
    outcome = bench_service.decision_outcome(status, body)
    if outcome != "accepted":
        return outcome
    state = (json.loads(body).get("host_state") or {}).get("state")
    return "accepted" if state == "trusted" else f"accepted, host {state}"


@dataclass
class Window:
    agents: int
    rounds: int
    offered_per_s: float
    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    late_sends: int = 0  # sent after their schedule because the agent's previous was out
    ramp_latencies_s: list[float] = field(default_factory=list)  # untimed first rounds
    ramp_outcomes: Counter[str] = field(default_factory=Counter)
    cpu_s: float = 0.0  # the workers' utime + stime over the window
    trace: list[tuple[float, float]] = field(default_factory=list)  # (due, latency) s

    def ms(self, q: float) -> float:
        return quantile(self.latencies_s, q) * 1e3 if self.latencies_s else float("nan")

    @property
    def achieved_per_s(self) -> float:
        return len(self.latencies_s) / self.wall_s if self.wall_s else 0.0


async def _open_loop(port: int, bodies: Sequence[Sequence[bytes]], interval: float,
                     ramp: int = 0) -> Window:
    """Each agent's ``bodies`` on schedule; the first ``ramp`` rounds kept apart."""
    count = len(bodies)
    rounds = len(bodies[0])
    window = Window(count, rounds - ramp, count / interval)
    # Agents start at random moments: a seeded draw, the same schedule in every run.
    draw = random.Random(SCHEDULE_SEED)  # noqa: S311 - a schedule, not a secret
    phases = [draw.uniform(0, interval) for _ in range(count)]
    connections = [await Connection.open(port) for _ in range(count)]
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.5  # every connection open before the first schedule

    async def agent(i: int) -> None:
        for k in range(rounds):
            due = start + phases[i] + k * interval
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                window.late_sends += k > 0
            status, answer = await asyncio.wait_for(
                connections[i].post("/v1/reports", bodies[i][k]), REQUEST_TIMEOUT_S)
            if k < ramp:
                window.ramp_latencies_s.append(loop.time() - due)
                window.ramp_outcomes[report_outcome(status, answer)] += 1
                continue
            window.latencies_s.append(loop.time() - due)
            window.trace.append((due - start, loop.time() - due))
            window.outcomes[report_outcome(status, answer)] += 1

    try:
        await asyncio.gather(*(agent(i) for i in range(count)))
        window.wall_s = loop.time() - (start + ramp * interval)
    finally:
        for connection in connections:
            await connection.close()
    return window


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of ``pids`` (and their reaped children: none here), in seconds."""
    total = 0
    for pid in pids:
        with suppress(OSError):
            fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def open_loop(served: Any, bodies: Sequence[Sequence[bytes]], ramp: int) -> Window:
    workers = served.workers()
    before = cpu_seconds(workers)
    window = asyncio.run(_open_loop(served.port, bodies, INTERVAL_S, ramp))
    window.cpu_s = cpu_seconds(workers) - before
    return window


# -- the section ------------------------------------------------------------------------------

@dataclass
class StoreRun:
    store: str
    window: Window
    warmup: Counter[str]
    prepare_s: float
    rss_mib: list[float]


def _report_body(raw: bytes) -> bytes:
    return b'{"report":"' + raw + b'"}'


def bench_store(kind: str, url: str, rig: Any, agents: Sequence[Agent], policy: Any,
                rounds: int) -> StoreRun:
    home = rig.workdir / f"verifier-{kind}"
    home.mkdir(mode=0o700)
    progress(f"{kind}: enrolling {len(agents)} host ids...")
    bench_stream.enroll_into(url, home, [Host(a.name, None, a.home) for a in agents])
    with bench_service.serve(rig.policy_path, url, home, rig.workdir / f"serve-{kind}.log") as srv:
        began = time.perf_counter()
        wanted = len(agents) * (1 + RAMP_ROUNDS + rounds)
        nonces = bench_service._nonces(generate(
            srv.port, "/v1/challenges", [b"{}"] * wanted, CHALLENGE_CLIENTS,
            bench_service.START_TIMEOUT_S * 2, status_outcome, keep=True))
        if len(nonces) != wanted:
            raise RuntimeError(f"{kind}: {len(nonces)} challenges of {wanted}")
        progress(f"{kind}: issuing {wanted} reports on the swtpm hosts (untimed)...")
        issue_reports(agents, policy, nonces, RAMP_ROUNDS + rounds)
        progress(f"{kind}: sending {len(agents)} warm-up reports (untimed)...")
        warm = generate(srv.port, "/v1/reports", [_report_body(a.reports[0]) for a in agents],
                        WARMUP_CLIENTS, bench_service.START_TIMEOUT_S, report_outcome)
        prepare_s = time.perf_counter() - began
        os.sync()  # the hosts' dirty pages are not the server's fsyncs to wait behind
        progress(f"{kind}: timed window, {len(agents)} agents every {INTERVAL_S:g} s, "
                 f"{RAMP_ROUNDS} untimed round(s), then {rounds} timed...")
        window = open_loop(srv, [[_report_body(r) for r in a.reports[1:]] for a in agents],
                           RAMP_ROUNDS)
        if os.environ.get("BENCH_FLEET_TRACE"):
            Path(os.environ["BENCH_FLEET_TRACE"] + f".{kind}").write_text(
                "\n".join(f"{d:.4f} {lat:.4f}" for d, lat in sorted(window.trace)))
        progress(f"{kind}: {window.achieved_per_s:.0f} reports/s, p50 {window.ms(0.5):.1f} ms, "
                 f"p99 {window.ms(0.99):.1f} ms, {dict(window.outcomes)}")
        rss = [r for r in map(bench_service.peak_rss_mib, srv.workers()) if r is not None]
    return StoreRun(kind, window, warm.outcomes, prepare_s, rss)


def fleet(quick: bool, stores: Sequence[str] = bench_service.STORES,
          agents_wanted: int | None = None) -> Figures:
    figures = Figures()
    figures.notes.append(f"load average (1 min) before: {os.getloadavg()[0]:.1f}")
    count = agents_wanted or (QUICK_AGENTS if quick else AGENTS)
    rounds = QUICK_ROUNDS if quick else ROUNDS
    rig = bench_stream.Rig(Path(tempfile.mkdtemp(prefix="attest-bench-fleet-")))
    runs: list[StoreRun] = []
    try:
        agents = make_agents(rig, count)
        policy = write_policy(rig, rig.hosts)
        for kind in stores:
            with ExitStack() as stack:
                url = ("sqlite:///" + str(rig.workdir / "fleet.db") if kind == "sqlite"
                       else stack.enter_context(bench_service.postgres()))
                runs.append(bench_store(kind, url, rig, agents, policy, rounds))
    finally:
        rig.stop()
    _report(figures, runs, count)
    return figures


def _report(figures: Figures, runs: Sequence[StoreRun], count: int) -> None:
    table: list[tuple[str, ...]] = []
    for run in runs:
        w = run.window
        errors = sum(v for k, v in w.outcomes.items() if k != "accepted")
        other = "; ".join(f"{v} {k}" for k, v in w.outcomes.items() if k != "accepted")
        sent = len(w.latencies_s) + len(w.ramp_latencies_s)  # the CPU covers both
        per_report = w.cpu_s / sent * 1e3 if sent else float("nan")
        table.append((run.store, str(w.agents), f"{w.offered_per_s:.0f}",
                      f"{w.achieved_per_s:.0f}", f"{w.ms(0.5):.1f}", f"{w.ms(0.99):.1f}",
                      f"{w.ms(1.0):.1f}", f"{errors}/{len(w.latencies_s)}",
                      f"{per_report:.2f}", str(w.late_sends), other or "-"))
        figures.rows.append(Row(f"{run.store}, {w.agents} agents at {INTERVAL_S:g} s",
                                "p99 report latency", w.ms(0.99), "ms",
                                target=f"<= {TARGET_P99_MS:.0f} ms",
                                note=f"achieved {w.achieved_per_s:.0f}/s of "
                                f"{w.offered_per_s:.0f}/s offered; p50 {w.ms(0.5):.1f} ms; "
                                f"p99/target {w.ms(0.99) / TARGET_P99_MS:.2f}"))
        met = (w.agents >= TARGET_AGENTS and w.ms(0.99) <= TARGET_P99_MS and errors == 0
               and w.achieved_per_s >= 0.95 * w.offered_per_s)
        figures.target(f">= {TARGET_AGENTS} agents at {INTERVAL_S:g} s, p99 <= "
                       f"{TARGET_P99_MS:.0f} ms ({run.store})",
                       f"{w.agents} agents, p99 {w.ms(0.99):.1f} ms "
                       f"({w.ms(0.99) / TARGET_P99_MS:.2f}x the target), {errors} errors", met)
        rss = ", ".join(f"{r:.0f}" for r in run.rss_mib) or "-"
        ramp = w.ramp_latencies_s
        ramp_p99 = quantile(ramp, 0.99) * 1e3 if ramp else float("nan")
        figures.notes.append(f"{run.store}: preparation (challenges, issuance, warm-up) "
                             f"{run.prepare_s:.0f} s, untimed; warm-up: {dict(run.warmup)}; "
                             f"untimed open-loop ramp ({RAMP_ROUNDS} round): p99 "
                             f"{ramp_p99:.1f} ms, {dict(w.ramp_outcomes)}; "
                             f"peak RSS per worker (VmHWM) {rss} MiB")
    figures.tables.append((
        f"POST /v1/reports, `attest serve --workers {bench_service.WORKERS}`, open loop, "
        "latency from the scheduled send",
        ("store", "agents", "offered/s", "achieved/s", "p50 ms", "p99 ms", "max ms",
         "errors", "worker CPU ms/report", "late sends", "other outcomes"),
        table, frozenset({0, 10})))
    figures.notes.append(
        f"{count} host ids, each its own AK and signing key, on {min(TPMS, count)} swtpm "
        "TPMs; every timed report a distinct artifact with its own challenge, never seen by "
        "the verifier, single use on a durable store; the load generator shares the "
        f"{os.cpu_count()} cores with the workers")


# -- agent cost -------------------------------------------------------------------------------

def _status_kib(pid: int, name: str) -> int | None:
    with suppress(OSError):
        for line in (Path("/proc") / str(pid) / "status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return None


@contextmanager
def _agent(host: Host, url: str, pem: Path, extra: Sequence[str]
           ) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "ATTEST_HOME": str(host.home), "ATTEST_TCTI": host.tcti}
    process = subprocess.Popen(
        [sys.executable, "-m", "attest.cli.main", "agent", "--verifier", url,
         "--verifier-key", str(pem), *extra], env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class AgentCost:
    mode: str
    seconds: float
    cpu_s: float
    rss_kib: list[int]
    hwm_kib: int | None
    note: str = ""


def _measure_agent(process: subprocess.Popen[str], duration: float) -> AgentCost:
    if process.stderr is None:
        raise RuntimeError("attest agent's stderr is not a pipe")
    line = process.stderr.readline()
    if "listening on" not in line:
        rest = process.stderr.read() if process.poll() is not None else ""
        raise RuntimeError(f"attest agent did not start: {(line + rest)[-600:]}")
    # Its stderr drained meanwhile (a report loop may log), so it never blocks on it.
    threading.Thread(target=process.stderr.read, daemon=True).start()
    began = time.monotonic()
    cpu0 = cpu_seconds([process.pid])
    rss: list[int] = []
    while time.monotonic() - began < duration and process.poll() is None:
        time.sleep(SAMPLE_S)
        value = _status_kib(process.pid, "VmRSS")
        if value is not None:
            rss.append(value)
    return AgentCost("", time.monotonic() - began, cpu_seconds([process.pid]) - cpu0, rss,
                     _status_kib(process.pid, "VmHWM"))


def _interval_refused(host: Host, url: str, pem: Path) -> str | None:
    """Why `attest agent --interval` is refused (its message), or None when it runs."""
    env = {**os.environ, "ATTEST_HOME": str(host.home), "ATTEST_TCTI": host.tcti}
    probe = subprocess.run(
        [sys.executable, "-m", "attest.cli.main", "agent", "--verifier", url,
         "--verifier-key", str(pem), "--interval", AGENT_INTERVAL, "--socket",
         str(host.home / "probe.sock"), "--help"], env=env, capture_output=True, text=True,
        timeout=60, check=False)
    if "not yet available" in probe.stdout or "not implemented" in probe.stdout:
        return "--interval is documented as not yet available"
    return None


def agentcost(quick: bool) -> Figures:
    figures = Figures()
    duration = QUICK_AGENT_COST_S if quick else AGENT_COST_S
    rig = bench_stream.Rig(Path(tempfile.mkdtemp(prefix="attest-bench-agent-")))
    try:
        (host,) = bench_stream.start_hosts(rig, ["host0"])
        bench_stream.seed(host, SEED_RECORDS)
        write_policy(rig, [host])
        home = rig.workdir / "verifier"
        home.mkdir(mode=0o700)
        url = "sqlite:///" + str(home / "verifier.db")
        bench_stream.enroll_into(url, home, [host])
        with bench_service.serve(rig.policy_path, url, home, rig.workdir / "serve.log") as srv:
            from attest.ear import keys as result_keys

            pem = rig.workdir / "verifier.pem"
            pem.write_text(result_keys.public_pem(result_keys.load(home).public_key()))
            base = f"http://127.0.0.1:{srv.port}"
            refused = _interval_refused(host, base, pem)
            extra = [] if refused else ["--interval", AGENT_INTERVAL]
            mode = "idle (no --interval)" if refused else f"--interval {AGENT_INTERVAL}"
            progress(f"attest agent {mode}, {duration:.0f} s...")
            with _agent(host, base, pem, extra) as process:
                cost = _measure_agent(process, duration)
            cost.mode = mode
            issuing = _issue_cost(host, rig.policy_path, srv.port, ISSUE_SAMPLES)
            if refused:
                cost.note = (f"the report loop is not merged yet ({refused}): the agent "
                             "holding its TPM connection and socket, serving nobody")
            else:
                cost.note = f"host at the end: {_host_state(home, host.name)}"
    finally:
        rig.stop()
    rss_mib = max(cost.rss_kib) / 1024 if cost.rss_kib else float("nan")
    figures.rows.append(Row(f"attest agent, {cost.mode}", "CPU", cost.cpu_s / cost.seconds * 100,
                            "% of a core", note=f"{cost.cpu_s:.2f} CPU s over "
                            f"{cost.seconds:.0f} s" + (f"; {cost.note}" if cost.note else "")))
    figures.rows.append(Row(f"attest agent, {cost.mode}", "RSS", rss_mib, "MiB",
                            note=f"VmRSS max of {len(cost.rss_kib)} samples; VmHWM "
                            f"{(cost.hwm_kib or 0) / 1024:.1f} MiB"))
    wall, cpu = issuing
    figures.rows.append(Row("issuing one report (in-process, one TPM connection)",
                            "median wall", statistics.median(wall) * 1e3, "ms",
                            note=f"median CPU {statistics.median(cpu) * 1e3:.1f} ms, "
                            f"{len(wall)} reports: what a report loop does each interval, "
                            f"{statistics.median(cpu) / INTERVAL_S * 100:.2f} % of a core "
                            f"at {INTERVAL_S:g} s before HTTP"))
    return figures


def _issue_cost(host: Host, policy_path: Path, port: int,
                count: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of issuing ``count`` reports (each with a fresh challenge)
    on one open TPM connection, as a resident agent would."""
    from attest.host.issue import Request, issue
    from attest.policy import load_policy

    policy = load_policy(policy_path)
    nonces = bench_service._nonces(generate(
        port, "/v1/challenges", [b"{}"] * count, 1, bench_service.START_TIMEOUT_S,
        status_outcome, keep=True))
    wall: list[float] = []
    cpu: list[float] = []
    with host.tpm() as tpm:
        for nonce in nonces:
            began, used = time.perf_counter(), time.process_time()
            issue(tpm, host.home, Request(subject="agent", action="report", argv=(),
                                          nonce=nonce, ttl=TTL_S, policy_id=policy.id,
                                          policy_digest=policy.digest), int(time.time()))
            wall.append(time.perf_counter() - began)
            cpu.append(time.process_time() - used)
    return wall, cpu


def _host_state(home: Path, host: str) -> str:
    """The host's trust state in the verifier's store at the end (its last report's)."""
    from attest.store import Store, hosttrust

    store = Store.open("sqlite:///" + str(home / "verifier.db"))
    try:
        seen = hosttrust.view(store, host, now=int(time.time()), max_age=REPORT_MAX_AGE_S)
    finally:
        store.close()
    return f"{seen.state}, last report at {seen.reported_at}"


SECTIONS: dict[str, Callable[[bool], Figures]] = {"fleet": fleet, "agentcost": agentcost}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append")
    parser.add_argument("--store", choices=bench_service.STORES, action="append")
    parser.add_argument("--agents", type=int, help=f"fleet: agents (default {AGENTS}; "
                        f"at most {TPMS * 59}: swtpm's persistent objects)")
    parser.add_argument("--workers", type=int, default=bench_service.WORKERS,
                        help=f"attest serve --workers (default {bench_service.WORKERS}: the "
                        "issue's figure)")
    args = parser.parse_args(argv)
    bench_service.WORKERS = args.workers  # read by bench_service.serve
    for name in args.only or list(SECTIONS):
        figures = (fleet(args.quick, args.store or bench_service.STORES, args.agents)
                   if name == "fleet"
                   else SECTIONS[name](args.quick))
        print("\n".join(bench_stream.render(name, figures)), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TSS2_LOG", "all+NONE")
    sys.exit(main(sys.argv[1:]))
