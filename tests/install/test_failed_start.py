"""A start that cannot succeed leaves nothing half-made: what can be checked (swtpm's
tools, the templates) is checked before the state folder is made, and a provisioning
that fails removes its staging folder. And a copy of the package outside the repository
(what a wheel installs) starts a simulator from its own templates."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import attest
from attest.simulator import Simulator

PACKAGE = Path(attest.__file__).resolve().parent


def _attest(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "attest", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=60,
                          check=False)


def _templates(tmp_path: Path) -> Path:
    copy = tmp_path / "templates"
    shutil.copytree(PACKAGE / "templates" / "swtpm", copy)
    return copy


def _broken_by_missing_file(folder: Path) -> None:
    (folder / "swtpm-localca.conf.in").unlink()


def _broken_by_a_folder(folder: Path) -> None:
    (folder / "swtpm_setup.conf.in").unlink()
    (folder / "swtpm_setup.conf.in").mkdir()


def _broken_by_bytes(folder: Path) -> None:
    (folder / "swtpm-localca.options.in").write_bytes(b"--platform-model \xff\xfe\n")


@pytest.mark.parametrize("breakage", [_broken_by_missing_file, _broken_by_a_folder,
                                      _broken_by_bytes], ids=["missing", "folder", "not-utf8"])
@pytest.mark.parametrize("exists", [False, True], ids=["new-state", "empty-state"])
def test_start_without_usable_templates_makes_nothing(tmp_path: Path, breakage, exists: bool
                                                      ) -> None:
    templates = _templates(tmp_path)
    breakage(templates)
    state = tmp_path / "state"
    if exists:
        state.mkdir()
    done = _attest("swtpm", "start", "--state", str(state),
                   env={"ATTEST_SWTPM_TEMPLATES": str(templates)})
    assert done.returncode == 3, done.stderr
    assert "swtpm configuration template" in done.stderr and "hint: reinstall" in done.stderr
    assert done.stdout == ""
    assert (list(state.iterdir()) == []) if exists else not state.exists()


def test_start_without_swtpm_tools_makes_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    done = _attest("swtpm", "start", "--state", str(state), env={"PATH": str(tmp_path)})
    assert done.returncode == 3, done.stderr
    assert "missing simulator tools" in done.stderr
    # A wheel install has no ./scripts/quickstart to point at.
    assert "apt-get install swtpm swtpm-tools" in done.stderr and "scripts/" not in done.stderr
    assert not state.exists()


@pytest.mark.swtpm
def test_a_failed_provisioning_leaves_no_half_made_state(tmp_path: Path) -> None:
    """swtpm_setup itself fails (its certificate tool is not there): its log stays, for
    the hint; no staging folder, no TPM state, and status does not call it interrupted."""
    templates = _templates(tmp_path)
    conf = templates / "swtpm_setup.conf.in"
    conf.write_text(conf.read_text().replace("/usr/bin/swtpm_localca", "/nonexistent/localca"))
    state = tmp_path / "state"
    done = _attest("swtpm", "start", "--state", str(state),
                   env={"ATTEST_SWTPM_TEMPLATES": str(templates)})
    assert done.returncode == 3, done.stderr
    assert "swtpm_setup failed" in done.stderr
    sim = Simulator(state)
    assert not sim.staging_dir.exists() and not sim.tpm_state.exists()
    assert sorted(p.name for p in state.iterdir()) == ["start.lock", "swtpm_setup.log"]
    assert not sim.interrupted and not sim.status().running


@pytest.mark.swtpm
def test_a_copy_of_the_package_outside_the_repository_starts_a_simulator(tmp_path: Path
                                                                         ) -> None:
    """What a wheel installs: the package alone (docs as files, not a link), run from
    elsewhere, with no ATTEST_SWTPM_TEMPLATES and no source tree to fall back on."""
    site = tmp_path / "site"
    shutil.copytree(PACKAGE, site / "attest",
                    ignore=shutil.ignore_patterns("__pycache__"))
    assert not (site / "attest" / "docs").is_symlink()
    env_clean = {k: v for k, v in os.environ.items() if k != "ATTEST_SWTPM_TEMPLATES"}
    state = tmp_path / "sim"
    found = subprocess.run([sys.executable, "-c", "import attest; print(attest.__file__)"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path, check=True,
                           env={**env_clean, "PYTHONPATH": str(site)})
    assert Path(found.stdout.strip()).is_relative_to(site)
    started = subprocess.run([sys.executable, "-m", "attest", "swtpm", "start", "--state",
                              str(state)], capture_output=True, text=True, timeout=60,
                             env={**env_clean, "PYTHONPATH": str(site)}, cwd=tmp_path,
                             check=False)
    try:
        assert started.returncode == 0, started.stderr
        assert started.stdout == f"swtpm:path={state.resolve()}/swtpm.sock\n"
        config = (state / "config" / "swtpm_setup.conf").read_text()
        assert f"create_certs_tool_config = {state.resolve()}/config/" in config
    finally:
        Simulator(state).stop()
    shown = subprocess.run([sys.executable, "-m", "attest", "docs", "policy", "--path"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path,
                           env={**env_clean, "PYTHONPATH": str(site)}, check=False)
    assert shown.returncode == 0, shown.stderr
    assert Path(shown.stdout.strip()).is_relative_to(site)
