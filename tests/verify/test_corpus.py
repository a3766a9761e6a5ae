"""The recorded corpus (tests/corpus) is what it says: real artifacts that verify as
recorded, at their time, and expire, with no TPM and without tpm2-pytss."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.corpus import CORPUS, DAY, Bench, Corpus
from tests.verify.rig import accepted
from tests.verify.test_without_tss import _BLOCKED, _env, _tss_free_venv

MAX_CORPUS_BYTES = 200 * 1024


def test_the_corpus_verifies_as_recorded(corpus: Corpus, bench: Bench) -> None:
    # In the recorded order (a child after its parent), audited as `attest verify` does.
    for recorded in corpus.artifacts:
        decision = bench.verify(recorded)
        accepted(decision)
        assert decision.host == recorded.host
        assert decision.audit_index is not None
        assert decision.jti == recorded.claims.jti


def test_a_day_later_each_artifact_is_expired(corpus: Corpus, bench: Bench) -> None:
    for recorded in corpus.artifacts:
        decision = bench.verify(recorded, at=recorded.now + DAY)
        assert not decision.accepted
        assert decision.reasons[0] == "expired", decision.to_json()["denials"]


def test_the_corpus_holds_what_the_verifier_tests_need(corpus: Corpus) -> None:
    enrolled = corpus.enrollments
    assert len({e.ak_name for e in enrolled}) == len({e.ek for e in enrolled}) == 3
    assert {a.host for a in corpus.artifacts} == {e.host for e in enrolled}
    claims = {a.name: a.claims for a in corpus.artifacts}
    assert claims["web-1-child"].lineage is not None
    assert claims["web-1-child"].lineage.parent == claims["web-1-parent"].jti
    assert claims["web-1-nonce"].eat_nonce == corpus.artifact("web-1-nonce").nonce.nonce
    assert claims["web-3-authorize"].evidence.approval is not None
    assert corpus.policy("authorize").key_policy.kind.value == "authorize"
    assert claims["web-1-audience"].aud == "verifier-1"
    assert claims["web-2-long"].exp - claims["web-2-long"].iat == 600
    assert all(c.scope.action == "exec" for c in claims.values())


def test_the_corpus_is_small_and_every_file_is_described() -> None:
    files = [p for p in CORPUS.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert sum(p.stat().st_size for p in files) < MAX_CORPUS_BYTES
    readme = (CORPUS / "README.md").read_text()
    for path in files:
        assert path.name in readme or path.parent.name in readme, path


_OFFLINE = """
import importlib.util, json, sys, tempfile
from pathlib import Path
try:
    absent = importlib.util.find_spec("tpm2_pytss") is None
except ModuleNotFoundError:  # the blocker's answer
    absent = True
from tests.corpus import DAY, Corpus

corpus = Corpus.load()
with tempfile.TemporaryDirectory() as tmp:
    bench = corpus.bench(Path(tmp))
    now = [bench.verify(a).accepted for a in corpus.artifacts]
    later = [bench.verify(a, at=a.now + DAY).reasons[:1] for a in corpus.artifacts]
    bench.close()
loaded = sorted(m for m in sys.modules if m.startswith(("tpm2_pytss", "attest.tpm")))
print(json.dumps({"absent": absent, "now": now, "later": later, "loaded": loaded}))
"""


@pytest.mark.parametrize("without", ["blocked", "venv"])
def test_the_corpus_verifies_without_the_tss(corpus: Corpus, tmp_path: Path,
                                             without: str) -> None:
    """Loaded and verified where `import tpm2_pytss` fails, or in a venv that lacks it
    (tests/verify/test_without_tss.py's two ways), as on a control plane."""
    if without == "blocked":
        command = [sys.executable, "-c", _BLOCKED + _OFFLINE]
    else:
        command = [str(_tss_free_venv(tmp_path / "venv")), "-c", _OFFLINE]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=_env({}),
                          check=False, cwd=CORPUS.parent.parent)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result == {"absent": True, "now": [True] * len(corpus.artifacts),
                      "later": [["expired"]] * len(corpus.artifacts), "loaded": []}


def test_a_store_without_the_enrollments_knows_no_ak(corpus: Corpus, tmp_path: Path) -> None:
    bare = corpus.bench(tmp_path / "bare", enroll=False)
    try:
        for recorded in corpus.artifacts:
            assert bare.verify(recorded).reasons == ("ak_unknown",)
    finally:
        bare.close()


def test_recorded_certifications_carry_the_shared_certification_label(corpus: Corpus) -> None:
    """The host certifies under the label the verifier expects: one constant, in the
    pure artifact model, that issue.py and the appraisal both import."""
    import hashlib

    from attest.artifact import jws
    from attest.artifact.model import CERTIFICATION_LABEL
    from attest.evidence.structures import parse_attest, parse_public_tpm2b
    from attest.host import issue
    from attest.verify import appraisal

    assert issue.CERTIFICATION_LABEL is appraisal.CERTIFICATION_LABEL is CERTIFICATION_LABEL
    for recorded in corpus.artifacts:
        evidence = jws.parse(recorded.raw).claims.evidence
        key_name = parse_public_tpm2b(evidence.key_public).name
        ak_name = parse_public_tpm2b(evidence.ak_public).name
        expected = hashlib.sha256(CERTIFICATION_LABEL + key_name + ak_name).digest()
        assert parse_attest(evidence.certify).extra_data == expected
