"""Malformed EK certificates, made by mutating real ones (../shared/vectors/ekcerts), are
refused with ek_chain_invalid: never a ValueError, UnsupportedAlgorithm or InvalidVersion
from `cryptography` or OpenSSL, some of which are raised only when a field is first read."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from attest.cli.main import cli
from attest.errors import EvidenceError
from attest.evidence.ekcert import parse_ek_certificate, split_certificates, verify_ek_certificate
from attest.reasons import Reason
from tests.conftest import VECTORS

pytestmark = pytest.mark.skipif(not VECTORS.is_dir(), reason=f"no vectors at {VECTORS}")
EK = VECTORS / "ekcerts"
AT = datetime(2024, 6, 1, tzinfo=UTC)
CHAINS = {
    "stm_rsa": (EK / "stm_rsa" / "ek_leaf.der", "root_STM_RSA_RT.pem",
                "intermediate_STM_RSA_05I.pem"),
    "stm_ecc": (EK / "stm_ecc" / "ek_leaf.der", "root_STM_ECC_01RT.pem",
                "intermediate_STM_ECC_01I.pem"),
}


def _der(vendor: str) -> bytes:
    data = CHAINS[vendor][0].read_bytes()
    return split_certificates(data)[0]


def _replace(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def mutate(der: bytes) -> bytes:
        assert der.count(old) >= 1, old.hex()
        return der.replace(old, new, 1)
    return mutate


def _bad_san_name(der: bytes) -> bytes:
    # The SAN's directoryName [4] becomes an ediPartyName [5], a type cryptography refuses.
    at = der.index(bytes.fromhex("0603551d11"))
    name = der.index(b"\xa4", at)
    return der[:name] + b"\xa5" + der[name + 1:]


def _bad_date(der: bytes) -> bytes:
    # notBefore's UTCTime keeps its length but says month 13 (RFC 5280 4.1.2.5.1).
    at = der.index(b"\x17\x0d")
    return der[:at + 4] + b"13" + der[at + 6:]


# (vendor, mutation): each one raised something other than the project's error before.
MUTATIONS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "version 4": ("stm_rsa", _replace(bytes.fromhex("a003020102"), bytes.fromhex("a003020103"))),
    "unknown key algorithm": ("stm_rsa", _replace(bytes.fromhex("2a864886f70d010101"),
                                                  bytes.fromhex("2a864886f70d01017f"))),
    "unsupported curve": ("stm_ecc", _replace(bytes.fromhex("2a8648ce3d030107"),
                                              bytes.fromhex("2a8648ce3d030100"))),
    "truncated DER": ("stm_rsa", lambda der: der[: len(der) // 2]),
    "bad SAN name type": ("stm_rsa", _bad_san_name),
    "bad notBefore": ("stm_ecc", _bad_date),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_malformed_ek_certificate_is_refused_by_the_parser(name: str) -> None:
    vendor, mutate = MUTATIONS[name]
    with pytest.raises(EvidenceError) as refused:
        verified = verify_ek_certificate(mutate(_der(vendor)), [_file(vendor, 1)],
                                         [_file(vendor, 2)], at=AT)
        pytest.fail(f"accepted a mutated certificate: {verified.leaf}")
    assert refused.value.reason is Reason.EK_CHAIN_INVALID


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_malformed_ek_certificate_parse_raises_the_project_error(name: str) -> None:
    vendor, mutate = MUTATIONS[name]
    try:
        parse_ek_certificate(mutate(_der(vendor)))
    except EvidenceError as exc:
        assert exc.reason is Reason.EK_CHAIN_INVALID
    # Parsing alone may succeed (OpenSSL reads some of these); the chain check refuses them.


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_ek_verify_of_a_malformed_certificate_is_a_denial(name: str, tmp_path: Path) -> None:
    vendor, mutate = MUTATIONS[name]
    leaf = tmp_path / "ek.der"
    leaf.write_bytes(mutate(_der(vendor)))
    result = CliRunner().invoke(cli, [
        "ek", "verify", str(leaf), "--roots", str(CHAINS[vendor][0].parent / CHAINS[vendor][1]),
        "--chain", str(CHAINS[vendor][0].parent / CHAINS[vendor][2]),
        "--at", "2024-06-01T00:00:00Z"])
    assert result.exit_code == 1, result.output
    assert "ek_chain_invalid" in result.stderr
    assert "internal error" not in result.output


def _file(vendor: str, index: int) -> bytes:
    return (CHAINS[vendor][0].parent / CHAINS[vendor][index]).read_bytes()


def test_ek_verify_names_a_chain_certificate_cryptography_refuses_through_openssl() -> None:
    # `ek verify` prints the chain's subjects: a version `cryptography` refuses
    # (InvalidVersion, not a ValueError) is read through OpenSSL, garbage is named so.
    from attest.cli.ek import _subject

    der = split_certificates((EK / "stm_rsa" / "intermediate_STM_RSA_05I.pem").read_bytes())[0]
    honest = _subject(der)
    assert "STM" in honest
    odd_version = der.replace(bytes.fromhex("a003020102"), bytes.fromhex("a003020105"), 1)
    assert odd_version != der
    assert "STM" in _subject(odd_version)
    assert _subject(b"\x30\x03\x02\x01\x00") == "(unreadable subject)"
