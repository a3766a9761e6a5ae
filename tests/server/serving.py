"""What the service's tests share: a real `attest serve` on a loopback port, JSON posted to
it, the command run in-process, the JSON calls made through a TestClient, and a PKI of
the test's own for https. One copy each, so that a fix to how a test starts or stops the
server (or reads its answers) reaches every test."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from attest.cli.main import cli
from attest.store import default_url
from tests.verify.rig import Rig

# The line `attest serve` prints once it listens: its scheme and port.
SERVING = re.compile(r"on (https?)://127\.0\.0\.1:(\d+)/v1")


def admin_token(home: Path) -> str:
    """An administrator's token made with `attest admin token create` in the store of the
    verifier at ``home``, for a service started there."""
    made = CliRunner().invoke(cli, ["--home", str(home), "admin", "token", "create", "--name",
                                    "ops", "--store", default_url(home), "--json"],
                              catch_exceptions=False)
    assert made.exit_code == 0, made.output
    token: str = json.loads(made.output)["token"]
    return token


def policy_file(rig: Rig, **options: Any) -> Path:
    """The rig's policy (``options`` as Rig.policy takes them) as the file `attest serve
    --policy` names."""
    rig.policy(**options)
    return max(rig.tmp.glob("policy-*.yaml"))


@contextmanager
def served(policy: Path, home: Path, *extra: str,
           said: list[str] | None = None) -> Iterator[str]:
    """`attest serve` as a user runs it (``extra`` its further options), on a port the
    kernel picks, its store SQLite in ``home``: its base URL (http, or https with
    --tls-cert). Stopped with SIGTERM afterwards, which must end it without a traceback.
    ``said`` gets the line it printed on start, then, once it has stopped, the rest of
    what it printed on stderr."""
    home.mkdir(exist_ok=True)
    env = {**os.environ, "ATTEST_HOME": str(home), "PYTHONPATH": os.pathsep.join(sys.path)}
    server = subprocess.Popen(
        [sys.executable, "-m", "attest.cli.main", "serve", "--policy", str(policy),
         "--store", default_url(home), "--port", "0", *extra], env=env,
        stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        line = server.stderr.readline()
        found = SERVING.search(line)
        assert found, line + (server.stderr.read() if server.poll() is not None else "")
        if said is not None:
            said.append(line)
        yield f"{found.group(1)}://127.0.0.1:{found.group(2)}"
    finally:
        server.send_signal(signal.SIGTERM)
        # Through the text stream, to its end (the server gone): readline() above may
        # hold later lines in its buffer, which communicate() would not see.
        assert server.stderr is not None
        rest = server.stderr.read()
        server.stderr.close()
        server.wait(timeout=30)
    assert "Traceback" not in rest, rest
    if said is not None:
        said.append(rest)


def port_of(base: str) -> int:
    """The port of a base URL ``served`` gave."""
    return int(base.rsplit(":", 1)[1])


def call(base: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """GET (no ``body``) or POST JSON to the served ``base``: the JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base}{path}", data=data,  # noqa: S310 - loopback
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
        return json.loads(answer.read())


def serve_cli(tmp_path: Path, *args: str) -> Result:
    """`attest serve ARGS` in-process, its home in ``tmp_path``: for what it refuses."""
    return CliRunner().invoke(cli, ["--home", str(tmp_path / "home"), "serve", *args],
                              catch_exceptions=False)


def challenge_answer(client: TestClient, **body: Any) -> dict[str, Any]:
    """POST /v1/challenges (``body`` its fields): the answer, 200."""
    answer = client.post("/v1/challenges", json=body)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def challenge(client: TestClient) -> str:
    """A nonce from POST /v1/challenges."""
    nonce = challenge_answer(client)["nonce"]
    assert isinstance(nonce, str)
    return nonce


def verify(client: TestClient, artifact: bytes) -> dict[str, Any]:
    """POST /v1/verify with ``artifact``: the decision, 200 (accepted or denied)."""
    answer = client.post("/v1/verify", json={"artifact": artifact.decode()})
    assert answer.status_code == 200, answer.text
    decision: dict[str, Any] = answer.json()
    return decision


@dataclass(frozen=True)
class Pki:
    ca: Path  # what --cacert names
    cert: Path  # the server's certificate, then the CA's
    key: Path  # its key, mode 600
    other_key: Path  # a key of no certificate, mode 600


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _private(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return path


def make_pki(folder: Path, *, expired: bool = False) -> Pki:
    """A CA of the test's own and a server certificate for 127.0.0.1 and localhost, in
    ``folder`` (made here); ``expired``, the server's ended a minute ago."""
    now = datetime.datetime.now(datetime.UTC)
    # The CA's certificate is valid throughout.
    leaf_end = now - datetime.timedelta(minutes=1) if expired else now + datetime.timedelta(
        hours=1)
    ca_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    ca = (x509.CertificateBuilder().subject_name(_name("test CA")).issuer_name(_name("test CA"))
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(hours=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(_name("attest verifier"))
            .issuer_name(ca.subject).public_key(leaf_key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(leaf_end)
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                 x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    folder.mkdir()
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "cert.pem").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    return Pki(folder / "ca.pem", folder / "cert.pem", _private(folder / "key.pem", leaf_key),
               _private(folder / "other.pem", ec.generate_private_key(ec.SECP256R1())))


def audit_verifies(home: Path, url: str | None = None) -> None:
    """`attest audit verify` of the log in the store at ``url`` (else ``home``'s), its
    key in ``home``, succeeds."""
    result = CliRunner().invoke(cli, ["--home", str(home), "audit", "verify", "--store",
                                      url or default_url(home)])
    assert result.exit_code == 0, result.output


class Quiet(http.server.BaseHTTPRequestHandler):
    """A stand-in verifier's handler: nothing on stderr for each request."""

    def log_message(self, *args: object) -> None:
        pass

    def answer_json(self, status: int, body: bytes) -> None:
        """``body`` (JSON) with ``status``, its type and length said."""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def answering(handler: type[http.server.BaseHTTPRequestHandler], address: str = "127.0.0.1",
              tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """A stand-in verifier on a port of ``address`` the kernel picks, ``handler`` answering
    each request on a thread of its own (over https with ``tls``): its base URL. Shut
    down afterwards."""
    server = http.server.ThreadingHTTPServer((address, 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://{address}:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@dataclass
class Listener:
    """An SSE stream read on a thread of its own: its lines as they come."""

    thread: threading.Thread
    lines: list[str]

    def saw(self, text: str, *, wait: float = 30.0) -> bool:
        """Whether a line holding ``text`` came, waiting up to ``wait`` seconds for it."""
        for _ in range(int(wait * 10)):
            if any(text in line for line in self.lines):
                return True
            time.sleep(0.1)
        return any(text in line for line in self.lines)

    def ended(self, wait: float = 60.0) -> bool:
        self.thread.join(wait)
        return not self.thread.is_alive()


def listen(client: TestClient, path: str) -> Listener:
    """``GET path`` as a stream on a thread, returned once the stream is open (its
    ``retry:`` line came)."""
    lines: list[str] = []
    opened = threading.Event()

    def read() -> None:
        with client.stream("GET", path) as answer:
            for line in answer.iter_lines():
                if line.startswith("retry:"):
                    opened.set()
                lines.append(line)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    assert opened.wait(30), lines
    return Listener(thread, lines)
