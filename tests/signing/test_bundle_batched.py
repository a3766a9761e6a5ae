"""Batched signature bundles against a real swtpm: one TPM signature and one quote over a
batch's value, one bundle per payload, each verified offline with its inclusion proof.
Every altered bundle is altered as a host (or a thief holding bundles) would, to pass a
payload off as signed: a forged proof, a root reused for a payload not in its batch, a
signature moved between the batched and the single form, and every flipped byte."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
import subprocess
import time
from collections.abc import Callable

import pytest

from attest.decision import Decision
from attest.host.sign import sign_batch, sign_payload
from attest.policy import VerifierPolicy
from attest.signing import batch
from attest.signing.bundle import Bundle
from attest.signing.dsse import pae
from attest.signing.statement import PAYLOAD_TYPE, Statement, Subject
from attest.tpm import keys as signing
from attest.verify.signature import ShownFile, verify_bundle
from tests.signing.bundles import Json
from tests.signing.bundles import b64 as _b64
from tests.signing.bundles import edit as _edit
from tests.signing.bundles import reasons as _reasons
from tests.verify.rig import Rig

SEED = 20261203
# Every byte when ATTEST_FULL_MUTATION=1; a sample otherwise (the suite's time budget).
_FULL = os.environ.get("ATTEST_FULL_MUTATION") == "1"


def _payloads(n: int) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for i in range(n):
        if i % 3 == 2:
            statement = Statement((Subject(f"dist/app-{i}.tar",
                                           hashlib.sha256(b"%d" % i).hexdigest()),))
            out.append((PAYLOAD_TYPE, statement.to_bytes()))
        else:
            out.append(("application/octet-stream", b"build output %d\n" % i))
    return out


def _batched(rig: Rig, n: int) -> list[bytes]:
    with rig.tpm() as tpm:
        return [b.to_bytes() for b in sign_batch(tpm, rig.home, _payloads(n), int(time.time()))]


def _verify(raw: bytes, policy: VerifierPolicy, *shown: bytes) -> Decision:
    files = [ShownFile(f"file-{i}", hashlib.sha256(d).digest()) for i, d in enumerate(shown)]
    return verify_bundle(raw, policy, int(time.time()), files)





@pytest.fixture
def bundles(rig: Rig) -> list[bytes]:
    return _batched(rig, 5)


def test_each_payload_of_a_batch_verifies_with_its_proof(rig: Rig, bundles: list[bytes]) -> None:
    policy = rig.policy()
    parsed = [Bundle.from_bytes(raw) for raw in bundles]
    # One TPM signature and one quote for the lot; each bundle its own index and proof.
    assert len({b.signature for b in parsed}) == 1 and len({b.quote for b in parsed}) == 1
    assert [b.batch.index for b in parsed if b.batch] == list(range(5))
    assert {b.batch.size for b in parsed if b.batch} == {5}
    for raw, (_, payload) in zip(bundles, _payloads(5), strict=True):
        decision = _verify(raw, policy, *([] if b"Statement" in payload else [payload]))
        assert decision.accepted, decision.to_json()
        assert decision.host == "web-1"
    # A subject of a batched statement matches the file it names.
    assert _verify(bundles[2], policy, b"2").accepted
    assert _reasons(_verify(bundles[2], policy, b"3")) == {"payload_mismatch"}


def test_a_batch_of_one_verifies(rig: Rig) -> None:
    (raw,) = _batched(rig, 1)
    assert json.loads(raw)["batch"]["proof"] == []
    assert _verify(raw, rig.policy(), b"build output 0\n").accepted


def test_a_forged_inclusion_proof_is_denied(rig: Rig, bundles: list[bytes]) -> None:
    def forge(data: Json) -> None:
        proof = data["batch"]["proof"]
        proof[0] = ("0" if proof[0][0] != "0" else "1") + proof[0][1:]

    assert _reasons(_verify(_edit(bundles[1], forge), rig.policy())) == {"batch_proof_invalid"}


def test_a_root_reused_for_a_payload_not_in_the_batch_is_denied(
        rig: Rig, bundles: list[bytes]) -> None:
    """A thief holding one bundle of the batch swaps in their payload: its leaf is not
    under the signed root, whatever index or proof of the batch it claims."""
    policy = rig.policy()
    data = json.loads(bundles[0])
    others = [json.loads(raw)["batch"] for raw in bundles]

    for claimed in others:  # every membership of the real batch, with the thief's payload
        def swap(d: Json, claimed: Json = claimed) -> None:
            d["envelope"]["payload"] = _b64(b"malware\n")
            d["batch"] = claimed

        assert _reasons(_verify(_edit(bundles[0], swap), policy, b"malware\n")) == {
            "batch_proof_invalid"}
    # Another bundle's payload under this bundle's membership: in the batch, not here.
    data["envelope"]["payload"] = json.loads(bundles[1])["envelope"]["payload"]
    assert _reasons(_verify(json.dumps(data).encode(), policy)) == {"batch_proof_invalid"}


def test_a_membership_of_another_size_or_index_is_denied(rig: Rig, bundles: list[bytes]) -> None:
    """RFC 9162 verification alone does not pin the size (attest.signing.batch): a
    membership claiming another size asks for a batch value the TPM never signed."""
    policy = rig.policy()
    # Leaf 0 of 5 and of 6 have proofs of the same length: only the signed value tells.
    assert batch.proof_length(0, 5) == batch.proof_length(0, 6)

    def resize(data: Json) -> None:
        data["batch"]["size"] = 6

    # The proof still walks to the root; the signature and the quote are over size 5.
    assert _reasons(_verify(_edit(bundles[0], resize), policy)) == {
        "invalid_signature", "binding_mismatch"}

    def reindex(data: Json) -> None:
        data["batch"]["index"] = 1

    assert _reasons(_verify(_edit(bundles[0], reindex), policy)) == {"batch_proof_invalid"}


def test_a_root_of_the_host_s_own_making_is_not_signed(rig: Rig, bundles: list[bytes]) -> None:
    """The host builds a tree of its own holding the payload it wants and claims the
    batch's signature for it: the signature covers another root; the quote too."""
    policy = rig.policy()
    wanted = pae("application/octet-stream", b"never asked for\n")
    _, members = batch.build([wanted, b"filler"])

    def own_tree(data: Json) -> None:
        data["envelope"]["payload"] = _b64(b"never asked for\n")
        data["batch"] = members[0].to_json()

    assert _reasons(_verify(_edit(bundles[0], own_tree), policy)) >= {
        "invalid_signature", "binding_mismatch"}


def test_signatures_never_move_between_the_batched_and_the_single_form(rig: Rig) -> None:
    policy = rig.policy()
    (batched,) = _batched(rig, 1)  # a batch of one: its root is its own leaf

    def unbatch(data: Json) -> None:
        data["batch"] = None

    assert _reasons(_verify(_edit(batched, unbatch), policy)) >= {
        "invalid_signature", "binding_mismatch"}
    with rig.tpm() as tpm:
        single = sign_payload(tpm, rig.home, "application/octet-stream", b"build output 0\n",
                              int(time.time())).to_bytes()
    member = batch.build([pae("application/octet-stream", b"build output 0\n")])[1][0]

    def rebatch(data: Json) -> None:
        data["batch"] = member.to_json()

    assert _reasons(_verify(_edit(single, rebatch), policy)) >= {
        "invalid_signature", "binding_mismatch"}


def test_an_unexpected_runtime_measurement_denies_every_bundle_of_the_batch(rig: Rig) -> None:
    policy = rig.policy()  # knows `ls` only
    rig.host.ok("measure", "command", "--", "cat")  # logged and extended; not allowed
    for raw in _batched(rig, 3):
        assert _reasons(_verify(raw, policy)) == {"reference_value_mismatch"}


def _mutants(raw: bytes, rng: random.Random) -> list[tuple[str, bytes]]:
    """Flipped bytes of the bundle's text, and of each decoded binary field (encoded
    again, so the flip reaches the checks behind the parser), batch hashes included."""
    stride = 1 if _FULL else 7
    out = [(f"text[{i}]", raw[:i] + bytes([raw[i] ^ rng.randrange(1, 256)]) + raw[i + 1:])
           for i in range(0, len(raw), stride)]
    data = json.loads(raw)
    fields: dict[str, tuple[Callable[[Json], str], Callable[[Json, str], None]]] = {
        "payload": (lambda d: d["envelope"]["payload"],
                    lambda d, v: d["envelope"].__setitem__("payload", v)),
        "sig": (lambda d: d["envelope"]["signatures"][0]["sig"],
                lambda d, v: d["envelope"]["signatures"][0].__setitem__("sig", v)),
        "runtime_log": (lambda d: d["runtime_log"], lambda d, v: d.__setitem__("runtime_log", v)),
        **{f"{top}.{name}": (lambda d, t=top, n=name: d[t][n],
                             lambda d, v, t=top, n=name: d[t].__setitem__(n, v))
           for top, names in (("key", ("public", "certify", "certify_signature")),
                              ("quote", ("message", "signature")), ("ak", ("public",)))
           for name in names},
    }
    for name, (get, put) in fields.items():
        value = base64.b64decode(get(data))
        for i in sorted({0, len(value) - 1, *rng.sample(range(len(value)),
                                                         min(len(value), 10))}):
            mutated = json.loads(raw)
            flipped = bytearray(value)
            flipped[i] ^= rng.randrange(1, 256)
            put(mutated, _b64(bytes(flipped)))
            out.append((f"{name}[{i}]", json.dumps(mutated).encode()))
    for k in range(len(data["batch"]["proof"])):
        mutated = json.loads(raw)
        digest = bytearray(bytes.fromhex(mutated["batch"]["proof"][k]))
        digest[rng.randrange(32)] ^= 1 << rng.randrange(8)
        mutated["batch"]["proof"][k] = digest.hex()
        out.append((f"proof[{k}]", json.dumps(mutated).encode()))
    return out


def test_no_flipped_byte_of_a_batched_bundle_is_accepted(rig: Rig, bundles: list[bytes]) -> None:
    policy = rig.policy()
    raw = bundles[3]
    original = json.loads(raw)
    wrong: list[str] = []
    tried = 0
    for where, mutant in _mutants(raw, random.Random(SEED)):  # noqa: S311 - sampling
        try:
            same = json.loads(mutant) == original  # a flip inside JSON whitespace, say
        except ValueError:
            same = False
        decision = _verify(mutant, policy)
        tried += 1
        if decision.accepted and not same:
            wrong.append(f"{where}: accepted")
        elif "internal_error" in decision.reasons:
            wrong.append(f"{where}: {decision.to_json()['denials']}")
    assert wrong == [], "\n".join(wrong[:20])
    assert tried >= len(raw) // 7
    assert _verify(raw, policy).accepted


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")
def test_openssl_verifies_a_batch_signature_over_its_batch_value(
        rig: Rig, bundles: list[bytes]) -> None:
    """A batched bundle's signature is ECDSA over batch_value, a digest: openssl checks it
    as one (pkeyutl, no hashing), once the proof is checked (attest.signing.batch)."""
    bundle = Bundle.from_bytes(bundles[4])
    assert bundle.batch is not None
    (rig.tmp / "value").write_bytes(batch.signed_value(bundle.pae, bundle.batch))
    (rig.tmp / "sig.der").write_bytes(bundle.signature)
    (rig.tmp / "key.pem").write_bytes(signing.load_key(rig.home, rig.key).public_pem())
    done = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey",
                           str(rig.tmp / "key.pem"), "-in", str(rig.tmp / "value"),
                           "-sigfile", str(rig.tmp / "sig.der")],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0 and "Signature Verified Successfully" in done.stdout, \
        done.stdout + done.stderr


def test_a_dsse_library_refuses_a_batched_envelope_as_a_bare_signature(
        rig: Rig, bundles: list[bytes]) -> None:
    """The domain separation at work: the batch signature is no DSSE signature of the
    envelope, so a DSSE library given only the envelope refuses it (it needs the proof)."""
    dsse = pytest.importorskip("securesystemslib.dsse")
    signer = pytest.importorskip("securesystemslib.signer")
    errors = pytest.importorskip("securesystemslib.exceptions")
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    envelope = dsse.Envelope.from_dict(json.loads(bundles[0])["envelope"])
    key = signer.SSlibKey.from_crypto(
        load_pem_public_key(signing.load_key(rig.home, rig.key).public_pem()),
        keyid=Bundle.from_bytes(bundles[0]).keyid, scheme="ecdsa-sha2-nistp256")
    with pytest.raises(errors.VerificationError):
        envelope.verify([key], 1)


def test_a_batch_s_bundles_made_from_the_shared_text_are_the_bundles(rig: Rig) -> None:
    """Signing.bundle_bytes (the agent's fast path: the evidence rendered once a batch) is
    byte for byte Signing.bundle(...).to_bytes(), and refuses what the TPM did not sign."""
    from attest.errors import UsageError
    from attest.host.sign import sign_evidence

    payloads = _payloads(4)
    value, members = batch.build([pae(t, p) for t, p in payloads])
    with rig.tpm() as tpm:
        signing_ = sign_evidence(tpm, rig.home, value, int(time.time()))
    for (kind, payload), member in zip(payloads, members, strict=True):
        made = signing_.bundle_bytes(kind, payload, member)
        assert made == signing_.bundle(kind, payload, member).to_bytes()
        assert Bundle.from_bytes(made) == signing_.bundle(kind, payload, member)
        assert _verify(made, rig.policy()).accepted
    with pytest.raises(UsageError):
        signing_.bundle_bytes("application/octet-stream", b"not in the batch", members[0])
