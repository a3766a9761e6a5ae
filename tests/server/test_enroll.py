"""Enrollment over HTTP (POST /v1/enrollments, .../activation) for a host on its own swtpm,
its EK certificate from swtpm's local CA, the policy's ek_roots that CA: the credential
is activated by the real TPM, and every refusal is a named, logged denial."""

from __future__ import annotations

import base64
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from attest.audit.log import AuditLog
from attest.policy import NonceMode
from attest.server.app import create_app
from attest.store import Store
from attest.tpm import keys as signing
from attest.tpm.hierarchy import EK_RSA, activate_credential
from attest.verify.enrollment import DEFAULT_CAP_PER_EK, MAX_ATTEMPTS
from tests.store.helpers import POSTGRES, store_url
from tests.verify.rig import HOST_ID, Rig, make_ca

STORE_ENROLLMENT: dict[str, Any] = {"trusted_aks": []}  # render_policy: enrollment: store


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def ek_roots(rig: Rig, *, intermediate: bool = True) -> Path:
    """The simulator's EK CA as a roots folder: its root, and the intermediate that signs
    EK certificates unless ``intermediate`` is False."""
    roots = rig.tmp / ("ek-roots" if intermediate else "ek-root-only")
    roots.mkdir(exist_ok=True)
    shutil.copy(rig.host.sim.root_ca_cert, roots)
    if intermediate:
        shutil.copy(rig.host.sim.intermediate_ca_cert, roots)
    return roots


@dataclass
class Enrolling:
    client: TestClient
    rig: Rig
    home: Path
    url: str
    skew: list[int]  # seconds added to the service's clock

    def request(self, host: str = HOST_ID, **changes: Any) -> dict[str, Any]:
        identity = self.rig.identity
        ek = next(e for e in identity.eks if e.kind == "rsa")
        assert ek.certificate is not None
        body = {"host": host, "ek_certificate": b64(ek.certificate),
                "ak_public": b64(identity.ak_public),
                "ak_qualified_name": b64(identity.ak_qualified_name)}
        body.update(changes)
        return body

    def offer(self, body: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = self.client.post("/v1/enrollments", json=body or self.request())
        assert answer.status_code == 201, answer.text
        made: dict[str, Any] = answer.json()
        return made

    def recover(self, challenge: dict[str, Any]) -> bytes:
        """What the host's TPM unwraps: ActivateCredential with its EK and AK."""
        with self.rig.tpm() as tpm:
            return activate_credential(tpm, self.rig.identity,
                                       base64.b64decode(challenge["credential_blob"]),
                                       base64.b64decode(challenge["encrypted_secret"]), EK_RSA)

    def activate(self, challenge: dict[str, Any], secret: bytes) -> dict[str, Any]:
        answer = self.client.post(f"/v1/enrollments/{challenge['id']}/activation",
                                  json={"secret": b64(secret)})
        assert answer.status_code == 200, answer.text
        decision: dict[str, Any] = answer.json()
        return decision

    def verify(self) -> dict[str, Any]:
        nonce = self.client.post("/v1/challenges", json={}).json()["nonce"]
        answer = self.client.post("/v1/verify",
                                  json={"artifact": self.rig.issue(nonce=nonce).decode()})
        assert answer.status_code == 200, answer.text
        decision: dict[str, Any] = answer.json()
        return decision


def _serving(rig: Rig, name: str = "verifier", **policy: Any) -> Iterator[Enrolling]:
    """The service on SQLite in a home of its own, or, with ATTEST_TEST_POSTGRES, on a new
    database of that PostgreSQL server (tests/store/helpers.store_url)."""
    home = rig.tmp / name
    home.mkdir()
    skew = [0]
    options = {**STORE_ENROLLMENT, "ek_roots": [str(ek_roots(rig))],
               "nonce": NonceMode.REQUIRED, **policy}
    with store_url(home) as url:
        app = create_app(rig.policy(**options), url, home,
                         clock=lambda: time.time() + skew[0])
        with TestClient(app) as client:
            yield Enrolling(client, rig, home, url, skew)


@pytest.fixture
def service(rig: Rig) -> Iterator[Enrolling]:
    """The service with enrollment from the store, the simulator's CA as EK roots, nonces
    required, on SQLite in a verifier home of its own."""
    yield from _serving(rig)


def denied(decision: dict[str, Any], reason: str) -> None:
    assert decision["accepted"] is False, decision
    assert decision["reasons"] == [reason], decision
    assert isinstance(decision["audit_index"], int), "every denial is logged"


def entries(service: Enrolling) -> list[dict[str, Any]]:
    """The audit log's entries, as JSON."""
    import json

    with Store.open(service.url) as store:
        log = AuditLog.open(store, None)
        return [json.loads(entry.data) for entry in log.entries(0, log.size())]


# -- the sequence ----------------------------------------------------------------------
def test_a_good_chain_enrolls_by_activation_and_the_host_is_then_accepted(
        service: Enrolling) -> None:
    assert service.verify()["reasons"] == ["ak_unknown"]
    challenge = service.offer()
    assert set(challenge) == {"id", "credential_blob", "encrypted_secret", "expires"}
    decision = service.activate(challenge, service.recover(challenge))
    assert decision["accepted"] is True, decision
    assert decision["host"] == HOST_ID
    assert decision["facts"]["ak"] == service.rig.identity.ak_name.hex()
    assert decision["facts"]["ek"] == service.rig.ek_id
    accepted = service.verify()
    assert accepted["accepted"] is True, accepted["denials"]
    assert accepted["host"] == HOST_ID
    logged = [(e["kind"], e["decision"], e["host"]) for e in entries(service)
              if e["kind"] == "enrollment"]
    assert logged == [("enrollment", "enrolled", HOST_ID)]


def test_a_replayed_activation_is_denied(service: Enrolling) -> None:
    challenge = service.offer()
    secret = service.recover(challenge)
    assert service.activate(challenge, secret)["accepted"] is True
    denied(service.activate(challenge, secret), "replayed")


def test_concurrent_activations_enroll_once(service: Enrolling) -> None:
    from concurrent.futures import ThreadPoolExecutor

    challenge = service.offer()
    secret = service.recover(challenge)
    with ThreadPoolExecutor(4) as pool:
        decisions = list(pool.map(lambda _: service.activate(challenge, secret), range(8)))
    assert sum(d["accepted"] for d in decisions) == 1
    assert {tuple(d["reasons"]) for d in decisions if not d["accepted"]} == {("replayed",)}
    assert [e["decision"] for e in entries(service)
            if e["kind"] == "enrollment"].count("enrolled") == 1


# -- denials ---------------------------------------------------------------------------
def test_an_ek_certificate_of_another_ca_is_denied(rig: Rig) -> None:
    stranger = rig.tmp / "stranger"
    stranger.mkdir()
    make_ca(stranger, "another-manufacturer")
    for service in _serving(rig, ek_roots=[str(stranger)]):
        answer = service.client.post("/v1/enrollments", json=service.request())
        assert answer.status_code == 200, answer.text
        denied(answer.json(), "ek_chain_invalid")
        logged = [e for e in entries(service) if e["kind"] == "enrollment"]
        assert [(e["decision"], e["reasons"], e["host"]) for e in logged] == [
            ("denied", ["ek_chain_invalid"], HOST_ID)]


def test_a_chain_only_through_the_hosts_intermediates_is_denied(rig: Rig) -> None:
    """Every verification checks the stored certificate against the policy's roots
    alone: an enrollment that holds only through the intermediates the host sent would
    enroll an AK that is then denied every time. Refused, with the reason said."""
    for service in _serving(rig, ek_roots=[str(ek_roots(rig, intermediate=False))]):
        chain = [b64(rig.host.sim.intermediate_ca_cert.read_bytes())]
        answer = service.client.post("/v1/enrollments",
                                     json=service.request(ek_chain=chain)).json()
        denied(answer, "ek_chain_invalid")
        assert "intermediates" in answer["denials"][0]["message"]
        denied(service.client.post("/v1/enrollments", json=service.request()).json(),
               "ek_chain_invalid")


def test_an_ak_public_with_wrong_attributes_is_denied(service: Enrolling) -> None:
    """The host's PCR-bound signing key, a real key of this TPM but not restricted: as an
    AK it could sign a digest that imitates a quote."""
    key = signing.load_key(service.rig.home, signing.DEFAULT_KEY)
    answer = service.client.post("/v1/enrollments",
                                 json=service.request(ak_public=b64(key.public)))
    assert answer.status_code == 200, answer.text
    denied(answer.json(), "key_attributes_invalid")
    assert "RESTRICTED" in answer.json()["denials"][0]["message"]


def test_a_bad_activation_secret_is_denied_and_enrolls_nothing(service: Enrolling) -> None:
    challenge = service.offer()
    denied(service.activate(challenge, secrets.token_bytes(32)), "activation_failed")
    assert service.verify()["reasons"] == ["ak_unknown"]
    # The TPM's own secret still activates (a guess never matches: 256 bits)...
    assert service.activate(challenge, service.recover(challenge))["accepted"] is True


def test_a_pending_enrollment_closes_after_wrong_secrets(service: Enrolling) -> None:
    challenge = service.offer()
    for _ in range(MAX_ATTEMPTS):
        denied(service.activate(challenge, secrets.token_bytes(32)), "activation_failed")
    # ...but not after too many wrong ones: whoever sends them is not the TPM.
    denied(service.activate(challenge, service.recover(challenge)), "activation_failed")
    assert service.verify()["reasons"] == ["ak_unknown"]


def test_an_expired_pending_enrollment_is_denied(service: Enrolling) -> None:
    challenge = service.offer()
    secret = service.recover(challenge)
    service.skew[0] = challenge["expires"] - int(time.time()) + 1
    denied(service.activate(challenge, secret), "expired")


def test_an_unknown_enrollment_id_is_denied(service: Enrolling) -> None:
    denied(service.activate({"id": "A" * 22}, secrets.token_bytes(32)), "enrollment_unknown")


def test_a_pending_row_written_into_the_database_activates_nothing(service: Enrolling) -> None:
    """Who can write the database but lacks the verifier's key inserts a pending
    enrollment whose secret they know, for an AK of their choice: no seal, no enrollment."""
    from attest.store import pending
    from attest.verify.enrollment import secret_hash

    challenge = service.offer()
    secret = secrets.token_bytes(32)
    with Store.open(service.url) as store, store.write() as tx:
        tx.execute("UPDATE pending_enrollments SET secret_hash = :hash "
                   "WHERE enrollment_id = :id",
                   {"hash": secret_hash(challenge["id"], secret), "id": challenge["id"]})
        forged = dict(zip(pending.pending_enrollments.column_names,
                          tx.first("SELECT * FROM pending_enrollments WHERE enrollment_id = :id",
                                   {"id": challenge["id"]}), strict=True))
        tx.execute(pending.pending_enrollments.insert(),
                   {**forged, "enrollment_id": "forged", "mac": bytes(32),
                    "secret_hash": secret_hash("forged", secret)})
    denied(service.activate(challenge, secret), "enrollment_unknown")
    denied(service.activate({"id": "forged"}, secret), "enrollment_unknown")
    assert service.verify()["reasons"] == ["ak_unknown"]


def _revoke_ak(service: Enrolling) -> None:
    from attest.audit.hooks import revoke_logged
    from attest.store.records import RevocationKind

    with Store.open(service.url) as store:
        revoke_logged(store, AuditLog.open(store, service.home), RevocationKind.AK,
                      service.rig.identity.ak_name, "stolen")


def _bind_host_elsewhere(service: Enrolling) -> None:
    """Another TPM (EK) holds the host id: an AK of its enrolled under it."""
    with Store.open(service.url) as store:
        store.enroll(HOST_ID, b"\x00\x0b" + bytes(32), b"other", b"", None, 0, ek="ab" * 32)


def test_a_revoked_ak_is_not_enrolled_again(service: Enrolling) -> None:
    # Revoked between the challenge and the activation: the activation refuses.
    challenge = service.offer()
    _revoke_ak(service)
    denied(service.activate(challenge, service.recover(challenge)), "ak_revoked")
    # Revoked already: no challenge at all.
    answer = service.client.post("/v1/enrollments", json=service.request())
    assert answer.status_code == 200, answer.text
    denied(answer.json(), "ak_revoked")


def test_a_host_id_of_another_tpm_is_not_taken(service: Enrolling) -> None:
    """The host id is bound to another EK: moving it needs an administrator, which this
    endpoint does not offer."""
    challenge = service.offer()
    _bind_host_elsewhere(service)
    decision = service.activate(challenge, service.recover(challenge))
    denied(decision, "enrollment_conflict")
    assert "belongs to another TPM" in decision["denials"][0]["message"]
    early = service.client.post("/v1/enrollments", json=service.request()).json()
    denied(early, "enrollment_conflict")
    # Under its own, unbound host id the same TPM enrolls.
    challenge = service.offer(service.request(host="web-2"))
    assert service.activate(challenge, service.recover(challenge))["accepted"] is True


def test_a_challenge_writes_no_binding(service: Enrolling) -> None:
    """The early check tries the host-id rules in a savepoint it undoes: a challenge
    never binds a host id to an EK (only an activation does)."""
    service.offer()
    with Store.open(service.url) as store, store.read() as tx:
        assert tx.all("SELECT host FROM host_eks") == []
        assert tx.all("SELECT ak_name FROM ak_eks") == []


def test_an_ek_public_other_than_the_certificates_is_denied(service: Enrolling) -> None:
    ecc = next(e for e in service.rig.identity.eks if e.kind != "rsa")
    answer = service.client.post("/v1/enrollments",
                                 json=service.request(ek_public=b64(ecc.public))).json()
    denied(answer, "ek_chain_invalid")


# -- abuse and malformed requests ------------------------------------------------------
def test_pending_enrollments_per_tpm_are_capped(service: Enrolling) -> None:
    """Past the per-EK cap, the EK's oldest challenge gives way (attest.store.pending.add):
    the table stays bounded, and no one who read the EK certificate locks the TPM out
    (tests/server/test_redteam_enroll.py)."""
    for _ in range(DEFAULT_CAP_PER_EK + 2):
        service.offer()
    with Store.open(service.url) as store, store.read() as tx:
        live = tx.scalar("SELECT COUNT(*) FROM pending_enrollments WHERE used_at IS NULL")
    assert live == DEFAULT_CAP_PER_EK


@pytest.mark.parametrize(("body", "status"), [
    ({"host": HOST_ID}, 422),
    ({"ek_certificate": "not base64!"}, 422),
    ({"ak_public": b64(b"")}, 422),
    ({"host": " web-1"}, 422),
    ({"host": "web\u00001"}, 422),
    ({"ek_chain": "x"}, 422),
    ({"ak_qualified_name": b64(bytes(67))}, 422),
    ({"extra": 1}, 422),
])
def test_malformed_enrollment_requests_are_refused(service: Enrolling, body: dict[str, Any],
                                                   status: int) -> None:
    request = service.request()
    request.update(body)
    if body == {"host": HOST_ID}:
        del request["ak_public"]
    answer = service.client.post("/v1/enrollments", json=request)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == "invalid_request"


def test_malformed_activations_are_refused(service: Enrolling) -> None:
    post = service.client.post
    assert post("/v1/enrollments/%20bad/activation", json={"secret": "AA=="}).status_code == 422
    assert post("/v1/enrollments/abc/activation", json={}).status_code == 422
    assert post("/v1/enrollments/abc/activation", json={"secret": 1}).status_code == 422
    too_big = post("/v1/enrollments/abc/activation", content=b"{" + b" " * 4096 + b"}",
                   headers={"content-type": "application/json"})
    assert too_big.status_code == 413
    assert post("/v1/enrollments", content=b"[1]").status_code == 400


@pytest.mark.parametrize("policy", [{"ek_roots": []}, {"trusted_aks": None}])
def test_a_policy_without_roots_or_with_trusted_aks_enrolls_nobody(
        rig: Rig, policy: dict[str, Any]) -> None:
    """Without EK roots, activation proves only that the AK shares a TPM with an EK the
    host chose: a software TPM would enroll. Over the network, refused (403)."""
    if policy.get("trusted_aks", []) is None:
        policy = {"trusted_aks": [rig.policy().trusted_aks[0]]}
    for service in _serving(rig, **policy):
        answer = service.client.post("/v1/enrollments", json=service.request())
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"]["code"] == "enrollment_closed"


@pytest.mark.skipif(POSTGRES is not None, reason="breaks the SQLite file")
def test_a_store_out_of_reach_is_503_and_enrolls_nothing(service: Enrolling) -> None:
    challenge = service.offer()
    secret = service.recover(challenge)
    store = service.client.app.state.service.store  # type: ignore[attr-defined]
    store.close()  # its connections: the next transaction opens the file again
    for stale in service.home.glob("verifier.db-*"):
        stale.unlink()
    (service.home / "verifier.db").write_bytes(b"not a database " * 512)
    for answer in (service.client.post("/v1/enrollments", json=service.request()),
                   service.client.post(f"/v1/enrollments/{challenge['id']}/activation",
                                       json={"secret": b64(secret)})):
        assert answer.status_code == 503, answer.text
        assert "error" in answer.json() and "Traceback" not in answer.text


def test_the_openapi_document_describes_enrollment(service: Enrolling) -> None:
    paths = service.client.get("/v1/openapi.json").json()["paths"]
    offer = paths["/v1/enrollments"]["post"]
    assert {"201", "200", "403", "422", "429", "503"} <= set(offer["responses"])
    wanted = offer["requestBody"]["content"]["application/json"]["schema"]
    assert wanted["required"] == ["host", "ek_certificate", "ak_public"]
    activation = paths["/v1/enrollments/{enrollment_id}/activation"]["post"]
    assert activation["requestBody"]["content"]["application/json"]["schema"][
        "required"] == ["secret"]


def test_an_ak_not_in_the_tpm_gets_no_secret(service: Enrolling) -> None:
    """The real EK certificate with an AK public the host made up (the AK's attributes,
    another key): the credential is wrapped to that AK's name, and the TPM that holds
    the EK refuses to release it to its own AK. Without the secret, no enrollment."""
    from attest.errors import TPMError

    made_up = bytearray(service.rig.identity.ak_public)
    made_up[-1] ^= 1  # the last byte of the public point: another key, another name
    challenge = service.offer(service.request(ak_public=b64(bytes(made_up))))
    with pytest.raises(TPMError):
        service.recover(challenge)
    denied(service.activate(challenge, secrets.token_bytes(32)), "activation_failed")
    assert service.verify()["reasons"] == ["ak_unknown"]
