"""Strict JSON in artifacts: a JWS whose header or claims name a member twice is refused,
even when signed inside the TPM, since two readers could take two different values."""

from __future__ import annotations

import json

import pytest

from attest.artifact import jws
from attest.artifact.model import b64url
from attest.errors import AttestError, EventLogError
from attest.eventlog.cel import parse_cel
from attest.host.runtime.log import RuntimeLog
from attest.policy import Rule
from attest.tpm import keys as signing
from attest.tpm.hierarchy import identity_path, load_identity
from tests.verify.rig import Rig, accepted, b64d, denied

ANY_RULE = [Rule(("*",), ("*",), ("*",), ("*",))]


def resigned(rig: Rig, header: bytes, payload: bytes) -> bytes:
    """A JWS over these exact header and payload texts, signed in the TPM by the host key."""
    signing_input = (b64url(header) + "." + b64url(payload)).encode()
    return jws.assemble(signing_input, rig.sign(signing_input))


def texts(raw: bytes) -> tuple[bytes, bytes]:
    header, payload, _ = raw.split(b".")
    return b64d(header), b64d(payload)


@pytest.mark.parametrize(("part", "first", "member"), [
    # The first spelling is what a last-wins reader skips and a first-wins reader obeys.
    ("header", b'{"alg":"none",', "alg"),
    ("payload", b'{"sub":"root",', "sub"),
    ("payload", b'{"exp":4102444800,', "exp"),
])
def test_a_member_twice_in_the_jws_is_malformed(rig: Rig, part: str, first: bytes,
                                                member: str) -> None:
    raw = rig.issue()
    header, payload = texts(raw)
    verifier = rig.verifier(rig.policy(rules=ANY_RULE))
    if part == "header":
        header = first + header[1:]
    else:
        payload = first + payload[1:]
    decision = verifier.verify(resigned(rig, header, payload))
    denied(decision, "malformed_artifact")
    assert f"{member!r} appears twice" in decision.denials[0].message
    accepted(verifier.verify(raw))  # the same texts without the twin member


def test_a_member_twice_inside_the_scope_is_malformed(rig: Rig) -> None:
    raw = rig.issue()
    header, payload = texts(raw)
    assert b'"scope":{' in payload
    payload = payload.replace(b'"scope":{', b'"scope":{"argv":["rm","-rf","/"],', 1)
    decision = rig.verifier(rig.policy(rules=ANY_RULE)).verify(resigned(rig, header, payload))
    denied(decision, "malformed_artifact")
    assert "'argv' appears twice" in decision.denials[0].message


def test_the_host_runtime_log_with_a_member_twice_is_refused(rig: Rig) -> None:
    text = RuntimeLog(rig.home).path.read_bytes()
    assert parse_cel(text).records
    forged = text.replace(b'{"', b'{"pcr":16,"', 1)
    with pytest.raises(EventLogError, match="'pcr' appears twice"):
        parse_cel(forged)


def test_host_files_with_a_member_twice_are_refused(rig: Rig) -> None:
    key_path = signing.key_dir(rig.home, rig.key) / "key.json"
    for path in (key_path, identity_path(rig.home)):
        text = path.read_text().lstrip()
        first = next(iter(json.loads(text)))  # a member the file has: written twice
        path.write_text(f'{{"{first}":null,' + text[1:])
    with pytest.raises((ValueError, AttestError), match="appears twice"):
        signing.load_key(rig.home, rig.key)
    with pytest.raises((ValueError, AttestError), match="appears twice"):
        load_identity(rig.home)
