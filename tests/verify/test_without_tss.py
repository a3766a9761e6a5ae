"""The verifier side runs where tpm2-pytss (and libtss2) is absent: `pip install attest`
on a control plane. The host side, run there, exits 3 with the install hint.

Two ways to take the TSS away, each in a child process (the tests' own interpreter has it):
- ``blocked``: this interpreter, with a meta-path finder that makes ``import tpm2_pytss``
  fail as it does when the package is not installed;
- ``venv``: a venv that has every package of this one except tpm2-pytss (linked, no
  network), and this source tree on its path. ``ATTEST_NOTSS_PYTHON`` names an
  interpreter to use instead: CI points it at a venv made by ``pip install .`` (the base
  install, no extras), the install a control plane gets.
Artifacts are issued beforehand in this process, on swtpm, as a host does.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

import attest
from tests.conftest import VECTORS, Host

SOURCE = Path(attest.__file__).resolve().parent.parent
INSTALL_HINT = "pip install 'attest[host]'"

# Run `attest ARGV` with tpm2_pytss missing; "--modules M..." instead imports the modules M
# and prints which TSS-side modules ended up loaded.
_BLOCKED = """
import importlib, importlib.abc, sys

class NoTSS(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tpm2_pytss":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoTSS())
"""
_BODY = """
import importlib, sys
if sys.argv[1:2] == ["--modules"]:
    for module in sys.argv[2:]:
        importlib.import_module(module)
    host_side = ("tpm2_pytss", "attest.tpm", "attest.host")
    print(" ".join(m for m in sys.modules if m.startswith(host_side)))
else:
    sys.argv = ["attest", *sys.argv[1:]]
    from attest.cli.main import main
    main()
"""

VERIFIER_MODULES = (
    "attest.cli.main", "attest.cli.verifier", "attest.cli.audit", "attest.cli.ek",
    "attest.cli.eventlog", "attest.cli.quote", "attest.cli.policy", "attest.verify.verifier",
    "attest.verify.appraisal", "attest.store", "attest.audit", "attest.audit.hooks",
    "attest.policy", "attest.evidence.quote", "attest.evidence.ekcert",
    "attest.eventlog.replay", "attest.artifact.model", "attest.artifact.jws", "attest.home",
    "attest.verify.signature", "attest.cli.verify_signature", "attest.signing.bundle",
    "attest.signing.batch", "attest.signing.batcher", "attest.cli.docs", "attest.manual",
    "attest.console.session", "attest.console.html",
)
# The service and its console: the verifier side too, with the server extra (FastAPI),
# which a base install (CI's verifier-only venv) does not have.
SERVICE_MODULES = ("attest.console.routes", "attest.server.app")


def _tss_free_venv(target: Path) -> Path:
    """A venv with this one's packages minus tpm2-pytss, and this source tree, no pip."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True,
                   timeout=120)
    python = target / "bin" / "python"
    site = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, timeout=60).stdout.strip())
    farm = target / "packages"
    farm.mkdir()
    ours = Path(sysconfig.get_paths()["purelib"])
    for entry in ours.iterdir():
        name = entry.name.lower()
        # Not tpm2-pytss, and not this venv's own install of attest (an editable finder
        # that points at another checkout): the source tree under test goes on the path.
        if name.startswith(("tpm2_pytss", "tpm2-pytss", "__editable__", "attest")) or \
                name.endswith(".pth"):
            continue
        (farm / entry.name).symlink_to(entry)
    (site / "attest-under-test.pth").write_text(f"{SOURCE}\n{farm}\n")
    return python


@pytest.fixture(scope="module", params=["blocked", "venv"])
def no_tss(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[list[str]]:
    """The command line that starts a TSS-less Python running ``_BODY``."""
    if request.param == "blocked":
        yield [sys.executable, "-c", _BLOCKED + _BODY]
        return
    python = os.environ.get("ATTEST_NOTSS_PYTHON") or str(
        _tss_free_venv(tmp_path_factory.mktemp("notss") / "venv"))
    probe = subprocess.run([python, "-c", "import importlib.util as u; "
                            "print(u.find_spec('tpm2_pytss') is None)"],
                           capture_output=True, text=True, timeout=60, env=_env({}),
                           check=False)
    assert probe.stdout.strip() == "True", probe.stdout + probe.stderr
    yield [python, "-c", _BODY]


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "ATTEST_TCTI", "TPM2TOOLS_TCTI")}
    # The blocked run imports the source under test through PYTHONPATH; the venv has it
    # in a .pth file already (and ignores PYTHONPATH for nothing else).
    env["PYTHONPATH"] = str(SOURCE)
    # No TPM to reach: a command that tried would fail for that reason, not for the TSS.
    env["ATTEST_TCTI"] = "swtpm:path=/nonexistent/attest-no-tpm.sock"
    return {**env, **extra}


def _attest(no_tss: list[str], *args: str, home: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*no_tss, *args], capture_output=True, text=True, timeout=120,
                          env=_env({"ATTEST_HOME": str(home)} if home else {}), check=False)
    assert "Traceback" not in done.stderr, done.stderr
    assert "internal error" not in done.stderr, done.stderr
    return done


def _ok(no_tss: list[str], *args: str, home: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    done = _attest(no_tss, *args, home=home)
    assert done.returncode == 0, f"attest {' '.join(args)}: {done.stdout}{done.stderr}"
    return done


def test_the_verifier_side_never_imports_the_tss() -> None:
    # Even where tpm2-pytss is installed: the verifier side has no use for it.
    done = subprocess.run([sys.executable, "-c", _BODY, "--modules", *VERIFIER_MODULES,
                           *SERVICE_MODULES],
                          capture_output=True, text=True, timeout=60, env=_env({}),
                          check=True)
    assert done.stdout.split() == []


def test_verifier_modules_import_without_the_tss(no_tss: list[str]) -> None:
    # The service's modules where FastAPI is installed (always in the blocked run, which
    # is this venv; in a base install without the server extra, not).
    probe = subprocess.run([*no_tss[:-2], "-c", "import importlib.util as u; "
                            "print(u.find_spec('fastapi') is not None)"],
                           capture_output=True, text=True, timeout=60, env=_env({}),
                           check=False)
    served = SERVICE_MODULES if probe.stdout.strip() == "True" else ()
    done = subprocess.run([*no_tss, "--modules", *VERIFIER_MODULES, *served],
                          capture_output=True, text=True, timeout=60, env=_env({}),
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []


def test_help_lists_every_command_without_the_tss(no_tss: list[str], tmp_path: Path) -> None:
    listing = _ok(no_tss, "--help", home=tmp_path).stdout
    for command in ("verify", "challenge", "revoke", "audit", "quote", "ek", "eventlog"):
        assert f"\n  {command} " in listing
    # The column's width follows the longest command name (verify-signature).
    assert re.search(r"\n  provision +\(host side: needs attest\[host\]\)", listing)
    for args in (("verify", "--help"), ("audit", "--help"), ("revoke", "--help"),
                 ("challenge", "--help"), ("quote", "--help"), ("eventlog", "--help")):
        assert "Usage: attest" in _ok(no_tss, *args, home=tmp_path).stdout


def test_the_documentation_reads_without_the_tss(no_tss: list[str], tmp_path: Path) -> None:
    """A control plane has `attest docs` too: the reasons it sees in denials."""
    assert "\nreasons " in _ok(no_tss, "docs", home=tmp_path).stdout
    assert _ok(no_tss, "docs", "reasons", home=tmp_path).stdout.startswith("# Reason codes\n")


@pytest.mark.parametrize("args", [
    ("quote", "create", "--pcrs", "sha256:0", "--nonce", "00", "--out-dir", "q"),
    ("provision",),
    ("key", "create"),
    ("authorize", "--subject", "s", "--", "true"),
    ("eventlog", "check"),
    ("policy", "approve", "--authority-key", "/dev/null", "--pcrs", "sha256:0",
     "--serial", "1", "--out", "approval.json"),
    ("policy", "init", "--from-host", "--out", "policy.yaml"),
])
def test_a_host_command_without_the_tss_says_how_to_install_it(
        no_tss: list[str], tmp_path: Path, args: tuple[str, ...]) -> None:
    done = _attest(no_tss, *args, home=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "the host side needs the TSS" in done.stderr
    assert INSTALL_HINT in done.stderr


@pytest.mark.skipif(not VECTORS.is_dir(), reason=f"no vectors at {VECTORS}")
def test_evidence_commands_on_vectors_without_the_tss(no_tss: list[str], tmp_path: Path) -> None:
    gce = VECTORS / "quotes" / "gce_cos85_nonce9009"
    from attest.evidence.structures import parse_public

    ak_name = parse_public((gce / "ak_pub.tpmt_public.bin").read_bytes()).name.hex()
    facts = json.loads(_ok(
        no_tss, "quote", "verify", "-u", str(gce / "ak_pub.tpmt_public.bin"),
        "--ak-name", ak_name, "-m", str(gce / "quote_sha256.tpms_attest.bin"),
        "-s", str(gce / "sig_sha256.tpmt_signature.bin"), "-q", "9009", "--json",
        home=tmp_path).stdout)
    assert facts["signature"] == "rsassa-sha256"

    stm = VECTORS / "ekcerts" / "stm_rsa"
    ek = _ok(no_tss, "ek", "verify", str(stm / "ek_leaf.der"),
             "--roots", str(stm / "root_STM_RSA_RT.pem"),
             "--chain", str(stm / "intermediate_STM_RSA_05I.pem"),
             "--at", "2024-06-01T00:00:00Z", home=tmp_path)
    assert "valid: EK certificate chains to a trusted root" in ek.stdout, ek.stdout

    log = VECTORS / "eventlogs" / "gtt_rhel8_gce_uefi"
    replayed = _ok(no_tss, "eventlog", "replay", str(log / "binary_bios_measurements"),
                   home=tmp_path).stdout
    pcr0 = json.loads((log / "pcrs.json").read_text())["pcrs"]["sha256"]["0"]
    assert pcr0.lower() in replayed.lower()


@pytest.mark.swtpm
def test_a_control_plane_verifies_revokes_and_audits_without_the_tss(
        no_tss: list[str], host: Host, tmp_path: Path) -> None:
    # The host, with its TSS: a key, a policy that trusts it, two artifacts.
    policy = tmp_path / "policy.yaml"
    host.ok("key", "create")
    host.ok("policy", "init", "--from-host", "--out", str(policy))
    with policy.open("a") as file:  # this host measured no command: allow any
        file.write("executables: any\n")
    artifacts = [tmp_path / "a1.jws", tmp_path / "a2.jws"]
    for artifact in artifacts:
        host.ok("authorize", "--subject", "deploy-bot", "--out", str(artifact), "--", "ls")

    # The control plane, without it: its own home, store and audit log.
    plane = tmp_path / "plane"
    plane.mkdir()
    nonce = _ok(no_tss, "challenge", home=plane).stdout.strip()
    assert nonce
    first = json.loads(_ok(no_tss, "verify", str(artifacts[0]), "--policy", str(policy),
                           "--json", home=plane).stdout)
    assert first["accepted"] is True, first
    _ok(no_tss, "revoke", "--host", first["host"], "--reason", "retired", home=plane)
    second = _attest(no_tss, "verify", str(artifacts[1]), "--policy", str(policy), "--json",
                     home=plane)
    assert second.returncode == 1, second.stdout + second.stderr
    assert json.loads(second.stdout)["reasons"] == ["revoked"]
    _ok(no_tss, "audit", "verify", home=plane)
    head = _ok(no_tss, "audit", "head", home=plane).stdout
    assert head.strip()
    exported = _ok(no_tss, "audit", "export", home=plane).stdout.splitlines()
    assert len(exported) >= 3  # two verifications and a revocation, at least



def test_policy_pcr_without_the_tss_computes_what_the_host_side_does(
        no_tss: list[str], tmp_path: Path) -> None:
    from click.testing import CliRunner

    from attest.cli.main import cli

    args = ("policy", "pcr", "--pcr", "7=" + "ab" * 32, "--pcr", "0=" + "01" * 32)
    with_tss = CliRunner().invoke(cli, list(args))
    assert with_tss.exit_code == 0, with_tss.output
    assert _ok(no_tss, *args, home=tmp_path).stdout == with_tss.stdout


def _names(requirements: list[str]) -> set[str]:
    return {r.split(">")[0].split("=")[0].split("[")[0].strip().lower() for r in requirements}


def test_the_base_install_has_no_tss_and_the_host_extra_has() -> None:
    import tomllib

    project = tomllib.loads((SOURCE / "pyproject.toml").read_text())["project"]
    assert "tpm2-pytss" not in _names(project["dependencies"])
    assert "tpm2-pytss" in _names(project["optional-dependencies"]["host"])


@pytest.mark.swtpm
def test_a_consumer_verifies_a_signature_bundle_without_the_tss(
        no_tss: list[str], host: Host, tmp_path: Path) -> None:
    # The signer, with its TSS: a key, the policy that trusts it, a bundle over a file.
    policy = tmp_path / "policy.yaml"
    host.ok("key", "create")
    host.ok("policy", "init", "--from-host", "--out", str(policy))
    release = tmp_path / "release.tar"
    release.write_bytes(b"release 1.0\n")
    bundle = tmp_path / "release.bundle"
    host.ok("sign", str(release), "--out", str(bundle))
    # The consumer, without it.
    done = json.loads(_ok(no_tss, "verify-signature", str(bundle), str(release), "--policy",
                          str(policy), "--json", home=tmp_path).stdout)
    assert done["accepted"] is True, done
    other = tmp_path / "other.tar"
    other.write_bytes(b"release 1.0 and more\n")
    denied = _attest(no_tss, "verify-signature", str(bundle), str(other), "--policy",
                     str(policy), "--json", home=tmp_path)
    assert denied.returncode == 1
    assert json.loads(denied.stdout)["reasons"] == ["payload_mismatch"]
