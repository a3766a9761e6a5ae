"""The whole verifier under structure-aware mutation of real artifacts.

Artifacts are issued ONCE per module on swtpm simulators of the module's own (host A,
whose policy the verifiers hold, and host B, a donor of parts), then mutated: bytes of
the compact text; bytes of the decoded header, payload and signature; bytes of each
base64url evidence field; JSON edits of the header and the claims (types, lengths,
nesting, unicode, huge numbers, missing and extra members); parts swapped between
artifacts of the two hosts. Each mutant is verified against a real SQLite store (one per
seed, single use off, so verifying is free of effects that could change a later
decision). The rule:

- a mutant that is not signed again is denied with a real reason, unless it is the
  seed itself once stripped (the compact text is all a signature covers);
- a mutant re-signed inside the TPM by host A's key (its signature holds) is accepted
  only if its claims are the seed's, measurements of its runtime log included;
- no decision is ``internal_error``: that means an exception escaped a check.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from attest.artifact import jws
from attest.artifact.model import Claims, b64url
from attest.decision import Decision
from attest.errors import AttestError
from attest.eventlog.cel import parse_cel
from attest.simulator import Simulator
from attest.tpm import keys as signing
from attest.tpm.hierarchy import identity_path, load_identity
from attest.tpm.keys import key_dir
from attest.verify.verifier import Verifier
from tests.conftest import Host
from tests.fuzz.budget import EXAMPLES, FUZZ
from tests.fuzz.mutations import json_mutated, mutated
from tests.verify.rig import Rig, b64d

EVIDENCE_FIELDS = ("quote", "quote_sig", "key", "certify", "certify_sig", "ak", "runtime_log")


@dataclass
class Seeds:
    """Host A (trusted by the verifiers), host B, and their artifacts."""

    a: Rig
    b: Rig
    artifacts: list[bytes]  # A's first, then B's
    verifiers: dict[bytes, Verifier]  # one store per artifact of A
    now: dict[bytes, int]

    def __repr__(self) -> str:  # hypothesis prints the fixtures of a failing example
        return f"Seeds({len(self.artifacts)} artifacts)"


def _rig(template: Path, base: Path) -> tuple[Rig, Simulator]:
    sim = Simulator(base / "sim")
    shutil.copytree(template, sim.state_dir)
    sim.start()
    host = Host(sim, base / "home")
    host.ok("provision")
    host.ok("key", "create")
    host.ok("measure", "command", "--", "ls")
    rig = Rig(host, base / "rig")
    rig.tmp.mkdir()
    return rig, sim


@pytest.fixture(scope="module")
def seeds(provisioned_template: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeds]:
    a, sim_a = _rig(provisioned_template, tmp_path_factory.mktemp("fuzz-a"))
    b, sim_b = _rig(provisioned_template, tmp_path_factory.mktemp("fuzz-b"))
    try:
        ours = [a.issue(), a.issue("ls", "-a", "/tmp", gov={"ticket": "CHG-7"},
                                   resources=("db1",))]
        theirs = [b.issue()]
        policy = a.policy(single_use=False)
        verifiers = {raw: a.verifier(policy, a.store(f"store-{i}"))
                     for i, raw in enumerate(ours)}
        now = {raw: jws.parse(raw).claims.iat for raw in ours + theirs}
        for raw in ours:  # the fuzz starts from artifacts that pass
            decision = verifiers[raw].verify(raw, now=now[raw])
            assert decision.accepted, decision.to_json()["denials"]
        yield Seeds(a, b, ours + theirs, verifiers, now)
    finally:
        a.close()
        b.close()
        sim_a.stop()
        sim_b.stop()


def _parts(raw: bytes) -> tuple[bytes, bytes, bytes]:
    header, payload, signature = raw.split(b".")
    return b64d(header), b64d(payload), b64d(signature)


def _join(header: bytes, payload: bytes, signature: bytes) -> bytes:
    return b".".join(b64url(part).encode() for part in (header, payload, signature))


def _evidence_edit(payload: bytes, name: str, value: bytes) -> bytes:
    document = json.loads(payload)
    document["evidence"][name] = b64url(value)
    return json.dumps(document, separators=(",", ":")).encode()


@st.composite
def unsigned_mutant(draw: st.DrawFn, artifacts: list[bytes]) -> tuple[bytes, bytes]:
    """(seed, mutant): one structure-aware mutation of a seed, not signed again."""
    seed = draw(st.sampled_from(artifacts))
    header, payload, signature = _parts(seed)
    kind = draw(st.sampled_from(["text", "header", "payload", "signature", "evidence",
                                 "header-json", "claims-json", "swap"]))
    if kind == "text":
        return seed, draw(mutated([seed]))
    if kind == "header":
        return seed, _join(draw(mutated([header])), payload, signature)
    if kind == "payload":
        return seed, _join(header, draw(mutated([payload])), signature)
    if kind == "signature":
        return seed, _join(header, payload, draw(mutated([signature])))
    if kind == "evidence":
        name = draw(st.sampled_from(EVIDENCE_FIELDS))
        value = b64d(json.loads(payload)["evidence"][name])
        return seed, _join(header, _evidence_edit(payload, name, draw(mutated([value]))),
                           signature)
    if kind == "header-json":
        edited = draw(json_mutated([json.loads(header)]))
        return seed, _join(json.dumps(edited).encode(), payload, signature)
    if kind == "claims-json":
        edited = draw(json_mutated([json.loads(payload)], max_steps=3))
        return seed, _join(header, json.dumps(edited).encode(), signature)
    return seed, _swapped(draw, seed, draw(st.sampled_from(artifacts)))


def _swapped(draw: st.DrawFn, seed: bytes, donor: bytes) -> bytes:
    """``seed`` with one part, claim or evidence field taken from ``donor``."""
    seed_parts, donor_parts = seed.split(b"."), donor.split(b".")
    where = draw(st.sampled_from(["part", "claim", "evidence"]))
    if where == "part":
        index = draw(st.integers(0, 2))
        seed_parts[index] = donor_parts[index]
        return b".".join(seed_parts)
    mine, theirs = json.loads(b64d(seed_parts[1])), json.loads(b64d(donor_parts[1]))
    if where == "claim":
        key = draw(st.sampled_from(sorted(set(mine) | set(theirs))))
        if key in theirs:
            mine[key] = theirs[key]
        else:
            del mine[key]
    else:
        name = draw(st.sampled_from(EVIDENCE_FIELDS))
        mine["evidence"][name] = theirs["evidence"][name]
    seed_parts[1] = b64url(json.dumps(mine).encode()).encode()
    return b".".join(seed_parts)


def _decide(seeds: Seeds, seed: bytes, raw: bytes) -> Decision:
    ours = seed if seed in seeds.verifiers else seeds.artifacts[0]
    decision = seeds.verifiers[ours].verify(raw, now=seeds.now[seed])
    assert decision.reasons or decision.accepted, "a denial without a reason"
    assert "internal_error" not in decision.reasons, decision.to_json()["denials"]
    # --hypothesis-show-statistics shows how deep the mutants reach.
    event(f"first reason: {decision.reasons[0] if decision.reasons else 'accepted'}")
    return decision


@FUZZ
@given(data=st.data())
def test_an_unsigned_mutant_is_denied_with_a_reason(seeds: Seeds, data: st.DataObject) -> None:
    seed, raw = data.draw(unsigned_mutant(seeds.artifacts))
    decision = _decide(seeds, seed, raw)
    if decision.accepted:
        assert raw.strip() == seed.strip(), "a mutated artifact was accepted"


def _measurements(log: bytes) -> list[tuple[object, ...]] | None:
    try:
        return [(r.index, r.pcr, r.digests, r.content_type, r.content, r.other_digests,
                 r.nv_index) for r in parse_cel(log).records]
    except ValueError:  # EventLogError included: a log that does not parse
        return None


def _same_meaning(a: Claims, b: Claims) -> bool:
    """Equal claims, the runtime log compared by what it measures (a record's encoding
    may change without changing a measurement, e.g. a CEL record's absent recnum)."""
    if _measurements(a.evidence.runtime_log) != _measurements(b.evidence.runtime_log):
        return False
    return a == dataclasses.replace(b, evidence=dataclasses.replace(
        b.evidence, runtime_log=a.evidence.runtime_log))


@st.composite
def resigned_payload(draw: st.DrawFn, payloads: list[bytes]) -> tuple[int, bytes]:
    index = draw(st.integers(0, len(payloads) - 1))
    payload = payloads[index]
    kind = draw(st.sampled_from(["claims-json", "evidence", "payload"]))
    if kind == "claims-json":
        edited: Any = draw(json_mutated([json.loads(payload)], max_steps=3))
        return index, json.dumps(edited).encode()
    if kind == "evidence":
        name = draw(st.sampled_from(EVIDENCE_FIELDS))
        value = b64d(json.loads(payload)["evidence"][name])
        return index, _evidence_edit(payload, name, draw(mutated([value])))
    return index, draw(mutated([payload]))


@FUZZ
@given(data=st.data())
def test_a_resigned_mutant_passes_only_with_the_seeds_claims(
        seeds: Seeds, data: st.DataObject) -> None:
    """Host A lies: it edits the claims or the evidence and signs again in its TPM, so
    the JWS signature holds and the evidence checks themselves must tell."""
    ours = list(seeds.verifiers)
    index, payload = data.draw(resigned_payload([_parts(raw)[1] for raw in ours]))
    seed = ours[index]
    header_b64 = seed.split(b".")[0]
    signing_input = header_b64 + b"." + base64.urlsafe_b64encode(payload).rstrip(b"=")
    raw = jws.assemble(signing_input, seeds.a.sign(signing_input))
    decision = _decide(seeds, seed, raw)
    if decision.accepted:
        assert _same_meaning(jws.parse(raw).claims, jws.parse(seed).claims), \
            "re-signed evidence with other claims was accepted"


@pytest.fixture(scope="module")
def damaged_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("damaged-home")


@FUZZ
@given(data=st.data())
def test_damaged_host_files_load_or_raise_the_projects_errors(
        seeds: Seeds, damaged_home: Path, data: st.DataObject) -> None:
    """The home's identity and key records, edited or corrupted (a disk, a careless
    hand): loading them gives a result or an AttestError, never a KeyError or worse."""
    source = seeds.a.home
    which = data.draw(st.sampled_from(["identity", "key"]))
    original = (identity_path(source) if which == "identity"
                else key_dir(source, signing.DEFAULT_KEY) / "key.json").read_bytes()
    if data.draw(st.booleans()):
        text = json.dumps(data.draw(json_mutated([json.loads(original)], max_steps=2))).encode()
    else:
        text = data.draw(mutated([original]))
    target = (identity_path(damaged_home) if which == "identity"
              else key_dir(damaged_home, signing.DEFAULT_KEY) / "key.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(text)
    try:
        if which == "identity":
            load_identity(damaged_home)
        else:
            signing.load_key(damaged_home, signing.DEFAULT_KEY)
    except AttestError as exc:
        event(type(exc).__name__)


@pytest.fixture(scope="module")
def cli_policy(seeds: Seeds) -> Path:
    path = seeds.a.tmp / "cli-policy.yaml"
    seeds.a.host.ok("policy", "init", "--from-host", "--out", str(path))
    return path


# A process's worth of work per example (policy, store, audit log): a third of the budget.
@settings(FUZZ, max_examples=max(10, EXAMPLES // 3))
@given(data=st.data())
def test_attest_verify_exits_1_with_a_reason_for_a_mutant(
        seeds: Seeds, cli_policy: Path, data: st.DataObject) -> None:
    """`attest verify FILE --json`, as a script runs it (the audited path): a mutant is
    exit 1 with reasons in JSON, never exit 2, never an internal error (Host.run
    refuses that output)."""
    seed, raw = data.draw(unsigned_mutant(seeds.artifacts))
    path = seeds.a.tmp / "mutant.jws"
    path.write_bytes(raw)
    result = seeds.a.host.run("verify", str(path), "--policy", str(cli_policy), "--json")
    out = json.loads(result.stdout)
    if result.exit_code == 0:
        assert out["accepted"] is True and raw.strip() == seed.strip(), out
        return
    assert result.exit_code == 1, result.output
    assert out["accepted"] is False and out["reasons"], out
    assert "internal_error" not in out["reasons"], out
    event(f"first reason: {out['reasons'][0]}")
