"""Enrollment binds the EK certificate to the EK that activates, and a host id to one TPM;
revoking a host revokes that TPM for good. Each test is an attack through `attest` on a
real swtpm, by a host that lies in its identity file or tries to come back.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import rsa

from attest.cli.main import cli
from attest.evidence.signatures import public_key
from attest.evidence.structures import parse_public_tpm2b
from attest.reasons import Reason
from attest.simulator import Simulator
from attest.store import Store, default_url
from attest.tpm.hierarchy import identity_path, load_identity
from tests.conftest import Host
from tests.ekcerts import EKRootCA, rsa_key
from tests.verify.rig import HOST_ID, Rig, accepted, denied

STORE_ENROLLMENT = {"trusted_aks": []}


def _rsa_ek(home: Path) -> rsa.RSAPublicKey:
    """The EK this TPM really holds (as `attest provision` read it from the TPM)."""
    ek = next(e for e in load_identity(home).eks if e.kind == "rsa")
    key = public_key(parse_public_tpm2b(ek.public), Reason.EK_CHAIN_INVALID)
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def _show_certificate(home: Path, der: bytes | None) -> None:
    """The host's identity file now presents ``der`` as its RSA EK certificate."""
    identity = load_identity(home)
    eks = tuple(dataclasses.replace(e, certificate=der) if e.kind == "rsa" else e
                for e in identity.eks)
    identity_path(home).write_text(dataclasses.replace(identity, eks=eks).to_json())


def _enrolled(home: Path) -> bool:
    with Store.open(default_url(home)) as store:
        return store.enrollment(load_identity(home).ak_name) is not None


def _sim_roots(rig: Rig) -> Path:
    roots = rig.tmp / "sim-roots"
    roots.mkdir(exist_ok=True)
    shutil.copy(rig.host.sim.root_ca_cert, roots)
    shutil.copy(rig.host.sim.intermediate_ca_cert, roots)
    return roots


# -- the EK certificate is the EK's ------------------------------------------------------


def test_enroll_with_another_tpms_ek_certificate_is_refused(rig: Rig) -> None:
    """The certificate is genuine and chains, but names another TPM's EK."""
    ca = EKRootCA.create()
    roots = ca.write(rig.tmp / "roots")
    _show_certificate(rig.home, ca.ek_certificate(rsa_key()))
    refused = rig.host.run("enroll", "--host", HOST_ID, "--ek-roots", str(roots))
    assert refused.exit_code == 1, refused.output
    assert "ek_chain_invalid" in refused.stderr and "does not hold the EK" in refused.stderr
    assert not _enrolled(rig.home)
    # The same CA's certificate for this TPM's own EK enrolls: the binding made the difference.
    _show_certificate(rig.home, ca.ek_certificate(_rsa_ek(rig.home)))
    rig.host.ok("enroll", "--host", HOST_ID, "--ek-roots", str(roots))
    assert _enrolled(rig.home)


def test_enroll_without_a_certificate_under_roots_is_refused(rig: Rig) -> None:
    _show_certificate(rig.home, None)
    refused = rig.host.run("enroll", "--host", HOST_ID, "--ek-roots", str(_sim_roots(rig)))
    assert refused.exit_code == 1 and "ek_chain_invalid" in refused.stderr
    assert not _enrolled(rig.home)


def test_an_enrollment_without_a_certificate_is_denied_under_ek_roots(rig: Rig) -> None:
    """Recorded without a certificate (no roots at enrollment, or by a database writer):
    a policy with ek_roots no longer skips the EK check."""
    store = rig.store()
    identity = rig.identity
    store.enroll(HOST_ID, identity.ak_name, identity.ak_public, identity.ak_qualified_name,
                 None, int(time.time()), ek=rig.ek_id)
    raw = rig.issue()
    decision = rig.verifier(rig.policy(**STORE_ENROLLMENT, ek_roots=[str(_sim_roots(rig))]),
                            store).verify(raw)
    denied(decision, "ek_chain_invalid")
    assert "without an EK certificate" in decision.denials[0].message
    # Without ek_roots nothing is promised about the EK: the same enrollment is accepted.
    accepted(rig.verifier(rig.policy(**STORE_ENROLLMENT), store).verify(raw))


# -- only an EK certificate is one --------------------------------------------------------


@pytest.mark.parametrize("kind", ["tls_server_certificate", "tls_client_certificate",
                                  "ca_certificate"])
def test_enroll_with_a_non_ek_certificate_over_the_real_ek_is_refused(rig: Rig,
                                                                      kind: str) -> None:
    """A CA among the EK roots also issues TLS and CA certificates; one over this TPM's
    own EK key chains and activates, and still is no EK certificate."""
    ca = EKRootCA.create()
    roots = ca.write(rig.tmp / "roots")
    _show_certificate(rig.home, getattr(ca, kind)(_rsa_ek(rig.home)))
    refused = rig.host.run("enroll", "--host", HOST_ID, "--ek-roots", str(roots))
    assert refused.exit_code == 1, refused.output
    assert "ek_chain_invalid" in refused.stderr
    assert not _enrolled(rig.home)


def test_an_enrollment_recorded_with_a_tls_certificate_is_denied(rig: Rig) -> None:
    ca = EKRootCA.create()
    roots = ca.write(rig.tmp / "roots")
    store = rig.store()
    identity = rig.identity
    tls = ca.tls_server_certificate(_rsa_ek(rig.home))
    store.enroll(HOST_ID, identity.ak_name, identity.ak_public, identity.ak_qualified_name,
                 tls, int(time.time()), ek=rig.ek_id)
    decision = rig.verifier(rig.policy(**STORE_ENROLLMENT, ek_roots=[str(roots)]),
                            store).verify(rig.issue())
    denied(decision, "ek_chain_invalid")
    assert "serverAuth" in decision.denials[0].message


def test_ek_verify_refuses_a_tls_certificate(tmp_path: Path) -> None:
    ca = EKRootCA.create()
    roots = ca.write(tmp_path / "roots")
    leaf = tmp_path / "tls.der"
    leaf.write_bytes(ca.tls_server_certificate(rsa_key()))
    result = CliRunner().invoke(cli, ["ek", "verify", str(leaf), "--roots", str(roots),
                                      "--json"])
    assert result.exit_code == 1, result.output
    assert "ek_chain_invalid" in result.output + result.stderr


# -- revocation sticks, a host id belongs to one TPM ---------------------------------------


def test_a_revoked_host_does_not_come_back_under_a_new_host_id(rig: Rig) -> None:
    roots = _sim_roots(rig)
    policy = rig.tmp / "policy.yaml"
    rig.host.ok("policy", "init", "--from-host", "--enrollment", "store", "--ek-roots",
                str(roots), "--out", str(policy))
    rig.host.ok("enroll", "--host", "web-1", "--ek-roots", str(roots))
    out = json.loads(rig.host.ok("revoke", "--host", "web-1", "--reason", "stolen",
                                 "--json").stdout)
    assert out["identity"] == [f"ek:{rig.ek_id}", f"ak:{rig.identity.ak_name.hex()}"]
    again = rig.host.run("enroll", "--host", "web-2", "--ek-roots", str(roots))
    assert again.exit_code == 1 and "ak_revoked" in again.stderr
    artifact = rig.tmp / "a.jws"
    rig.host.ok("authorize", "--subject", "ops", "--out", str(artifact), "--", "ls")
    verdict = rig.host.run("verify", str(artifact), "--policy", str(policy), "--json")
    assert verdict.exit_code == 1 and json.loads(verdict.stdout)["reasons"] == ["ak_revoked"]
    audit = [json.loads(line) for line in rig.host.ok("audit", "export").stdout.splitlines()]
    assert {e["subject"] for e in audit if e["decision"] == "revoked"} == {
        "host:web-1", f"ek:{rig.ek_id}", f"ak:{rig.identity.ak_name.hex()}"}


@pytest.fixture(scope="module")
def other_tpm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """A TPM with an EK of its own (copies of the shared state share one EK)."""
    sim = Simulator(tmp_path_factory.mktemp("other") / "sim")
    sim.provision()
    sim.start()
    yield sim
    sim.stop()


def test_another_tpm_takes_a_host_id_only_by_an_audited_move(rig: Rig, other_tpm: Simulator,
                                                              tmp_path: Path) -> None:
    other = Host(other_tpm, tmp_path / "other-home")
    other.ok("provision")
    url = default_url(rig.tmp)
    with Store.open(url) as store:
        rig.enroll(store, "web-1")
    taken = other.run("enroll", "--host", "web-1", "--store", url)
    assert taken.exit_code == 1 and "belongs to another TPM" in taken.stderr
    raw = rig.issue()
    with Store.open(url) as store:
        policy = rig.policy(**STORE_ENROLLMENT)
        accepted(rig.verifier(policy, store).verify(raw))
        moved = json.loads(other.ok("enroll", "--host", "web-1", "--store", url, "--move-host",
                                    "--json").stdout)
        assert moved["moved_from_ek"] == rig.ek_id
        # The old TPM no longer speaks for web-1.
        denied(rig.verifier(policy, store).verify(rig.issue()), "ak_unknown")
    entries = [json.loads(line) for line in
               other.ok("audit", "export", "--store", url).stdout.splitlines()]
    move = next(e for e in entries if any("moved" in r for r in e["reasons"]))
    assert move["host"] == "web-1" and rig.ek_id in move["reasons"][0]
    assert f"dropped ak:{rig.identity.ak_name.hex()}" in move["reasons"]


def test_an_enrollment_whose_certificate_is_another_tpms_is_denied(rig: Rig) -> None:
    """The store says which EK activated the AK; a certificate for another EK, chaining as
    well (a swapped row, a record from a lying enroller), does not vouch for this AK."""
    ca = EKRootCA.create()
    roots = ca.write(rig.tmp / "roots")
    store = rig.store()
    identity = rig.identity
    store.enroll(HOST_ID, identity.ak_name, identity.ak_public, identity.ak_qualified_name,
                 ca.ek_certificate(rsa_key()), int(time.time()), ek=rig.ek_id)
    policy = rig.policy(**STORE_ENROLLMENT, ek_roots=[str(roots)])
    decision = rig.verifier(policy, store).verify(rig.issue())
    denied(decision, "ek_chain_invalid")
    assert "not for the EK" in decision.denials[0].message


def test_an_enrollment_with_no_recorded_ek_is_denied_under_ek_roots(rig: Rig) -> None:
    """An enrollment the store holds without the EK its AK was activated under (made before
    EKs were recorded, or its ak_eks row deleted) cannot show that its certificate is this
    TPM's: another TPM's certificate, chaining as well, must not vouch for the AK."""
    ca = EKRootCA.create()
    roots = ca.write(rig.tmp / "roots")
    store = rig.store()
    identity = rig.identity
    store.enroll(HOST_ID, identity.ak_name, identity.ak_public, identity.ak_qualified_name,
                 ca.ek_certificate(rsa_key()), int(time.time()), ek=None)
    policy = rig.policy(**STORE_ENROLLMENT, ek_roots=[str(roots)])
    decision = rig.verifier(policy, store).verify(rig.issue())
    denied(decision, "ek_chain_invalid")
    assert "no EK" in decision.denials[0].message


def test_an_enrollment_written_into_the_database_is_not_trusted(rig: Rig) -> None:
    """Whoever writes the database inserts an enrollment row (no credential activation, no
    EK, no audit entry): the verifier should not trust an AK it never enrolled."""
    store = rig.store()
    rig.write_enrollment_row(store)  # the rows `attest enroll` would write, without it
    # The audited path (`attest verify`, `attest run`): the row lacks the verifier's seal.
    decision = rig.verify_logged(rig.verifier(rig.policy(**STORE_ENROLLMENT), store),
                                 rig.issue())
    denied(decision, "ak_unknown")
    assert "enrollment not made by this verifier" in decision.denials[0].message
    assert "enroll again" in decision.denials[0].message
