"""A valid policy text to load, and ways to break it one line at a time."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from attest.evidence.structures import (
    Alg,
    Curve,
    ECCParms,
    ObjectAttributes,
    Public,
    Scheme,
    SymDef,
)
from attest.policy import VerifierPolicy, load_policy

A = ObjectAttributes
AK_ATTRIBUTES = (A.FIXED_TPM | A.FIXED_PARENT | A.SENSITIVE_DATA_ORIGIN | A.USER_WITH_AUTH
                 | A.RESTRICTED | A.SIGN)
ZERO = "00" * 32
ONES = "11" * 32


def ecc_public(private_value: int, attributes: ObjectAttributes = AK_ATTRIBUTES) -> Public:
    numbers = ec.derive_private_key(private_value, ec.SECP256R1()).public_key().public_numbers()
    return Public(Alg.ECC, "sha256", attributes, b"",
                  ECCParms(SymDef(), Scheme(Alg.ECDSA, Alg.SHA256), Curve.NIST_P256,
                           Scheme(Alg.NULL), numbers.x.to_bytes(32, "big"),
                           numbers.y.to_bytes(32, "big")))


AK = ecc_public(1001)
AK_HEX = AK.marshal_tpm2b().hex()
# A TPM-bound signing key that is not restricted: it could sign a forged quote.
NOT_AN_AK = ecc_public(1002, AK_ATTRIBUTES & ~A.RESTRICTED)


def ecc_pem(private_value: int = 4242) -> bytes:
    key = ec.derive_private_key(private_value, ec.SECP256R1()).public_key()
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def rsa_pem(bits: int = 2048, exponent: int = 65537) -> bytes:
    key = rsa.generate_private_key(exponent, bits).public_key()
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def sealed_values_yaml(indent: str = "    ") -> str:
    lines = [f'{indent}"{i}": "{ONES if i == 1 else ZERO}"' for i in range(8)]
    return "\n".join(lines)


# Every section, every key: the policy from the design, spelled out.
FULL = f"""\
version: 1
id: prod-web
ek_roots: [roots/, extra-root.pem]
enrollment: store
pcrs:
  bank: sha256
  sealed: [0, 1, 2, 3, 4, 5, 6, 7]
  runtime: 15
key_policy:
  kind: pcr
  sealed_values:
{sealed_values_yaml()}
reference:
  runtime:
    - name: /usr/bin/backup
      digests: ["{'ab' * 32}"]
freshness:
  nonce: required
  max_age: 300s
  clock_skew: 30s
  deny_reset: false
artifacts:
  max_lifetime: 600s
  single_use: true
lineage:
  max_depth: 3
rules:
  - subjects: ["deploy-bot"]
    actions: ["exec"]
    argv: ["/usr/bin/backup --full *"]
    hosts: ["*"]
"""

# An offline verifier: AKs listed in the policy.
OFFLINE = FULL.replace("enrollment: store\n", f"""\
enrollment: policy
trusted_aks:
  - host: web-1
    ak_public: "{AK_HEX}"
    ak_qualified_name: "000b{'cd' * 32}"
""")


def policy_folder(tmp_path: Path) -> Path:
    """A folder with the EK roots FULL names."""
    (tmp_path / "roots").mkdir(parents=True, exist_ok=True)
    (tmp_path / "extra-root.pem").write_text("not read at load\n")
    return tmp_path


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = policy_folder(tmp_path) / name
    path.write_text(text)
    return path


def load_text(tmp_path: Path, text: str) -> VerifierPolicy:
    return load_policy(write(tmp_path, text))


def line_of(text: str, marker: str, occurrence: int = 1) -> int:
    """The 1-based line of the ``occurrence``-th line containing ``marker``."""
    found = [n for n, line in enumerate(text.splitlines(), 1) if marker in line]
    return found[occurrence - 1]


def edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} must occur once"
    return text.replace(old, new)
