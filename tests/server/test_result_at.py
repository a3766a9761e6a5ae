"""`attest result verify --at TIME`: an auditor checks a past decision's result (they
live 300 s) as of when it was acted on. Only the lifetime moves: the signature, the
receipt and the binding are checked as without it."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
from click.testing import CliRunner, Result

from attest.audit import keys as log_keys
from attest.cli.main import cli
from attest.ear import keys as result_keys
from tests.server.conftest import Service
from tests.server.serving import challenge, verify


def _check(service: Service, tmp: Path, result: str, *extra: str,
           pem: Path | None = None) -> Result:
    if pem is None:
        pem = tmp / "verifier.pem"
        pem.write_text(result_keys.public_pem(result_keys.load(service.home).public_key()))
    log_key = log_keys.load_public(service.home)
    assert log_key is not None
    return CliRunner().invoke(cli, ["--home", str(tmp), "result", "verify", result,
                                    "--verifier-key", str(pem), "--log-key", log_key.encode(),
                                    *extra])


def test_at_checks_the_lifetime_as_of_that_time_and_nothing_less(service: Service,
                                                                 tmp_path: Path) -> None:
    decision = verify(service.client, service.rig.issue(nonce=challenge(service.client)))
    assert decision["accepted"] is True, decision["denials"]
    result = decision["result"]
    claims = jwt.decode(result, options={"verify_signature": False})
    iat, exp = claims["iat"], claims["exp"]
    then = _check(service, tmp_path, result, "--at", str(iat + 1))
    assert then.exit_code == 0 and "valid at" in then.output, then.output
    as_utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(iat + 1))
    iso = _check(service, tmp_path, result, "--at", as_utc)
    assert iso.exit_code == 0, iso.output
    # Past its exp, or long before its iat: refused with the reason, exit 1.
    late = _check(service, tmp_path, result, "--at", str(exp))
    assert late.exit_code == 1 and "expired" in late.output, late.output
    early = _check(service, tmp_path, result, "--at", str(iat - 3600))
    assert early.exit_code == 1 and "not_yet_valid" in early.output, early.output
    # --at moves no other check: a result signed by another key is still refused.
    stranger = tmp_path / "stranger.pem"
    stranger.write_text(result_keys.public_pem(
        result_keys.load_or_create(tmp_path / "other").public_key()))
    foreign = _check(service, tmp_path, result, "--at", str(iat + 1), pem=stranger)
    assert foreign.exit_code == 1 and "invalid_signature" in foreign.output, foreign.output


def test_at_that_is_no_time_is_usage(service: Service, tmp_path: Path) -> None:
    decision = verify(service.client, service.rig.issue(nonce=challenge(service.client)))
    # Digits Python reads as a number but are none (superscripts; 5,000 of them: int()
    # refuses that many): usage too, never a bug (review).
    for bad in ("yesterday", "2026-12-03T10:00:00", "-5", "\u00b2", "9" * 5000):
        refused = _check(service, tmp_path, decision["result"], "--at", bad)
        assert refused.exit_code == 2 and "--at" in refused.output, (bad, refused.output)
