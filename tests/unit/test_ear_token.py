"""attest.ear.token: ES256 JWTs that a standard JOSE library (PyJWT) makes and reads
alike, and nothing else: no other algorithm, no high-S twin, no stranger's key."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from attest.artifact.jws import P256_ORDER
from attest.ear import token
from attest.errors import EvidenceError
from attest.reasons import Reason

CLAIMS = {"iat": 1, "exp": 2, "jti": "r", "submods": {"attest": {"ear.status": "affirming"}}}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _refused(text: str, key: ec.EllipticCurvePrivateKey, reason: Reason) -> None:
    with pytest.raises(EvidenceError) as caught:
        token.open_token(text, [key.public_key()])
    assert caught.value.reason is reason


def test_pyjwt_and_attest_read_each_others_tokens() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    ours = token.sign(CLAIMS, key)
    assert jwt.decode(ours, key.public_key(), algorithms=["ES256"],
                      options={"verify_exp": False}) == CLAIMS
    theirs = jwt.encode(CLAIMS, key, algorithm="ES256")
    opened = token.open_token(theirs, [key.public_key()])
    assert opened.claims == CLAIMS
    # The kid is the RFC 7638 thumbprint PyJWT computes for the same key.
    assert jwt.get_unverified_header(ours)["kid"] == jwt.PyJWK(
        token.jwk(key.public_key())).key_id
    assert token.thumbprint(key.public_key()) == token.jwk(key.public_key())["kid"]


def test_pyjwt_signatures_verify_whatever_half_their_s_falls_in() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    for _ in range(16):
        assert token.open_token(jwt.encode(CLAIMS, key, algorithm="ES256"),
                                [key.public_key()]).claims == CLAIMS


def test_another_key_another_alg_a_bad_signature_and_non_jws_are_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    stranger = ec.generate_private_key(ec.SECP256R1())
    _refused(token.sign(CLAIMS, stranger), key, Reason.INVALID_SIGNATURE)
    _refused(jwt.encode(CLAIMS, "k" * 32, algorithm="HS256"), key, Reason.ALG_NOT_ALLOWED)
    unsigned = _b64(json.dumps({"alg": "none"}).encode()) + "." + _b64(b"{}") + "."
    _refused(unsigned, key, Reason.ALG_NOT_ALLOWED)
    good = token.sign(CLAIMS, key)
    head, body, signature = good.split(".")
    raw = base64.urlsafe_b64decode(signature + "==")
    s = int.from_bytes(raw[32:], "big")
    wrong = _b64(raw[:32] + ((s + 1) % P256_ORDER).to_bytes(32, "big"))
    _refused(f"{head}.{body}.{wrong}", key, Reason.INVALID_SIGNATURE)
    _refused(f"{head}.{body}.{_b64(raw[:63])}", key, Reason.INVALID_SIGNATURE)
    _refused(f"{head}.{_b64(b'[1]')}.{signature}", key, Reason.MALFORMED_ARTIFACT)
    _refused(f"{head}.{body}", key, Reason.MALFORMED_ARTIFACT)
    _refused("a" * (token.MAX_TOKEN_BYTES + 1), key, Reason.MALFORMED_ARTIFACT)
    crit = _b64(json.dumps({"alg": "ES256", "crit": ["x"], "x": 1}).encode())
    _refused(f"{crit}.{body}.{signature}", key, Reason.MALFORMED_ARTIFACT)


def test_a_relying_party_reads_results_without_the_store_or_the_audit_log() -> None:
    """`attest run --verifier` checks a result on every run: what it imports for that is
    its start-up cost, so neither the store nor the audit log (nor SQLAlchemy) comes in."""
    import subprocess
    import sys

    code = ("import sys\nfrom attest.ear import result, keys\nfrom attest.host import http\n"
            "print(' '.join(m for m in ('attest.store', 'attest.audit', 'sqlalchemy')"
            " if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == ""
