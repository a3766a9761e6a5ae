"""Red team of the signature bundle verifier: each test is one attack, as a thief holding
other people's bundles or as the signing host's own user (any TPM command on its swtpm,
any byte of its home). Attacks that found a hole name it in their docstring; the others
are kept so that the hole they probe stays shut."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from tpm2_pytss import (
    ESYS_TR,
    TPM2_ALG,
    TPM2_RC,
    TPM2_SE,
    TPM2B_DIGEST,
    TPM2B_PUBLIC,
    TPMA_OBJECT,
    TPMT_SIG_SCHEME,
    TSS2_Exception,
)

from attest import strictjson
from attest.errors import EvidenceError, UsageError
from attest.host.sign import sign_evidence, sign_payload
from attest.reasons import Reason
from attest.signing.batch import Membership
from attest.signing.bundle import Bundle, pae_digest, quote_binding
from attest.signing.dsse import Envelope, Signature, pae
from attest.signing.statement import Statement
from attest.tpm import keys as tpm_keys
from attest.tpm.hierarchy import ak_handle
from attest.tpm.pcr import read_pcrs, to_tpml
from attest.tpm.quote import create_quote
from attest.verify.signature import verify_bundle
from tests.signing.bundles import Json
from tests.signing.bundles import b64 as _b64
from tests.signing.bundles import file as _file
from tests.signing.bundles import shown as _shown
from tests.signing.bundles import sign as _sign
from tests.verify.rig import KEY_ATTRIBUTES, QUOTED, Rig
from tests.verify.test_approvals import SEALED, Approvals, approvals
from tests.verify.test_log_sources import booted

__all__ = ["approvals", "booted"]





def _largest_bundle() -> Bundle:
    """A bundle with every list and map at its bound: 24 PCRs, 8 EK ids, a 16-hash proof."""
    return Bundle(
        envelope=Envelope("application/vnd.in-toto+json", b"{}", (Signature("0b", b"0"),)),
        batch=Membership(0, 1 << 16, b"\x11" * 32, (b"\x22" * 32,) * 16),
        time=1, key_public=b"k", certify=b"c", certify_signature=b"s", quote=b"q",
        quote_signature=b"qs", bank="sha256", pcrs={i: b"\0" * 32 for i in range(24)},
        ak_public=b"a", ak_qualified_name=b"\x00\x0b", eks=("ab" * 32,) * 8,
        runtime_log=b"", boot_log=None, approval=b"{}")



def _edit(raw: bytes, path: tuple[str | int, ...], value: Any) -> bytes:
    """``raw`` with the member at ``path`` set to ``value``."""
    data = json.loads(raw)
    target = data
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return json.dumps(data).encode()

# -- hostile JSON: memory and time before any check -------------------------------------

@pytest.mark.parametrize("values", [b"[],", b"{},", b"0,", b"[[[[[[[[[[]]]]]]]]]],"])
def test_a_bundle_of_millions_of_json_values_is_refused_before_it_is_parsed(
        values: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found: 16 MiB of small JSON values (a thief needs no key) were parsed whole before
    any check: 0.5 GB and 4 s for "[],", 0.8 GB and 10 s for nested lists (their depth
    walk). Now counted, in C, before the parser runs."""
    head = json.loads(_largest_bundle().to_bytes())
    head["ek"] = []
    text = json.dumps(head).encode()
    at = text.index(b'"ek": [') + len(b'"ek": [')
    room = (16 << 20) - len(text) - 1
    hostile = text[:at] + values * (room // len(values)) + b"0" + text[at:]
    assert len(hostile) <= 16 << 20

    def parse(_: bytes) -> Any:
        raise AssertionError("a hostile text reached the JSON parser")

    monkeypatch.setattr(strictjson, "loads", parse)
    with pytest.raises(EvidenceError) as caught:
        Bundle.from_bytes(hostile)
    assert caught.value.reason is Reason.MALFORMED_ARTIFACT


def test_the_largest_honest_bundle_is_under_the_value_bound() -> None:
    made = _largest_bundle()
    assert Bundle.from_bytes(made.to_bytes()) == made
    compact = json.dumps(made.to_json(), separators=(",", ":")).encode()
    assert Bundle.from_bytes(compact) == made




def test_a_statement_nobody_signed_is_never_parsed(rig: Rig,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Found: the verifier parsed a statement payload (JSON, up to 4 MiB) before checking
    anything else, so anyone's bundle bought the JSON parser's time and memory (4 MiB of
    nested lists: seconds and 200 MB). Now parsed only once the key's signature over it
    verified."""
    honest = _file(rig, "a.tar", b"release")
    raw = _sign(rig, "--statement", str(honest))
    hostile = b"[" * 20 + b"]" * 20
    forged = _edit(raw, ("envelope", "payload"), _b64((hostile + b",") * 1000 + hostile))
    parsed: list[bytes] = []
    real = Statement.from_bytes

    def spy(data: bytes) -> Statement:
        parsed.append(data)
        return real(data)

    monkeypatch.setattr(Statement, "from_bytes", staticmethod(spy))
    decision = verify_bundle(forged, rig.policy(), int(time.time()), _shown(honest))
    assert not decision.accepted and "invalid_signature" in decision.reasons
    assert parsed == []
    # The signed statement is parsed, and its subject matches.
    assert verify_bundle(raw, rig.policy(), int(time.time()), _shown(honest)).accepted
    assert len(parsed) == 1


# -- hostile values in every member: denials, never a crash ----------------------------

ODD_VALUES: list[Any] = [None, True, 0, -1, 2**64, 1.5, "", "0" * 64, "AA==", "\u202e", [],
                         [None], {}, {"0": "00"}]


def _members(value: Any, at: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    found = [at] if at else []
    if isinstance(value, dict):
        for name, inner in value.items():
            found += _members(inner, (*at, name))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += _members(inner, (*at, index))
    return found


def test_no_odd_value_in_any_member_is_accepted_or_crashes_the_verifier(rig: Rig) -> None:
    """Every member of a real bundle and of a real statement bundle, replaced by values of
    every JSON type: each a denial with a reason of its own, never internal_error."""
    signed = _file(rig, "a", b"a")
    policy, now = rig.policy(), int(time.time())
    crashed, accepted = [], []
    for raw in (_sign(rig, str(signed)), _sign(rig, "--statement", str(signed))):
        data = json.loads(raw)
        for at in _members(data):
            original = data
            for step in at:
                original = original[step]
            for value in ODD_VALUES:
                if value == original and type(value) is type(original):
                    continue  # the bundle as signed
                decision = verify_bundle(_edit(raw, at, value), policy, now, _shown(signed))
                if decision.accepted:
                    accepted.append((at, value))
                elif Reason.INTERNAL_ERROR.value in decision.reasons:
                    crashed.append((at, value, decision.denials))
    assert not accepted and not crashed


@pytest.mark.parametrize("pcrs", [
    {"0": "00" * 20},  # a SHA-1 sized value in the SHA-256 bank
    {"0": "00" * 64},  # a SHA-512 sized one
    {"0": None},  # a sealed PCR dropped (None: removed below)
    {"15": "00" * 32},  # the runtime PCR as it was before any measurement
    {"23": "00" * 32},  # a PCR outside the quote's selection
])
def test_pcr_maps_that_are_not_the_quoted_ones_are_denied(rig: Rig, pcrs: Json) -> None:
    raw = _sign(rig, str(_file(rig, "a", b"a")))
    data = json.loads(raw)
    for index, value in pcrs.items():
        if value is None:
            del data["quote"]["pcrs"][index]
        else:
            data["quote"]["pcrs"][index] = value
    decision = verify_bundle(json.dumps(data).encode(), rig.policy(), int(time.time()))
    assert decision.reasons == ("pcr_digest_mismatch",)


# -- what the operator reads -------------------------------------------------------------

def test_host_and_file_chosen_text_reaches_the_terminal_escaped(rig: Rig) -> None:
    """Subject names are the signer's, file names the directory's: an ESC, a BEL, a bidi
    override or a line feed in one would rewrite what the operator reads ("accepted")."""
    trap = "x\x1b]0;t\x07\u202e\n  accepted: signed"
    signed = _file(rig, f"a{trap}.tar", b"signed")
    other = _file(rig, f"b{trap}.tar", b"not signed")
    bundle = _file(rig, "s.bundle", _sign(rig, "--statement", str(signed)))
    rig.policy()
    policy = str(sorted(rig.tmp.glob("policy-*.yaml"))[-1])
    ok = rig.host.run("verify-signature", str(bundle), str(signed), "--policy", policy)
    assert ok.exit_code == 0, ok.output
    denied = rig.host.run("verify-signature", str(bundle), str(signed), str(other), "--policy",
                          policy)
    assert denied.exit_code == 1
    for shown in (ok.output, denied.output):
        assert not any(c in shown for c in "\x1b\x07\u202e")
    assert denied.output.count("\n") == 2  # "denied: ..." and one line for the one denial
    assert "\\x1b]0;t\\x07\\u202e\\x0a" in denied.output
    as_json = rig.host.run("verify-signature", str(bundle), str(signed), str(other),
                           "--policy", policy, "--json")
    assert as_json.exit_code == 1 and as_json.stdout.isascii()
    assert not any(ord(c) < 0x20 for c in as_json.stdout.replace("\n", ""))


@pytest.mark.parametrize("member", ["approval", "boot_log"])
def test_an_empty_log_or_approval_is_not_a_second_form_of_none(rig: Rig, member: str) -> None:
    """Found: "approval": "" verified as "approval": null (the quote binds an absent
    approval as an empty one), so a thief could give a signed bundle a second reading that
    claims an approval. A present boot log or approval is never empty."""
    raw = _sign(rig, str(_file(rig, "a", b"a")))
    decision = verify_bundle(_edit(raw, (member,), ""), rig.policy(), int(time.time()))
    assert decision.reasons == ("malformed_artifact",)


# -- approvals: the one the TPM used against the one the bundle names ----------------------

def test_a_bundle_under_an_approval_that_has_since_expired_is_denied(
        approvals: Approvals) -> None:
    rig, now = approvals.rig, int(time.time())
    with rig.tpm() as tpm:
        signed = sign_payload(tpm, rig.home, "text/plain", b"p", now, key_name="signed",
                              approvals=[approvals.approve(1, not_after=now + 60)])
    raw = signed.to_bytes()
    assert verify_bundle(raw, approvals.policy(), now).accepted
    assert verify_bundle(raw, approvals.policy(), now + 61).reasons == ("key_policy_mismatch",)


def test_signed_under_a_retired_approval_and_quoted_with_the_current_one_is_denied(
        approvals: Approvals) -> None:
    """The host's own user: the TPM honours every approval the authority ever signed, so
    they sign under retired approval 1 (the state the host is in), then quote with the
    binding of current approval 2 (made for the state the authority wants now) and put 2
    in the bundle. The quoted sealed PCRs are the host's state, which 2 does not approve."""
    rig, now = approvals.rig, int(time.time())
    retired = approvals.approve(1)
    with rig.tpm() as tpm:
        held = read_pcrs(tpm, SEALED)
        signing_done = sign_evidence(tpm, rig.home, pae_digest(pae("text/plain", b"p")), now,
                                     key_name="signed", approvals=[retired])
    wanted = {key: hashlib.sha256(b"v2" + value).digest() for key, value in held.items()}
    current = tpm_keys.approve(approvals.authority.private_pem, SEALED, wanted, serial=2)
    key = tpm_keys.load_key(rig.home, "signed")
    bound = quote_binding(signing_done.signed, now, key.tpm_name, signing_done.eks,
                          signing_done.runtime_log, None, current.to_bytes())
    with rig.tpm() as tpm:
        quote = create_quote(tpm, rig.identity, QUOTED, bound)
    forged = dataclasses.replace(
        signing_done, quote=quote.message, quote_signature=quote.signature,
        approval=current.to_bytes()).bundle("text/plain", b"p")
    decision = verify_bundle(forged.to_bytes(), approvals.policy(min_approval_serial=2), now)
    assert decision.reasons == ("key_policy_mismatch",)
    assert "does not approve the quoted sealed PCRs" in decision.denials[0].message


# -- a key the policy does not bind -------------------------------------------------------

def test_a_software_key_loaded_into_the_tpm_cannot_be_certified(rig: Rig) -> None:
    """The host's own user loads the public half of a key they hold in software
    (TPM2_LoadExternal) with every attribute a certified key needs (fixedTPM, fixedParent,
    sensitiveDataOrigin, sign; the policy's authPolicy) and asks the AK to certify it, to
    sign in software whatever the PCRs hold. The TPM refuses: a public-only object has no
    authValue, and the policy needs one (PolicyAuthValue), so neither role certifies it."""
    policy = rig.policy()
    numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    template = TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256:null", objectAttributes=KEY_ATTRIBUTES)
    template.publicArea.authPolicy = TPM2B_DIGEST(policy.expected_key_policy_digest())
    template.publicArea.unique.ecc.x = numbers.x.to_bytes(32, "big")
    template.publicArea.unique.ecc.y = numbers.y.to_bytes(32, "big")
    refused = []
    for attributes in (KEY_ATTRIBUTES, KEY_ATTRIBUTES | TPMA_OBJECT.ADMINWITHPOLICY):
        template.publicArea.objectAttributes = attributes
        for hierarchy in (ESYS_TR.OWNER, ESYS_TR.NULL):
            with rig.tpm() as tpm:
                loaded = tpm.esapi.load_external(template, None, hierarchy)
                session = ESYS_TR.PASSWORD
                if attributes & TPMA_OBJECT.ADMINWITHPOLICY:  # the policy, as the key's
                    session = tpm.start_session(TPM2_SE.POLICY, "policy session")
                    tpm.esapi.policy_pcr(session, b"", to_tpml(SEALED))
                    tpm.esapi.policy_auth_value(session)
                try:
                    with pytest.raises(TSS2_Exception) as caught:
                        tpm.esapi.certify(loaded, ak_handle(tpm, rig.identity), b"\0" * 32,
                                          TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL),
                                          session1=session, session2=ESYS_TR.PASSWORD)
                    refused.append(caught.value.rc & 0xFF)
                finally:
                    tpm.esapi.flush_context(loaded)
                    if session != ESYS_TR.PASSWORD:
                        tpm.esapi.flush_context(session)
    assert refused == [TPM2_RC.AUTH_UNAVAILABLE & 0xFF] * 4


# -- logs the policy does not appraise ----------------------------------------------------

def test_a_boot_log_the_policy_does_not_appraise_is_denied(booted: Rig) -> None:
    payload = _file(booted, "p", b"p")
    raw = _sign(booted, "--boot-log", str(payload))
    decision = verify_bundle(raw, booted.policy(), int(time.time()))
    assert not decision.accepted and decision.reasons == ("eventlog_mismatch",), \
        decision.to_json()


# -- exit codes ---------------------------------------------------------------------------

def test_a_policy_that_cannot_verify_offline_is_a_usage_error_not_a_denial(rig: Rig) -> None:
    """Found: a policy trusting a verifier's store (enrollment: store) denied every bundle
    ak_unknown with exit 1, which a script reads as a bad signature; it is the operator's
    policy that cannot work offline: exit 2, as for a policy that does not load."""
    signed = _file(rig, "a", b"a")
    bundle = _file(rig, "a.bundle", _sign(rig, str(signed)))
    rig.policy(trusted_aks=())
    store_policy = str(sorted(rig.tmp.glob("policy-*.yaml"))[-1])
    assert "enrollment: store" in Path(store_policy).read_text()
    result = rig.host.run("verify-signature", str(bundle), str(signed), "--policy",
                          store_policy, "--json")
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout)["error"]["kind"] == "usage"
    # The library still denies (fail closed), for callers that are not the CLI.
    assert verify_bundle(bundle.read_bytes(), rig.policy(trusted_aks=()), int(time.time()),
                         _shown(signed)).reasons == ("ak_unknown",)


@pytest.mark.parametrize("text", [
    "ax==",  # b"k" with the unused bits set: decodes to b"k" all the same
    "aw",  # unpadded
    "aw=",  # short padding
    "aw===",  # long padding
    "a w==", "aw==\n",  # whitespace a lenient decoder skips
    "\uff41w==",  # a fullwidth letter
    "-_8=",  # the URL-safe alphabet
    "aw==aw==",  # padding inside
])
def test_base64_has_one_text_per_byte_string(text: str) -> None:
    """Another text for the same bytes would be a second bundle from one signed bundle
    (and a way past the byte-flip test): canonical standard base64 only."""
    data = json.loads(_largest_bundle().to_bytes())
    assert data["key"]["public"] == "aw=="
    data["key"]["public"] = text
    with pytest.raises(EvidenceError) as caught:
        Bundle.from_bytes(json.dumps(data).encode())
    assert caught.value.reason is Reason.MALFORMED_ARTIFACT


def test_a_file_shown_under_another_subject_s_name_is_named_for_the_operator(rig: Rig) -> None:
    """Found (misleading): a statement names files by digest, so another subject's bytes
    (last release's build) shown as app-1.0.tar were "accepted; 1 file(s) match" with
    no word of the name they were signed under. The decision still accepts (the bytes
    are signed) but says which subject each file is, escaped."""
    new = _file(rig, "app-1.0.tar", b"release 1.0")
    old = _file(rig, "app-0.9\x1b[2J.tar", b"release 0.9")
    bundle = _file(rig, "r.bundle", _sign(rig, "--statement", str(new), str(old)))
    swapped = _file(rig, "download", b"release 0.9")
    decision = verify_bundle(bundle.read_bytes(), rig.policy(), int(time.time()),
                             _shown(swapped, new))
    assert decision.accepted
    assert decision.facts["matched"] == [{"file": str(swapped), "subjects": [str(old)]},
                                         {"file": str(new), "subjects": [str(new)]}]
    policy = str(sorted(rig.tmp.glob("policy-*.yaml"))[-1])
    shown = rig.host.run("verify-signature", str(bundle), str(swapped), "--policy", policy)
    assert shown.exit_code == 0
    assert f"{swapped}: signed as {rig.tmp}/app-0.9\\x1b[2J.tar\n" in shown.output
    assert "\x1b" not in shown.output


def test_an_empty_boot_log_is_refused_at_signing(rig: Rig,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The other side of the empty-log rule: the signer never makes a bundle the
    verifier would refuse as malformed."""
    monkeypatch.setenv("ATTEST_BOOT_LOG", str(_file(rig, "empty-boot-log", b"")))
    with rig.tpm() as tpm, pytest.raises(UsageError, match="empty"):
        sign_payload(tpm, rig.home, "text/plain", b"p", int(time.time()),
                     include_boot_log=True)
