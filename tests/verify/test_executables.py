"""Exec artifacts name an executable the policy allows and the host measured (issue 10, 4).

Real artifacts from a host on its own swtpm; the host tries to get an executable
through that was never approved, never measured, or with an injecting variable kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from attest.host.runtime.subjects import file_digests
from attest.policy import load_policy
from tests.verify.rig import Rig, accepted, denied


def _tool(rig: Rig, body: str = "echo approved") -> str:
    path = rig.tmp / "tool"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def _sha256(path: str) -> bytes:
    return file_digests(Path(path), ["sha256"])["sha256"]


def test_an_executable_never_measured_nor_allowed_is_denied(rig: Rig) -> None:
    """`attest authorize -- /path/never-measured` under what policy init wrote."""
    tool = _tool(rig)
    denied(rig.verifier().verify(rig.issue(tool)), "reference_value_mismatch",
           "eventlog_mismatch")


def test_an_allowed_executable_the_log_never_measured_is_denied(rig: Rig) -> None:
    """The artifact names an approved digest, but this boot's log never measured it."""
    tool = _tool(rig)
    policy = rig.policy(executables={tool: [_sha256(tool)]})
    decision = rig.verifier(policy).verify(rig.issue(tool))
    denied(decision, "eventlog_mismatch")
    assert "never measured" in decision.denials[0].message


def test_a_measured_executable_the_policy_does_not_allow_is_denied(rig: Rig) -> None:
    """Measured (and so in the reference values), yet not among the executables."""
    tool = _tool(rig)
    rig.host.ok("measure", "command", "--", tool)
    ls = _which("ls")
    policy = rig.policy(executables={ls: [_sha256(ls)]})
    denied(rig.verifier(policy).verify(rig.issue(tool)), "reference_value_mismatch")
    accepted(rig.verifier(policy).verify(rig.issue(ls)))


def test_a_lying_host_cannot_rename_the_digest(rig: Rig) -> None:
    """The host re-signs the artifact with scope.executable_digest of another file."""
    tool = _tool(rig)
    rig.host.ok("measure", "command", "--", tool)
    other = _sha256(_which("sh")).hex()
    raw = rig.reissue(rig.issue(tool), requote=True, claims=lambda c: dataclasses.replace(
        c, scope=dataclasses.replace(c.scope, executable_digest=other)))
    denied(rig.verifier().verify(raw), "reference_value_mismatch", "eventlog_mismatch")


def test_without_an_executables_section_exec_is_denied(rig: Rig) -> None:
    decision = rig.verifier(rig.policy(executables=None)).verify(rig.issue())
    denied(decision, "reference_value_mismatch")
    assert "executables: any" in decision.denials[0].message


def test_executables_any_is_an_explicit_opt_out(rig: Rig) -> None:
    accepted(rig.verifier(rig.policy(executables="any")).verify(rig.issue(_tool(rig))))


def test_a_kept_injecting_variable_needs_the_policy(rig: Rig) -> None:
    kept = {"LD_PRELOAD": hashlib.sha256(b"/tmp/evil.so").hexdigest()}
    store = rig.store()
    decision = rig.verifier(rig.policy(), store).verify(rig.issue(env=kept))
    denied(decision, "policy_mismatch")
    assert "'LD_PRELOAD'" in decision.denials[0].message
    accepted(rig.verifier(rig.policy(keep_env=["LD_PRELOAD"]), store).verify(
        rig.issue(env=kept)))


def test_policy_init_allows_the_commands_measured_and_nothing_else(rig: Rig) -> None:
    tool = _tool(rig)
    rig.host.ok("measure", "command", "--", tool, "--flag")
    rig.host.ok("measure", "file", "/bin/sh")
    rig.host.ok("measure", "data", "--name", "sh", "--value", "not an executable")
    out = rig.tmp / "init.yaml"
    rig.host.ok("policy", "init", "--from-host", "--out", str(out))
    executables = load_policy(out).executables
    assert executables is not None and not executables.any
    assert set(executables.allowed) == {_sha256(tool), _sha256(_which("ls"))}


def _which(name: str) -> str:
    found = shutil.which(name)
    assert found is not None
    return str(Path(found).resolve())


def test_attest_run_keep_env_end_to_end(rig: Rig) -> None:
    """--keep-env BASH_ENV: denied (nothing runs) unless the policy's keep_env names it."""
    marker = rig.tmp / "startup-ran"
    startup = rig.tmp / "startup.sh"
    startup.write_text(f"touch {marker}\n")
    rig.host.ok("measure", "command", "--", "bash", "-c", "true")
    policy = rig.tmp / "run.yaml"
    rig.host.ok("policy", "init", "--from-host", "--out", str(policy))
    env = {**os.environ, **rig.host.env, "BASH_ENV": str(startup)}
    command = [sys.executable, "-m", "attest.cli.main", "run", "--policy", str(policy),
               "--keep-env", "BASH_ENV", "--", "bash", "-c", "true"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 1 and "policy_mismatch" in done.stderr, done.stderr
    assert not marker.exists()
    policy.write_text(policy.read_text() + "keep_env: [BASH_ENV]\n")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert marker.exists()


class _Forgetful(dict):  # type: ignore[type-arg]
    """A log cache another thread empties between any two look-ups."""

    def get(self, key, default=None):  # type: ignore[no-untyped-def]
        self.clear()
        return default


def test_the_measured_check_survives_an_emptied_log_cache(rig: Rig) -> None:
    """Red team after issue 10 item 4: the executable was looked for in the logs by a
    second look-up of the verifier's log cache, and a miss (the cache emptied by a
    concurrent verification, or by the size bound) skipped the check: an approved digest
    the host never measured was accepted."""
    tool = _tool(rig)
    policy = rig.policy(executables={tool: [_sha256(tool)]})
    verifier = rig.verifier(policy)
    verifier._log_views = _Forgetful()  # the race, made deterministic
    decision = verifier.verify(rig.issue(tool))
    denied(decision, "eventlog_mismatch")
    assert "never measured" in decision.denials[0].message


def test_a_kept_variable_listed_with_values_must_have_one_of_them(rig: Rig) -> None:
    """Red team after issue 10 item 4: scope.env carries each kept variable's SHA-256,
    and nothing checked it: a policy keeping LD_PRELOAD for one allocator let any
    library in. keep_env may now list the values allowed."""
    jemalloc = hashlib.sha256(b"/usr/lib/libjemalloc.so.2").hexdigest()
    written = rig.policy(keep_env=["LD_PRELOAD"]).path
    assert written is not None
    text = written.read_text().replace(
        "keep_env: [\"LD_PRELOAD\"]",
        f"keep_env:\n  - name: LD_PRELOAD\n    values: [\"{jemalloc}\"]")
    assert text != written.read_text()
    path = rig.tmp / "policy-values.yaml"
    path.write_text(text)
    policy = load_policy(path)
    assert policy.keep_env_values == {"LD_PRELOAD": frozenset({jemalloc})}
    store = rig.store()
    evil = {"LD_PRELOAD": hashlib.sha256(b"/tmp/evil.so").hexdigest()}
    decision = rig.verifier(policy, store).verify(rig.issue(env=evil))
    denied(decision, "policy_mismatch")
    assert "with a value the policy's keep_env does not list" in decision.denials[0].message
    accepted(rig.verifier(policy, store).verify(rig.issue(env={"LD_PRELOAD": jemalloc})))
