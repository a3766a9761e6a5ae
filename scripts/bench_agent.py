#!/usr/bin/env python3
"""Issue 14's `attest run -- /bin/true` overhead through the host agent, against today's
`attest run --verifier` (the TPM opened by the run itself) and a bare /bin/true.

Runnable alone: `.venv/bin/python scripts/bench_agent.py [--runs N]`, or as section
`agent` of scripts/bench (`scripts/bench --only agent`); with `--before REVISION`,
that revision's agent and thin client against this checkout's, in alternating blocks
(before and after under the same load). Sets up a private swtpm, a
provisioned host whose policy has /bin/true as a reference value, an `attest serve` on
loopback and an `attest agent`, all in a temporary folder; then times RUNS of each way,
interleaved (the machine is shared: each way meets the same load), and prints p50/p90
wall times and the overhead against a bare /bin/true. Nothing asserts on timings.

The ways of starting the thin client differ only before attest's code runs:
- a regular install's console script (`attest run ...`, as a user runs it): a venv of
  its own in the temporary folder with this checkout's `attest` package copied into its
  site-packages and the console script pip writes; the headline figure;
- the development venv's console script (an editable install: its import hook, run by
  site at every start, imports pathlib and re before attest does);
- `python -m attest.cli.main` (runpy on top of that).
Also timed: the agent's part alone (connect, authorize, the sealed copy handed back) from
this process, so that wall time minus it is the client process's; and what the thin
client imports (`python -X importtime`, the modules costing most).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stream import (  # type: ignore[import-not-found,unused-ignore]
    Figures,
    Row,
    attest_cli,
    print_tables,
)

ROOT = Path(__file__).resolve().parent.parent
ATTEST = [sys.executable, "-m", "attest.cli.main"]
TARGET_MS = 50.0  # issue 14: `attest run -- /bin/true` overhead through the agent
HEADLINE = "attest run, regular install (agent)"




def _timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, check=False, timeout=120)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv}: {done.returncode}\n{done.stderr.decode()}")
    return took


def _started(argv: list[str], env: dict[str, str], ready: re.Pattern[str]) -> tuple[
        subprocess.Popen[str], re.Match[str]]:
    process = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None  # noqa: S101 - asked for above
    line = process.stderr.readline()
    found = ready.search(line)
    if found is None:
        raise SystemExit(f"{argv} did not start: {line}")
    return process, found


def regular_install(folder: Path, source: Path = ROOT) -> Path:
    """A venv at ``folder`` holding ``source``'s attest as a wheel install leaves it
    (the package in site-packages, pip's console script), without its dependencies: the
    thin path needs none. Returns the console script."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    python = folder / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path("
                           "'purelib'))"], capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()
    shutil.copytree(source / "attest", Path(site) / "attest",
                    ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([str(python), "-m", "compileall", "-q", str(Path(site) / "attest")],
                   check=True, timeout=300)  # as pip does on install
    script = folder / "bin" / "attest"
    script.write_text(f"#!{python}\nimport sys\nfrom attest.cli.main import main\n"
                      "if __name__ == '__main__':\n"
                      "    sys.argv[0] = sys.argv[0].removesuffix('.exe')\n"
                      "    sys.exit(main())\n")  # pip's console script, as in the dev venv
    script.chmod(0o755)
    return script


def _agent_part(home: Path) -> Callable[[], float]:
    """The agent's part of one run, timed from this process: connect, authorize
    /bin/true, the sealed copy received (closed, not run)."""
    sys.path.insert(0, str(ROOT))
    from attest.host.agent import client, wire

    def once() -> float:
        start = time.perf_counter()
        sock = client.connect(str(home / wire.SOCKET_NAME))
        if sock is None:
            raise SystemExit("the agent does not answer")
        try:
            done = client.authorize(sock, ["/bin/true"], [], None, "default", os.environ)
        finally:
            sock.close()
        took = time.perf_counter() - start
        if not isinstance(done, client.Accepted):
            raise SystemExit(f"the agent denied /bin/true: {done}")
        os.close(done.fd)
        return took
    return once


def _report(figures: Figures, runs: int, times: dict[str, list[float]], installed: Path,
            user_env: dict[str, str], plain: list[str]) -> None:
    """The timings as rows, a table and the target; what the thin client imports."""
    bare = statistics.median(times["bare /bin/true"])
    rows: list[tuple[str, ...]] = []
    for name, took in times.items():
        took.sort()
        p50, p90 = statistics.median(took), took[int(0.9 * (len(took) - 1))]
        overhead = "-" if "agent's part" in name else f"{(p50 - bare) * 1000:.1f}"
        rows.append((name, f"{p50 * 1000:.1f}", f"{p90 * 1000:.1f}", overhead))
        figures.rows.append(Row(name, "p50 wall", p50 * 1000, "ms",
                                f"<= {TARGET_MS:g} ms overhead"
                                if name == HEADLINE else "",
                                f"p90 {p90 * 1000:.1f} ms"))
    figures.tables.append((f"{runs} runs each, interleaved",
                           ("way", "p50 ms", "p90 ms", "overhead p50 ms"), rows,
                           frozenset({0})))
    headline = statistics.median(times[HEADLINE]) - bare
    figures.targets.append((f"`attest run -- /bin/true` overhead through the agent "
                            f"<= {TARGET_MS:g} ms (regular install, p50)",
                            f"{headline * 1000:.1f} ms",
                            "PASS" if headline * 1000 <= TARGET_MS else "MISS"))
    imports = subprocess.run([str(installed.parent / "python"), "-X", "importtime",
                              str(installed), *plain], env=user_env,
                             capture_output=True, text=True, check=False,
                             timeout=120).stderr
    found_rows = [line.split("|") for line in imports.splitlines()
                  if line.startswith("import time:") and "cumulative" not in line]
    costly = sorted(((int(r[1]), r[2].rstrip()) for r in found_rows), reverse=True)[:8]
    figures.tables.append((f"thin client (regular install): {len(found_rows)} modules "
                           "imported, the costliest", ("cumulative us", "module"),
                           [(str(m), name) for m, name in costly], frozenset({1})))


@dataclass
class Rig:
    """A private swtpm, a provisioned host trusting /bin/true, `attest serve` on loopback."""

    root: Path
    env: dict[str, str]  # the host's: ATTEST_HOME, ATTEST_TCTI, PYTHONPATH (this checkout)
    base: str = ""
    pem: Path = Path()

    @property
    def user_env(self) -> dict[str, str]:
        """As a user's shell starts a regular install: no PYTHONPATH."""
        return {k: v for k, v in self.env.items() if k != "PYTHONPATH"}

    def agent(self, source: Path = ROOT) -> subprocess.Popen[str]:
        """`attest agent` from ``source``'s attest package, listening."""
        env = {**self.env, "PYTHONPATH": os.pathsep.join(
            [str(source), *(p for p in sys.path if p)])}
        agent, _ = _started([*ATTEST, "agent", "--verifier", self.base, "--verifier-key",
                             str(self.pem)], env, re.compile("listening on"))
        return agent


@contextmanager
def rig(say: Callable[[str], None]) -> Iterator[Rig]:
    with tempfile.TemporaryDirectory(prefix="attest-bench-agent-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "ATTEST_HOME": str(root / "host"), "TSS2_LOG": "all+NONE",
               "PYTHONPATH": os.pathsep.join([str(ROOT), *(p for p in sys.path if p)])}
        env["ATTEST_TCTI"] = attest_cli(env, "swtpm", "start", "--state",
                                        str(root / "swtpm")).strip()
        made = Rig(root, env)
        serve: subprocess.Popen[str] | None = None
        try:
            say("setting up a host and a verifier")
            attest_cli(env, "provision")
            attest_cli(env, "key", "create")
            attest_cli(env, "measure", "command", "--", "/bin/true")
            policy = root / "policy.yaml"
            attest_cli(env, "policy", "init", "--from-host", "--out", str(policy))
            verifier_env = {**env, "ATTEST_HOME": str(root / "verifier")}
            (root / "verifier").mkdir()
            serve, found = _started(
                [*ATTEST, "serve", "--policy", str(policy), "--port", "0"], verifier_env,
                re.compile(r"on (http://127\.0\.0\.1:\d+)/v1"))
            made.base = found.group(1)
            made.pem = root / "verifier.pem"
            made.pem.write_text(attest_cli(verifier_env, "result", "key"))
            yield made
        finally:
            if serve is not None:
                _stop(serve)
            subprocess.run([*ATTEST, "swtpm", "stop", "--state", str(root / "swtpm")],
                           env=env, capture_output=True, check=False, timeout=60)


def _stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def measure(runs: int, say: Callable[[str], None] = print) -> Figures:
    figures = Figures()
    with rig(say) as made:
        agent = made.agent()
        try:
            installed = regular_install(made.root / "venv")
            env, user_env, base, pem = made.env, made.user_env, made.base, made.pem
            dev_script = Path(sys.executable).parent / "attest"
            plain = ["run", "-q", "--", "/bin/true"]
            ways: dict[str, tuple[list[str], dict[str, str]]] = {
                "bare /bin/true": (["/bin/true"], env),
                "attest run --verifier (today)": (
                    [*ATTEST, "run", "-q", "--verifier", base, "--verifier-key", str(pem),
                     "--", "/bin/true"], env),
                HEADLINE: ([str(installed), *plain], user_env),
                "attest run, editable install (agent)": ([str(dev_script), *plain], env),
                "python -m attest.cli.main run (agent)": ([*ATTEST, *plain], env),
            }
            if not dev_script.is_file():
                del ways["attest run, editable install (agent)"]
            agent_part = _agent_part(made.root / "host")
            agent_part()  # warm: the first run certifies the key
            times: dict[str, list[float]] = {name: [] for name in ways}
            times["the agent's part (from a warm process)"] = []
            say(f"timing {runs} runs of each way, interleaved")
            for _ in range(runs):
                for name, (argv, way_env) in ways.items():
                    times[name].append(_timed(argv, way_env))
                times["the agent's part (from a warm process)"].append(agent_part())
            _report(figures, runs, times, installed, user_env, plain)
            figures.notes.append(f"load average (1 min) after: {os.getloadavg()[0]:.1f}")
        finally:
            _stop(agent)
    return figures


def compare(revision: str, blocks: int, runs: int,
            say: Callable[[str], None] = print) -> list[str]:
    """Before and after in one run: ``revision``'s agent and thin client (its attest
    package, from git) against this checkout's, each a regular install, on one host
    and verifier, in ``blocks`` alternating blocks of ``runs`` (one swtpm serves one
    agent at a time), with a bare /bin/true after each run."""
    with rig(say) as made:
        old = made.root / "before"
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "attest"],
                                 capture_output=True, check=True, timeout=120).stdout
        old.mkdir()
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True, timeout=120)
        sources = {f"before ({revision})": old, "after (this checkout)": ROOT}
        scripts = {name: regular_install(made.root / f"venv-{n}", source)
                   for n, (name, source) in enumerate(sources.items())}
        times: dict[str, list[float]] = {name: [] for name in [*sources, "bare"]}
        say(f"timing {blocks} alternating blocks of {runs} runs")
        for block in range(blocks):
            order = list(sources) if block % 2 == 0 else list(reversed(sources))
            for name in order:
                agent = made.agent(sources[name])
                try:
                    argv = [str(scripts[name]), "run", "-q", "--", "/bin/true"]
                    _timed(argv, made.user_env)  # warm: the first run certifies the key
                    for _ in range(runs):
                        times[name].append(_timed(argv, made.user_env))
                        times["bare"].append(_timed(["/bin/true"], made.user_env))
                finally:
                    _stop(agent)
        bare = statistics.median(times["bare"])
        lines = []
        for name in sources:
            took = sorted(times[name])
            p50 = statistics.median(took)
            lines.append(f"{name}: p50 {p50 * 1000:.1f} ms, p90 "
                         f"{took[int(0.9 * (len(took) - 1))] * 1000:.1f} ms, overhead p50 "
                         f"{(p50 - bare) * 1000:.1f} ms ({len(took)} runs)")
        lines.append(f"bare /bin/true p50 {bare * 1000:.1f} ms; load average (1 min) after: "
                     f"{os.getloadavg()[0]:.1f}")
        return lines


def section_agent(quick: bool) -> Figures:
    return measure(10 if quick else 30, say=lambda line: print(line, file=sys.stderr))


SECTIONS = {"agent": section_agent}  # scripts/bench's section `agent`


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--before", metavar="REVISION",
                        help="instead: this git revision's agent and client against this "
                        "checkout's, in alternating blocks of RUNS (--blocks of them)")
    parser.add_argument("--blocks", type=int, default=6)
    args = parser.parse_args()
    say = lambda line: print(line, file=sys.stderr)  # noqa: E731 - progress on stderr
    if args.before is not None:
        print("\n".join(compare(args.before, args.blocks, args.runs, say)))
        return
    figures = measure(args.runs, say=say)
    print_tables(figures)


if __name__ == "__main__":
    main()
