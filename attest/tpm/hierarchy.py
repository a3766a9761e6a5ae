"""The TPM identity: EK checked against its certificate, SRK, AK.

- EK: recreated from the TCG template (EK Credential Profile 2.0) on every use;
  its public key must be the one in the certificate stored in NV.
- SRK: ECC P-256 storage primary (TCG Provisioning Guidance template), persisted
  at 0x81000001.
- AK: restricted ECDSA P-256 signing key under the SRK, persisted at 0x81000002.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from tpm2_pytss import (
    ESYS_TR,
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE_CREATE,
    TPMA_OBJECT,
    TSS2_Exception,
)
from tpm2_pytss.constants import TPM2_CAP, TPM2_HR, TPM2_SE
from tpm2_pytss.utils import NVReadEK, create_ek_template

from attest import strictjson
from attest.errors import (
    EvidenceError,
    IdentityError,
    NotProvisioned,
    TPMEnvironmentError,
    TPMError,
    UsageError,
)
from attest.inputfile import MAX_RECORD_BYTES, read_home_file
from attest.tpm.device import TPM, rc_text, tpm_error
from attest.tpm.files import private_dir, write_public


class EKNotAvailable(IdentityError):
    """The TPM has no EK of the requested kind (no template or certificate in NV)."""


SRK_HANDLE = 0x81000001
AK_HANDLE = 0x81000002


@dataclass(frozen=True)
class EKKind:
    label: str  # short name used in files and messages
    template: str  # tpm2-pytss template name
    cert_index: int


EK_RSA = EKKind("rsa", "EK-RSA2048", 0x01C00002)
# swtpm's ECC EK is the P-384 "high range" one; there is no P-256 EK at 0x01c0000a.
EK_ECC = EKKind("ecc", "EK-HIGH-ECC384", 0x01C00016)
EK_KINDS = (EK_RSA, EK_ECC)

_SIGN_ATTRS = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
    | TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.SIGN_ENCRYPT
)
_SRK_ATTRS = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
    | TPMA_OBJECT.NODA
    | TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.DECRYPT
)


def relax_dictionary_attack(tpm: TPM) -> None:
    """Simulators only: clear any lockout and turn DA protection off (recovery time 0)."""
    tpm.call("clearing the dictionary-attack lockout",
             tpm.esapi.dictionary_attack_lock_reset, ESYS_TR.LOCKOUT)
    tpm.call("relaxing dictionary-attack parameters",
             tpm.esapi.dictionary_attack_parameters, 1000, 0, 0, ESYS_TR.LOCKOUT)


def srk_template() -> TPM2B_PUBLIC:
    """TCG TPM v2.0 Provisioning Guidance ECC P-256 SRK: AES-128-CFB, unique all zeros."""
    public = TPM2B_PUBLIC.parse("ecc256:aes128cfb", objectAttributes=_SRK_ATTRS)
    public.publicArea.unique.ecc.x = b"\0" * 32
    public.publicArea.unique.ecc.y = b"\0" * 32
    return public


def ak_template() -> TPM2B_PUBLIC:
    # ":null" keeps the symmetric field empty: a signing key with AES fails to create.
    return TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256:null", objectAttributes=_SIGN_ATTRS)


@dataclass(frozen=True)
class EndorsementKey:
    kind: str
    certificate: bytes | None  # DER as stored, padding trimmed
    public: bytes  # TPM2B_PUBLIC
    name: bytes


@dataclass(frozen=True)
class HostIdentity:
    """What a verifier needs to know about this host's TPM; written to $ATTEST_HOME."""

    eks: tuple[EndorsementKey, ...]
    ak_public: bytes  # TPM2B_PUBLIC
    ak_name: bytes
    ak_handle: int = AK_HANDLE
    srk_handle: int = SRK_HANDLE
    # What quotes carry as qualifiedSigner: depends on the AK's parents (the SRK).
    ak_qualified_name: bytes = b""

    def to_json(self) -> str:
        return json.dumps(
            {
                "ak": {"handle": f"0x{self.ak_handle:08x}", "name": self.ak_name.hex(),
                       "qualified_name": self.ak_qualified_name.hex(),
                       "public": self.ak_public.hex()},
                "srk": {"handle": f"0x{self.srk_handle:08x}"},
                "eks": [
                    {"kind": ek.kind, "name": ek.name.hex(), "public": ek.public.hex(),
                     "certificate": ek.certificate.hex() if ek.certificate else None}
                    for ek in self.eks
                ],
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> HostIdentity:
        data = strictjson.loads(text)
        return cls(
            eks=tuple(
                EndorsementKey(
                    kind=ek["kind"],
                    certificate=bytes.fromhex(ek["certificate"]) if ek["certificate"] else None,
                    public=bytes.fromhex(ek["public"]),
                    name=bytes.fromhex(ek["name"]),
                )
                for ek in data["eks"]
            ),
            ak_public=bytes.fromhex(data["ak"]["public"]),
            ak_name=bytes.fromhex(data["ak"]["name"]),
            ak_handle=int(data["ak"]["handle"], 16),
            ak_qualified_name=bytes.fromhex(data["ak"].get("qualified_name", "")),
            srk_handle=int(data["srk"]["handle"], 16),
        )


@dataclass
class ProvisionReport:
    identity: HostIdentity
    steps: list[tuple[str, str]] = field(default_factory=list)  # (component, what happened)

    @property
    def changed(self) -> bool:
        return any(action == "created" for _, action in self.steps)


def identity_path(home: Path) -> Path:
    return home / "identity.json"


def load_identity(home: Path) -> HostIdentity:
    path = identity_path(home)
    try:
        return HostIdentity.from_json(
            read_home_file(path, "host identity", MAX_RECORD_BYTES).decode("utf-8", "replace"))
    except FileNotFoundError:
        raise NotProvisioned(f"no host identity in {home}",
                            hint="run `attest provision` first") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # any JSON, any shape
        raise IdentityError(f"unreadable host identity {path}: {exc}",
                            hint="move it away and run `attest provision` again") from exc


@contextmanager
def endorsement_key(tpm: TPM, kind: EKKind = EK_RSA) -> Iterator[tuple[object, EndorsementKey]]:
    """Recreate the EK (a transient object, flushed afterwards) and check it against its cert."""
    try:
        cert, template = create_ek_template(kind.template, NVReadEK(tpm.esapi))
    except TSS2_Exception as exc:
        raise tpm_error(exc, f"reading the {kind.label.upper()} EK certificate") from exc
    except ValueError as exc:
        # tpm2-pytss raises ValueError when a high-range EK has no certificate in NV.
        raise EKNotAvailable(f"no {kind.label.upper()} EK on this TPM: {exc}") from exc
    handle, public, _, _, _ = tpm.call(
        f"creating the {kind.label.upper()} EK", tpm.esapi.create_primary,
        TPM2B_SENSITIVE_CREATE(), template, ESYS_TR.ENDORSEMENT,
    )
    try:
        der = _check_ek_matches_certificate(kind, bytes(cert), public) if cert else None
        ek = EndorsementKey(kind.label, der, bytes(public.marshal()),
                            bytes(public.get_name()))
        yield handle, ek
    finally:
        tpm.flush(handle)


def _check_ek_matches_certificate(kind: EKKind, stored: bytes, public: TPM2B_PUBLIC) -> bytes:
    """The certificate's DER (NV padding trimmed), once its key is the EK the TPM derives."""
    # Imported here: only provisioning checks certificates (pyOpenSSL and X.509 parsing
    # stay out of issuing and `attest run`).
    from attest.evidence.ekcert import parse_ek_certificate

    try:
        cert = parse_ek_certificate(stored)
    except EvidenceError as exc:
        raise IdentityError(
            f"the {kind.label.upper()} EK certificate in NV does not parse: {exc.message}"
        ) from exc
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    cert_spki = cert.public_key.public_bytes(serialization.Encoding.DER, spki)
    if cert_spki != bytes(public.to_der()):
        raise IdentityError(
            f"the {kind.label.upper()} EK the TPM derives is not the key in its certificate",
            hint="the certificate belongs to another TPM or the EK template differs; "
            "do not trust this TPM's identity",
        )
    return cert.der


def _persistent_handles(tpm: TPM) -> set[int]:
    handles: set[int] = set()
    start = int(TPM2_HR.PERSISTENT)
    more = True
    while more:
        more, data = tpm.call("listing persistent handles", tpm.esapi.get_capability,
                              TPM2_CAP.HANDLES, start, 64)
        found = [int(h) for h in data.data.handles]
        handles.update(found)
        if not found:
            break
        start = max(found) + 1
    return handles


def _read_persistent(tpm: TPM, handle: int) -> tuple[object, TPM2B_PUBLIC]:
    tr = tpm.persistent(handle)
    public, _, _ = tpm.call(f"reading persistent object 0x{handle:08x}",
                            tpm.esapi.read_public, tr)
    return tr, public


def _matches_template(public: TPM2B_PUBLIC, template: TPM2B_PUBLIC) -> bool:
    """Same public area as ``template`` but for the key itself (the unique field)."""
    copy, _ = TPM2B_PUBLIC.unmarshal(bytes(public.marshal()))
    copy.publicArea.unique = template.publicArea.unique
    return bytes(copy.marshal()) == bytes(template.marshal())


def _ensure_srk(tpm: TPM, persistent: set[int]) -> tuple[object, str]:
    if SRK_HANDLE in persistent:
        tr, public = _read_persistent(tpm, SRK_HANDLE)
        if not _matches_template(public, srk_template()):
            raise IdentityError(
                f"persistent handle 0x{SRK_HANDLE:08x} holds a key that is not the TCG ECC "
                "P-256 SRK attest uses",
                hint="another tool owns that handle; evict it with tpm2_evictcontrol if stale",
            )
        return tr, "reused"
    handle, _, _, _, _ = tpm.call("creating the SRK", tpm.esapi.create_primary,
                                  TPM2B_SENSITIVE_CREATE(), srk_template(), ESYS_TR.OWNER)
    try:
        tr = tpm.call("persisting the SRK", tpm.esapi.evict_control,
                      ESYS_TR.OWNER, handle, SRK_HANDLE)
    finally:
        tpm.flush(handle)
    tpm.forget_persistent(SRK_HANDLE)
    return tr, "created"


def _qualified_name(tpm: TPM, tr: object) -> bytes:
    _, _, qualified = tpm.call("reading a qualified name", tpm.esapi.read_public, tr)
    return bytes(qualified)


def _check_ak_parent(tpm: TPM, srk: object, ak: object, ak_name: bytes) -> None:
    """The AK must be a child of our SRK: QN(AK) = nameAlg || H(QN(SRK) || Name(AK))."""
    expected = ak_name[:2] + hashlib.sha256(_qualified_name(tpm, srk) + ak_name).digest()
    if _qualified_name(tpm, ak) != expected:
        raise IdentityError(
            f"the key at 0x{AK_HANDLE:08x} is not a child of the SRK at 0x{SRK_HANDLE:08x}",
            hint="another tool owns that handle; evict it with tpm2_evictcontrol if stale",
        )


def _ensure_ak(tpm: TPM, srk: object, persistent: set[int]) -> tuple[TPM2B_PUBLIC, bytes, str]:
    """(public, qualified name, what happened)."""
    if AK_HANDLE in persistent:
        tr, public = _read_persistent(tpm, AK_HANDLE)
        if not _matches_template(public, ak_template()):
            raise IdentityError(
                f"persistent handle 0x{AK_HANDLE:08x} holds a key that is not attest's AK "
                "(restricted ECDSA P-256 signing key)",
                hint="another tool owns that handle; evict it with tpm2_evictcontrol if stale",
            )
        _check_ak_parent(tpm, srk, tr, bytes(public.get_name()))
        return public, _qualified_name(tpm, tr), "reused"
    private, public, _, _, _ = tpm.call("creating the AK", tpm.esapi.create,
                                        srk, TPM2B_SENSITIVE_CREATE(), ak_template())
    handle = tpm.call("loading the AK", tpm.esapi.load, srk, private, public)
    try:
        qualified = _qualified_name(tpm, handle)
        tpm.call("persisting the AK", tpm.esapi.evict_control, ESYS_TR.OWNER, handle, AK_HANDLE)
    finally:
        tpm.flush(handle)
    tpm.forget_persistent(AK_HANDLE)
    return public, qualified, "created"


def _check_home(tpm: TPM, home: Path, persistent: set[int], replace: bool) -> HostIdentity | None:
    """Refuse, before creating anything, to mix this TPM with a home that names another AK."""
    if not identity_path(home).exists():
        return None
    previous = load_identity(home)
    if AK_HANDLE in persistent:
        _, public = _read_persistent(tpm, AK_HANDLE)
        if bytes(public.get_name()) == previous.ak_name:
            return previous
        problem = f"{home} holds the identity of another AK ({previous.ak_name.hex()[:16]}…)"
        hint = ("this home belongs to another TPM: use another --home, or --replace-identity "
                "to make this TPM's AK the home's")
    else:
        problem = (f"the TPM no longer holds the AK recorded in {home} (the TPM was cleared or "
                   "the AK evicted)")
        hint = ("run `attest provision --replace-identity` to create a new AK; verifiers must "
                "enroll it again, and signing keys made under an old SRK stop loading")
    if not replace:
        raise IdentityError(problem, hint=hint)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    identity_path(home).rename(home / f"identity.json.replaced-{stamp}")
    return None


def _check_ek_chain(ek: EndorsementKey, roots: Sequence[bytes], at: datetime) -> str:
    if ek.certificate is None:
        raise IdentityError(f"the {ek.kind.upper()} EK has no certificate in NV, so its chain to "
                            "the given roots cannot be checked",
                            hint="this TPM cannot prove who made it; do not enroll it")
    from attest.evidence.ekcert import verify_ek_certificate

    try:
        chain = verify_ek_certificate(ek.certificate, roots, at=at)
    except EvidenceError as exc:
        raise IdentityError(f"the {ek.kind.upper()} EK certificate does not chain to the given "
                            f"roots: {exc.message}", reason=exc.reason,
                            hint="pass the manufacturer's roots (and intermediates) with "
                            "--ek-roots") from exc
    return f"chain verified ({len(chain.chain)} certificates)"


def provision(tpm: TPM, home: Path, *, ek_roots: Sequence[bytes] = (), replace: bool = False,
              at: datetime | None = None) -> ProvisionReport:
    """Check the EKs (against ``ek_roots`` when given), create or reuse SRK and AK, write the
    identity to ``home``. Idempotent."""
    steps: list[tuple[str, str]] = []
    eks: list[EndorsementKey] = []
    when = at or datetime.now(UTC)
    persistent = _persistent_handles(tpm)
    previous = _check_home(tpm, home, persistent, replace)
    for kind in EK_KINDS:
        try:
            with endorsement_key(tpm, kind) as (_, ek):
                eks.append(ek)
        except EKNotAvailable:
            # Real TPMs often carry only the RSA EK; the high-range ECC one is optional.
            if kind is EK_RSA:
                raise
            steps.append((f"EK ({kind.template})", "absent"))
            continue
        what = ("matches its certificate" if ek.certificate
                else "created (no certificate in NV)")
        if ek_roots:
            what += "; " + _check_ek_chain(ek, ek_roots, when)
        elif ek.certificate:
            what += "; chain not checked (no --ek-roots)"
        steps.append((f"EK ({kind.template})", what))
    srk, srk_action = _ensure_srk(tpm, persistent)
    steps.append((f"SRK 0x{SRK_HANDLE:08x}", srk_action))
    ak_public, ak_qualified, ak_action = _ensure_ak(tpm, srk, persistent)
    steps.append((f"AK 0x{AK_HANDLE:08x}", ak_action))
    identity = HostIdentity(tuple(eks), bytes(ak_public.marshal()),
                            bytes(ak_public.get_name()), ak_qualified_name=ak_qualified)
    _write_identity(home, identity, ak_public)
    steps.append(("host identity", f"written to {identity_path(home)}" if previous is None
                  else f"unchanged in {identity_path(home)}"))
    return ProvisionReport(identity, steps)


def _write_identity(home: Path, identity: HostIdentity, ak_public: TPM2B_PUBLIC) -> None:
    private_dir(home)
    write_public(home / "identity.json", identity.to_json().encode())
    write_public(home / "ak.pub", identity.ak_public)
    write_public(home / "ak.pem", bytes(ak_public.to_pem()))
    for ek in identity.eks:
        if ek.certificate:
            # The DER as held, wrapped, not reparsed: a certificate only OpenSSL reads
            # (attest.evidence.ekcert's fallback) was accepted above and must not fail here.
            write_public(home / f"ek-{ek.kind}.pem",
                         ssl.DER_cert_to_PEM_cert(ek.certificate).encode())


def ak_handle(tpm: TPM, identity: HostIdentity) -> object:
    """The ESYS handle of the persisted AK, checked against the identity in the home."""
    tr = _provisioned_object(tpm, identity.ak_handle, "AK")
    # ESYS computed the name from the public area when it opened the handle.
    if tpm.name_of(identity.ak_handle) != identity.ak_name:
        raise IdentityError(
            f"the AK at 0x{identity.ak_handle:08x} is not the one in the host identity",
            hint="the TPM was cleared or another home is in use; run `attest provision`",
        )
    return tr


def srk_handle(tpm: TPM) -> object:
    return _provisioned_object(tpm, SRK_HANDLE, "SRK")


def _provisioned_object(tpm: TPM, handle: int, what: str) -> object:
    try:
        return tpm.persistent(handle)
    except TPMError as exc:
        raise NotProvisioned(f"the TPM has no {what} at 0x{handle:08x} ({exc.message})",
                         hint="run `attest provision` (the TPM may have been cleared)") from exc


def activate_credential(
    tpm: TPM, identity: HostIdentity, credential_blob: bytes, encrypted_secret: bytes,
    kind: EKKind = EK_RSA,
) -> bytes:
    """TPM2_ActivateCredential: recover the secret a verifier wrapped to our EK and AK name.

    ``credential_blob`` and ``encrypted_secret`` are the marshalled TPM2B_ID_OBJECT and
    TPM2B_ENCRYPTED_SECRET, as MakeCredential returns them and tpm2-tools stores them.
    """
    from tpm2_pytss import TPM2B_ENCRYPTED_SECRET, TPM2B_ID_OBJECT

    try:
        blob, used_blob = TPM2B_ID_OBJECT.unmarshal(credential_blob)
        secret_in, used_secret = TPM2B_ENCRYPTED_SECRET.unmarshal(encrypted_secret)
    except TSS2_Exception as exc:
        raise UsageError("not a credential (TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET): "
                         f"{rc_text(int(exc.rc))}") from exc
    if used_blob != len(credential_blob) or used_secret != len(encrypted_secret):
        raise UsageError("trailing bytes after the credential")
    ak = ak_handle(tpm, identity)
    with endorsement_key(tpm, kind) as (ek, _):
        if kind is EK_RSA:
            # The RSA EK's authPolicy is PolicySecret(TPM_RH_ENDORSEMENT).
            session = tpm.start_session(TPM2_SE.POLICY, "starting a policy session")
            try:
                tpm.call("PolicySecret on the endorsement hierarchy", tpm.esapi.policy_secret,
                         ESYS_TR.ENDORSEMENT, session)
                secret = tpm.call("activating the credential", tpm.esapi.activate_credential,
                                  ak, ek, blob, secret_in,
                                  session1=ESYS_TR.PASSWORD, session2=session)
            finally:
                tpm.flush(session)
        else:
            secret = tpm.call("activating the credential", tpm.esapi.activate_credential,
                              ak, ek, blob, secret_in,
                              session1=ESYS_TR.PASSWORD, session2=ESYS_TR.PASSWORD)
    return bytes(secret)


def credential_refused(tpm: TPM, exc: TPMError) -> bool:
    """Whether ``exc``, raised by activate_credential, is the TPM refusing the credential
    (not made for its EK and AK) rather than the device failing.

    swtpm reports a seed it cannot decrypt as TPM_RC_FAILURE, an environment error: a TPM
    that still answers a command afterwards failed on the credential, not as a device.
    """
    if not isinstance(exc, TPMEnvironmentError):
        return True
    try:
        tpm.call("reading the TPM clock", tpm.esapi.read_clock)
    except TPMError:
        return False
    return True
