"""Each PCR is explained by the one log the policy appraises for it, and boot appraisal
reads only what the quote covers and the TPM extended (issue 10, items 1 and 11).

A booted host here is a swtpm whose PCRs 4 and 7 were extended like firmware would
(an EFI action, a separator, shim and GRUB images, SecureBoot on) before its key
was sealed, with the matching TCG boot log. Every attack is a real artifact altered
and re-signed inside the TPM, as a lying host would.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from attest.artifact import jws
from attest.artifact.model import Evidence
from attest.eventlog.cel import parse_cel
from attest.eventlog.efi import EFI_GLOBAL_VARIABLE
from attest.eventlog.eventtypes import EventType
from attest.host.run import run_local
from attest.host.runtime.log import RuntimeLog
from attest.policy import VerifierPolicy, parse_policy
from attest.tpm.device import open_tpm
from attest.tpm.pcr import extend
from tests.conftest import Host
from tests.eventlog.logbuilder import SHA256, agile_event, spec_id
from tests.verify.rig import Rig, accepted, denied

# Stand-ins for the images' Authenticode hashes (never the hash of the event data): the
# SHA-256 of what Authenticode hashes, which starts as every PE does (DOS header, the PE
# signature, an x86-64 machine type).
_PE = b"MZ" + bytes(58) + (64).to_bytes(4, "little") + b"PE\0\0" + b"\x64\x86"
SHIM_BYTES, GRUB_BYTES = _PE + b"shim image", _PE + b"grub image"
SHIM = hashlib.sha256(SHIM_BYTES).digest()
GRUB = hashlib.sha256(GRUB_BYTES).digest()


def _image_load() -> bytes:
    # UEFI_IMAGE_LOAD_EVENT: location, length, link-time address, no device path.
    return struct.pack("<QQQQ", 0x1000, 0x2000, 0, 0)


def _secure_boot_variable(value: bytes) -> bytes:
    guid = bytes.fromhex(EFI_GLOBAL_VARIABLE.replace("-", ""))
    # The GUID's first three fields are little-endian in UEFI_VARIABLE_DATA.
    guid = guid[3::-1] + guid[5:3:-1] + guid[7:5:-1] + guid[8:]
    name = "SecureBoot".encode("utf-16-le")
    return guid + struct.pack("<QQ", len("SecureBoot"), len(value)) + name + value


# (PCR, type, data, digest or None for H(data)): what the booted host's firmware measured.
Event = tuple[int, int, bytes, bytes | None]
FIRMWARE: tuple[Event, ...] = (
    (7, EventType.EV_EFI_VARIABLE_DRIVER_CONFIG, _secure_boot_variable(b"\x01"), None),
    (4, EventType.EV_EFI_ACTION, b"Calling EFI Application from Boot Option", None),
    (4, EventType.EV_SEPARATOR, b"\0\0\0\0", None),
    (4, EventType.EV_EFI_BOOT_SERVICES_APPLICATION, _image_load(), SHIM),
    (4, EventType.EV_EFI_BOOT_SERVICES_APPLICATION, _image_load(), GRUB),
)


def _digest(event: Event) -> bytes:
    return hashlib.sha256(event[2]).digest() if event[3] is None else event[3]


def _log(events: Sequence[Event]) -> bytes:
    out = spec_id([(SHA256, 32)])
    for event in events:
        pcr, kind, data, _ = event
        out += agile_event(pcr, kind, data, [SHA256], {SHA256: _digest(event)})
    return out


def _runtime_as_boot_events(rig: Rig) -> list[Event]:
    """The runtime log's records as boot events on the runtime PCR, with their digests."""
    records = parse_cel(RuntimeLog(rig.home).path.read_bytes()).records
    return [(r.pcr or 0, EventType.EV_IPL, b"runtime", r.digests["sha256"]) for r in records]


def _with_boot(policy: VerifierPolicy, boot_yaml: str) -> VerifierPolicy:
    """``policy`` (as rendered from the host) with a ``reference.boot`` section."""
    assert policy.path is not None
    text = policy.path.read_text().replace("\nreference:\n", f"\nreference:\n{boot_yaml}", 1)
    assert boot_yaml in text
    path = policy.path.with_name(policy.path.stem + "-boot.yaml")
    path.write_text(text)
    return parse_policy(text.encode(), source=str(path), base_dir=path.parent, path=path)


def _apps(*digests: bytes, secure_boot: bool = True) -> str:
    """A reference.boot section allowing these boot applications (and Secure Boot on)."""
    return ("  boot:\n" + ("    secure_boot: true\n" if secure_boot else "")
            + "    boot_applications: [" + ", ".join(f'"{d.hex()}"' for d in digests) + "]\n")


def _swap_logs(runtime: bytes | None = None, boot: bytes | None = None, *,
               drop_boot: bool = False) -> Callable[[Evidence], Evidence]:
    def edit(evidence: Evidence) -> Evidence:
        return dataclasses.replace(
            evidence,
            runtime_log=evidence.runtime_log if runtime is None else runtime,
            boot_log=None if drop_boot else (evidence.boot_log if boot is None else boot))
    return edit


@contextmanager
def booted_rig(host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               *commands: list[str]) -> Iterator[Rig]:
    """A host whose firmware measured FIRMWARE into PCRs 4 and 7 (its boot log at
    $ATTEST_BOOT_LOG), its key sealed after, then ``commands`` measured."""
    with open_tpm(host.sim.tcti) as tpm:
        for event in FIRMWARE:
            extend(tpm, event[0], {"sha256": _digest(event)})
    log = tmp_path / "binary_bios_measurements"
    log.write_bytes(_log(FIRMWARE))
    monkeypatch.setenv("ATTEST_BOOT_LOG", str(log))
    host.ok("key", "create")
    for command in commands:
        host.ok("measure", "command", "--", *command)
    made = Rig(host, tmp_path / "rig")
    made.tmp.mkdir()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def booted(fresh_host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    """A host whose firmware measured FIRMWARE into PCRs 4 and 7, its key sealed after."""
    with booted_rig(fresh_host, tmp_path, monkeypatch, ["ls"]) as made:
        yield made


# -- item 1: one log source per PCR ----------------------------------------------------------

def test_a_boot_log_carrying_the_runtime_pcrs_digests_does_not_hide_a_measurement(
        rig: Rig) -> None:
    policy = rig.policy()  # allows `ls` only
    rig.host.ok("measure", "data", "--name", "surprise", "--value", "nobody approved this")
    honest = rig.issue()
    denied(rig.verifier(policy).verify(honest), "reference_value_mismatch")
    # An empty runtime log, and a made-up boot log with its digests on PCR 15.
    hidden = _log(_runtime_as_boot_events(rig))
    forged = rig.reissue(honest, evidence=_swap_logs(runtime=b"", boot=hidden))
    denied(rig.verifier(policy).verify(forged), "eventlog_mismatch")


def test_a_boot_log_the_policy_does_not_appraise_is_refused(rig: Rig, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    log = tmp_path / "boot.log"
    log.write_bytes(_log(()))  # nothing measured: PCRs 0-7 of a swtpm stay zero
    monkeypatch.setenv("ATTEST_BOOT_LOG", str(log))
    artifact = rig.issue(include_boot_log=True)
    decision = rig.verifier().verify(artifact)
    denied(decision, "eventlog_mismatch")
    assert "does not appraise" in decision.denials[0].message


def test_a_boot_log_extending_the_runtime_pcr_is_refused_when_boot_is_appraised(
        booted: Rig) -> None:
    policy = _with_boot(booted.policy(), _apps(SHIM, GRUB))
    booted.host.ok("measure", "data", "--name", "surprise", "--value", "nobody approved this")
    honest = booted.issue(include_boot_log=True)
    denied(booted.verifier(policy).verify(honest), "reference_value_mismatch")
    forged = booted.reissue(honest, evidence=_swap_logs(
        runtime=b"", boot=_log([*FIRMWARE, *_runtime_as_boot_events(booted)])))
    decision = booted.verifier(policy).verify(forged)
    denied(decision, "eventlog_mismatch")
    assert "runtime PCR 15" in decision.denials[0].message


# -- item 11: appraisal that cannot be steered ---------------------------------------------

def test_an_honest_boot_log_is_appraised_and_accepted(booted: Rig) -> None:
    policy = _with_boot(booted.policy(), _apps(SHIM, GRUB))
    accepted(booted.verifier(policy).verify(booted.issue(include_boot_log=True)))


def test_attest_run_sends_the_boot_log_a_boot_policy_needs(booted: Rig) -> None:
    booted.host.ok("measure", "command", "--", "true")
    policy = _with_boot(booted.policy(), _apps(SHIM, GRUB))
    with booted.tpm() as tpm:
        done = run_local(tpm, booted.home, ["true"], policy, booted.store(),
                         subject="deploy-bot", key_name=booted.key)
    accepted(done.decision)


def test_an_unapproved_boot_loader_is_denied(booted: Rig) -> None:
    policy = _with_boot(booted.policy(), _apps(SHIM))
    decision = booted.verifier(policy).verify(booted.issue(include_boot_log=True))
    denied(decision, "reference_value_mismatch")
    assert GRUB.hex() in decision.denials[0].message


def test_a_boot_application_retyped_as_a_driver_is_still_appraised(booted: Rig) -> None:
    policy = _with_boot(booted.policy(), _apps(SHIM))
    retyped = [(pcr, EventType.EV_EFI_BOOT_SERVICES_DRIVER if digest == GRUB else kind, data,
                digest) for pcr, kind, data, digest in FIRMWARE]
    honest = booted.issue(include_boot_log=True)
    forged = booted.reissue(honest, evidence=_swap_logs(boot=_log(retyped)))
    decision = booted.verifier(policy).verify(forged)
    denied(decision, "reference_value_mismatch")
    assert GRUB.hex() in decision.denials[0].message


def test_a_boot_application_whose_log_data_is_its_hashed_bytes_is_still_appraised(
        booted: Rig) -> None:
    # Red team after issue 10 item 11: an Authenticode hash is the SHA-256 of bytes the
    # host knows (here GRUB = H(GRUB_BYTES)). Written as the event's data, they hash to
    # the digest extended, and "digest == H(data)" read as "not an image" hid GRUB.
    policy = _with_boot(booted.policy(), _apps(SHIM))
    rewritten = [(pcr, kind, GRUB_BYTES if digest == GRUB else data, digest)
                 for pcr, kind, data, digest in FIRMWARE]
    honest = booted.issue(include_boot_log=True)
    forged = booted.reissue(honest, evidence=_swap_logs(boot=_log(rewritten)))
    decision = booted.verifier(policy).verify(forged)
    denied(decision, "reference_value_mismatch")
    assert GRUB.hex() in decision.denials[0].message


def test_a_boot_policy_without_a_boot_log_is_denied(booted: Rig) -> None:
    # boot_applications alone: "the log says nothing about PCR 4" must not pass it.
    policy = _with_boot(booted.policy(), _apps(SHIM, secure_boot=False))
    honest = booted.issue(include_boot_log=True)
    forged = booted.reissue(honest, evidence=_swap_logs(drop_boot=True))
    decision = booted.verifier(policy).verify(forged)
    denied(decision, "eventlog_mismatch")
    assert "no boot log" in decision.denials[0].message


def test_a_boot_log_without_pcr_4s_events_is_denied(booted: Rig) -> None:
    policy = _with_boot(booted.policy(), _apps(SHIM, secure_boot=False))
    honest = booted.issue(include_boot_log=True)
    silent = _log([event for event in FIRMWARE if event[0] != 4])
    forged = booted.reissue(honest, evidence=_swap_logs(boot=silent))
    decision = booted.verifier(policy).verify(forged)
    denied(decision, "eventlog_mismatch")
    assert "PCR 4" in decision.denials[0].message


def test_a_boot_reference_on_an_unquoted_pcr_is_never_satisfied_by_the_log(
        booted: Rig) -> None:
    # The loader refuses such a policy (tests/policy/test_boot_reference.py); a policy
    # built by hand gets no further: the log's word on PCR 8 is not the TPM's.
    from attest.eventlog.appraise import ReferenceValues

    cmdline = (8, EventType.EV_IPL, b"kernel_cmdline: init=/bin/sh", None)
    base = booted.policy()
    assert base.reference is not None
    approved = hashlib.sha256(bytes(32) + _digest(cmdline)).digest()
    reference = dataclasses.replace(base.reference, boot_pcrs={8: frozenset({approved})})
    policy = dataclasses.replace(base, reference=reference)
    assert isinstance(policy.reference, ReferenceValues)
    honest = booted.issue(include_boot_log=True)
    forged = booted.reissue(honest, evidence=_swap_logs(boot=_log([*FIRMWARE, cmdline])))
    decision = booted.verifier(policy).verify(forged)
    denied(decision, "reference_value_mismatch")
    assert "PCR 8" in decision.denials[0].message



# -- the host sends the boot log exactly when the policy appraises boot ---------------------

def test_authorize_under_a_boot_policy_sends_the_boot_log(booted: Rig) -> None:
    policy = _with_boot(booted.policy(), _apps(SHIM, GRUB))
    assert policy.path is not None
    out = booted.tmp / "a.jws"
    booted.host.ok("authorize", "--subject", "deploy-bot", "--policy", str(policy.path),
                   "--out", str(out), "--", "ls", "-l", "/srv")
    artifact = out.read_bytes().strip()
    assert jws.parse(artifact).claims.evidence.boot_log is not None
    accepted(booted.verifier(policy).verify(artifact))


def test_authorize_refuses_a_boot_log_the_policy_would_deny(booted: Rig) -> None:
    policy = booted.policy()
    assert policy.path is not None
    result = booted.host.run("authorize", "--subject", "deploy-bot", "--policy",
                             str(policy.path), "--boot-log", "--out",
                             str(booted.tmp / "a.jws"), "--", "ls")
    assert result.exit_code == 2 and "appraises no boot state" in result.output
    assert not (booted.tmp / "a.jws").exists()


def test_a_boot_reference_on_the_runtime_pcr_is_never_satisfied(
        rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Hand-built (the loader refuses it): "PCR 15 must be at its reset value" would pass on
    # a boot log that says nothing of PCR 15, whatever the runtime log put there.
    log = tmp_path / "boot.log"
    log.write_bytes(_log(()))
    monkeypatch.setenv("ATTEST_BOOT_LOG", str(log))
    base = rig.policy()
    assert base.reference is not None
    reference = dataclasses.replace(base.reference, boot_pcrs={15: frozenset({bytes(32)})})
    policy = dataclasses.replace(base, reference=reference)
    decision = rig.verifier(policy).verify(rig.issue(include_boot_log=True))
    denied(decision, "reference_value_mismatch")
    assert "runtime PCR 15" in decision.denials[0].message
