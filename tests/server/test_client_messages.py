"""What the host's HTTP client says when it can't use the verifier: each failure named
for what the operator must change, not urllib's wording (the walk through the service
docs as a new user, issue 13)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from attest.host.http import VerifierUnreachable, post_json
from tests.server.serving import Pki, Quiet, answering, make_pki


class _Counting(Quiet):
    """Answers every POST with a JSON object, counting them."""

    posts = 0

    def do_POST(self) -> None:
        type(self).posts += 1
        self.answer_json(200, b"{}")


def _tls(pki: Pki) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cert, pki.key)
    return context


def test_an_untrusted_certificate_says_cacert_and_is_not_retried(tmp_path: Path) -> None:
    """A verifier whose certificate this host does not trust: exit 3 (the environment),
    naming the certificate and --cacert rather than "is the service up?", and no retry
    (the same certificate would be refused again). With --cacert the same call goes
    through: the message is about trust, never a reason to skip the check."""
    pki = make_pki(tmp_path / "pki")
    _Counting.posts = 0
    with answering(_Counting, tls=_tls(pki)) as base:
        with pytest.raises(VerifierUnreachable) as refused:
            post_json(f"{base}/v1/challenges", b"{}", retries=2)
        assert "does not trust" in str(refused.value)
        assert "--cacert" in (refused.value.hint or "")
        assert "<urlopen error" not in str(refused.value)
        assert _Counting.posts == 0
        assert post_json(f"{base}/v1/challenges", b"{}", cacert=pki.ca) == {}
        assert _Counting.posts == 1


def test_a_refused_connection_names_the_cause_alone(tmp_path: Path) -> None:
    """Nothing listening: the OS's reason, without urllib's "<urlopen error ...>"."""
    with answering(_Counting) as base:
        pass  # shut down: its port now refuses
    with pytest.raises(VerifierUnreachable) as refused:
        post_json(f"{base}/v1/challenges", b"{}")
    assert "unreachable" in str(refused.value)
    assert "<urlopen error" not in str(refused.value)
    assert "service is up" in (refused.value.hint or "")
