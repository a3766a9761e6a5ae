"""`attest sign` through the host agent: the payload goes in a memfd, the bundle comes
back in one, and nothing is believed before it is checked.

The agent is this user's (or root's: attest.host.agent.client.connect checks the socket
and the peer), but what it hands back is checked as if it were not, because a bundle
written is a claim to whoever reads it: the bundle parses (Bundle.from_bytes, strict);
its envelope carries exactly the payload and payload type sent; its batch proof puts
that payload's PAE under the batch root (attest.signing.batch.signed_value); its keyid is
the asked key's TPM name and the signature verifies with that key's public key over the
batch value; and it carries the boot log when one was asked for. Anything else is an
environment problem (exit 3): the agent is not doing its job, and nothing is written.
"""

from __future__ import annotations

import os
import socket
import stat
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from attest.errors import AttestError, BatchProofError, EnvironmentProblem, EvidenceError
from attest.host.agent.wire import WireError, read_bounded, receive, send
from attest.reasons import Reason
from attest.signing import batch
from attest.signing.batch import Membership
from attest.signing.bundle import MAX_BUNDLE_BYTES, Bundle
from attest.signing.dsse import pae

ANSWER_TIMEOUT_S = 330.0  # the agent's own wait (attest.host.agent.signing) and then some


class AgentSignRefused(AttestError):
    """The agent answered with an error: its exit code and reason code, not ours."""

    def __init__(self, message: str, exit_code: int, reason: Reason | None) -> None:
        super().__init__(message, reason=reason)
        self.exit_code = exit_code


@dataclass(frozen=True)
class AgentSigned:
    bundle: Bundle
    data: bytes  # the bundle's bytes as the agent wrote them (checked: they parse as it)
    membership: Membership  # the bundle's batch member


def sign_through(sock: socket.socket, *, key: str, key_name: bytes, key_public_pem: bytes,
                 payload_type: str, payload: bytes, boot_log: bool,
                 approvals: list[str]) -> AgentSigned:
    """Have the agent at ``sock`` sign ``payload``; the bundle, checked (see the module
    docstring). ``key_name``: the key's TPM name; ``key_public_pem``: its public key."""
    fd = os.memfd_create("attest-payload", os.MFD_CLOEXEC)
    try:
        view, at = memoryview(payload), 0
        while at < len(payload):
            at += os.write(fd, view[at:])
        request = {"op": "sign", "key": key, "payload_type": payload_type,
                   "boot_log": boot_log, "approvals": approvals}
        sock.settimeout(ANSWER_TIMEOUT_S)
        try:
            send(sock, request, fd)
        except (WireError, OSError) as exc:
            raise EnvironmentProblem(f"the agent did not take the request: {exc}") from None
    finally:
        os.close(fd)
    try:
        answer, out = receive(sock)
    except (WireError, OSError) as exc:
        raise EnvironmentProblem(f"the agent did not answer: {exc}") from None
    try:
        if answer.get("ok") is not True:
            raise _refusal(answer)
        if out is None:
            raise EnvironmentProblem("the agent answered without the bundle")
        data = _read_bundle(out)
    finally:
        if out is not None:
            os.close(out)
    bundle, member = check_bundle(data, key_name=key_name, key_public_pem=key_public_pem,
                          payload_type=payload_type, payload=payload, boot_log=boot_log)
    if answer.get("batched") != {"index": member.index, "size": member.size}:
        raise _lying("its answer and its bundle disagree on where the payload sits in "
                     "its batch")
    return AgentSigned(bundle, data, member)


def check_bundle(data: bytes, *, key_name: bytes, key_public_pem: bytes,
                 payload_type: str, payload: bytes, boot_log: bool
                 ) -> tuple[Bundle, Membership]:
    """``data`` as a bundle of exactly this payload, batched, signed by this key; else
    EnvironmentProblem saying what is wrong."""
    try:
        bundle = Bundle.from_bytes(data)
    except (EvidenceError, BatchProofError) as exc:
        raise _lying(f"its bundle does not parse: {exc.message}") from None
    if bundle.envelope.payload_type != payload_type or bundle.envelope.payload != payload:
        raise _lying("its bundle is of another payload")
    if bundle.batch is None:
        raise _lying("its bundle is not batched")
    try:
        value = batch.signed_value(pae(payload_type, payload), bundle.batch)
    except BatchProofError as exc:
        raise _lying(f"its batch proof does not hold: {exc.message}") from None
    if bundle.keyid != key_name.hex():
        raise _lying("its bundle names another key")
    public = serialization.load_pem_public_key(key_public_pem)
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise _lying("the key is not an EC key")
    try:
        public.verify(bundle.signature, value, ec.ECDSA(Prehashed(hashes.SHA256())))
    except (InvalidSignature, ValueError):
        raise _lying("its signature does not verify with the key") from None
    if boot_log and bundle.boot_log is None:
        raise _lying("its bundle carries no boot log")
    return bundle, bundle.batch


def _read_bundle(fd: int) -> bytes:
    """At most MAX_BUNDLE_BYTES from offset 0 of the regular file ``fd`` (a FIFO or a
    device would never end)."""
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        raise _lying("it answered with a descriptor that is not a file")
    data = read_bounded(fd, MAX_BUNDLE_BYTES)
    if len(data) > MAX_BUNDLE_BYTES:
        raise _lying(f"its bundle is over {MAX_BUNDLE_BYTES} bytes")
    return data


def _refusal(answer: dict[str, Any]) -> AttestError:
    error, code, reason = answer.get("error"), answer.get("exit"), answer.get("reason")
    known = {r.value: r for r in Reason}
    return AgentSignRefused(
        f"the agent refused: {error if isinstance(error, str) else 'no reason given'}",
        code if type(code) is int and code in (1, 2, 3) else 3,
        known.get(reason) if isinstance(reason, str) else None)


def _lying(what: str) -> EnvironmentProblem:
    return EnvironmentProblem(f"the agent's answer is refused: {what}",
                              hint="sign without it (attest sign --no-agent) and check "
                              "the agent")


__all__ = ["AgentSignRefused", "AgentSigned", "check_bundle", "sign_through"]
