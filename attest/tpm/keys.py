"""PCR-bound signing keys: create, sign in a policy session, certify with the AK.

A signing key is a non-restricted ECDSA P-256 key under the SRK with fixedTPM,
fixedParent and sensitiveDataOrigin set and userWithAuth clear, so only a policy
session can use it. Its authPolicy is either
- PolicyPCR(sealed PCRs, their values at creation) + PolicyAuthValue, or
- PolicyAuthorize(authority): an authority approves PCR policies later, so a
  planned update needs a new approval rather than a new key.

The TPM-wrapped blobs, the authValue and the metadata live in
``$ATTEST_HOME/keys/NAME/`` (mode 0600); private parts never leave the TPM.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from tpm2_pytss import (
    ESYS_TR,
    TPM2B_DIGEST,
    TPM2B_NONCE,
    TPM2B_PRIVATE,
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE_CREATE,
    TPMA_OBJECT,
    TPMA_SESSION,
    TPMS_SENSITIVE_CREATE,
    TPMT_SIG_SCHEME,
    TPMT_SIGNATURE,
    TPMT_TK_HASHCHECK,
    TSS2_Exception,
)
from tpm2_pytss.constants import TPM2_ALG, TPM2_RC, TPM2_RH, TPM2_SE, TPM2_ST

from attest import strictjson
from attest.errors import (
    AttestError,
    KeyNotFound,
    NotProvisioned,
    PCRPolicyMismatch,
    TPMError,
    UsageError,
)
from attest.evidence import tpmpolicy
from attest.evidence.approval import MAX_POLICY_REF_BYTES, MAX_SERIAL, Approval, approved_for
from attest.evidence.pcrs import HASH_NAMES, PCRSelection
from attest.inputfile import MAX_RECORD_BYTES, read_home_file
from attest.tpm import contention
from attest.tpm.device import TPM, format_one_error, is_policy_failure, tpm_error
from attest.tpm.files import private_dir, write_private, write_public
from attest.tpm.hierarchy import HostIdentity, ak_handle, srk_handle
from attest.tpm.pcr import read_pcrs, to_tpml

DEFAULT_KEY = "default"
# The boot chain: firmware, option ROMs, boot loader, Secure Boot state.
DEFAULT_SEALED_PCRS = "sha256:0,1,2,3,4,5,6,7"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_KEY_ATTRS = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.SIGN_ENCRYPT
)


@dataclass(frozen=True)
class SigningKey:
    """A signing key's record in the home."""

    name: str
    public: bytes  # TPM2B_PUBLIC
    private: bytes  # TPM2B_PRIVATE, wrapped by the SRK
    auth: bytes
    kind: str  # "pcr" or "authorize"
    selection: PCRSelection  # empty for "authorize" keys: each approval names its PCRs
    sealed_values: dict[tuple[str, int], bytes]  # empty for "authorize" keys
    policy_digest: bytes
    authority_name: bytes | None = None
    policy_ref: bytes = b""  # bound into an "authorize" key's policy at creation

    @cached_property
    def tpm_name(self) -> bytes:
        """nameAlg || H_nameAlg(TPMT_PUBLIC) (TPM 2.0 Part 1, 16), from the public bytes."""
        area = self.public[2:]
        alg = int.from_bytes(area[2:4], "big") if len(area) >= 4 else 0
        if int.from_bytes(self.public[:2], "big") == len(area) and alg in HASH_NAMES:
            return area[2:4] + hashlib.new(HASH_NAMES[alg], area).digest()
        public, _ = TPM2B_PUBLIC.unmarshal(self.public)
        return bytes(public.get_name())

    def public_pem(self) -> bytes:
        public, _ = TPM2B_PUBLIC.unmarshal(self.public)
        return bytes(public.to_pem())

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "kind": self.kind,
                "tpm_name": self.tpm_name.hex(),
                "pcrs": str(self.selection),
                "sealed_values": _values_to_json(self.sealed_values),
                "policy_digest": self.policy_digest.hex(),
                "authority_name": self.authority_name.hex() if self.authority_name else None,
                "policy_ref": self.policy_ref.hex(),
                "public": self.public.hex(),
                "private": self.private.hex(),
                "auth": self.auth.hex(),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> SigningKey:
        data: dict[str, Any] = strictjson.loads(text)
        return cls(
            name=data["name"],
            public=bytes.fromhex(data["public"]),
            private=bytes.fromhex(data["private"]),
            auth=bytes.fromhex(data["auth"]),
            kind=data["kind"],
            selection=PCRSelection.parse(data["pcrs"]) if data["pcrs"] else PCRSelection(()),
            sealed_values=_values_from_json(data["sealed_values"]),
            policy_digest=bytes.fromhex(data["policy_digest"]),
            authority_name=(bytes.fromhex(data["authority_name"])
                            if data["authority_name"] else None),
            policy_ref=bytes.fromhex(data.get("policy_ref", "")),
        )


def _values_to_json(values: dict[tuple[str, int], bytes]) -> dict[str, str]:
    """PCR values as {"bank:index": hex}, the form key records and approvals keep."""
    return {f"{bank}:{index}": value.hex() for (bank, index), value in values.items()}


def _values_from_json(data: dict[str, str]) -> dict[tuple[str, int], bytes]:
    values: dict[tuple[str, int], bytes] = {}
    for key, value in data.items():
        bank, _, index = key.partition(":")
        values[(bank, int(index))] = bytes.fromhex(value)
    return values


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise UsageError(f"invalid key name {name!r}",
                         hint="use letters, digits, '.', '_' and '-' (at most 64)")
    return name


def key_dir(home: Path, name: str) -> Path:
    return home / "keys" / check_name(name)


def load_key(home: Path, name: str) -> SigningKey:
    path = key_dir(home, name) / "key.json"
    try:
        return SigningKey.from_json(
            read_home_file(path, "key record", MAX_RECORD_BYTES).decode("utf-8", "replace"))
    except FileNotFoundError:
        raise KeyNotFound(f"no signing key named {name!r} in {home}",
                          hint=f"create it with `attest key create --name {name}`") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # any JSON, any shape
        raise UsageError(f"unreadable key record {path}: {exc}") from exc


def list_keys(home: Path) -> list[SigningKey]:
    folder = home / "keys"
    if not folder.is_dir():
        return []
    return [load_key(home, p.name) for p in sorted(folder.iterdir()) if (p / "key.json").is_file()]


def authority_public_from_pem(pem: bytes) -> TPM2B_PUBLIC:
    """An authority's public key (PEM) as a TPM2B_PUBLIC whose name the policy uses."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise UsageError(f"the authority key is not a PEM public key: {exc}") from None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name != "secp256r1":
            raise UsageError("an ECC authority key must be P-256")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise UsageError("an RSA authority key must have at least 2048 bits")
    else:
        raise UsageError("the authority key must be ECC P-256 or RSA")
    public = TPM2B_PUBLIC.from_pem(
        key.public_bytes(serialization.Encoding.PEM,
                         serialization.PublicFormat.SubjectPublicKeyInfo),
        objectAttributes=TPMA_OBJECT.SIGN_ENCRYPT | TPMA_OBJECT.USERWITHAUTH,
    )
    # Pin the scheme so the name (and so the policy) does not depend on a default.
    if isinstance(key, ec.EllipticCurvePublicKey):
        public.publicArea.parameters.eccDetail.scheme.scheme = TPM2_ALG.ECDSA
        public.publicArea.parameters.eccDetail.scheme.details.anySig.hashAlg = TPM2_ALG.SHA256
        # Full-width coordinates: tpm2-pytss drops leading zero bytes, and the name
        # (hence the policy) must not depend on which library encoded the point.
        point = key.public_numbers()
        public.publicArea.unique.ecc.x = point.x.to_bytes(32, "big")
        public.publicArea.unique.ecc.y = point.y.to_bytes(32, "big")
    else:
        public.publicArea.parameters.rsaDetail.scheme.scheme = TPM2_ALG.RSASSA
        public.publicArea.parameters.rsaDetail.scheme.details.anySig.hashAlg = TPM2_ALG.SHA256
    return public


def create_key(
    tpm: TPM,
    home: Path,
    name: str,
    selection: PCRSelection | None,
    authority_pem: bytes | None = None,
    policy_ref: bytes = b"",
) -> SigningKey:
    """Create a signing key bound to the current values of ``selection``, or (with
    ``authority_pem``, no selection) to whatever PCR values that authority approves."""
    folder = key_dir(home, name)
    if (folder / "key.json").exists():
        raise UsageError(f"a signing key named {name!r} already exists in {home}",
                         hint="choose another --name")
    authority_name: bytes | None = None
    sealed: dict[tuple[str, int], bytes] = {}
    if authority_pem is not None:
        if selection is not None:
            raise UsageError("an authority key takes its PCRs from each approval, not at creation",
                             hint="drop --pcrs; name the PCRs in `attest policy approve`")
        authority = authority_public_from_pem(authority_pem)
        authority_name = bytes(authority.get_name())
        digest = tpmpolicy.policy_authorize(tpmpolicy.initial(), authority_name, policy_ref)
        kind, selection = "authorize", PCRSelection(())
    else:
        if selection is None or not selection.banks:
            raise UsageError("a PCR-bound key needs the PCRs it is sealed to")
        if policy_ref:
            raise UsageError("a policyRef belongs to authority keys (--authority)")
        sealed = read_pcrs(tpm, selection)
        digest = tpmpolicy.pcr_auth_policy(selection, sealed)
        kind = "pcr"
    auth = secrets.token_bytes(32)
    template = TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256:null", objectAttributes=_KEY_ATTRS)
    template.publicArea.authPolicy = TPM2B_DIGEST(digest)
    sensitive = TPM2B_SENSITIVE_CREATE(TPMS_SENSITIVE_CREATE(userAuth=auth))
    private, public, _, _, _ = tpm.call("creating the signing key", tpm.esapi.create,
                                        srk_handle(tpm), sensitive, template)
    key = SigningKey(
        name=name, public=bytes(public.marshal()), private=bytes(private.marshal()), auth=auth,
        kind=kind, selection=selection, sealed_values=sealed, policy_digest=digest,
        authority_name=authority_name, policy_ref=policy_ref,
    )
    # Both levels private: key records hold the keys' authValues.
    private_dir(home)
    private_dir(home / "keys")
    private_dir(folder)
    write_public(folder / "key.pem", key.public_pem())
    write_private(folder / "key.json", key.to_json().encode())
    return key


def _load(tpm: TPM, key: SigningKey) -> Any:
    """Load the key under the SRK (from its saved context after the first time on this
    connection); the caller flushes it."""

    def load() -> Any:
        public, _ = TPM2B_PUBLIC.unmarshal(key.public)
        private, _ = TPM2B_PRIVATE.unmarshal(key.private)
        try:
            return tpm.call(f"loading signing key {key.name!r}", tpm.esapi.load,
                            srk_handle(tpm), private, public)
        except TPMError as exc:
            if format_one_error(exc.rc) != int(TPM2_RC.INTEGRITY):
                raise
            # The private part was wrapped under a storage seed this TPM no longer has
            # (cleared, or another TPM): the key is gone with it; only a new one signs.
            raise NotProvisioned(
                f"signing key {key.name!r} belongs to a TPM state that is gone (the TPM "
                f"was cleared or the SRK replaced): it no longer loads (TPM rc 0x{exc.rc:x})",
                hint=f"move keys/{key.name} in the home aside, then create it again: "
                     f"attest key create --name {key.name} (with its --pcrs or "
                     "--authority)") from None

    handle = tpm.load_saved(key.public + key.private, load)
    tpm.esapi.tr_set_auth(handle, key.auth)
    return handle


def _policy_session(tpm: TPM) -> Any:
    return tpm.start_session(TPM2_SE.POLICY, "starting a policy session")


def _satisfy_policy(tpm: TPM, key: SigningKey, session: Any,
                    approval: Approval | None) -> None:
    if key.kind == "pcr":
        tpm.call("PolicyPCR", tpm.esapi.policy_pcr, session, b"", to_tpml(key.selection))
        tpm.call("PolicyAuthValue", tpm.esapi.policy_auth_value, session)
        return
    if approval is None:
        raise UsageError(f"key {key.name!r} signs only under an authority's approval",
                         hint="pass --approval FILE (made by `attest policy approve`)")
    authority, _ = TPM2B_PUBLIC.unmarshal(approval.authority_public)
    if bytes(authority.get_name()) != key.authority_name:
        raise PCRPolicyMismatch("the approval is signed by another authority than the key's",
                                rc=0)
    if approval.policy_ref != key.policy_ref:
        raise PCRPolicyMismatch(
            f"the approval is for policyRef {approval.policy_ref.hex() or '(empty)'}; key "
            f"{key.name!r} was created for {key.policy_ref.hex() or '(empty)'}", rc=0,
            hint="approve again with the key's --policy-ref")
    # PolicyAuthorize needs a ticket from a key loaded in a real hierarchy (a
    # NULL-hierarchy load yields a NULL ticket the TPM refuses).
    external = tpm.call("loading the authority key", tpm.esapi.load_external,
                        authority, None, ESYS_TR.OWNER)
    try:
        a_hash = tpmpolicy.approval_digest(approval.approved_policy, approval.policy_ref)
        signature, _ = TPMT_SIGNATURE.unmarshal(approval.signature)
        ticket = tpm.call("checking the approval's signature", tpm.esapi.verify_signature,
                          external, TPM2B_DIGEST(a_hash), signature)
    finally:
        tpm.flush(external)
    tpm.call("PolicyPCR", tpm.esapi.policy_pcr, session, b"", to_tpml(approval.selection))
    tpm.call("PolicyAuthValue", tpm.esapi.policy_auth_value, session)
    # Called directly: a refusal here (an approval of other PCR values) is a policy
    # mismatch, which sign_digest names from the raw return code.
    tpm.esapi.policy_authorize(session, TPM2B_DIGEST(approval.approved_policy),
                               key.authority_name, ticket, TPM2B_NONCE(approval.policy_ref))


def _mismatch(tpm: TPM, key: SigningKey, approval: Approval | None,
              exc: TSS2_Exception) -> PCRPolicyMismatch:
    expected = key.sealed_values if key.kind == "pcr" else (approval.values if approval else {})
    selection = key.selection if key.kind == "pcr" else (approval.selection if approval
                                                          else key.selection)
    try:
        now = read_pcrs(tpm, selection)
        changed = [f"{b}:{i}" for (b, i), v in expected.items() if now.get((b, i)) != v]
        which = f" (changed: {', '.join(changed)})" if changed else ""
    except AttestError as read_error:
        # The refusal stands either way; only the naming of the PCRs is lost.
        which = f" (the PCRs could not be read to name the change: {read_error.message})"
    if key.kind == "pcr":
        what = "its policy"
        hint = ("the sealed PCRs changed since the key was created; create a new key for the "
                "new state")
    else:
        what = "the approved policy"
        hint = "get the authority's approval of the current PCR values"
    return PCRPolicyMismatch(
        f"the PCR state no longer matches {what} for key {key.name!r}{which}; refusing to sign",
        rc=int(exc.rc), hint=hint)


def sign_digest(tpm: TPM, key: SigningKey, digest: bytes,
                approval: Approval | None = None) -> bytes:
    """Sign a SHA-256 digest inside a policy session; returns the TPMT_SIGNATURE bytes.

    Another process extending a PCR between PolicyPCR and Sign voids the session
    (TPM_RC_PCR_CHANGED): a new session is tried, a bounded number of times (see
    attest.tpm.contention). The digest is the same each time, and the sealed PCRs are
    checked by the attempt that succeeds.
    """
    if len(digest) != 32:
        raise UsageError("the digest to sign must be 32 bytes (SHA-256)")
    handle = _load(tpm, key)
    try:
        for attempt in range(contention.ATTEMPTS):
            try:
                return _sign_in_session(tpm, key, handle, digest, approval)
            except _PCRsChanged:
                if attempt + 1 < contention.ATTEMPTS:
                    contention.pause(attempt)
        raise contention.exhausted(f"signing with key {key.name!r}",
                                   rc=contention.PCR_CHANGED_RC)
    finally:
        tpm.flush(handle)


class _PCRsChanged(Exception):
    """One signing attempt met TPM_RC_PCR_CHANGED."""


def _sign_in_session(tpm: TPM, key: SigningKey, handle: Any, digest: bytes,
                     approval: Approval | None) -> bytes:
    session = _policy_session(tpm)
    # continueSession clear: the TPM flushes the session when TPM2_Sign succeeds,
    # which saves a TPM2_FlushContext; ESYS's record of it is closed here. A command
    # that fails leaves the session loaded: flushed as before.
    tpm.esapi.trsess_set_attributes(session, 0, TPMA_SESSION.CONTINUESESSION)
    signed = False
    try:
        try:
            _satisfy_policy(tpm, key, session, approval)
            signature = tpm.esapi.sign(
                handle, TPM2B_DIGEST(digest),
                TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL),
                TPMT_TK_HASHCHECK(tag=TPM2_ST.HASHCHECK, hierarchy=TPM2_RH.NULL),
                session1=session,
            )
            signed = True
        except TSS2_Exception as exc:
            rc = int(exc.rc)
            if contention.is_pcr_changed(rc):
                raise _PCRsChanged from exc
            if is_policy_failure(rc) or _is_value_on_policy(rc):
                raise _mismatch(tpm, key, approval, exc) from exc
            raise tpm_error(exc, f"signing with key {key.name!r}") from exc
    finally:
        if signed:
            tpm.esapi.tr_close(session)
        else:
            tpm.flush(session)
    return bytes(signature.marshal())


def _is_value_on_policy(rc: int) -> bool:
    # An approval for other PCR values fails in PolicyAuthorize with TPM_RC_VALUE.
    return rc & 0xBF == 0x84 and rc >> 16 == 0


def ecdsa_r_s(tpmt_signature: bytes, size: int = 32) -> bytes:
    """R || S, each ``size`` bytes, of an ECDSA TPMT_SIGNATURE (ES256's JWS form).

    TPMT_SIGNATURE: sigAlg, hash, then R and S as TPM2B_ECC_PARAMETERs.
    """
    data = tpmt_signature
    r_len = int.from_bytes(data[4:6], "big")
    s_at = 6 + r_len
    s_len = int.from_bytes(data[s_at:s_at + 2], "big")
    if (len(data) < 8 or int.from_bytes(data[0:2], "big") != TPM2_ALG.ECDSA
            or len(data) != s_at + 2 + s_len or not 0 < r_len <= size or not 0 < s_len <= size):
        raise UsageError("not an ECDSA TPMT_SIGNATURE with P-256 sized R and S")
    return data[6:s_at].rjust(size, b"\0") + data[s_at + 2:].rjust(size, b"\0")


def signature_to_der(tpmt_signature: bytes) -> bytes:
    """TPMT_SIGNATURE (ECDSA) to the DER form openssl and `cryptography` verify."""
    signature, _ = TPMT_SIGNATURE.unmarshal(tpmt_signature)
    r = int.from_bytes(bytes(signature.signature.ecdsa.signatureR), "big")
    s = int.from_bytes(bytes(signature.signature.ecdsa.signatureS), "big")
    return utils.encode_dss_signature(r, s)


def sign_data(tpm: TPM, key: SigningKey, data: bytes,
              approval: Approval | None = None) -> bytes:
    return sign_digest(tpm, key, hashlib.sha256(data).digest(), approval)


def certify(tpm: TPM, identity: HostIdentity, key: SigningKey,
            qualifying: bytes) -> tuple[bytes, bytes]:
    """TPM2_Certify of the key by the AK: (TPMS_ATTEST, TPMT_SIGNATURE)."""
    handle = _load(tpm, key)
    try:
        ak = ak_handle(tpm, identity)
        # An HMAC session proves the key's authValue without sending it in clear.
        session = tpm.start_session(TPM2_SE.HMAC, "starting an HMAC session")
        try:
            attest, signature = tpm.call(
                f"certifying key {key.name!r}", tpm.esapi.certify, handle, ak, qualifying,
                TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL),
                session1=session, session2=ESYS_TR.PASSWORD,
            )
        finally:
            tpm.flush(session)
    finally:
        tpm.flush(handle)
    return bytes(attest.marshal())[2:], bytes(signature.marshal())


def approve(authority_private_pem: bytes, selection: PCRSelection,
            values: dict[tuple[str, int], bytes], policy_ref: bytes = b"", *,
            serial: int, not_after: int | None = None) -> Approval:
    """Sign an approval of a PCR policy with the authority's private key (in software):
    once over H(approvedPolicy || policyRef) for the TPM, once over the approval's
    document (serial, expiry included) for verifiers (see attest.evidence.approval)."""
    try:
        private = serialization.load_pem_private_key(authority_private_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"the authority key is not an unencrypted PEM private key: {exc}") from exc
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    authority = authority_public_from_pem(public_pem)
    missing = [f"{b}:{i}" for b, i in selection if (b, i) not in values]
    if missing:
        raise UsageError(f"no value given for PCR {', '.join(missing)}")
    if len(policy_ref) > MAX_POLICY_REF_BYTES:
        raise UsageError(f"a policyRef is at most {MAX_POLICY_REF_BYTES} bytes")
    if not 0 <= serial <= MAX_SERIAL:
        raise UsageError(f"the serial must be 0-{MAX_SERIAL}")
    if not_after is not None and not 0 <= not_after <= MAX_SERIAL:
        raise UsageError("the expiry must be a Unix time")
    unsigned = Approval(bytes(authority.marshal()), selection,
                        {key: values[key] for key in selection}, policy_ref, b"", serial,
                        not_after)
    tpm_signature = _sign_prehashed(
        private, tpmpolicy.approval_digest(unsigned.approved_policy, policy_ref))
    return dataclasses.replace(unsigned, signature=tpm_signature,
                               document_signature=_sign_prehashed(
                                   private, unsigned.document_digest()))


def _sign_prehashed(private: Any, digest: bytes) -> bytes:
    """A TPMT_SIGNATURE by an authority's software key over a SHA-256 digest."""
    prehashed = utils.Prehashed(hashes.SHA256())
    signature = TPMT_SIGNATURE()
    if isinstance(private, ec.EllipticCurvePrivateKey):
        der = private.sign(digest, ec.ECDSA(prehashed))
        r, s = utils.decode_dss_signature(der)
        signature.sigAlg = TPM2_ALG.ECDSA
        signature.signature.ecdsa.hash = TPM2_ALG.SHA256
        signature.signature.ecdsa.signatureR = r.to_bytes(32, "big")
        signature.signature.ecdsa.signatureS = s.to_bytes(32, "big")
    elif isinstance(private, rsa.RSAPrivateKey):
        signature.sigAlg = TPM2_ALG.RSASSA
        signature.signature.rsassa.hash = TPM2_ALG.SHA256
        signature.signature.rsassa.sig = private.sign(digest, padding.PKCS1v15(), prehashed)
    else:
        raise UsageError("the authority key must be ECC P-256 or RSA")
    return bytes(signature.marshal())


def choose_approval(tpm: TPM, approvals: Sequence[Approval], now: int) -> Approval:
    """Of ``approvals``, the unexpired one with the highest serial that approves the PCR
    values the TPM holds now: verifiers may retire older ones (min_approval_serial).

    When none approves them, the newest unexpired one is returned all the same: the TPM
    refuses it, and that refusal names the PCRs that changed.
    """
    live = [a for a in approvals if a.not_after is None or a.not_after >= now]
    if not live:
        raise PCRPolicyMismatch(
            f"every approval given ({len(approvals)}) has expired; refusing to sign", rc=0,
            hint="get a current approval from the authority (`attest policy approve`)")
    current = [a for a in live if approved_for(a, read_pcrs(tpm, a.selection))]
    return max(current or live, key=lambda a: a.serial)
