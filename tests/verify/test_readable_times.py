"""Denials say times as people read them (ISO 8601 UTC, "31 s ago"), not epoch seconds."""

from __future__ import annotations

import re

from attest import timetext
from attest.decision import Decision
from attest.policy import NonceMode
from tests.corpus import Bench, Corpus
from tests.verify.rig import denied
from tests.verify.test_corpus_reasons import _policy, _unaudited

# Ten digits or more: an epoch second (or millisecond) count a person cannot read.
_EPOCH = re.compile(r"\b\d{10,}\b")


def _message(decision: Decision, reason: str) -> str:
    [found] = [d.message for d in decision.denials if d.reason.value == reason]
    assert not _EPOCH.search(found), found
    return found


def test_expired_says_when_and_how_long_ago(corpus: Corpus, bench: Bench) -> None:
    parent, child = corpus.artifact("web-1-parent"), corpus.artifact("web-1-child")
    bench.verify(parent)
    exp = child.claims.exp
    decision = bench.verify(child, at=exp + 31)
    denied(decision, "expired")
    assert _message(decision, "expired") == f"expired at {timetext.iso(exp)} (31 s ago)"


def test_not_yet_valid_says_when(corpus: Corpus, bench: Bench) -> None:
    recorded = corpus.artifact("web-1-exec")
    iat = recorded.claims.iat
    verifier = _unaudited(bench, _policy(corpus, trusted=["web-1"]))
    decision = verifier.verify(recorded.raw, now=iat - 3600)
    message = _message(decision, "not_yet_valid")
    assert f"issued {timetext.iso(iat)} (in 60 min)" in message


def test_stale_evidence_says_how_old(corpus: Corpus, bench: Bench) -> None:
    recorded = corpus.artifact("web-2-long")
    verifier = _unaudited(bench, _policy(corpus, nonce=NonceMode.FORBIDDEN))
    decision = verifier.verify(recorded.raw, now=recorded.now + 400)
    message = _message(decision, "stale_evidence")
    assert message.startswith("evidence is ") and "at most 5 min" in message

