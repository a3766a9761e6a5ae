"""attest sign / attest verify-signature against a real swtpm: every bundle here was
signed in the TPM; every altered one was altered as a lying host or a thief would."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from attest.decision import Decision
from attest.policy import TrustedAK, VerifierPolicy
from attest.signing.bundle import Bundle, pae_digest, quote_binding
from attest.signing.dsse import pae
from attest.tpm import keys as signing
from attest.tpm.hierarchy import load_identity
from attest.tpm.quote import create_quote
from attest.verify.signature import verify_bundle
from tests.conftest import Host
from tests.signing.bundles import Json
from tests.signing.bundles import b64 as _b64
from tests.signing.bundles import edit as _edit
from tests.signing.bundles import file as _file
from tests.signing.bundles import reasons as _reasons
from tests.signing.bundles import shown as _shown
from tests.signing.bundles import sign as _sign
from tests.verify.rig import QUOTED, Rig


def _verify(raw: bytes, policy: VerifierPolicy, *paths: Path) -> Decision:
    return verify_bundle(raw, policy, int(time.time()), _shown(*paths))





def test_one_file_signs_and_verifies(rig: Rig) -> None:
    payload = _file(rig, "app.tar", b"release 1.0\n")
    raw = _sign(rig, str(payload))
    decision = _verify(raw, rig.policy(), payload)
    assert decision.accepted, decision.to_json()
    assert decision.host == "web-1"
    assert decision.facts["payload_type"] == "application/octet-stream"
    assert json.loads(raw)["envelope"]["payload"] == _b64(b"release 1.0\n")


def test_several_files_sign_as_a_statement_naming_each(rig: Rig) -> None:
    files = [_file(rig, f"out-{i}.bin", bytes([i]) * 100) for i in range(3)]
    raw = _sign(rig, *map(str, files))
    decision = _verify(raw, rig.policy(), *files)
    assert decision.accepted, decision.to_json()
    assert [s["name"] for s in decision.facts["subjects"]] == [str(f) for f in files]
    assert decision.facts["payload_type"] == "application/vnd.in-toto+json"


def test_one_file_as_a_statement(rig: Rig) -> None:
    payload = _file(rig, "big.img", b"x" * 5000)
    raw = _sign(rig, "--statement", str(payload))
    statement = json.loads(base64.b64decode(json.loads(raw)["envelope"]["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert _verify(raw, rig.policy(), payload).accepted


def test_stdin_signs(rig: Rig) -> None:
    out = rig.tmp / "stdin.json"
    result = rig.host.run("sign", "-", "--out", str(out), input=b"from a pipe")
    assert result.exit_code == 0, result.output
    assert base64.b64decode(json.loads(out.read_bytes())["envelope"]["payload"]) \
        == b"from a pipe"


def test_a_tampered_payload_is_denied(rig: Rig) -> None:
    payload = _file(rig, "app.tar", b"release 1.0\n")
    raw = _sign(rig, str(payload))

    def tamper(data: Json) -> None:
        data["envelope"]["payload"] = _b64(b"release 6.6\n")

    reasons = _reasons(_verify(_edit(raw, tamper), rig.policy()))
    # The DSSE signature does not cover it, nor does the quote's binding.
    assert {"invalid_signature", "binding_mismatch"} <= reasons


def test_a_payload_type_changed_is_denied(rig: Rig) -> None:
    raw = _sign(rig, str(_file(rig, "a", b"a")))

    def retype(data: Json) -> None:
        data["envelope"]["payloadType"] = "application/vnd.in-toto+json"

    # Not parsed as a statement: the key never signed it (test_redteam_bundles).
    assert "invalid_signature" in _reasons(_verify(_edit(raw, retype), rig.policy()))

    def other(data: Json) -> None:
        data["envelope"]["payloadType"] = "text/plain"

    assert "invalid_signature" in _reasons(_verify(_edit(raw, other), rig.policy()))


def test_a_wrong_file_is_denied(rig: Rig) -> None:
    signed = _file(rig, "app.tar", b"release 1.0\n")
    other = _file(rig, "evil.tar", b"release 1.0 with a backdoor\n")
    raw = _sign(rig, str(signed))
    assert _reasons(_verify(raw, rig.policy(), other)) == {"payload_mismatch"}
    files = [_file(rig, f"f{i}", bytes([i])) for i in range(2)]
    statement = _sign(rig, *map(str, files))
    assert _reasons(_verify(statement, rig.policy(), files[0], other)) == {"payload_mismatch"}


def test_evidence_swapped_from_another_bundle_is_denied(rig: Rig) -> None:
    first = json.loads(_sign(rig, str(_file(rig, "one", b"one"))))
    second = json.loads(_sign(rig, str(_file(rig, "two", b"two"))))
    policy = rig.policy()
    swapped = dict(first, quote=second["quote"])
    assert "binding_mismatch" in _reasons(verify_bundle(
        json.dumps(swapped).encode(), policy, int(time.time())))
    # The other bundle's signature under this one's evidence: not over this PAE.
    envelope = dict(first["envelope"], signatures=second["envelope"]["signatures"])
    assert "invalid_signature" in _reasons(verify_bundle(
        json.dumps(dict(first, envelope=envelope)).encode(), policy, int(time.time())))
    # Its time, to pass it off as made at another moment: the quote binds the time.
    assert "binding_mismatch" in _reasons(verify_bundle(
        json.dumps(dict(first, time=second["time"] + 1)).encode(), policy,
        int(time.time()) + 5))


def test_a_quote_not_bound_to_this_signature_is_denied(rig: Rig) -> None:
    raw = _sign(rig, str(_file(rig, "a", b"a")))
    bundle = Bundle.from_bytes(raw)
    # A genuine quote of this TPM, now, over another signature's binding.
    other = quote_binding(pae_digest(pae("text/plain", b"b")), bundle.time,
                          bytes.fromhex(bundle.keyid), bundle.eks, bundle.runtime_log, None)
    with rig.tpm() as tpm:
        quote = create_quote(tpm, rig.identity, QUOTED, other)

    def requote(data: Json) -> None:
        data["quote"]["message"] = _b64(quote.message)
        data["quote"]["signature"] = _b64(quote.signature)
        data["quote"]["pcrs"] = {str(i): v.hex() for (_, i), v in quote.pcr_values.items()}

    assert _reasons(_verify(_edit(raw, requote), rig.policy())) == {"binding_mismatch"}


def test_a_key_not_certified_is_denied(rig: Rig) -> None:
    raw = _sign(rig, str(_file(rig, "a", b"a")))
    record = signing.load_key(rig.home, rig.key)
    # A genuine TPM2_Certify of this key by this AK, but made for something else.
    with rig.tpm() as tpm:
        message, signature = signing.certify(tpm, rig.identity, record, b"\x01" * 32)

    def recertify(data: Json) -> None:
        data["key"]["certify"] = _b64(message)
        data["key"]["certify_signature"] = _b64(signature)

    assert "key_not_certified" in _reasons(_verify(_edit(raw, recertify), rig.policy()))
    # Another key of the same TPM, certified as it should be, in place of the signer.
    rig.host.ok("key", "create", "--name", "other")
    other = json.loads(_sign(rig, "--key", "other", str(_file(rig, "b", b"b"))))

    def other_key(data: Json) -> None:
        data["key"] = other["key"]

    assert _reasons(_verify(_edit(raw, other_key), rig.policy())) & {
        "key_not_certified", "binding_mismatch"}


def test_an_ak_the_policy_does_not_trust_is_denied(rig: Rig, host: Host) -> None:
    raw = _sign(rig, str(_file(rig, "a", b"a")))
    # Another TPM's AK is the one trusted as web-1.
    other = load_identity(host.home)
    policy = rig.policy(trusted_aks=[TrustedAK("web-1", other.ak_public,
                                               other.ak_qualified_name or None)])
    assert _reasons(_verify(raw, policy)) == {"ak_unknown"}
    # A policy that trusts a verifier's enrollments: there is no store offline.
    assert _reasons(_verify(raw, rig.policy(trusted_aks=[]))) == {"ak_unknown"}


def test_sealed_pcrs_changed_before_signing_refuse_to_sign(rig: Rig) -> None:
    policy = rig.policy()
    raw = _sign(rig, str(_file(rig, "a", b"a")))
    assert _verify(raw, policy).accepted
    rig.host.ok("pcr", "extend", "7", "--data", "secure boot policy changed")
    out = rig.tmp / "refused.json"
    result = rig.host.run("sign", str(rig.tmp / "a"), "--out", str(out), "--json")
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["error"]["reason"] == "key_policy_mismatch"
    assert not out.exists()


def test_an_unexpected_runtime_measurement_is_denied(rig: Rig) -> None:
    policy = rig.policy()  # knows `ls` only
    rig.host.ok("measure", "command", "--", "cat")
    raw = _sign(rig, str(_file(rig, "a", b"a")))
    assert _reasons(_verify(raw, policy)) == {"reference_value_mismatch"}


def test_a_signature_from_the_future_is_denied(rig: Rig) -> None:
    raw = _sign(rig, str(_file(rig, "a", b"a")))
    assert _reasons(verify_bundle(raw, rig.policy(), int(time.time()) - 3600)) \
        == {"not_yet_valid"}


def test_every_single_byte_change_is_denied(rig: Rig) -> None:
    raw = _sign(rig, str(_file(rig, "a", b"payload")))
    policy = rig.policy()
    now = int(time.time())
    assert verify_bundle(raw, policy, now).accepted
    accepted = []
    for at in range(len(raw)):
        for mask in (0x01, 0x20):
            mutant = raw[:at] + bytes([raw[at] ^ mask]) + raw[at + 1:]
            if verify_bundle(mutant, policy, now).accepted:
                accepted.append((at, mask, raw[max(0, at - 20):at + 20]))
    assert not accepted


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")
def test_openssl_verifies_the_dsse_signature(rig: Rig) -> None:
    raw = _sign(rig, str(_file(rig, "a", b"checked by openssl")))
    bundle = Bundle.from_bytes(raw)
    (rig.tmp / "pae").write_bytes(bundle.pae)
    (rig.tmp / "sig.der").write_bytes(bundle.signature)
    (rig.tmp / "key.pem").write_bytes(signing.load_key(rig.home, rig.key).public_pem())
    done = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(rig.tmp / "key.pem"),
                           "-signature", str(rig.tmp / "sig.der"), str(rig.tmp / "pae")],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0 and "Verified OK" in done.stdout, done.stdout + done.stderr


def test_cli_verify_signature_exit_codes_and_json(rig: Rig) -> None:
    payload = _file(rig, "app.tar", b"release")
    other = _file(rig, "other.tar", b"other")
    raw = _sign(rig, str(payload))
    bundle = _file(rig, "b.json", raw)
    rig.policy()
    policy = sorted(rig.tmp.glob("policy-*.yaml"))[-1]
    ok = rig.host.run("verify-signature", str(bundle), str(payload), "--policy", str(policy),
                      "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["accepted"] is True
    denied = rig.host.run("verify-signature", str(bundle), str(other), "--policy",
                          str(policy), "--json")
    assert denied.exit_code == 1
    assert json.loads(denied.stdout)["reasons"] == ["payload_mismatch"]
    usage = rig.host.run("verify-signature", str(bundle), str(rig.tmp / "missing"),
                         "--policy", str(policy))
    assert usage.exit_code == 2


def test_a_keyid_other_than_the_certified_key_is_denied(rig: Rig) -> None:
    raw = _sign(rig, str(_file(rig, "a", b"a")))

    def rename(data: Json) -> None:
        data["envelope"]["signatures"][0]["keyid"] = "000b" + "00" * 32

    assert _reasons(_verify(_edit(raw, rename), rig.policy())) == {"key_not_certified"}


def test_a_signature_in_another_encoding_is_denied(rig: Rig) -> None:
    raw = _sign(rig, str(_file(rig, "a", b"a")))
    der = Bundle.from_bytes(raw).signature
    # The same (r, s) with a long-form SEQUENCE length: BER, not DER.
    ber = b"\x30\x81" + der[1:2] + der[2:]

    def reencode(data: Json) -> None:
        data["envelope"]["signatures"][0]["sig"] = _b64(ber)

    assert _reasons(_verify(_edit(raw, reencode), rig.policy())) == {"invalid_signature"}


def test_pcr_values_outside_the_quote_are_denied(rig: Rig) -> None:
    raw = _sign(rig, str(_file(rig, "a", b"a")))

    def add(data: Json) -> None:
        data["quote"]["pcrs"]["16"] = "00" * 32

    assert "pcr_digest_mismatch" in _reasons(_verify(_edit(raw, add), rig.policy()))


def test_a_single_signature_claiming_a_batch_it_is_not_in_is_denied(rig: Rig) -> None:
    raw = _sign(rig, str(_file(rig, "a", b"a")))

    def batch(data: Json) -> None:
        data["batch"] = {"root": "11" * 32, "index": 0, "size": 1, "proof": []}

    assert _reasons(_verify(_edit(raw, batch), rig.policy())) == {"batch_proof_invalid"}


def test_a_statement_payload_that_is_no_statement_is_denied(rig: Rig) -> None:
    garbage = _file(rig, "s.json", b'{"_type": "https://in-toto.io/Statement/v1"}')
    raw = _sign(rig, "--payload-type", "application/vnd.in-toto+json", str(garbage))
    assert _reasons(_verify(raw, rig.policy())) == {"malformed_artifact"}


def test_a_payload_over_the_bound_is_refused_at_signing(rig: Rig) -> None:
    big = _file(rig, "big", b"\0" * ((4 << 20) + 1))
    result = rig.host.run("sign", str(big), "--out", str(rig.tmp / "big.json"))
    assert result.exit_code == 2 and "--statement" in result.output
    assert _verify(_sign(rig, "--statement", str(big)), rig.policy(), big).accepted


def test_a_standard_dsse_library_verifies_the_envelope(rig: Rig) -> None:
    dsse = pytest.importorskip("securesystemslib.dsse")
    signer = pytest.importorskip("securesystemslib.signer")
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    raw = _sign(rig, str(_file(rig, "a", b"checked by securesystemslib")))
    envelope = dsse.Envelope.from_dict(json.loads(raw)["envelope"])
    pem = signing.load_key(rig.home, rig.key).public_pem()
    key = signer.SSlibKey.from_crypto(load_pem_public_key(pem),
                                      keyid=Bundle.from_bytes(raw).keyid,
                                      scheme="ecdsa-sha2-nistp256")
    assert list(envelope.verify([key], 1)) == [key.keyid]
    envelope.payload = b"checked by someone else"
    errors = pytest.importorskip("securesystemslib.exceptions")
    with pytest.raises(errors.VerificationError):
        envelope.verify([key], 1)


def test_concurrent_signers_on_one_host_all_succeed(rig: Rig) -> None:
    import os
    import sys

    env = {**os.environ, **rig.host.env, "PYTHONPATH": str(Path(__file__).parents[2])}
    files = [_file(rig, f"c{i}", bytes([i]) * 10) for i in range(4)]
    signers = [subprocess.Popen(
        [sys.executable, "-m", "attest.cli.main", "sign", str(f), "--out", f"{f}.bundle"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for f in files]
    for signer in signers:
        _, err = signer.communicate(timeout=120)
        assert signer.returncode == 0, err.decode()
    policy = rig.policy()
    for f in files:
        assert _verify(Path(f"{f}.bundle").read_bytes(), policy, f).accepted


def test_the_other_form_of_a_valid_signature_is_denied(rig: Rig) -> None:
    """(r, n - s) verifies as ECDSA too: bundles carry the low-S form only, so nobody
    makes a second valid bundle out of a first (a flip of s that still verifies)."""
    from cryptography.hazmat.primitives.asymmetric.utils import (
        decode_dss_signature,
        encode_dss_signature,
    )

    from attest.signing.bundle import P256_ORDER

    raw = _sign(rig, str(_file(rig, "a", b"a")))
    r, s = decode_dss_signature(Bundle.from_bytes(raw).signature)
    assert s <= P256_ORDER // 2  # made low-S at signing, whatever the TPM returned

    def high(data: Json) -> None:
        data["envelope"]["signatures"][0]["sig"] = _b64(encode_dss_signature(r, P256_ORDER - s))

    assert _reasons(_verify(_edit(raw, high), rig.policy())) == {"invalid_signature"}
