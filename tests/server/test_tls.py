"""`attest serve --tls-cert --tls-key`: a real uvicorn serving https on loopback with a
certificate from a CA made here; the clients (`attest enroll`, `attest run`) over https
with --cacert, and without it refused before anything runs; the files refused at start
(a key open to others, a key not the certificate's, files that are no PEM); an address
beyond loopback only with TLS or --behind-proxy."""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.conftest import Host
from tests.run.conftest import attest_cli
from tests.server.serving import Pki, audit_verifies, make_pki, policy_file, serve_cli, served
from tests.server.test_enroll_cli import enrolling
from tests.verify.rig import Rig

__all__ = ["enrolling"]


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A CA of the test's own and a server certificate for 127.0.0.1 and localhost."""
    return make_pki(tmp_path / "pki")


@contextmanager
def _served_tls(policy: Path, home: Path, pki: Pki, *extra: str,
                said: list[str] | None = None) -> Iterator[str]:
    """`attest serve --tls-cert --tls-key` as a user runs it: its https base URL; what it
    printed on stderr after its first line is ``said[1]`` once it has stopped."""
    with served(policy, home, "--tls-cert", str(pki.cert), "--tls-key", str(pki.key),
                *extra, said=said) as base:
        assert base.startswith("https://"), base
        yield base


def _health(base: str, context: ssl.SSLContext) -> Any:
    with urllib.request.urlopen(f"{base}/v1/health", timeout=30,  # noqa: S310 - https
                                context=context) as answer:
        return json.loads(answer.read())


def test_enroll_and_run_over_https_with_cacert(enrolling: tuple[Host, Path], pki: Pki,
                                               tmp_path: Path) -> None:
    """The whole client path over TLS: enrolled, then accepted and CMD runs; a host that
    doesn't know the server's CA reaches nothing (exit 3) and CMD never runs."""
    from attest.ear import keys as result_keys

    host, policy = enrolling
    home = tmp_path / "verifier"
    ran, never = tmp_path / "ran", tmp_path / "must-not-exist"
    with _served_tls(policy, home, pki) as base:
        pem = tmp_path / "verifier-key.pem"
        pem.write_text(result_keys.public_pem(result_keys.load(home).public_key()))
        unknown_ca = attest_cli(host, "enroll", "--verifier", base, "--host", "web-1")
        assert unknown_ca.returncode == 3, unknown_ca.stderr
        assert "does not trust" in unknown_ca.stderr and "--cacert" in unknown_ca.stderr
        done = attest_cli(host, "enroll", "--verifier", base, "--cacert", str(pki.ca),
                          "--host", "web-1", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["host"] == "web-1"
        trusted = ("--verifier", base, "--verifier-key", str(pem))
        refused = attest_cli(host, "run", *trusted, "--", "sh", "-c", f"touch {never}")
        assert refused.returncode == 3, refused.stderr
        assert "does not trust" in refused.stderr and "--cacert" in refused.stderr
        # Plain http to the TLS port answers nothing a client takes: still nothing runs.
        plain = attest_cli(host, "run", "--verifier", base.replace("https:", "http:"),
                           "--verifier-key", str(pem), "--", "sh", "-c", f"touch {never}")
        assert plain.returncode == 3, plain.stderr
        accepted = attest_cli(host, "run", *trusted, "--cacert", str(pki.ca), "--", "sh",
                              "-c", f"echo yes > {ran}")
        assert accepted.returncode == 0, accepted.stderr
        assert ran.read_text() == "yes\n"
        # A certificate for 127.0.0.1 does not vouch for another name of the machine.
        by_name = attest_cli(host, "run", "--verifier", base.replace("127.0.0.1", "127.0.0.2"),
                             "--verifier-key", str(pem), "--cacert", str(pki.ca), "--", "sh",
                             "-c", f"touch {never}")
        assert by_name.returncode == 3, by_name.stderr
    assert not never.exists()
    audit_verifies(home)


def test_every_worker_serves_tls_with_aead_ciphers_only(rig: Rig, pki: Pki,
                                                        tmp_path: Path) -> None:
    """--workers 2 gets the certificate to each worker; TLS 1.2 without an ECDHE AEAD
    suite (uvicorn's default list would offer CBC with SHA-1) fails the handshake."""
    policy = policy_file(rig)
    trusting = ssl.create_default_context(cafile=str(pki.ca))
    with _served_tls(policy, tmp_path / "verifier", pki, "--workers", "2") as base:
        for _ in range(4):  # connections spread over the workers
            assert _health(base, trusting)["status"] == "ok"
        weak = ssl.create_default_context(cafile=str(pki.ca))
        weak.maximum_version = ssl.TLSVersion.TLSv1_2
        weak.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA")
        with pytest.raises(urllib.error.URLError) as refused:
            _health(base, weak)
        assert isinstance(refused.value.reason, ssl.SSLError), refused.value
        strong = ssl.create_default_context(cafile=str(pki.ca))
        strong.maximum_version = ssl.TLSVersion.TLSv1_2
        assert _health(base, strong)["status"] == "ok"


def test_an_expired_certificate_is_served_with_a_warning(rig: Rig, tmp_path: Path) -> None:
    """The operator is told at start; hosts refuse the certificate (exit 3, CMD never
    runs), as they would any certificate they can't verify."""
    expired = make_pki(tmp_path / "expired", expired=True)
    policy = policy_file(rig)
    said: list[str] = []
    with (_served_tls(policy, tmp_path / "verifier", expired, said=said) as base,
          pytest.raises(urllib.error.URLError, match="certificate has expired")):
        _health(base, ssl.create_default_context(cafile=str(expired.ca)))
    assert f"--tls-cert {expired.cert} expired at" in said[1], said


def _policy(tmp_path: Path) -> str:
    # The TLS files are checked before the policy is read: any file does here.
    policy = tmp_path / "policy.yaml"
    policy.write_text("")
    return str(policy)


def test_a_key_open_to_group_or_others_is_refused(pki: Pki, tmp_path: Path) -> None:
    for mode in (0o640, 0o604, 0o620):
        pki.key.chmod(mode)
        done = serve_cli(tmp_path, "--policy", _policy(tmp_path), "--tls-cert", str(pki.cert),
                      "--tls-key", str(pki.key))
        assert done.exit_code == 2, done.output
        assert f"--tls-key {pki.key} is open to group or others (mode {mode:o})" in done.output
        assert "chmod 600" in done.output
    # Through a symbolic link, the file it leads to is what is checked.
    link = tmp_path / "link.pem"
    link.symlink_to(pki.key)
    done = serve_cli(tmp_path, "--policy", _policy(tmp_path), "--tls-cert", str(pki.cert),
                  "--tls-key", str(link))
    assert done.exit_code == 2 and "open to group or others" in done.output, done.output


def test_a_key_not_the_certificates_is_usage(pki: Pki, tmp_path: Path) -> None:
    done = serve_cli(tmp_path, "--policy", _policy(tmp_path), "--tls-cert", str(pki.cert),
                  "--tls-key", str(pki.other_key))
    assert done.exit_code == 2, done.output
    assert f"--tls-key {pki.other_key} is not the key of --tls-cert {pki.cert}" in done.output
    # The CA's certificate first (its own key elsewhere): the same refusal.
    done = serve_cli(tmp_path, "--policy", _policy(tmp_path), "--tls-cert", str(pki.ca),
                  "--tls-key", str(pki.key))
    assert done.exit_code == 2 and "is not the key of" in done.output, done.output


def test_files_that_are_no_pem_are_usage_naming_the_file(pki: Pki, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    cases = [(("--tls-cert", str(garbage), "--tls-key", str(pki.key)), f"--tls-cert {garbage}"),
             (("--tls-cert", str(pki.cert), "--tls-key", str(_private_copy(garbage))),
              "not a PEM private key"),
             (("--tls-cert", str(pki.key), "--tls-key", str(pki.key)),
              f"--tls-cert {pki.key}: not a PEM certificate"),
             (("--tls-cert", str(pki.cert), "--tls-key", str(tmp_path / "absent.pem")),
              "--tls-key"),
             (("--tls-cert", str(pki.cert)), "--tls-cert and --tls-key go together"),
             (("--tls-key", str(pki.key)), "--tls-cert and --tls-key go together")]
    encrypted = _private_copy(tmp_path / "encrypted.pem")
    encrypted.write_bytes(serialization.load_pem_private_key(
        pki.key.read_bytes(), None).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret")))
    cases.append((("--tls-cert", str(pki.cert), "--tls-key", str(encrypted)), "encrypted"))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)  # opened without blocking: a refusal, not a hang
    cases.append((("--tls-cert", str(pki.cert), "--tls-key", str(fifo)),
                  "is not a regular file"))
    for args, said in cases:
        done = serve_cli(tmp_path, "--policy", _policy(tmp_path), *args)
        assert done.exit_code == 2, (args, done.output)
        assert said in done.output, (args, done.output)
        assert "Traceback" not in done.output


def _private_copy(path: Path) -> Path:
    if not path.exists():
        path.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    path.chmod(0o600)
    return path


def test_beyond_loopback_only_with_tls_or_behind_proxy(rig: Rig, pki: Pki,
                                                       tmp_path: Path) -> None:
    """192.0.2.1 (TEST-NET-1) is no address of this machine: with TLS or --behind-proxy
    the command gets past the address check to the bind, which fails (exit 3 naming it);
    without either it is refused as usage before anything is read or bound."""
    policy = str(policy_file(rig))
    beyond = ("--policy", policy, "--host", "192.0.2.1", "--port", "8600")
    plain = serve_cli(tmp_path, *beyond)
    assert plain.exit_code == 2 and "not a loopback address" in plain.output, plain.output
    assert "--tls-cert" in plain.output and "--behind-proxy" in plain.output
    for allowed in (("--tls-cert", str(pki.cert), "--tls-key", str(pki.key)),
                    ("--behind-proxy",)):
        done = serve_cli(tmp_path, *beyond, *allowed)
        assert done.exit_code == 3, done.output
        assert "cannot listen on 192.0.2.1:8600" in done.output
