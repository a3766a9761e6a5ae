"""MakeCredential in software: byte-identical to tpm2-pytss, and unwrappable with the EK key."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
import tpm2_pytss.utils as pytss_utils
from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from tpm2_pytss.internal.crypto import _kdfa, kdfe
from tpm2_pytss.types import TPM2B_NAME, TPM2B_PUBLIC

from attest.evidence.credential import Credential, make_credential
from attest.evidence.ektemplate import EKTemplate, ek_public
from attest.evidence.pcrs import HASH_ALGS
from attest.evidence.signatures import hash_algorithm, public_key
from attest.evidence.structures import Public

AK_NAME = b"\x00\x0b" + hashlib.sha256(b"some AK").digest()
SECRET = b"verifier challenge 0123456789ab"
Private = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _ek(template: EKTemplate) -> tuple[Private, Public]:
    key: Private
    if template.value.curve is None:
        key = rsa.generate_private_key(65537, template.value.rsa_bits)
    else:
        curve = {32: ec.SECP256R1(), 48: ec.SECP384R1()}[
            {EKTemplate.L2_ECC_P256: 32, EKTemplate.H3_ECC_P384: 48}[template]
        ]
        key = ec.generate_private_key(curve)
    return key, ek_public(key.public_key(), template)


def _activate(key: Private, ek: Public, credential: Credential, name: bytes) -> bytes:
    """ActivateCredential in software, built on tpm2-pytss's KDFs (an independent check)."""
    alg = HASH_ALGS[ek.name_alg]
    secret = credential.encrypted_secret[2:]
    if isinstance(key, rsa.RSAPrivateKey):
        h = hash_algorithm(ek.name_alg)
        seed = key.decrypt(secret, padding.OAEP(padding.MGF1(h), h, b"IDENTITY\0"))
    else:
        x_len = struct.unpack(">H", secret[:2])[0]
        x, y = secret[2 : 2 + x_len], secret[4 + x_len :]
        peer = ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"),
                                             key.curve).public_key()
        size = len(x)
        ek_x = key.public_key().public_numbers().x.to_bytes(size, "big")
        seed = kdfe(alg, key.exchange(ec.ECDH(), peer), b"IDENTITY\0", x, ek_x,
                    hashlib.new(ek.name_alg).digest_size * 8)
    blob = credential.credential_blob[2:]
    hmac_len = struct.unpack(">H", blob[:2])[0]
    integrity, enc_identity = blob[2 : 2 + hmac_len], blob[2 + hmac_len :]
    hmac_key = _kdfa(alg, seed, b"INTEGRITY", b"", b"", hmac_len * 8)
    assert hmac.compare_digest(
        hmac.new(hmac_key, enc_identity + name, ek.name_alg).digest(), integrity
    )
    sym_key = _kdfa(alg, seed, b"STORAGE", name, b"", ek.parms.symmetric.key_bits)
    decryptor = Cipher(algorithms.AES(sym_key), CFB(bytes(16))).decryptor()
    plain = decryptor.update(enc_identity) + decryptor.finalize()
    size = struct.unpack(">H", plain[:2])[0]
    assert size == len(plain) - 2
    return plain[2:]


TEMPLATES = [EKTemplate.L1_RSA2048, EKTemplate.L2_ECC_P256, EKTemplate.H3_ECC_P384]


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.name)
def test_the_ek_holder_recovers_the_secret_for_the_named_object(template: EKTemplate) -> None:
    key, ek = _ek(template)
    credential = make_credential(ek, SECRET, AK_NAME)
    assert _activate(key, ek, credential, AK_NAME) == SECRET


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.name)
def test_another_object_name_fails_the_integrity_check(template: EKTemplate) -> None:
    key, ek = _ek(template)
    credential = make_credential(ek, SECRET, AK_NAME)
    with pytest.raises(AssertionError):
        _activate(key, ek, credential, b"\x00\x0b" + bytes(32))


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.name)
def test_blobs_equal_tpm2_pytss_for_the_same_seed(template: EKTemplate,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _, ek = _ek(template)
    seed = bytes(range(hashlib.new(ek.name_alg).digest_size))
    ephemeral = ec.generate_private_key(ec.SECP384R1() if ek.name_alg == "sha384"
                                        else ec.SECP256R1())
    ours = make_credential(ek, SECRET, AK_NAME, seed=seed, ephemeral=ephemeral)
    ek_key = public_key(ek)
    if isinstance(ek_key, ec.EllipticCurvePublicKey):
        # ECC: the seed comes from ECDH with the ephemeral key; derive it with tpm2-pytss's KDFe
        size = len(ek.parms.x)  # type: ignore[union-attr]
        eph_x = ephemeral.public_key().public_numbers().x.to_bytes(size, "big")
        ek_x = ek_key.public_numbers().x.to_bytes(size, "big")
        seed = kdfe(HASH_ALGS[ek.name_alg], ephemeral.exchange(ec.ECDH(), ek_key),
                    b"IDENTITY\0", eph_x, ek_x, len(seed) * 8)
    monkeypatch.setattr(pytss_utils, "_generate_seed",
                        lambda *_: (seed, ours.encrypted_secret[2:]))
    public, _ = TPM2B_PUBLIC.unmarshal(ek.marshal_tpm2b())
    blob, secret = pytss_utils.make_credential(public, SECRET, TPM2B_NAME(AK_NAME))
    assert blob.marshal() == ours.credential_blob
    assert secret.marshal() == ours.encrypted_secret
