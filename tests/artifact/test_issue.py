"""Issuing artifacts on a real swtpm: the format is what it says, the binding holds."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest

from attest.artifact import jws
from attest.artifact.model import binding
from attest.evidence.quote import verify_quote
from attest.evidence.structures import parse_public_tpm2b
from tests.conftest import Host


@pytest.fixture
def issuer(host: Host) -> Host:
    host.ok("key", "create", "--name", "art")
    return host


def _authorize(host: Host, out: Path, *extra: str) -> bytes:
    host.ok("authorize", "--subject", "deploy-bot", "--key", "art", "--out", str(out), *extra,
            "--", "ls", "-l", "/srv")
    return out.read_bytes()


def test_the_jws_verifies_with_a_standard_jose_library(issuer: Host, tmp_path: Path) -> None:
    raw = _authorize(issuer, tmp_path / "a.jws", "--gov", "ticket=CHG-1")
    pem = (issuer.home / "keys" / "art" / "key.pem").read_bytes()
    claims = jwt.decode(raw.strip(), pem, algorithms=["ES256"], options={"verify_aud": False})
    assert claims["sub"] == "deploy-bot"
    assert claims["scope"]["argv"] == ["ls", "-l", "/srv"]
    assert claims["gov"] == {"ticket": "CHG-1"}
    header = jwt.get_unverified_header(raw.strip())
    assert header == {"alg": "ES256", "typ": "attest-artifact+jwt",
                      "kid": json.loads((issuer.home / "keys" / "art" / "key.json").read_text())[
                          "tpm_name"]}
    with pytest.raises(jwt.InvalidSignatureError):
        other = (issuer.home / "ak.pem").read_bytes()
        jwt.decode(raw.strip(), other, algorithms=["ES256"])


def test_the_quote_is_bound_to_the_claims(issuer: Host, tmp_path: Path) -> None:
    parsed = jws.parse(_authorize(issuer, tmp_path / "a.jws"))
    claims = parsed.claims
    values = {(claims.env_bank, i): bytes.fromhex(v) for i, v in claims.env_pcrs.items()}
    facts = verify_quote(claims.evidence.quote, claims.evidence.quote_signature,
                         parse_public_tpm2b(claims.evidence.ak_public),
                         expected_extra_data=binding(claims), pcr_values=values)
    assert sorted(facts.pcrs["sha256"]) == [0, 1, 2, 3, 4, 5, 6, 7, 15]
    assert claims.scope.executable_digest is not None


def test_a_child_names_its_parent(issuer: Host, tmp_path: Path) -> None:
    parent = _authorize(issuer, tmp_path / "p.jws")
    child = jws.parse(_authorize(issuer, tmp_path / "c.jws", "--parent", str(tmp_path / "p.jws")))
    assert child.claims.lineage is not None
    assert child.claims.lineage.parent == jws.parse(parent).claims.jti
    assert child.claims.lineage.parent_sha256 == jws.parse(parent).sha256
    assert child.claims.lineage.depth == 1


def test_issuance_after_a_sealed_pcr_changed_fails_without_fallback(fresh_host: Host,
                                                                    tmp_path: Path) -> None:
    fresh_host.ok("key", "create", "--name", "art")
    fresh_host.ok("pcr", "extend", "3", "--data", "changed firmware")
    result = fresh_host.run("authorize", "--subject", "s", "--key", "art",
                            "--out", str(tmp_path / "a.jws"), "--", "ls")
    assert result.exit_code == 1
    assert "no longer matches" in result.stderr
    assert not (tmp_path / "a.jws").exists()


@pytest.mark.parametrize("args", [
    ["--ttl", "forever"],
    ["--nonce", "not base64!"],
    ["--gov", "noequals"],
    ["--argv", "ls"],  # with argv after -- as well
])
def test_bad_requests_exit_2(issuer: Host, tmp_path: Path, args: list[str]) -> None:
    result = issuer.run("authorize", "--subject", "s", "--key", "art",
                        "--out", str(tmp_path / "a.jws"), *args, "--", "ls")
    assert result.exit_code == 2, result.output
