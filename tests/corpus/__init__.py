"""The recorded corpus: real artifacts made on swtpm once, appraised here without a TPM.

What is in the folder, and how to make it again, is in README.md (``record.py`` writes it).
This module reads it with the verifier side of attest only: no tpm2-pytss, no swtpm, no
clock (each artifact is verified at the ``now`` it was made at, or a time a test picks).

- :meth:`Corpus.load` reads ``manifest.json``, the artifacts and the policies;
- :meth:`Corpus.bench` opens a verifier's state in a folder: a SQLite store whose
  enrollments are admitted as `attest enroll` admits them (``enroll_logged``: logged and
  sealed under the log key in that folder) and whose store holds the recorded nonces;
- :meth:`Bench.verifier` gives the audited verifier (``attest verify``'s) of a recorded
  policy, or ``Verifier.unaudited`` when asked.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from attest.artifact import jws
from attest.audit.hooks import enroll_logged
from attest.audit.log import AuditLog
from attest.decision import Decision
from attest.policy import VerifierPolicy, load_policy
from attest.policy.trust import TrustMaterial, load_trust
from attest.store import Store, default_url
from attest.verify.verifier import Verifier

CORPUS = Path(__file__).resolve().parent
DAY = 86400


@dataclass(frozen=True)
class RecordedNonce:
    """A challenge the recording verifier issued (its store row, as issue_nonce wrote it)."""

    nonce: str
    issued_at: int
    expires_at: int


@dataclass(frozen=True)
class Enrolled:
    """An AK as `attest enroll` admitted it: the enrollment row's inputs."""

    host: str
    ak_name: bytes
    ak_public: bytes
    ak_qualified_name: bytes
    ek_certificate: bytes
    ek: str  # the EK's id (SHA-256 of the RSA EK's SPKI)
    enrolled_at: int


@dataclass(frozen=True)
class Recorded:
    """One artifact of the corpus and the circumstances it is verified in."""

    name: str
    raw: bytes
    host: str
    policy: str  # policy-<policy>.yaml
    now: int  # when it was made (its iat): a verifier at this time accepts it
    what: str
    nonce: RecordedNonce | None = None
    verifier_id: str | None = None

    @property
    def claims(self) -> Any:
        return jws.parse(self.raw).claims


@dataclass(frozen=True)
class Corpus:
    folder: Path
    artifacts: tuple[Recorded, ...]
    enrollments: tuple[Enrolled, ...]
    _policies: dict[str, VerifierPolicy] = field(default_factory=dict, compare=False)

    @classmethod
    def load(cls, folder: Path = CORPUS) -> Corpus:
        manifest = json.loads((folder / "manifest.json").read_text())
        artifacts = tuple(
            Recorded(name=a["name"], raw=(folder / "artifacts" / f"{a['name']}.jws")
                     .read_bytes().strip(), host=a["host"], policy=a["policy"], now=a["now"],
                     what=a["what"], verifier_id=a["verifier_id"],
                     nonce=None if a["nonce"] is None else RecordedNonce(**a["nonce"]))
            for a in manifest["artifacts"])
        enrollments = tuple(
            Enrolled(host=e["host"], ak_name=bytes.fromhex(e["ak_name"]),
                     ak_public=bytes.fromhex(e["ak_public"]),
                     ak_qualified_name=bytes.fromhex(e["ak_qualified_name"]),
                     ek_certificate=base64.b64decode(e["ek_certificate"]), ek=e["ek"],
                     enrolled_at=e["enrolled_at"])
            for e in manifest["enrollments"])
        return cls(folder, artifacts, enrollments)

    def artifact(self, name: str) -> Recorded:
        (found,) = (a for a in self.artifacts if a.name == name)
        return found

    def enrollment(self, host: str) -> Enrolled:
        (found,) = (e for e in self.enrollments if e.host == host)
        return found

    def policy(self, name: str = "pcr") -> VerifierPolicy:
        """policy-<name>.yaml, loaded as `attest verify --policy` loads it."""
        if name not in self._policies:
            self._policies[name] = load_policy(self.folder / f"policy-{name}.yaml")
        return self._policies[name]

    @cached_property
    def trust(self) -> TrustMaterial:
        """The recording swtpms' CAs (every policy of the corpus names the same roots)."""
        return load_trust(self.policy())

    def bench(self, folder: Path, *, enroll: bool = True, nonces: bool = True) -> Bench:
        """A verifier's state in ``folder`` (store, audit log and its key), with the
        corpus's AKs enrolled and its nonces issued (unless told not to)."""
        folder.mkdir(parents=True, exist_ok=True)
        store = Store.open(default_url(folder))
        bench = Bench(self, store, AuditLog.open(store, folder), folder)
        if enroll:
            for enrolled in self.enrollments:
                bench.enroll(enrolled)
        if nonces:
            bench.issue_nonces()
        return bench


@dataclass
class Bench:
    """One verifier's store and audit log, seeded from the corpus."""

    corpus: Corpus
    store: Store
    log: AuditLog
    folder: Path
    _verifiers: dict[tuple[str, str | None, bool], Verifier] = field(default_factory=dict)

    def enroll(self, enrolled: Enrolled) -> None:
        """Admit an AK as `attest enroll` does, through the same library function."""
        enroll_logged(self.store, self.log, enrolled.host, enrolled.ak_name,
                      enrolled.ak_public, enrolled.ak_qualified_name,
                      enrolled.ek_certificate, ek=enrolled.ek, now=enrolled.enrolled_at)

    def issue_nonces(self) -> None:
        """The recorded challenges, as the recording verifier's store held them."""
        with self.store.write() as tx:
            for recorded in self.corpus.artifacts:
                if recorded.nonce is not None:
                    tx.execute("INSERT INTO nonces (nonce, issued_at, expires_at, used_at) "
                               "VALUES (:nonce, :issued_at, :expires_at, NULL)",
                               dataclasses.asdict(recorded.nonce))

    def verifier(self, policy: str | VerifierPolicy = "pcr", *, audited: bool = True,
                 verifier_id: str | None = None) -> Verifier:
        """The audited verifier (attest verify's) of a recorded policy (or of one a test
        derived from it), on this store; ``audited=False``: Verifier.unaudited. One per
        policy name, id and kind, so that its memo lives as long as the bench."""
        loaded = self.corpus.policy(policy) if isinstance(policy, str) else policy
        trust = self.corpus.trust
        if not isinstance(policy, str):
            return (Verifier(loaded, self.store, self.log, verifier_id=verifier_id,
                             trust=trust) if audited
                    else Verifier.unaudited(loaded, self.store, verifier_id=verifier_id,
                                            trust=trust))
        key = (policy, verifier_id, audited)
        if key not in self._verifiers:
            self._verifiers[key] = (
                Verifier(loaded, self.store, self.log, verifier_id=verifier_id, trust=trust)
                if audited else Verifier.unaudited(loaded, self.store,
                                                   verifier_id=verifier_id, trust=trust))
        return self._verifiers[key]

    def verify(self, recorded: Recorded, *, at: int | None = None,
               audited: bool = True) -> Decision:
        """``recorded`` through its policy's verifier, at its ``now`` (or ``at``)."""
        verifier = self.verifier(recorded.policy, audited=audited,
                                 verifier_id=recorded.verifier_id)
        return verifier.verify(recorded.raw, now=recorded.now if at is None else at)

    def close(self) -> None:
        self.store.close()
