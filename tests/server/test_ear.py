"""Attestation results over HTTP: every decision answers a signed EAR that a standard
JOSE library (PyJWT) accepts, with the right status and trust vector, bound to the
artifact and nonce, carrying an audit receipt that `attest result verify` checks
offline; a tampered token or receipt fails that check."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from click.testing import CliRunner, Result

from attest.audit import keys as log_keys
from attest.cli.main import cli
from attest.ear import keys as result_keys
from attest.ear import token
from attest.ear.result import PROFILE
from attest.ear.vector import ACCEPTED_VECTOR
from attest.errors import UsageError
from tests.server.conftest import Service
from tests.server.serving import challenge, verify


def _claims(service: Service, result: str) -> dict[str, Any]:
    """The result's claims as PyJWT reads them, with the key /v1/keys serves."""
    jwks = service.client.get("/v1/keys").json()
    (served,) = jwks["keys"]
    key = jwt.PyJWK(served)
    assert jwt.get_unverified_header(result)["kid"] == served["kid"]
    claims: dict[str, Any] = jwt.decode(result, key.key, algorithms=["ES256"],
                                        options={"require": ["iat", "exp", "jti"]})
    return claims


def _result_verify(service: Service, tmp: Path, result: str, *extra: str) -> Result:
    pem = tmp / "verifier.pem"
    if not pem.exists():
        pem.write_text(result_keys.public_pem(result_keys.load(service.home).public_key()))
    log_key = log_keys.load_public(service.home)
    assert log_key is not None
    return CliRunner().invoke(cli, ["--home", str(tmp), "result", "verify", result,
                                    "--verifier-key", str(pem), "--log-key", log_key.encode(),
                                    "--json", *extra])


def test_an_acceptance_answers_an_affirming_ear_bound_to_the_artifact_and_nonce(
        service: Service, tmp_path: Path) -> None:
    nonce = challenge(service.client)
    artifact = service.rig.issue(nonce=nonce)
    decision = verify(service.client, artifact)
    assert decision["accepted"] is True, decision["denials"]
    claims = _claims(service, decision["result"])
    assert claims["eat_profile"] == PROFILE and claims["eat_nonce"] == nonce
    assert claims["exp"] > claims["iat"]
    assert claims["ear.verifier-id"]["developer"] == "attest"
    submod = claims["submods"]["attest"]
    assert submod["ear.status"] == "affirming"
    assert submod["ear.trustworthiness-vector"] == {c.value: v for c, v in
                                                    ACCEPTED_VECTOR.items()}
    policy = service.client.get("/v1/health").json()["policy"]
    assert submod["ear.appraisal-policy-id"] == f"{policy['id']}#sha256:{policy['digest']}"
    assert submod["attest.artifact"] == {"jti": decision["jti"],
                                         "sha256": hashlib.sha256(artifact).hexdigest(),
                                         "id": decision["artifact_sha256"]}
    assert submod["attest.host"] == "web-1" and submod["attest.reasons"] == []
    assert submod["attest.audit"]["index"] == decision["audit_index"]
    # Offline: the signature, the receipt in a signed head, and the binding.
    (tmp_path / "a.jws").write_bytes(artifact)
    checked = _result_verify(service, tmp_path, decision["result"],
                             "--artifact", str(tmp_path / "a.jws"), "--nonce", nonce)
    assert checked.exit_code == 0, checked.output
    report = json.loads(checked.stdout)
    assert report["status"] == "affirming" and report["audit_index"] == 0
    assert report["checkpoint"]["size"] >= 1
    # From a file, and from stdin, the same.
    (tmp_path / "result.jwt").write_text(decision["result"] + "\n")
    assert _result_verify(service, tmp_path, str(tmp_path / "result.jwt")).exit_code == 0
    log_key = log_keys.load_public(service.home)
    assert log_key is not None
    piped = CliRunner().invoke(cli, ["--home", str(tmp_path), "result", "verify", "-",
                                     "--verifier-key", str(tmp_path / "verifier.pem"),
                                     "--log-key", log_key.encode()], input=decision["result"])
    assert piped.exit_code == 0 and piped.stdout.startswith("ok: affirming"), piped.output
    # The same result, held to another nonce or another artifact, is refused.
    other = _result_verify(service, tmp_path, decision["result"],
                           "--artifact", str(tmp_path / "a.jws"), "--nonce", "AAAA")
    assert other.exit_code == 1 and "binding_mismatch" in other.output


@pytest.mark.parametrize("case", ["replayed", "malformed_artifact", "invalid_signature",
                                  "nonce_unknown", "reference_value_mismatch"])
def test_each_common_denial_answers_a_contraindicated_ear_with_its_vector(
        service: Service, tmp_path: Path, case: str) -> None:
    nonce = challenge(service.client)
    artifact = service.rig.issue(nonce=nonce)
    claim, value = {"replayed": ("instance-identity", 96),
                    "malformed_artifact": ("instance-identity", 99),
                    "invalid_signature": ("instance-identity", 99),
                    "nonce_unknown": ("instance-identity", 96),
                    "reference_value_mismatch": ("executables", 33)}[case]
    if case == "replayed":
        assert verify(service.client, artifact)["accepted"] is True
    elif case == "malformed_artifact":
        artifact = b"not.a.jws"
    elif case == "invalid_signature":
        head, body, signature = artifact.split(b".")
        flipped = bytearray(base64.urlsafe_b64decode(signature + b"=" * (-len(signature) % 4)))
        flipped[5] ^= 1
        artifact = b".".join([head, body, base64.urlsafe_b64encode(flipped).rstrip(b"=")])
    elif case == "nonce_unknown":
        artifact = service.rig.issue(nonce=base64.urlsafe_b64encode(b"x" * 16)
                                     .rstrip(b"=").decode())
    else:  # something the policy does not know ran on the host
        service.rig.host.ok("measure", "data", "--name", "unexpected", "--value", "x")
        artifact = service.rig.issue(nonce=nonce)
    decision = verify(service.client, artifact)
    assert decision["accepted"] is False and case in decision["reasons"], decision
    submod = _claims(service, decision["result"])["submods"]["attest"]
    assert submod["ear.status"] == "contraindicated"
    assert submod["ear.trustworthiness-vector"][claim] == value
    assert submod["attest.reasons"] == decision["reasons"]
    # The denial's receipt verifies; the result does not affirm: exit 1 with its reason.
    checked = _result_verify(service, tmp_path, decision["result"])
    assert checked.exit_code == 1, checked.output
    assert json.loads(checked.stdout)["reason"] in decision["reasons"]


def test_every_decision_of_a_batch_carries_a_result_with_a_receipt(
        service: Service, tmp_path: Path) -> None:
    artifacts = [service.rig.issue(nonce=challenge(service.client)) for _ in range(2)]
    answer = service.client.post("/v1/verify:batch", json={
        "artifacts": [a.decode() for a in (*artifacts, artifacts[0])]})
    assert answer.status_code == 200, answer.text
    decisions = answer.json()["decisions"]
    assert [d["accepted"] for d in decisions] == [True, True, False]
    for decision in decisions[:2]:
        assert _result_verify(service, tmp_path, decision["result"]).exit_code == 0
    assert _claims(service, decisions[2]["result"])["submods"]["attest"][
        "ear.status"] == "contraindicated"


def _resign(service: Service, result: str, edit: Any) -> str:
    """``result`` with its claims edited by ``edit``, signed again with the service's
    own key: a verifier (or its key's thief) that lies about what it logged."""
    claims = jwt.decode(result, options={"verify_signature": False})
    edit(claims["submods"]["attest"])
    return token.sign(claims, result_keys.load(service.home))


def test_a_tampered_result_or_receipt_fails_offline(service: Service, tmp_path: Path) -> None:
    decision = verify(service.client, service.rig.issue(nonce=challenge(service.client)))
    result = decision["result"]
    assert _result_verify(service, tmp_path, result).exit_code == 0
    head, body, signature = result.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["submods"]["attest"]["attest.host"] = "db-1"
    forged_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    cases = {
        "invalid_signature": f"{head}.{forged_body}.{signature}",
        "alg_not_allowed": jwt.encode(claims, "k" * 32, algorithm="HS256"),
    }
    for reason, forged in cases.items():
        checked = _result_verify(service, tmp_path, forged)
        assert checked.exit_code == 1 and json.loads(checked.stdout)["reason"] == reason

    def other_host(submod: dict[str, Any]) -> None:
        submod["attest.host"] = "db-1"

    def no_receipt(submod: dict[str, Any]) -> None:
        submod["attest.audit"] = None

    def other_entry(submod: dict[str, Any]) -> None:
        receipt = submod["attest.audit"]
        entry = json.loads(receipt["entry"])
        entry["decision"] = "denied"
        receipt["entry"] = json.dumps(entry)

    def other_index(submod: dict[str, Any]) -> None:
        submod["attest.audit"]["index"] += 1

    for edit in (other_host, no_receipt, other_entry, other_index):
        checked = _result_verify(service, tmp_path, _resign(service, result, edit))
        assert checked.exit_code == 1, edit.__name__
        assert json.loads(checked.stdout)["reason"] == "proof_invalid", edit.__name__


def test_a_result_signed_by_another_key_is_refused(service: Service, tmp_path: Path) -> None:
    decision = verify(service.client, service.rig.issue(nonce=challenge(service.client)))
    stranger = result_keys.load_or_create(tmp_path / "stranger")
    pem = tmp_path / "stranger.pem"
    pem.write_text(result_keys.public_pem(stranger.public_key()))
    log_key = log_keys.load_public(service.home)
    assert log_key is not None
    checked = CliRunner().invoke(cli, ["--home", str(tmp_path), "result", "verify",
                                       decision["result"], "--verifier-key", str(pem),
                                       "--log-key", log_key.encode(), "--json"])
    assert checked.exit_code == 1 and json.loads(checked.stdout)["reason"] == (
        "invalid_signature")


def test_the_served_key_is_the_one_attest_result_key_prints(service: Service) -> None:
    printed = CliRunner().invoke(cli, ["--home", str(service.home), "result", "key", "--jwk"])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.output) == service.client.get("/v1/keys").json()
    pem = CliRunner().invoke(cli, ["--home", str(service.home), "result", "key"])
    assert pem.output.startswith("-----BEGIN PUBLIC KEY-----")


def test_a_result_key_open_to_others_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "verifier"
    result_keys.load_or_create(home)
    result_keys.key_path(home).chmod(0o640)
    with pytest.raises(UsageError, match="open to others"):
        result_keys.load_or_create(home)
    result_keys.key_path(home).chmod(0o600)
    (home / "ear").chmod(0o750)
    with pytest.raises(UsageError, match="open to others"):
        result_keys.load_or_create(home)
    (home / "ear").chmod(0o700)
    result_keys.key_path(home).unlink()
    (home / "ear" / "elsewhere").write_text("x")
    result_keys.key_path(home).symlink_to(home / "ear" / "elsewhere")
    with pytest.raises(UsageError):
        result_keys.load(home)
