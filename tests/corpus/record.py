"""Record the corpus: real artifacts made on swtpm, with what a verifier needs offline.

    cd REPO && PYTHONPATH=$PWD .venv/bin/python -m tests.corpus.record [FOLDER]

FOLDER defaults to this package's folder (tests/corpus). Needs swtpm and tpm2-pytss (the
host side); what it writes is read without either (tests.corpus). Three hosts, each on a
swtpm of its own, provisioned afresh (its own local CA, EK and AK), each with the key
``default`` (or, on web-3, an authority-bound key) and one runtime measurement (``ls``).
The artifacts are issued in the order a verifier must see them (a child after its
parent); the recording is then verified offline, each artifact at its ``now``, as the
corpus tests do, and the script fails if any is denied. File names are fixed: a new recording
replaces the old files one for one (README.md lists them).
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from attest.artifact import jws
from attest.artifact.model import b64url
from attest.eventlog.cel import parse_cel
from attest.evidence.pcrs import PCRSelection
from attest.host.runtime.log import RuntimeLog
from attest.host.runtime.subjects import measured_executables
from attest.policy import NonceMode, render_policy
from attest.simulator import Simulator
from attest.tpm import keys as signing
from attest.tpm.pcr import read_pcrs
from tests.conftest import Host
from tests.verify.rig import Rig

HERE = Path(__file__).resolve().parent
NONCE_TTL = 30  # shorter than the artifact's 60 s: a challenge can expire first
AUTHORIZED_KEY = "signed"
SEALED = PCRSelection.parse("sha256:0-7")


@contextmanager
def _host(folder: Path, name: str) -> Iterator[Rig]:
    """A freshly provisioned swtpm (its own CA and EK) with a host home on it."""
    sim = Simulator(folder / name / "sim")
    sim.provision()
    sim.start()
    try:
        host = Host(sim, folder / name / "home")
        host.ok("provision")
        (folder / name / "rig").mkdir()
        yield Rig(host, folder / name / "rig")
    finally:
        sim.stop()


def _reference(rig: Rig) -> tuple[dict[str, list[bytes]], dict[str, Any]]:
    """The runtime reference values and executables of the host's measurements, as
    `attest policy init --from-host` writes them."""
    records = parse_cel(RuntimeLog(rig.home).path.read_bytes()).records
    reference: dict[str, list[bytes]] = {}
    for rec in records:
        name, measured = rec.content.get("name"), rec.content.get("digest")
        if isinstance(name, str) and isinstance(measured, dict):
            reference.setdefault(name, []).append(bytes.fromhex(measured["sha256"]))
    return reference, dict(measured_executables(records))


def _enrollment(rig: Rig, host: str, now: int) -> dict[str, Any]:
    identity = rig.identity
    ek = next(e for e in identity.eks if e.kind == "rsa")
    assert ek.certificate is not None
    return {"host": host, "ak_name": identity.ak_name.hex(),
            "ak_public": identity.ak_public.hex(),
            "ak_qualified_name": identity.ak_qualified_name.hex(),
            "ek_certificate": base64.b64encode(ek.certificate).decode(),
            "ek": rig.ek_id, "enrolled_at": now}


def record(out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="attest-corpus-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        web1 = stack.enter_context(_host(work, "web-1"))
        web2 = stack.enter_context(_host(work, "web-2"))
        web3 = stack.enter_context(_host(work, "web-3"))
        for rig in (web1, web2, web3):
            rig.host.ok("measure", "command", "--", "ls")
        for rig in (web1, web2):
            rig.host.ok("key", "create")
        authority = _authority(work)
        web3.host.ok("key", "create", "--name", AUTHORIZED_KEY, "--authority",
                     str(authority[1]))

        roots = out / "roots"
        if roots.exists():
            shutil.rmtree(roots)
        roots.mkdir(parents=True)
        for name, rig in (("web-1", web1), ("web-2", web2), ("web-3", web3)):
            shutil.copy(rig.host.sim.root_ca_cert, roots / f"{name}-root.pem")
            shutil.copy(rig.host.sim.intermediate_ca_cert, roots / f"{name}-intermediate.pem")

        started = int(time.time())
        enrollments = [_enrollment(rig, name, started)
                       for name, rig in (("web-1", web1), ("web-2", web2), ("web-3", web3))]
        reference, executables = _reference(web1)
        assert _reference(web2) == _reference(web3) == (reference, executables)
        key = signing.load_key(web1.home, signing.DEFAULT_KEY)
        sealed = {i: v for (_, i), v in key.sealed_values.items()}
        common: dict[str, Any] = {"ek_roots": ["roots"], "runtime_reference": reference,
                                  "executables": executables, "nonce": NonceMode.OPTIONAL}
        policies = {
            "pcr": render_policy(policy_id="corpus-pcr", sealed_values=sealed,
                                 header="The corpus's policy for web-1 and web-2 (PCR-bound "
                                        "keys); written by tests/corpus/record.py",
                                 **common),
            "authorize": render_policy(policy_id="corpus-authorize", sealed_values={},
                                       sealed_pcrs=range(8),
                                       authority_pem=authority[1].read_bytes(),
                                       header="The corpus's policy for web-3 (a key bound "
                                              "to an authority); written by "
                                              "tests/corpus/record.py",
                                       **common),
        }
        for name, text in policies.items():
            (out / f"policy-{name}.yaml").write_text(text)

        artifacts: list[dict[str, Any]] = []

        def keep(name: str, rig: Rig, host: str, raw: bytes, *, policy: str = "pcr",
                 nonce: dict[str, Any] | None = None, verifier_id: str | None = None,
                 what: str) -> bytes:
            artifacts.append({"name": name, "host": host, "policy": policy,
                              "now": jws.parse(raw).claims.iat, "nonce": nonce,
                              "verifier_id": verifier_id, "what": what})
            (out / "artifacts").mkdir(exist_ok=True)
            (out / "artifacts" / f"{name}.jws").write_bytes(raw + b"\n")
            return raw

        keep("web-1-exec", web1, "web-1",
             web1.issue(gov={"ticket": "CHG-7"}, resources=("db1",)),
             what="exec of `ls -l /srv` with a gov claim and a resource")
        parent = keep("web-1-parent", web1, "web-1",
                      web1.issue("ls", "-l", "/srv/*", resources=("db1", "db2"), ttl=300),
                      what="a parent: argv pattern `ls -l /srv/*`, two resources")
        keep("web-1-child", web1, "web-1",
             web1.issue("ls", "-l", "/srv/data", resources=("db1",), ttl=60, parent=parent),
             what="a child of web-1-parent, narrower (lineage depth 1)")
        nonce = b64url(secrets.token_bytes(32))
        issued = int(time.time())
        keep("web-1-nonce", web1, "web-1", web1.issue("ls", nonce=nonce),
             nonce={"nonce": nonce, "issued_at": issued, "expires_at": issued + NONCE_TTL},
             what="answers a verifier's challenge (the nonce the store issued)")
        keep("web-1-audience", web1, "web-1", web1.issue("ls", audience="verifier-1"),
             verifier_id="verifier-1", what="for one verifier only (aud verifier-1)")
        keep("web-2-exec", web2, "web-2", web2.issue(),
             what="exec of `ls -l /srv` by a second host")
        keep("web-2-long", web2, "web-2", web2.issue("ls", ttl=600),
             what="valid 10 min (the policy's max_lifetime): outlives max_age's 5 min")
        with web3.tpm() as tpm:
            values = read_pcrs(tpm, SEALED)
        approval = signing.approve(authority[0], SEALED, values, serial=1)
        keep("web-3-authorize", web3, "web-3",
             web3.issue("ls", key=AUTHORIZED_KEY, approvals=(approval,)), policy="authorize",
             what="signed by a key bound to an authority (PolicyAuthorize), with its approval")

        manifest = {
            "about": "tests/corpus: real artifacts recorded on swtpm; see README.md",
            "recorded_at": started,
            "enrollments": enrollments,
            "artifacts": artifacts,
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def _authority(work: Path) -> tuple[bytes, Path]:
    """An approval authority's key pair (software, as `attest policy approve` uses)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    public = work / "authority.pub"
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()), public


def main(argv: list[str]) -> None:
    out = Path(argv[0]) if argv else HERE
    out.mkdir(parents=True, exist_ok=True)
    record(out)
    from tests.corpus import Corpus

    # A recording is written only if it verifies as recorded (the corpus tests' claim).
    corpus = Corpus.load(out)
    with tempfile.TemporaryDirectory(prefix="attest-corpus-check-") as tmp:
        bench = corpus.bench(Path(tmp))
        try:
            for recorded in corpus.artifacts:
                decision = bench.verify(recorded)
                if not decision.accepted:
                    raise SystemExit(f"{recorded.name}: {decision.to_json()['denials']}")
        finally:
            bench.close()
    print(f"recorded {len(corpus.artifacts)} artifacts in {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
