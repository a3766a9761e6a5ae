"""`attest run --verifier` execs only on an affirming attestation result signed by a
key the host trusts, about THIS artifact and nonce, unexpired, with an audit receipt.

A fake verifier on loopback answers the run's artifact with each thing an attacker on
the path (or a verifier key's stranger) could send: the unsigned {"accepted": true}
today's client trusted, validly signed results about another artifact, another nonce,
by another key, expired, denying, or without a receipt. CMD never runs; exit 1 with a
reason. The same fake, answering what a real verifier would, runs it (the control)."""

from __future__ import annotations

import dataclasses
import json
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from attest.artifact import jws
from attest.audit.proofs import InclusionProof
from attest.decision import Decision, Denial
from attest.ear import keys as result_keys
from attest.ear import result as ear
from attest.reasons import Reason
from tests.conftest import Host
from tests.run.conftest import attest_cli
from tests.server.serving import Quiet, answering, make_pki

NONCE = "bm9uY2Utb2YtdGhlLWZha2U"
RECEIPT = InclusionProof(index=0, leaf_hash=bytes(32), tree_size=1, proof=(), root=bytes(32),
                         checkpoint="unchecked by the host", entry=b"{}")
Answer = Callable[[bytes], dict[str, Any]]


@contextmanager
def _fake_verifier(answers: dict[str, Answer], mode: list[str],
                   tls: ssl.SSLContext | None = None, nonce: str = NONCE) -> Iterator[str]:
    """A loopback 'verifier': a fixed nonce, then ``answers[mode[0]]`` for the artifact;
    over https with ``tls``."""

    class Fake(Quiet):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            answer = ({"nonce": nonce, "expires": int(time.time()) + 60}
                      if self.path.endswith("/challenges") else answers[mode[0]](body))
            self.answer_json(200, json.dumps(answer).encode())

    with answering(Fake, tls=tls) as base:
        yield base


def _accepted(raw: bytes) -> Decision:
    claims = jws.parse(raw).claims
    return Decision(True, jti=claims.jti, subject=claims.sub, host="web-1")


def _signed(key: ec.EllipticCurvePrivateKey, *, decision: Callable[[bytes], Decision] =
            _accepted, about: Callable[[bytes], bytes] = lambda raw: raw,
            nonce: str | None = NONCE, now: Callable[[], int] = lambda: int(time.time()),
            receipt: InclusionProof | None = RECEIPT) -> Answer:
    def answer(raw: bytes) -> dict[str, Any]:
        made = decision(raw)
        result = ear.issue(made, ear.Subject(about(raw), nonce), key=key, policy_id="p",
                           policy_digest="00" * 32, receipt=receipt, now=now())
        return {**made.to_json(), "result": result}
    return answer


def test_only_a_trusted_affirming_result_for_this_artifact_and_nonce_runs_cmd(
        ready: tuple[Host, Path], tmp_path: Path) -> None:
    host, _ = ready
    trusted = result_keys.load_or_create(tmp_path / "verifier")
    stranger = result_keys.load_or_create(tmp_path / "stranger")
    pem = tmp_path / "verifier.pem"
    pem.write_text(result_keys.public_pem(trusted.public_key()))

    def other_artifact(raw: bytes) -> Decision:
        return dataclasses.replace(_accepted(raw), jti="another-jti")

    def denied(raw: bytes) -> Decision:
        return Decision(False, (Denial(Reason.REFERENCE_VALUE_MISMATCH, "x"),),
                        jti=_accepted(raw).jti)

    attacks: dict[str, tuple[Answer, str]] = {
        "unsigned": (lambda raw: {"accepted": True, "reasons": [], "jti": "x", "host": "h"},
                     "invalid_signature"),
        "another_key": (_signed(stranger), "invalid_signature"),
        "another_artifact_bytes": (_signed(trusted, about=lambda raw: raw + b"x"),
                                   "binding_mismatch"),
        "another_jti": (_signed(trusted, decision=other_artifact), "binding_mismatch"),
        "another_nonce": (_signed(trusted, nonce="b3RoZXItbm9uY2U"), "binding_mismatch"),
        "no_nonce": (_signed(trusted, nonce=None), "binding_mismatch"),
        "expired": (_signed(trusted, now=lambda: int(time.time()) - 3600), "expired"),
        "issued_ahead": (_signed(trusted, now=lambda: int(time.time()) + 3600),
                         "not_yet_valid"),
        "denied": (_signed(trusted, decision=denied), "reference_value_mismatch"),
        "no_receipt": (_signed(trusted, receipt=None), "audit_unavailable"),
    }
    answers = {name: answer for name, (answer, _) in attacks.items()}
    answers["genuine"] = _signed(trusted)
    mode = ["genuine"]
    with _fake_verifier(answers, mode) as base:
        for name, (_, reason) in attacks.items():
            mode[0] = name
            marker = tmp_path / f"ran-{name}"
            done = attest_cli(host, "run", "--verifier", base, "--verifier-key", str(pem),
                              "--", "sh", "-c", f"touch {marker}")
            assert not marker.exists(), (name, done.stderr)
            assert done.returncode == 1, (name, done.stderr)
            assert reason in done.stderr, (name, done.stderr)
        # With --log-key, the receipt must verify too: the fake's does not.
        from attest.audit import keys as log_keys

        mode[0] = "genuine"
        log_key = log_keys.load_or_create(tmp_path / "log").verifier_key.encode()
        marker = tmp_path / "ran-unproven"
        done = attest_cli(host, "run", "--verifier", base, "--verifier-key", str(pem),
                          "--log-key", log_key, "--", "sh", "-c", f"touch {marker}")
        assert done.returncode == 1 and not marker.exists(), done.stderr
        assert "proof_invalid" in done.stderr
        # The control: the same fake, answering as the trusted verifier would.
        mode[0] = "genuine"
        marker = tmp_path / "ran-genuine"
        done = attest_cli(host, "run", "--verifier", base, "--verifier-key", str(pem),
                          "--", "sh", "-c", f"touch {marker}; exit 5")
        assert done.returncode == 5, done.stderr
        assert marker.exists()
        # The default trust folder serves as --verifier-key does.
        folder = Path(host.env["ATTEST_HOME"]) / result_keys.TRUSTED_FOLDER
        folder.mkdir()
        (folder / "verifier.pem").write_text(pem.read_text())
        done = attest_cli(host, "run", "--verifier", base, "--", "sh", "-c", "exit 6")
        assert done.returncode == 6, done.stderr


def test_plain_http_to_another_machine_needs_insecure(ready: tuple[Host, Path],
                                                       tmp_path: Path) -> None:
    host, _ = ready
    pem = tmp_path / "verifier.pem"
    pem.write_text(result_keys.public_pem(
        result_keys.load_or_create(tmp_path / "verifier").public_key()))
    refused = attest_cli(host, "run", "--verifier", "http://192.0.2.1:8600", "--verifier-key",
                         str(pem), "--", "true")
    assert refused.returncode == 2 and "--insecure" in refused.stderr
    # With --insecure the URL is taken (TEST-NET-1 is never reached: port 1 of loopback
    # stands in for it here, refused at once): unreachable, exit 3, nothing runs.
    marker = tmp_path / "must-not-exist"
    done = attest_cli(host, "run", "--verifier", "http://127.0.0.1:1", "--insecure",
                      "--verifier-key", str(pem), "--", "sh", "-c", f"touch {marker}")
    assert done.returncode == 3 and not marker.exists(), done.stderr


def test_authorize_fetches_its_nonce_from_the_verifier(ready: tuple[Host, Path],
                                                        tmp_path: Path) -> None:
    host, _ = ready
    with _fake_verifier({}, ["unused"]) as base:
        out = tmp_path / "a.jws"
        done = attest_cli(host, "authorize", "--subject", "ci", "--verifier", base,
                          "--out", str(out), "--", "true")
        assert done.returncode == 0, done.stderr
    assert jws.parse(out.read_bytes()).claims.eat_nonce == NONCE
    both = attest_cli(host, "authorize", "--subject", "ci", "--verifier", "http://127.0.0.1:1",
                      "--nonce", NONCE, "--out", str(out), "--", "true")
    assert both.returncode == 2
    # A nonce that is no base64url is the verifier's fault: environment, nothing issued.
    with _fake_verifier({}, ["unused"], nonce="not base64url!") as base:
        odd = attest_cli(host, "authorize", "--subject", "ci", "--verifier", base,
                         "--out", str(tmp_path / "b.jws"), "--", "true")
    assert odd.returncode == 3 and not (tmp_path / "b.jws").exists(), odd.stderr


def _tls(tmp: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context for 127.0.0.1 with a certificate from a CA of the test's own,
    and that CA's certificate (what --cacert names)."""
    pki = make_pki(tmp / "pki")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cert, pki.key)
    return context, pki.ca


def test_https_checks_the_servers_certificate_against_cacert(ready: tuple[Host, Path],
                                                             tmp_path: Path) -> None:
    host, _ = ready
    trusted = result_keys.load_or_create(tmp_path / "verifier")
    pem = tmp_path / "verifier.pem"
    pem.write_text(result_keys.public_pem(trusted.public_key()))
    context, ca = _tls(tmp_path)
    with _fake_verifier({"genuine": _signed(trusted)}, ["genuine"], tls=context) as base:
        marker = tmp_path / "must-not-exist"
        unknown_ca = attest_cli(host, "run", "--verifier", base, "--verifier-key", str(pem),
                                "--", "sh", "-c", f"touch {marker}")
        assert unknown_ca.returncode == 3 and not marker.exists(), unknown_ca.stderr
        assert "does not trust" in unknown_ca.stderr and "--cacert" in unknown_ca.stderr
        done = attest_cli(host, "run", "--verifier", base, "--verifier-key", str(pem),
                          "--cacert", str(ca), "--", "sh", "-c", "exit 4")
        assert done.returncode == 4, done.stderr
