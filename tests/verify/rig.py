"""A host on its own swtpm that issues real artifacts, and ways to alter and re-sign them.

Everything here is the real thing: artifacts come from :func:`attest.host.issue.issue`
on swtpm; altered artifacts are re-quoted by the AK and re-signed by the PCR-bound key
inside the TPM (``attest.tpm.keys.sign_digest``), exactly as a host that lies would do;
policies are rendered by :func:`attest.policy.render_policy` and loaded back; stores are
SQLite files. Nothing is mocked.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from tpm2_pytss import (
    TPM2B_DIGEST,
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE_CREATE,
    TPMA_OBJECT,
    TPMS_SENSITIVE_CREATE,
)

from attest.artifact import jws
from attest.artifact.model import Claims, Evidence, b64url, binding
from attest.audit.hooks import enroll_logged
from attest.audit.log import AuditLog
from attest.decision import Decision
from attest.eventlog.cel import parse_cel
from attest.evidence import tpmpolicy as policy_digests
from attest.evidence.ekcert import ek_id
from attest.evidence.pcrs import PCRSelection
from attest.evidence.signatures import public_key
from attest.evidence.structures import parse_public_tpm2b
from attest.host.issue import Request, issue
from attest.host.runtime.log import RuntimeLog
from attest.host.runtime.subjects import measured_executables
from attest.policy import NonceMode, TrustedAK, VerifierPolicy, parse_policy, render_policy
from attest.reasons import Reason
from attest.store import Store, default_url
from attest.tpm import keys as signing
from attest.tpm.device import TPM, open_tpm
from attest.tpm.hierarchy import HostIdentity, load_identity, srk_handle
from attest.tpm.pcr import read_pcrs
from attest.tpm.quote import create_quote
from attest.verify.verifier import Verifier
from tests.conftest import Host

HOST_ID = "web-1"
ARGV = ("ls", "-l", "/srv")
SUBJECT = "deploy-bot"
QUOTED = PCRSelection.of({"sha256": [0, 1, 2, 3, 4, 5, 6, 7, 15]})
# What `attest key create` gives a signing key (attest.tpm.keys).
KEY_ATTRIBUTES = (TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT
                  | TPMA_OBJECT.SENSITIVEDATAORIGIN | TPMA_OBJECT.SIGN_ENCRYPT)


def b64d(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))


def split(raw: bytes) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """Header and payload as JSON objects, and the signature bytes, of a compact JWS."""
    header, payload, signature = raw.strip().split(b".")
    return json.loads(b64d(header)), json.loads(b64d(payload)), b64d(signature)


def join(header: bytes, payload: bytes, signature: bytes) -> bytes:
    """A compact JWS from the header's and payload's bytes and the signature bytes."""
    return b".".join(b64url(part).encode() for part in (header, payload, signature))


def denied(decision: Decision, *reasons: str) -> None:
    """Assert a denial for exactly ``reasons`` (in the verifier's order)."""
    assert not decision.accepted, decision
    assert decision.reasons == reasons, decision.to_json()["denials"]


def accepted(decision: Decision) -> None:
    assert decision.accepted, decision.to_json()["denials"]


@dataclass
class Rig:
    """A provisioned host with a PCR-bound key ``default`` and one runtime measurement."""

    host: Host
    tmp: Path
    key: str = signing.DEFAULT_KEY
    _stores: list[Store] = field(default_factory=list)
    # Each store's audit log, keyed in the store's folder (the verifier's home).
    _logs: dict[int, AuditLog] = field(default_factory=dict)
    _homes: dict[int, Path] = field(default_factory=dict)
    _audited: dict[int, tuple[Verifier, Verifier]] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.host.home

    @property
    def identity(self) -> HostIdentity:
        return load_identity(self.home)

    @contextmanager
    def tpm(self) -> Iterator[TPM]:
        # One connection per operation: swtpm serves one client at a time, and the CLI
        # helpers (host.ok) open their own.
        with open_tpm(self.host.sim.tcti) as tpm:
            yield tpm

    # -- issuing -------------------------------------------------------------------------
    def issue(self, *argv: str, subject: str = SUBJECT, now: int | None = None,
              key: str | None = None, **request: Any) -> bytes:
        """A real artifact for ``argv`` (default ``ls -l /srv``), issued on the swtpm."""
        wanted = Request(subject=subject, action=request.pop("action", "exec"),
                         argv=tuple(argv or ARGV), key_name=key or self.key, **request)
        with self.tpm() as tpm:
            return issue(tpm, self.home, wanted, int(time.time()) if now is None else now)

    def sign(self, signing_input: bytes, key: str | None = None) -> bytes:
        """ES256 R || S over ``signing_input``, made inside the TPM with the PCR-bound key."""
        record = signing.load_key(self.home, key or self.key)
        with self.tpm() as tpm:
            tss = signing.sign_digest(tpm, record, hashlib.sha256(signing_input).digest())
        r, s = decode_dss_signature(signing.signature_to_der(tss))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def reissue(self, raw: bytes, *,
                claims: Callable[[Claims], Claims] | None = None,
                header: Callable[[dict[str, str]], dict[str, str]] | None = None,
                env: Callable[[dict[int, str]], dict[int, str]] | None = None,
                selection: PCRSelection | None = None,
                requote: bool = False,
                evidence: Callable[[Evidence], Evidence] | None = None,
                key: str | None = None) -> bytes:
        """``raw`` altered, then re-quoted (when asked) and re-signed in the TPM.

        ``claims`` edits the claims; with ``requote`` (implied by ``env`` or
        ``selection``) the AK quotes ``selection`` again with the binding of the edited
        claims, whose ``env`` holds the values read (edited by ``env``: a host lying
        about its PCRs); ``evidence`` edits the evidence after that; ``header`` edits
        the JWS header. The JWS is signed by ``key`` (default: the rig's key).
        """
        parsed = jws.parse(raw)
        edited = parsed.claims if claims is None else claims(parsed.claims)
        if requote or env is not None or selection is not None:
            made: dict[str, Claims] = {}

            def bind(values: Mapping[tuple[str, int], bytes]) -> bytes:
                pcrs = {i: v.hex() for (_, i), v in values.items()}
                made["claims"] = dataclasses.replace(
                    edited, env_pcrs=pcrs if env is None else env(pcrs))
                return binding(made["claims"])

            with self.tpm() as tpm:
                quote = create_quote(tpm, self.identity, selection or QUOTED, bind)
            edited = dataclasses.replace(made["claims"], evidence=dataclasses.replace(
                made["claims"].evidence, quote=quote.message, quote_signature=quote.signature))
        if evidence is not None:
            edited = dataclasses.replace(edited, evidence=evidence(edited.evidence))
        head = parsed.header.to_json() if header is None else header(parsed.header.to_json())
        signing_input = jws.signing_input(jws.Header(**head), edited)
        return jws.assemble(signing_input, self.sign(signing_input, key))

    def sign_json(self, header: Mapping[str, Any], payload: Mapping[str, Any],
                  key: str | None = None) -> bytes:
        """A JWS over JSON objects as given (well formed or not), signed in the TPM."""
        signing_input = (b64url(json.dumps(header).encode()) + "."
                         + b64url(json.dumps(payload).encode())).encode()
        return jws.assemble(signing_input, self.sign(signing_input, key))

    def create_key(self, name: str, extra: TPMA_OBJECT) -> signing.SigningKey:
        """A key like `attest key create` makes (sealed to PCRs 0-7 as they are), with
        ``extra`` object attributes set: what a careless or hostile host could make."""
        selection = PCRSelection.parse(signing.DEFAULT_SEALED_PCRS)
        with self.tpm() as tpm:
            sealed = read_pcrs(tpm, selection)
            digest = policy_digests.pcr_auth_policy(selection, sealed)
            auth = secrets.token_bytes(32)
            template = TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256:null",
                                          objectAttributes=KEY_ATTRIBUTES | extra)
            template.publicArea.authPolicy = TPM2B_DIGEST(digest)
            sensitive = TPM2B_SENSITIVE_CREATE(TPMS_SENSITIVE_CREATE(userAuth=auth))
            private, public, _, _, _ = tpm.esapi.create(srk_handle(tpm), sensitive, template)
        made = signing.SigningKey(name=name, public=bytes(public.marshal()),
                                  private=bytes(private.marshal()), auth=auth, kind="pcr",
                                  selection=selection, sealed_values=sealed,
                                  policy_digest=digest)
        folder = signing.key_dir(self.home, name)
        folder.mkdir(parents=True, mode=0o700)
        (folder / "key.json").write_text(made.to_json())
        return made

    # -- verifying -----------------------------------------------------------------------
    def policy(self, **overrides: Any) -> VerifierPolicy:
        """What ``attest policy init --from-host`` writes for this host (as ``web-1``),
        nonce optional, with ``overrides`` for :func:`render_policy`."""
        identity = self.identity
        record = signing.load_key(self.home, self.key)
        log = RuntimeLog(self.home).path
        reference: dict[str, list[bytes]] = {}
        records = parse_cel(log.read_bytes()).records if log.exists() else ()
        for rec in records:
            name, measured = rec.content.get("name"), rec.content.get("digest")
            if isinstance(name, str) and isinstance(measured, dict):
                reference.setdefault(name, []).append(bytes.fromhex(measured["sha256"]))
        options: dict[str, Any] = {
            "policy_id": "verify-tests",
            "sealed_values": {i: v for (_, i), v in record.sealed_values.items()},
            "trusted_aks": [TrustedAK(HOST_ID, identity.ak_public,
                                      identity.ak_qualified_name or None)],
            "runtime_reference": reference,
            "executables": measured_executables(records),
            "nonce": NonceMode.OPTIONAL,
        }
        options.update(overrides)
        text = render_policy(**options)
        path = self.tmp / f"policy-{len(list(self.tmp.glob('policy-*')))}.yaml"
        path.write_text(text)
        return parse_policy(text.encode(), source=str(path), base_dir=self.tmp, path=path)

    def store(self, name: str = "verifier") -> Store:
        folder = self.tmp / name
        folder.mkdir(exist_ok=True)
        opened = Store.open(default_url(folder))
        self._stores.append(opened)
        self._homes[id(opened)] = folder
        return opened

    def log(self, store: Store) -> AuditLog:
        """The audit log of a store from :meth:`store`, with its key in the store's folder
        (the verifier's home): what the audited path (verify_logged) appends to."""
        home = self._homes.get(id(store))
        if home is None:  # a store opened elsewhere (on the rig's folder): not cached, as
            return AuditLog.open(store, self.tmp)  # its id may be another's once it closes
        if id(store) not in self._logs:
            self._logs[id(store)] = AuditLog.open(store, home)
        return self._logs[id(store)]

    def audited(self, verifier: Verifier) -> Verifier:
        """The audited verifier (attest verify's) of ``verifier``'s policy, store and id,
        on the store's log (one per store and verifier, so its memo lives as long)."""
        known = self._audited.get(id(verifier))
        if known is None or known[0] is not verifier:  # kept with it: its id is not reused
            known = (verifier, Verifier(verifier.policy, verifier.store,
                                        self.log(verifier.store),
                                        verifier_id=verifier.verifier_id,
                                        trust=verifier.trust))
            self._audited[id(verifier)] = known
        return known[1]

    def verify_logged(self, verifier: Verifier, raw: bytes) -> Decision:
        """``raw`` through the audited path (attest verify's), on the verifier's store log."""
        return self.audited(verifier).verify(raw)

    def enroll(self, store: Store, host: str = HOST_ID, *, move_host: bool = False) -> None:
        """Admit this host's AK (with its EK certificate) as `attest enroll` does: logged
        and sealed, through the same library function."""
        identity = self.identity
        ek = next(e for e in identity.eks if e.kind == "rsa")
        enroll_logged(store, self.log(store), host, identity.ak_name, identity.ak_public,
                      identity.ak_qualified_name, ek.certificate, ek=self.ek_id,
                      move_host=move_host, now=int(time.time()))

    def write_enrollment_row(self, store: Store, host: str = HOST_ID, *,
                             ak_name: bytes | None = None, ak_public: bytes | None = None,
                             ak_qualified_name: bytes | None = None,
                             with_host: bool = True) -> None:
        """The rows `attest enroll` would write (default: this host's AK), written by SQL
        without it: no credential activation, no EK, no audit entry, no seal. What a
        database writer does."""
        identity = self.identity
        with store.write() as tx:
            if with_host:
                tx.execute("INSERT INTO hosts (host, first_enrolled_at, last_enrolled_at) "
                           "VALUES (:host, 0, 0)", {"host": host})
            tx.execute("INSERT INTO enrollments (ak_name, host, ak_public, "
                       "ak_qualified_name, ek_certificate, enrolled_at, updated_at) "
                       "VALUES (:ak, :host, :public, :qn, NULL, 0, 0)",
                       {"ak": (ak_name or identity.ak_name).hex(), "host": host,
                        "public": ak_public or identity.ak_public,
                        "qn": ak_qualified_name or identity.ak_qualified_name})

    @property
    def ek_id(self) -> str:
        """This TPM's identity as the store records it (SHA-256 of the RSA EK's SPKI)."""
        ek = next(e for e in self.identity.eks if e.kind == "rsa")
        return ek_id(public_key(parse_public_tpm2b(ek.public), Reason.EK_CHAIN_INVALID))

    def verifier(self, policy: VerifierPolicy | None = None, store: Store | None = None,
                 **kwargs: Any) -> Verifier:
        """An unaudited verifier (Verifier.unaudited): no log, no seals checked."""
        return Verifier.unaudited(policy or self.policy(), store or self.store(), **kwargs)

    def close(self) -> None:
        for opened in self._stores:
            opened.close()


def make_ca(tmp: Path, name: str) -> Path:
    """A self-signed CA certificate that signed nothing of this TPM's."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path = tmp / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def verify_logged(verifier: Verifier, log: AuditLog, raw: bytes,
                  now: int | None = None) -> Decision:
    """``raw`` through an audited Verifier of ``verifier``'s policy, store and id, on
    ``log`` (one a test opened itself: without its key, say)."""
    return Verifier(verifier.policy, verifier.store, log, verifier_id=verifier.verifier_id,
                    trust=verifier.trust).verify(raw, now=now)
