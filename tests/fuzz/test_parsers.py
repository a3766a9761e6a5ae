"""Every parser of outside input, under mutation: a result or the project's own error.

Seeds come from ``../shared/vectors`` (read in place) and from documents the project
makes itself; see the package docstring for the rule and the budget.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import example, given
from hypothesis import strategies as st

from attest import strictjson
from attest.artifact import jws
from attest.artifact.model import ARTIFACT_TYPE
from attest.audit import hashing, merkle
from attest.audit.entry import claimed_index
from attest.audit.note import Checkpoint, NoteSigner, VerifierKey
from attest.audit.proofs import ConsistencyProof, InclusionProof, parse_proof
from attest.certfiles import certificate_files, read_certificates
from attest.durations import parse_duration as policy_duration
from attest.errors import AttestError, EvidenceError, PolicyError, UsageError
from attest.eventlog import efi
from attest.eventlog.cel import attest_record, encode_log, measurement_content, parse_cel
from attest.eventlog.logfile import parse_log
from attest.eventlog.replay import replay
from attest.eventlog.tcg import parse_tcg
from attest.evidence import tpm2tools
from attest.evidence.approval import Approval, parse_approval
from attest.evidence.ekcert import parse_ek_certificate, split_certificates, verify_ek_certificate
from attest.evidence.ekprofile import check_ek_profile
from attest.evidence.pcrs import PCRSelection
from attest.evidence.signatures import public_key
from attest.evidence.structures import (
    parse_attest,
    parse_pcr_selection,
    parse_public,
    parse_public_tpm2b,
    parse_quote_fields,
    parse_signature,
    parse_signature_fields,
)
from attest.policy import parse_policy
from attest.policy.authority import authority_public
from attest.reasons import Reason
from attest.tpm import keys as signing
from tests.conftest import VECTORS
from tests.fuzz.budget import FUZZ
from tests.fuzz.mutations import json_mutated, mutated
from tests.policy.helpers import FULL, policy_folder, sealed_values_yaml


def _files(folder: str, pattern: str) -> list[bytes]:
    found = sorted((VECTORS / folder).glob(pattern))
    if not found:
        pytest.fail(f"no seeds {folder}/{pattern} under {VECTORS}; set ATTEST_VECTORS")
    return [path.read_bytes() for path in found]


def _only_attest_errors(parse: Callable[[], object],
                        allowed: tuple[type[BaseException], ...] = ()) -> object | None:
    """Run ``parse``; a result or an AttestError (or one of ``allowed``) is fine, anything
    else propagates and fails the test with its traceback."""
    try:
        return parse()
    except AttestError as exc:
        assert exc.message, "an error without a message"
        return None
    except allowed:
        return None


# -- JSON --------------------------------------------------------------------------------
JSON_SEEDS = [b'{"a": [1, 2.5, "x", null, true], "b": {"c": {}}}', b"[[[[[]]]]]",
              b'"\\ud800"', b"1e308", b'{"x": -0.0}']


@FUZZ
@given(st.one_of(mutated(JSON_SEEDS), st.binary(max_size=256),
                 st.integers(1, 10**5).map(lambda n: b"[" * n),
                 st.integers(1, 10**5).map(lambda n: b'{"a":' * n)))
@example(b"[" * 100_000)
@example(b"1e400")
def test_strict_json_returns_a_value_or_a_value_error(data: bytes) -> None:
    """strictjson.loads documents ValueError (StrictJSONError is one); nothing else."""
    value = _only_attest_errors(lambda: strictjson.loads(data), (ValueError,))
    json.dumps(value)  # what it returns is plain JSON data


# -- measurement logs --------------------------------------------------------------------
BOOT_LOGS = _files("eventlogs", "*/binary_bios_measurements") + _files(
    "quotes", "*/binary_bios_measurements")
CEL_LOGS = [encode_log([attest_record(n, 14, measurement_content(
    "command", f"/bin/t{n}", {"sha256": bytes(32)}, argv=["/bin/t", str(n)]),
    ["sha1", "sha256"]) for n in range(3)])]


def _exercise_log(data: bytes) -> None:
    for parse in (lambda: parse_tcg(data), lambda: parse_cel(data, allow_torn_tail=True),
                  lambda: parse_log(data)):
        log = _only_attest_errors(parse)
        events = getattr(log, "events", None) or getattr(log, "records", None)
        if events:
            _only_attest_errors(lambda: replay(events))  # noqa: B023 - called at once


@FUZZ
@given(mutated(BOOT_LOGS + CEL_LOGS))
def test_mutated_measurement_logs_parse_or_raise_the_log_error(data: bytes) -> None:
    _exercise_log(data)


def _event_data() -> list[bytes]:
    found: list[bytes] = []
    for log in BOOT_LOGS:
        found += [event.data for event in parse_tcg(log).events if len(event.data) >= 8]
    return found[:400]


EVENT_DATA = _event_data()


@FUZZ
@given(mutated(EVENT_DATA))
def test_mutated_uefi_event_data_parses_or_is_the_log_error(data: bytes) -> None:
    """UEFI_VARIABLE_DATA, UEFI_IMAGE_LOAD_EVENT, device paths and firmware blobs: what
    describe() and appraisal read from a boot log's event data."""
    for parse in (efi.parse_variable_data, efi.parse_image_load, efi.parse_device_path,
                  efi.parse_firmware_blob, efi.parse_firmware_blob2):
        parsed = _only_attest_errors(lambda: parse(data))  # noqa: B023 - called at once
        if parsed is not None:
            assert isinstance(str(parsed), str)


# -- TPM structures and tpm2-tools files -------------------------------------------------
ATTESTS = _files("quotes", "*/*.tpms_attest.bin")
SIGNATURES = _files("quotes", "*/*.tpmt_signature.bin")
PUBLICS = _files("quotes", "*/*.tpmt_public.bin")


@FUZZ
@given(mutated(ATTESTS))
def test_mutated_tpms_attest_parses_or_is_malformed(data: bytes) -> None:
    parsed = _only_attest_errors(lambda: parse_attest(data))
    _only_attest_errors(lambda: tpm2tools.read_attest(data))
    fields = parse_quote_fields(data)  # the fast path: never raises, agrees with the slow one
    assert fields is None or parsed is not None


@FUZZ
@given(mutated(SIGNATURES))
def test_mutated_signatures_parse_or_are_malformed(data: bytes) -> None:
    parsed = _only_attest_errors(lambda: parse_signature(data))
    fields = parse_signature_fields(data)  # the fast path: never raises
    assert fields is None or parsed is not None
    _only_attest_errors(lambda: parse_pcr_selection(data))


def _public_forms() -> list[bytes]:
    tpm2b = [len(p).to_bytes(2, "big") + p for p in PUBLICS]
    pem = [public_key(parse_public(p)).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        for p in PUBLICS]
    return PUBLICS + tpm2b + pem


@FUZZ
@given(mutated(_public_forms()))
def test_mutated_public_areas_parse_or_are_malformed(data: bytes) -> None:
    """TPMT_PUBLIC, TPM2B_PUBLIC and PEM keys, as tpm2-tools files and as evidence; the
    key built from a parsed area is what the verifier uses next."""
    for parse in (parse_public, parse_public_tpm2b):
        parsed = _only_attest_errors(lambda: parse(data))  # noqa: B023 - called at once
        if parsed is not None:
            _only_attest_errors(lambda: public_key(parsed))  # type: ignore[arg-type]  # noqa: B023
    _only_attest_errors(lambda: tpm2tools.read_public(data))


def _spki_pem(der: bytes) -> bytes:
    body = base64.encodebytes(der)
    return b"-----BEGIN PUBLIC KEY-----\n" + body + b"-----END PUBLIC KEY-----\n"


P256 = ec.derive_private_key(4242, ec.SECP256R1()).public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
SPKI = [P256] + [public_key(parse_public(p)).public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    for p in PUBLICS]
# Found by this suite: a curve or key type cryptography does not support raised
# UnsupportedAlgorithm (not a ValueError) from every PEM key reader.
UNKNOWN_CURVE = _spki_pem(P256.replace(b"\x2a\x86\x48\xce\x3d\x03\x01\x07",
                                       b"\x2a\x86\x48\xce\x3d\x03\x01\x09"))
UNKNOWN_KEY_TYPE = _spki_pem(P256.replace(b"\x2a\x86\x48\xce\x3d\x02\x01",
                                          b"\x2b\x86\x48\xce\x3d\x02\x01"))


@pytest.mark.parametrize("pem", [UNKNOWN_CURVE, UNKNOWN_KEY_TYPE], ids=["curve", "type"])
def test_a_pem_key_of_an_unsupported_algorithm_is_malformed_input(pem: bytes) -> None:
    for read in (tpm2tools.read_public, authority_public, signing.authority_public_from_pem):
        with pytest.raises(AttestError) as refused:
            read(pem)
        assert refused.value.exit_code in (1, 2)


@FUZZ
@given(st.one_of(mutated(SPKI).map(_spki_pem), mutated([_spki_pem(d) for d in SPKI])))
@example(UNKNOWN_CURVE)
@example(UNKNOWN_KEY_TYPE)
def test_mutated_pem_public_keys_read_or_are_refused(data: bytes) -> None:
    """tpm2-tools' -u files, policy authority keys and `attest key create --authority`."""
    _only_attest_errors(lambda: tpm2tools.read_public(data))
    _only_attest_errors(lambda: authority_public(data))
    _only_attest_errors(lambda: signing.authority_public_from_pem(data))


PCR_FILES = [tpm2tools.write_serialized_pcrs(
    PCRSelection.parse(text), {k: bytes(range(32)) for k in PCRSelection.parse(text)})
    for text in ("sha256:0-9", "sha256:0,7,15")] + [tpm2tools.write_serialized_pcrs(
        PCRSelection.parse("sha1:0-3+sha256:0-3"),
        {k: bytes(20 if k[0] == "sha1" else 32) for k in PCRSelection.parse(
            "sha1:0-3+sha256:0-3")})]


@FUZZ
@given(mutated(PCR_FILES), st.sampled_from(["sha256:0-9", "sha256:all", "sha1:0+sha256:0"]))
def test_mutated_pcr_files_read_or_are_malformed(data: bytes, selection: str) -> None:
    _only_attest_errors(lambda: tpm2tools.read_serialized_pcrs(data))
    _only_attest_errors(lambda: tpm2tools.read_pcrs(data))
    _only_attest_errors(lambda: tpm2tools.read_pcr_values(data, PCRSelection.parse(selection)))


# -- EK certificates ---------------------------------------------------------------------
def _der(pem_or_der: bytes) -> bytes:
    return split_certificates(pem_or_der)[0]


EK_LEAVES = _files("ekcerts", "*/ek_leaf*") + _files("ekcerts", "*/sibling*")
EK_DER = [_der(c) for c in EK_LEAVES]
EK_ROOTS = _files("ekcerts", "*/root*") + _files("ekcerts", "*/anchor*")
EK_INTERMEDIATES = _files("ekcerts", "*/intermediate*")
CA_CERTS = _files("ekcerts", "vendor_ca_only/*") + _files("ekcerts", "nuvoton_root_nonder/*")
AT = datetime(2024, 1, 1, tzinfo=UTC)


def _ek_edited(old: bytes, new: bytes, vector: str = "gce_vtpm_ecc") -> bytes:
    """A GCE EK certificate with its first ``old`` replaced by ``new``."""
    der = _der((VECTORS / "ekcerts" / vector / "ek_leaf.pem").read_bytes())
    assert old in der
    return der.replace(old, new, 1)


# Found by this suite: an unknown key algorithm OID (cryptography raised
# UnsupportedAlgorithm) and an EC point that is not one (OpenSSL's fallback raised
# OpenSSL.crypto.Error), both from the lazily parsed public key.
UNKNOWN_KEY_OID = _ek_edited(b"\x06\x07*\x86H\xce=\x02\x01", b"\x06\x07+\x86H\xce=\x02\x01")
NOT_A_POINT = _ek_edited(b"\x03B\x00\x04", b"\x03B\x00\x05")
# And one extension twice (the authority key identifier's OID made the subject's):
# cryptography raised DuplicateExtension, an Exception of its own, from the SAN lookup.
TWICE = _ek_edited(b"\x06\x03U\x1d#", b"\x06\x03U\x1d\x0e", "gce_vtpm_rsa")


@pytest.mark.parametrize("der", [UNKNOWN_KEY_OID, NOT_A_POINT, TWICE],
                         ids=["oid", "point", "duplicate-extension"])
def test_an_ek_certificate_with_an_unreadable_key_is_ek_chain_invalid(der: bytes) -> None:
    with pytest.raises(EvidenceError) as refused:
        parse_ek_certificate(der)
    assert refused.value.reason == Reason.EK_CHAIN_INVALID


@FUZZ
@given(mutated(EK_DER + [_der(c) for c in CA_CERTS]))
@example(UNKNOWN_KEY_OID)
@example(NOT_A_POINT)
@example(TWICE)
def test_mutated_der_ek_certificates_parse_or_are_refused(data: bytes) -> None:
    """Through the entry points that touch the lazily parsed parts: the key, the
    extensions (SAN, EKU), the EK profile and chain validation."""
    _only_attest_errors(lambda: parse_ek_certificate(data))
    _only_attest_errors(lambda: check_ek_profile(data))
    _only_attest_errors(lambda: verify_ek_certificate(data, EK_ROOTS, EK_INTERMEDIATES, at=AT))


def _pem(der: bytes) -> bytes:
    body = base64.encodebytes(der)
    return b"-----BEGIN CERTIFICATE-----\n" + body + b"-----END CERTIFICATE-----\n"


@FUZZ
@given(st.data())
def test_pem_with_mutated_der_inside_is_refused_cleanly(data: st.DataObject) -> None:
    """PEM armour around a mutated DER body: what an EK chain file or a roots folder holds."""
    der = data.draw(mutated(EK_DER))
    pem = _pem(der)
    _only_attest_errors(lambda: parse_ek_certificate(pem))
    _only_attest_errors(lambda: verify_ek_certificate(EK_LEAVES[0], [pem], at=AT))
    _only_attest_errors(lambda: verify_ek_certificate(EK_LEAVES[0], EK_ROOTS, [pem], at=AT))


@pytest.fixture(scope="module")
def cert_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("certs")


@FUZZ
@given(mutated(EK_ROOTS + CA_CERTS + [_pem(d) for d in EK_DER]),
       st.sampled_from(["root.pem", "root.der", "root.crt", "key.pem"]))
def test_a_roots_folder_with_a_mutated_file_reads_or_is_refused(
        cert_folder: Path, data: bytes, name: str) -> None:
    for old in cert_folder.iterdir():
        old.unlink()
    (cert_folder / name).write_bytes(data)
    files = _only_attest_errors(lambda: certificate_files(cert_folder))
    roots = _only_attest_errors(lambda: read_certificates([cert_folder]))
    assert (files is None) == (roots is None)
    if isinstance(roots, list):
        _only_attest_errors(lambda: verify_ek_certificate(EK_LEAVES[0], roots, at=AT))


# -- policies ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def policy_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return policy_folder(tmp_path_factory.mktemp("policy"))


POLICY_TREE = yaml.safe_load(FULL)


@pytest.mark.parametrize("text", [b"a: " + b"[" * 5000, b"- " * 5000, b"{a: " * 5000])
def test_a_deeply_nested_policy_is_a_policy_error(policy_base: Path, text: bytes) -> None:
    """Found by this suite: PyYAML's composer recursed until RecursionError."""
    with pytest.raises(PolicyError, match="nests deeper"):
        parse_policy(text, base_dir=policy_base)


@FUZZ
@given(mutated([FULL.encode()]))
@example(b"a: " + b"[" * 5000)
@example(b"- " * 5000)
def test_mutated_policy_text_loads_or_is_a_policy_error(policy_base: Path, data: bytes) -> None:
    _only_attest_errors(lambda: parse_policy(data, base_dir=policy_base))


@FUZZ
@given(json_mutated([POLICY_TREE], max_steps=3))
def test_structurally_mutated_policies_load_or_are_policy_errors(
        policy_base: Path, tree: Any) -> None:
    text = yaml.safe_dump(tree, allow_unicode=True).encode()
    _only_attest_errors(lambda: parse_policy(text, base_dir=policy_base))


# -- approvals ---------------------------------------------------------------------------
def _approval() -> bytes:
    private = ec.derive_private_key(7007, ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    values = {("sha256", i): bytes([i]) * 32 for i in range(8)}
    made = signing.approve(private, PCRSelection.parse("sha256:0-7"), values, serial=3,
                           not_after=1_900_000_000)
    return made.to_bytes()


APPROVAL = _approval()


@FUZZ
@given(st.one_of(mutated([APPROVAL]),
                 json_mutated([json.loads(APPROVAL)]).map(lambda v: json.dumps(v).encode()),
                 st.binary(max_size=512)))
@example(bytes(range(256)))
def test_mutated_approvals_parse_or_are_malformed(data: bytes) -> None:
    _only_attest_errors(lambda: parse_approval(data))
    _only_attest_errors(lambda: Approval.from_json(data))


# -- audit: tree heads, proofs, verifier keys --------------------------------------------
SIGNER = NoteSigner.decode_private(
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")
ENTRIES = [json.dumps({"entry": i}).encode() for i in range(7)]
LEAVES = [hashing.leaf_hash(entry) for entry in ENTRIES]


def _proofs() -> list[dict[str, Any]]:
    inclusion = InclusionProof(
        3, LEAVES[3], 7, tuple(merkle.inclusion_proof(LEAVES, 3)), merkle.root(LEAVES),
        SIGNER.sign(7, merkle.root(LEAVES)), ENTRIES[3])
    consistency = ConsistencyProof(
        3, 7, tuple(merkle.consistency_proof(LEAVES, 3)), merkle.root(LEAVES[:3]),
        merkle.root(LEAVES), SIGNER.sign(3, merkle.root(LEAVES[:3])),
        SIGNER.sign(7, merkle.root(LEAVES)))
    return [inclusion.to_json(), consistency.to_json()]


PROOFS = _proofs()


def test_the_proof_seeds_verify() -> None:
    """The fuzz below starts from proofs that hold, so mutations reach the checks."""
    for proof in PROOFS:
        parse_proof(proof).verify(SIGNER.verifier_key)


@FUZZ
@given(json_mutated(PROOFS, max_steps=2))
def test_mutated_proofs_parse_and_verify_or_raise_proof_errors(value: Any) -> None:
    parsed = _only_attest_errors(lambda: parse_proof(value))
    if parsed is not None:
        _only_attest_errors(lambda: parsed.verify(SIGNER.verifier_key))  # type: ignore[attr-defined]


@FUZZ
@given(st.data())
def test_mutated_proof_files_parse_or_are_refused(data: st.DataObject) -> None:
    text = data.draw(mutated([json.dumps(p).encode() for p in PROOFS]))

    def load() -> object:
        try:
            value = strictjson.loads(text)
        except ValueError:
            return None
        return parse_proof(value).verify(SIGNER.verifier_key)

    _only_attest_errors(load)


@FUZZ
@given(st.one_of(mutated(ENTRIES), st.binary(max_size=64)))
def test_mutated_audit_entries_name_an_index_or_raise_proof_errors(data: bytes) -> None:
    """What `attest audit verify` reads from each stored entry first."""
    index = _only_attest_errors(lambda: claimed_index(data))
    assert index is None or (isinstance(index, int) and index >= 0)


NOTES = [SIGNER.sign(7, merkle.root(LEAVES)).encode(), SIGNER.sign(0, bytes(32)).encode()]


@FUZZ
@given(mutated(NOTES))
def test_mutated_tree_heads_open_or_raise_proof_errors(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    _only_attest_errors(lambda: SIGNER.verifier_key.open(text))
    _only_attest_errors(lambda: Checkpoint.from_body(text))


@FUZZ
@given(mutated([SIGNER.verifier_key.encode().encode(), SIGNER.encode_private().encode()]))
def test_mutated_log_keys_parse_or_are_malformed(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    _only_attest_errors(lambda: VerifierKey.parse(text))
    _only_attest_errors(lambda: NoteSigner.decode_private(text))


# -- durations and PCR selections --------------------------------------------------------
DURATIONS = ["300", "300s", "5m", "1h", "2d", "1h30m", "1e22d", "99999999999999999999d"]
SELECTIONS = ["sha256:0-7", "sha1:0,1+sha256:all", "sha256:0-23", "sha384:7", "0,1,2"]


def _texts(seeds: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(mutated([s.encode() for s in seeds]).map(
        lambda b: b.decode("utf-8", "replace")), st.text(max_size=30))


@FUZZ
@given(_texts(DURATIONS))
@example("1e22d")
@example("9" * 400 + "d")
def test_durations_parse_or_are_refused(text: str) -> None:
    """The policy's reader documents ValueError (the loader names the line); the CLI's
    raises UsageError. Either way the seconds are a usable int."""
    from attest.cli.common import parse_duration as cli_duration

    for parse, allowed in ((policy_duration, (ValueError,)), (cli_duration, ())):
        seconds = _only_attest_errors(lambda: parse(text), allowed)  # noqa: B023
        assert seconds is None or isinstance(seconds, int)


@FUZZ
@given(_texts(SELECTIONS))
def test_pcr_selections_parse_or_are_usage_errors(text: str) -> None:
    selection = _only_attest_errors(lambda: PCRSelection.parse(text))
    if isinstance(selection, PCRSelection):
        assert PCRSelection.parse(str(selection)) == selection


# -- artifacts (the parser alone; the verifier has test_verifier.py) ---------------------
def _artifact_seed() -> Iterator[bytes]:
    header = base64.urlsafe_b64encode(json.dumps(
        {"alg": "ES256", "typ": ARTIFACT_TYPE, "kid": "ab" * 32}).encode()).rstrip(b"=")
    yield header + b"." + base64.urlsafe_b64encode(b"{}").rstrip(b"=") + b"." + b"A" * 86


@FUZZ
@given(mutated(list(_artifact_seed())))
@example(b"." * 3)
def test_mutated_compact_jws_parses_or_is_malformed(data: bytes) -> None:
    _only_attest_errors(lambda: jws.parse(data))


# -- host files (fuzzed in test_verifier.py from a real home) ----------------------------
KEY_RECORD = {"name": "default", "kind": "pcr", "pcrs": "sha256:0", "public": "", "private": "",
              "auth": "", "sealed_values": {"sha256:0": "00" * 32}, "policy_digest": "",
              "authority_name": None, "policy_ref": ""}


@pytest.mark.parametrize("edit", [{"pcrs": ["sha256:0"]}, {"sealed_values": [{}]}],
                         ids=["pcrs", "sealed_values"])
def test_a_key_record_with_a_list_for_a_value_is_a_usage_error(
        tmp_path: Path, edit: dict[str, Any]) -> None:
    """Found by this suite: a list where the record holds a string or an object raised
    AttributeError from `attest key` and `attest run`."""
    folder = signing.key_dir(tmp_path, signing.DEFAULT_KEY)
    folder.mkdir(parents=True)
    (folder / "key.json").write_text(json.dumps({**KEY_RECORD, **edit}))
    with pytest.raises(UsageError, match="unreadable key record"):
        signing.load_key(tmp_path, signing.DEFAULT_KEY)


@pytest.mark.parametrize("path", ["A" * 5000, '"a\\0b"', "x/" + "y" * 300],
                         ids=["name-too-long", "nul", "component-too-long"])
def test_an_unusable_ek_roots_path_is_a_policy_error(policy_base: Path, path: str) -> None:
    """Found by this suite: a name longer than the OS allows raised OSError
    (ENAMETOOLONG) from the loader's existence check, a NUL byte ValueError."""
    text = FULL.replace("ek_roots: [roots/, extra-root.pem]", f"ek_roots: [{path}]")
    assert text != FULL
    with pytest.raises(PolicyError, match="ek_roots"):
        parse_policy(text.encode(), base_dir=policy_base)


@pytest.mark.parametrize("path", ['"a\\0b.pem"', "A" * 5000], ids=["nul", "name-too-long"])
def test_an_unusable_authority_file_is_a_policy_error(policy_base: Path, path: str) -> None:
    """A NUL byte in authority_file raised ValueError from the read (found with the
    ek_roots case above)."""
    sealed = f"  kind: pcr\n  sealed_values:\n{sealed_values_yaml()}\n"
    text = FULL.replace(sealed, f"  kind: authorize\n  authority_file: {path}\n")
    assert text != FULL
    with pytest.raises(PolicyError, match="authority_file"):
        parse_policy(text.encode(), base_dir=policy_base)
