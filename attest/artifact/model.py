"""The authorization artifact: claims, evidence, and the binding between them.

An artifact is a JWS (RFC 7515, compact serialization) whose payload is a JSON
object of claims (EAT and JWT names where they fit) plus an ``evidence`` member:

    {"iss": "<AK name, hex>", "sub": "deploy-bot", "aud": "verifier-1",
     "jti": "<128-bit random, base64url>", "iat": 1764133000, "nbf": ..., "exp": ...,
     "eat_nonce": "<verifier challenge, base64url>",
     "scope": {"action": "exec", "argv": [...], "executable_digest": "<hex>",
               "resources": [...]},
     "policy": {"id": "...", "digest": "<hex>"},
     "lineage": {"parent": "<jti>", "parent_sha256": "<hex>", "depth": 1},
     "gov": {"ticket": "CHG-1"},
     "env": {"bank": "sha256", "pcrs": {"0": "<hex>", "15": "<hex>"}},
     "evidence": {"quote": ..., "quote_sig": ..., "key": ..., "certify": ...,
                  "certify_sig": ..., "ak": ..., "runtime_log": ..., "boot_log": ...}}

``binding = SHA-256(JCS(claims without "evidence"))`` (RFC 8785) is the quote's
qualifyingData, so evidence made for one request cannot serve another; the JWS
signature, made inside the TPM by the PCR-bound key, covers everything.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import rfc8785

from attest.errors import EvidenceError
from attest.reasons import Reason

ARTIFACT_TYPE = "attest-artifact+jwt"
ALGORITHM = "ES256"
MAX_ARTIFACT_BYTES = 8 << 20  # a runtime log of ~40,000 records; more is not an artifact
_HEX = re.compile(r"[0-9a-f]*")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str, what: str) -> bytes:
    if not isinstance(text, str) or not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise malformed(f"{what} is not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise malformed(f"{what} is not base64url") from None


def malformed(message: str) -> EvidenceError:
    return EvidenceError(message, reason=Reason.MALFORMED_ARTIFACT)


@dataclass(frozen=True)
class Scope:
    """What may run: the action, the exact argv, the executable's digest, the resources."""

    action: str
    argv: tuple[str, ...]
    executable_digest: str | None = None  # sha256 hex of the executable
    resources: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "argv": list(self.argv),
                               "resources": list(self.resources)}
        if self.executable_digest is not None:
            out["executable_digest"] = self.executable_digest
        return out

    @classmethod
    def from_json(cls, data: Any) -> Scope:
        obj = _object(data, "scope", {"action", "argv", "executable_digest", "resources"})
        digest = obj.get("executable_digest")
        if digest is not None and not (_is_hex(digest) and len(digest) == 64):
            raise malformed("scope.executable_digest is not a SHA-256 hex digest")
        return cls(
            action=_string(obj.get("action"), "scope.action"),
            argv=tuple(_strings(obj.get("argv"), "scope.argv")),
            executable_digest=digest,
            resources=tuple(_strings(obj.get("resources", []), "scope.resources")),
        )


@dataclass(frozen=True)
class Lineage:
    """The parent an artifact derives from: its jti, the SHA-256 of its bytes, the depth."""

    parent: str
    parent_sha256: str
    depth: int

    def to_json(self) -> dict[str, Any]:
        return {"parent": self.parent, "parent_sha256": self.parent_sha256, "depth": self.depth}

    @classmethod
    def from_json(cls, data: Any) -> Lineage:
        obj = _object(data, "lineage", {"parent", "parent_sha256", "depth"})
        digest = _string(obj.get("parent_sha256"), "lineage.parent_sha256")
        if not (_is_hex(digest) and len(digest) == 64):
            raise malformed("lineage.parent_sha256 is not a SHA-256 hex digest")
        return cls(_string(obj.get("parent"), "lineage.parent"), digest,
                   _integer(obj.get("depth"), "lineage.depth", low=1))


@dataclass(frozen=True)
class Evidence:
    """The TPM's proof, as bytes (base64url in JSON)."""

    quote: bytes  # TPMS_ATTEST of TPM2_Quote, qualifyingData = binding
    quote_signature: bytes  # TPMT_SIGNATURE by the AK
    key_public: bytes  # TPM2B_PUBLIC of the signing key
    certify: bytes  # TPMS_ATTEST of TPM2_Certify of the signing key by the AK
    certify_signature: bytes  # TPMT_SIGNATURE by the AK
    ak_public: bytes  # TPM2B_PUBLIC of the AK
    runtime_log: bytes  # CEL-JSON runtime log
    boot_log: bytes | None = None  # TCG PC Client boot log, when asked for

    _FIELDS = (("quote", "quote"), ("quote_signature", "quote_sig"), ("key_public", "key"),
               ("certify", "certify"), ("certify_signature", "certify_sig"),
               ("ak_public", "ak"), ("runtime_log", "runtime_log"))

    def to_json(self) -> dict[str, str]:
        out = {name: b64url(getattr(self, attr)) for attr, name in self._FIELDS}
        if self.boot_log is not None:
            out["boot_log"] = b64url(self.boot_log)
        return out

    @classmethod
    def from_json(cls, data: Any) -> Evidence:
        names = {name for _, name in cls._FIELDS} | {"boot_log"}
        obj = _object(data, "evidence", names)
        values = {}
        for attr, name in cls._FIELDS:
            if name not in obj:
                raise malformed(f"evidence.{name} is missing")
            values[attr] = unb64url(obj[name], f"evidence.{name}")
        boot = obj.get("boot_log")
        return cls(**values, boot_log=None if boot is None else unb64url(boot, "evidence.boot_log"))


@dataclass(frozen=True)
class Claims:
    """Everything the artifact asserts; :attr:`evidence` is left out of the binding."""

    iss: str
    sub: str
    jti: str
    iat: int
    nbf: int
    exp: int
    scope: Scope
    env_bank: str
    env_pcrs: Mapping[int, str]  # claimed PCR values, hex; only quoted ones are believed
    evidence: Evidence
    aud: str | None = None
    eat_nonce: str | None = None
    policy_id: str | None = None
    policy_digest: str | None = None
    lineage: Lineage | None = None
    gov: Mapping[str, str] = field(default_factory=dict)

    def bound_json(self) -> dict[str, Any]:
        """The claims that the binding covers: all but ``evidence``."""
        out: dict[str, Any] = {
            "iss": self.iss, "sub": self.sub, "jti": self.jti,
            "iat": self.iat, "nbf": self.nbf, "exp": self.exp,
            "scope": self.scope.to_json(),
            "env": {"bank": self.env_bank,
                    "pcrs": {str(k): v for k, v in sorted(self.env_pcrs.items())}},
            "gov": dict(self.gov),
        }
        if self.aud is not None:
            out["aud"] = self.aud
        if self.eat_nonce is not None:
            out["eat_nonce"] = self.eat_nonce
        if self.policy_id is not None or self.policy_digest is not None:
            out["policy"] = {"id": self.policy_id, "digest": self.policy_digest}
        if self.lineage is not None:
            out["lineage"] = self.lineage.to_json()
        return out

    def to_json(self) -> dict[str, Any]:
        return {**self.bound_json(), "evidence": self.evidence.to_json()}

    @classmethod
    def from_json(cls, data: Any) -> Claims:
        obj = _object(data, "claims", {"iss", "sub", "aud", "jti", "iat", "nbf", "exp",
                                       "eat_nonce", "scope", "policy", "lineage", "gov",
                                       "env", "evidence"})
        for required in ("iss", "sub", "jti", "iat", "nbf", "exp", "scope", "env", "evidence"):
            if required not in obj:
                raise malformed(f"claim {required!r} is missing")
        env = _object(obj["env"], "env", {"bank", "pcrs"})
        pcrs_raw = _object(env.get("pcrs"), "env.pcrs", None)
        pcrs: dict[int, str] = {}
        for key, value in pcrs_raw.items():
            # isascii: str.isdigit() also takes "²", which int() refuses.
            if not (isinstance(key, str) and key.isascii() and key.isdigit()
                    and 0 <= int(key) < 24):
                raise malformed(f"env.pcrs has a key that is not a PCR index: {key!r}")
            if not (_is_hex(value) and len(value) in (40, 64, 96, 128)):
                raise malformed(f"env.pcrs[{key}] is not a hex digest")
            pcrs[int(key)] = value
        policy = obj.get("policy")
        policy_obj = _object(policy, "policy", {"id", "digest"}) if policy is not None else {}
        for member in ("id", "digest"):
            if policy_obj.get(member) is not None:
                _string(policy_obj[member], f"policy.{member}")
        gov = _object(obj.get("gov", {}), "gov", None)
        for key, value in gov.items():
            if not isinstance(value, str):
                raise malformed(f"gov.{key} is not a string")
        nonce = obj.get("eat_nonce")
        if nonce is not None:
            unb64url(nonce, "eat_nonce")
        lineage = obj.get("lineage")
        return cls(
            iss=_string(obj["iss"], "iss"),
            sub=_string(obj["sub"], "sub"),
            jti=_string(obj["jti"], "jti"),
            iat=_integer(obj["iat"], "iat"),
            nbf=_integer(obj["nbf"], "nbf"),
            exp=_integer(obj["exp"], "exp"),
            scope=Scope.from_json(obj["scope"]),
            env_bank=_string(env.get("bank"), "env.bank"),
            env_pcrs=pcrs,
            evidence=Evidence.from_json(obj["evidence"]),
            aud=None if obj.get("aud") is None else _string(obj["aud"], "aud"),
            eat_nonce=nonce,
            policy_id=policy_obj.get("id"),
            policy_digest=policy_obj.get("digest"),
            lineage=None if lineage is None else Lineage.from_json(lineage),
            gov=dict(gov),
        )


def binding(claims: Claims) -> bytes:
    """SHA-256 of the RFC 8785 canonical JSON of the claims without ``evidence``."""
    return hashlib.sha256(rfc8785.dumps(claims.bound_json())).digest()


def _object(data: Any, what: str, allowed: set[str] | None) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise malformed(f"{what} is not a JSON object")
    if allowed is not None:
        unknown = set(data) - allowed
        if unknown:
            raise malformed(f"{what} has unknown members: {', '.join(sorted(unknown))}")
    return data


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise malformed(f"{what} is not a non-empty string")
    return value


def _strings(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise malformed(f"{what} is not a list of strings")
    return value


def _integer(value: Any, what: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < 2**53:
        raise malformed(f"{what} is not an integer in range")
    return value


def _is_hex(value: Any) -> bool:
    return isinstance(value, str) and bool(_HEX.fullmatch(value)) and len(value) % 2 == 0
