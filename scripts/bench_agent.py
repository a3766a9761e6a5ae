#!/usr/bin/env python3
"""Issue 14's `attest run -- /bin/true` overhead through the host agent, against today's
`attest run --verifier` (the TPM opened by the run itself) and a bare /bin/true.

Runnable alone: `.venv/bin/python scripts/bench_agent.py [--runs N]`. Sets up a private
swtpm, a provisioned host whose policy has /bin/true as a reference value, an `attest
serve` on loopback and an `attest agent`, all in a temporary folder; then times RUNS of
each way, interleaved, and prints p50/p90 wall times, and what the thin client imports
(`python -X importtime`, the modules costing most). Nothing asserts on timings.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ATTEST = [sys.executable, "-m", "attest.cli.main"]


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([*ATTEST, *args], env=env, capture_output=True, text=True,
                          check=False, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"attest {' '.join(args)}: {done.returncode}\n{done.stderr}")
    return done.stdout


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory(prefix="attest-bench-agent-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "ATTEST_HOME": str(root / "host"), "TSS2_LOG": "all+NONE",
               "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        tcti = _cli(env, "swtpm", "start", "--state", str(root / "swtpm")).strip()
        env["ATTEST_TCTI"] = tcti
        servers: list[subprocess.Popen[str]] = []
        try:
            _cli(env, "provision")
            _cli(env, "key", "create")
            _cli(env, "measure", "command", "--", "/bin/true")
            policy = root / "policy.yaml"
            _cli(env, "policy", "init", "--from-host", "--out", str(policy))
            verifier_env = {**env, "ATTEST_HOME": str(root / "verifier")}
            (root / "verifier").mkdir()
            serve, found = _started(
                [*ATTEST, "serve", "--policy", str(policy), "--port", "0"], verifier_env,
                re.compile(r"on (http://127\.0\.0\.1:\d+)/v1"))
            servers.append(serve)
            base = found.group(1)
            pem = root / "verifier.pem"
            pem.write_text(_cli(verifier_env, "result", "key"))
            agent, _ = _started([*ATTEST, "agent", "--verifier", base, "--verifier-key",
                                 str(pem)], env, re.compile("listening on"))
            servers.append(agent)
            ways = {
                "bare /bin/true": ["/bin/true"],
                "attest run --verifier (today)": [*ATTEST, "run", "-q", "--verifier", base,
                                                  "--verifier-key", str(pem), "--",
                                                  "/bin/true"],
                "attest run (through the agent)": [*ATTEST, "run", "-q", "--", "/bin/true"],
            }
            times: dict[str, list[float]] = {name: [] for name in ways}
            for _ in range(runs):
                for name, argv in ways.items():
                    times[name].append(_timed(argv, env))
            bare = statistics.median(times["bare /bin/true"])
            for name, took in times.items():
                took.sort()
                p50, p90 = statistics.median(took), took[int(0.9 * (len(took) - 1))]
                print(f"{name:34} p50 {p50 * 1000:7.1f} ms  p90 {p90 * 1000:7.1f} ms  "
                      f"overhead p50 {(p50 - bare) * 1000:7.1f} ms")
            imports = subprocess.run([sys.executable, "-X", "importtime", *ATTEST[1:], "run",
                                      "-q", "--", "/bin/true"], env=env, capture_output=True,
                                     text=True, check=False, timeout=120).stderr
            rows = [line.split("|") for line in imports.splitlines()
                    if line.startswith("import time:") and "cumulative" not in line]
            costly = sorted(((int(r[1]), r[2].rstrip()) for r in rows), reverse=True)[:8]
            print(f"thin client: {len(rows)} modules imported; costliest (cumulative us):")
            for micros, module in costly:
                print(f"  {micros:8d} {module}")
        finally:
            for server in servers:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=30)
            subprocess.run([*ATTEST, "swtpm", "stop", "--state", str(root / "swtpm")],
                           env=env, capture_output=True, check=False, timeout=60)


if __name__ == "__main__":
    main()
