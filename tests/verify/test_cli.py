"""The verifier's commands end to end: verify (exit 0 accepted, 1 denied, 3 store
unusable), challenge, revoke, enroll, each against the swtpm host and the SQLite store
in its $ATTEST_HOME, as a person would type them."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from attest.artifact import jws
from attest.artifact.model import b64url
from attest.store import challenges
from attest.tpm import keys as signing
from tests.verify.rig import Rig, b64d, make_ca


class Cli:
    """`attest` on the rig's host, with files in a folder of their own."""

    def __init__(self, rig: Rig) -> None:
        self.host = rig.host
        self.dir = rig.tmp
        self.policy = self.dir / "policy.yaml"
        self._count = 0

    def authorize(self, *extra: str, argv: tuple[str, ...] = ("ls", "-l")) -> Path:
        self._count += 1
        out = self.dir / f"a{self._count}.jws"
        self.host.ok("authorize", "--subject", "deploy-bot", "--out", str(out), *extra,
                     "--", *argv)
        return out

    def verify(self, artifact: Path, *extra: str, policy: Path | None = None
               ) -> tuple[int, dict[str, Any]]:
        result = self.host.run("verify", str(artifact), "--policy", str(policy or self.policy),
                               "--json", *extra)
        return result.exit_code, json.loads(result.stdout) if result.stdout else {}

    def reasons(self, artifact: Path, *extra: str, policy: Path | None = None) -> list[str]:
        code, out = self.verify(artifact, *extra, policy=policy)
        assert code == (0 if out["accepted"] else 1), out
        return list(out["reasons"])


@pytest.fixture
def cli(rig: Rig) -> Cli:
    made = Cli(rig)
    rig.host.ok("policy", "init", "--from-host", "--out", str(made.policy))
    return made


def test_verify_exit_codes_and_json(cli: Cli) -> None:
    artifact = cli.authorize()
    code, out = cli.verify(artifact)
    assert code == 0
    assert out["accepted"] is True and out["reasons"] == [] and out["denials"] == []
    assert out["facts"]["argv"] == ["ls", "-l"]
    assert out["jti"] == jws.parse(artifact.read_bytes()).claims.jti
    code, out = cli.verify(artifact)
    assert code == 1
    assert out["accepted"] is False and out["reasons"] == ["replayed"]
    assert out["denials"][0]["message"]


def test_verify_human_output(cli: Cli) -> None:
    artifact = cli.authorize()
    result = cli.host.run("verify", str(artifact), "--policy", str(cli.policy))
    assert result.exit_code == 0 and result.stdout.startswith("accepted: deploy-bot may exec")
    result = cli.host.run("verify", str(artifact), "--policy", str(cli.policy))
    assert result.exit_code == 1
    assert result.stderr.startswith("denied: replayed")


def test_verify_a_tampered_artifact_exits_1(cli: Cli) -> None:
    artifact = cli.authorize()
    head, _, signature = artifact.read_bytes().strip().rpartition(b".")
    flipped = bytearray(b64d(signature))
    flipped[0] ^= 0x80
    tampered = cli.dir / "tampered.jws"
    tampered.write_bytes(head + b"." + b64url(bytes(flipped)).encode() + b"\n")
    assert cli.reasons(tampered) == ["invalid_signature"]
    garbage = cli.dir / "garbage.jws"
    garbage.write_bytes(b"hello\n")
    assert cli.reasons(garbage) == ["malformed_artifact"]
    assert cli.reasons(artifact) == []  # the tampered copy burnt nothing


def test_verify_with_an_unusable_store_exits_3(cli: Cli) -> None:
    artifact = cli.authorize()
    broken = cli.dir / "broken.db"
    broken.write_bytes(b"not a database " * 100)
    for url in (f"sqlite:///{broken}", f"sqlite:///{cli.dir}/no/such/dir/v.db"):
        result = cli.host.run("verify", str(artifact), "--policy", str(cli.policy),
                              "--store", url, "--json")
        assert result.exit_code == 3, result.output
    assert cli.reasons(artifact) == []


def test_challenge_then_verify(cli: Cli) -> None:
    out = json.loads(cli.host.ok("challenge", "--json").stdout)
    assert set(out) == {"nonce", "expires"}
    first = cli.authorize("--nonce", out["nonce"])
    second = cli.authorize("--nonce", out["nonce"])
    assert cli.reasons(first) == []
    assert cli.reasons(second) == ["nonce_reused"]
    plain = cli.host.ok("challenge", "--ttl", "5m").stdout.strip()
    assert len(b64d(plain)) == challenges.TOKEN_BYTES  # a minted challenge (MAC, expiry)
    assert cli.reasons(cli.authorize("--nonce", plain)) == []
    never = b64url(os.urandom(32))
    assert cli.reasons(cli.authorize("--nonce", never)) == ["nonce_unknown"]


def test_challenge_in_another_store_is_unknown_here(cli: Cli) -> None:
    other = f"sqlite:///{cli.dir}/other.db"
    nonce = json.loads(cli.host.ok("challenge", "--json", "--store", other).stdout)["nonce"]
    artifact = cli.authorize("--nonce", nonce)
    assert cli.reasons(artifact) == ["nonce_unknown"]
    assert cli.reasons(artifact, "--store", other) == []


def test_revoke_jti_revokes_descendants(cli: Cli) -> None:
    parent = cli.authorize("--ttl", "5m")
    assert cli.reasons(parent) == []
    child = cli.authorize("--ttl", "4m", "--parent", str(parent))
    assert cli.reasons(child) == []
    grandchild = cli.authorize("--ttl", "3m", "--parent", str(child))
    jtis = [jws.parse(p.read_bytes()).claims.jti for p in (parent, child)]
    out = json.loads(cli.host.ok("revoke", "--jti", jtis[0], "--reason", "withdrawn",
                                 "--json").stdout)
    assert out == {"revoked": "jti", "subjects": jtis, "reason": "withdrawn"}
    assert cli.reasons(grandchild) == ["lineage_broken"]


def test_revoke_jti_before_it_is_presented(cli: Cli) -> None:
    artifact = cli.authorize()
    jti = jws.parse(artifact.read_bytes()).claims.jti
    said = cli.host.ok("revoke", "--jti", jti, "--reason", "leaked in a log").stdout
    assert f"revoked jti {jti}: leaked in a log" in said
    assert cli.reasons(artifact) == ["revoked"]


def test_revoke_key(cli: Cli) -> None:
    kid = signing.load_key(cli.host.home, signing.DEFAULT_KEY).tpm_name.hex()
    cli.host.ok("revoke", "--key", kid, "--reason", "retired")
    assert cli.reasons(cli.authorize()) == ["revoked"]


def test_revoke_host_with_trusted_aks(cli: Cli) -> None:
    artifact = cli.authorize()
    cli.host.ok("revoke", "--host", os.uname().nodename, "--reason", "decommissioned")
    assert cli.reasons(artifact) == ["revoked"]


def test_revoke_ak_with_trusted_aks(cli: Cli, rig: Rig) -> None:
    cli.host.ok("revoke", "--ak", rig.identity.ak_name.hex(), "--reason", "stolen")
    assert cli.reasons(cli.authorize()) == ["ak_revoked"]


@pytest.mark.parametrize("args", [
    ["--reason", "r"],
    ["--jti", "x", "--key", "00", "--reason", "r"],
    ["--jti", "x"],
    ["--key", "not hex", "--reason", "r"],
    ["--jti", "x", "--reason", "  "],
])
def test_revoke_bad_usage_exits_2(cli: Cli, args: list[str]) -> None:
    assert cli.host.run("revoke", *args).exit_code == 2


def _roots(rig: Rig) -> Path:
    """The simulator's EK CA: its root and the intermediate that signs EK certificates."""
    roots = rig.tmp / "ek-roots"
    roots.mkdir()
    shutil.copy(rig.host.sim.root_ca_cert, roots)
    shutil.copy(rig.host.sim.intermediate_ca_cert, roots)
    return roots


def test_enroll_then_verify_with_store_enrollment(rig: Rig) -> None:
    cli = Cli(rig)
    roots = _roots(rig)
    rig.host.ok("policy", "init", "--from-host", "--enrollment", "store", "--ek-roots",
                str(roots), "--out", str(cli.policy))
    before = cli.authorize()
    assert cli.reasons(before) == ["ak_unknown"]
    out = json.loads(rig.host.ok("enroll", "--host", "web-1", "--ek-roots", str(roots),
                                 "--json").stdout)
    assert {k: out[k] for k in ("host", "ak", "ek_chain", "moved_from_ek")} == {
        "host": "web-1", "ak": rig.identity.ak_name.hex(), "ek_chain": "verified",
        "moved_from_ek": None}
    assert cli.reasons(before) == []  # the earlier denial consumed nothing
    code, decided = cli.verify(cli.authorize())
    assert code == 0 and decided["host"] == "web-1"
    rig.host.ok("revoke", "--ak", rig.identity.ak_name.hex(), "--reason", "stolen")
    assert cli.reasons(cli.authorize()) == ["ak_revoked"]


def test_enrollment_with_ek_roots_that_do_not_match(rig: Rig) -> None:
    cli = Cli(rig)
    stranger = rig.tmp / "stranger"
    stranger.mkdir()
    make_ca(stranger, "another-manufacturer")
    refused = rig.host.run("enroll", "--host", "web-1", "--ek-roots", str(stranger))
    assert refused.exit_code == 1 and "ek_chain_invalid" in refused.stderr
    rig.host.ok("enroll", "--host", "web-1")  # no roots checked at enrollment
    # The verifier's roots are another CA's: the enrolled EK certificate does not chain.
    rig.host.ok("policy", "init", "--from-host", "--enrollment", "store", "--ek-roots",
                str(stranger), "--out", str(cli.policy))
    assert cli.reasons(cli.authorize()) == ["ek_chain_invalid"]


def test_authorize_from_the_log_base_the_verifier_acknowledged(cli: Cli) -> None:
    """attest verify --json names the prefix it now holds; attest authorize --log-base
    sends only the records after it; a verifier without it denies log_prefix_unknown."""
    code, out = cli.verify(cli.authorize())
    assert code == 0
    fact = out["facts"]["runtime_log"]
    base = f"{fact['count']}:{fact['digest']}"
    artifact = cli.authorize("--log-base", base)
    evidence = jws.parse(artifact.read_bytes().strip()).claims.evidence
    assert evidence.runtime_log_base is not None
    assert evidence.runtime_log_base.count == fact["count"]
    assert cli.reasons(artifact) == []
    elsewhere = cli.dir / "elsewhere"
    elsewhere.mkdir()
    assert cli.reasons(cli.authorize("--log-base", base), "--store",
                       f"sqlite:///{elsewhere / 'verifier.db'}") == ["log_prefix_unknown"]
    for wrong in ("3", "x:" + "0" * 64, f"{fact['count']}:abc", "0:" + "0" * 64):
        result = cli.host.run("authorize", "--subject", "s", "--out", str(cli.dir / "n.jws"),
                              "--log-base", wrong, "--", "ls")
        assert result.exit_code == 2, (wrong, result.output)
