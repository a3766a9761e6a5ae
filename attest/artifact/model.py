"""The authorization artifact: claims, evidence, and the binding between them.

An artifact is a JWS (RFC 7515, compact serialization) whose payload is a JSON
object of claims (EAT and JWT names where they fit) plus an ``evidence`` member:

    {"iss": "<AK name, hex>", "sub": "deploy-bot", "aud": "verifier-1",
     "jti": "<32 hex of SHA-256(iss)>.<128-bit random, base64url>",
     "iat": 1764133000, "nbf": ..., "exp": ...,
     "eat_nonce": "<verifier challenge, base64url>",
     "scope": {"action": "exec", "argv": [...], "executable_digest": "<hex>",
               "resources": [...]},
     "policy": {"id": "...", "digest": "<hex>"},
     "lineage": {"parent": "<jti>", "parent_sha256": "<hex>", "depth": 1},
     "gov": {"ticket": "CHG-1"},
     "env": {"bank": "sha256", "pcrs": {"0": "<hex>", "15": "<hex>"}},
     "evidence": {"quote": ..., "quote_sig": ..., "key": ..., "certify": ...,
                  "certify_sig": ..., "ak": ..., "runtime_log": ..., "boot_log": ...,
                  "runtime_log_base": {"count": 120, "digest": "<hex>"}}}

``runtime_log_base``, when present, names the prefix of the runtime log the
verifier appraised before (attest.eventlog.prefix); ``runtime_log`` then holds only
the records after it (docs/artifacts.md, "Incremental runtime logs").

``binding = SHA-256(JCS(claims without "evidence"))`` (RFC 8785) is the quote's
qualifyingData, so evidence made for one request cannot serve another; the JWS
signature, made inside the TPM by the PCR-bound key, covers everything.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from attest.errors import EvidenceError
from attest.memo import remember
from attest.reasons import Reason

ARTIFACT_TYPE = "attest-artifact+jwt"
ALGORITHM = "ES256"
# The longest an artifact may live (and a challenge, --ttl): a week.
MAX_TTL_S = 7 * 24 * 3600
# The label before the key's and the AK's names in a key certification's qualifyingData:
# the host certifies under it (attest.host.issue), the verifier expects it.
CERTIFICATION_LABEL = b"attest key certification\0"
MAX_ARTIFACT_BYTES = 8 << 20  # a runtime log of ~40,000 records; more is not an artifact
# What a command line may be (Linux: MAX_ARG_STRLEN is 128 KiB, ARG_MAX typically 2 MiB
# with the environment): enough for any real command, and a bound on what lineage
# and rule matching read per artifact.
MAX_ARGV_ELEMENTS = 4096
MAX_ARG_CHARS = 128 << 10
MAX_ARGV_CHARS = 256 << 10
_HEX = re.compile(r"[0-9a-f]*")
_B64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_URL_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str, what: str) -> bytes:
    """Decode unpadded base64url; anything else (padding, other characters) is malformed."""
    return decode_b64url(check_b64url(text, what))


def check_b64url(text: Any, what: str) -> bytes:
    """``text`` as ASCII bytes, if it is unpadded base64url; else raise malformed.

    Deleting the alphabet with bytes.translate leaves nothing exactly when every
    character is in it: one C pass, where a regex over a runtime log takes ~7x longer.
    """
    if not isinstance(text, str) or len(text) % 4 == 1 or not text.isascii():
        raise malformed(f"{what} is not base64url")
    data = text.encode("ascii")
    if data.translate(None, _B64URL_ALPHABET):
        raise malformed(f"{what} is not base64url")
    return data


def decode_b64url(data: bytes) -> bytes:
    """Decode what :func:`check_b64url` passed; cannot fail (a length of 1 mod 4 is out)."""
    return binascii.a2b_base64(data.translate(_URL_TO_STANDARD) + b"=" * (-len(data) % 4))


def malformed(message: str) -> EvidenceError:
    return EvidenceError(message, reason=Reason.MALFORMED_ARTIFACT)


@dataclass(frozen=True)
class Scope:
    """What may run: the action, the exact argv, the executable's digest, the resources,
    and the code-injecting environment variables kept for it (name -> SHA-256 hex of
    the value; `attest run --keep-env`, see attest.host.runtime.environment)."""

    action: str
    argv: tuple[str, ...]
    executable_digest: str | None = None  # sha256 hex of the executable
    resources: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "argv": list(self.argv),
                               "resources": list(self.resources)}
        if self.executable_digest is not None:
            out["executable_digest"] = self.executable_digest
        if self.env:
            out["env"] = dict(self.env)
        return out

    @classmethod
    def from_json(cls, data: Any) -> Scope:
        obj = _object(data, "scope", {"action", "argv", "executable_digest", "resources", "env"})
        digest = obj.get("executable_digest")
        if digest is not None and not (_is_hex(digest) and len(digest) == 64):
            raise malformed("scope.executable_digest is not a SHA-256 hex digest")
        env = _object(obj.get("env", {}), "scope.env", None)
        if len(env) > MAX_SCOPE_ENV or not all(
                isinstance(name, str) and 0 < len(name) <= 128 and "=" not in name
                and _is_hex(value) and len(value) == 64 for name, value in env.items()):
            raise malformed(f"scope.env is not a mapping of at most {MAX_SCOPE_ENV} variable "
                            "names to SHA-256 hex digests")
        scope = object.__new__(cls)  # checked: no __init__ needed (as in Claims.from_json)
        scope.__dict__.update(
            action=_string(obj.get("action"), "scope.action"),
            argv=_argv(obj.get("argv")),
            executable_digest=digest,
            resources=tuple(_strings(obj.get("resources", []), "scope.resources")),
            env=dict(env),
        )
        return scope


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
class RuntimeLogBase:
    """The prefix of the runtime log an artifact's ``runtime_log`` continues: its record
    count (at least 1) and its digest (attest.eventlog.prefix)."""

    count: int
    digest: bytes

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "digest": self.digest.hex()}

    @classmethod
    def from_json(cls, data: Any) -> RuntimeLogBase:
        obj = _object(data, "evidence.runtime_log_base", {"count", "digest"})
        digest = obj.get("digest")
        if not isinstance(digest, str) or not (_is_hex(digest) and len(digest) == 64):
            raise malformed("evidence.runtime_log_base.digest is not a SHA-256 hex digest")
        return cls(_integer(obj.get("count"), "evidence.runtime_log_base.count", low=1),
                   bytes.fromhex(digest))


@dataclass(frozen=True)
class Evidence:
    """The TPM's proof, as bytes (base64url in JSON).

    Parsed from JSON, the logs stay base64url until read (:meth:`__getattr__`): a
    verifier that has appraised the same log text before (a host's log changes only
    when it measures) looks it up by :meth:`encoded` and never decodes it again.
    """

    quote: bytes  # TPMS_ATTEST of TPM2_Quote, qualifyingData = binding
    quote_signature: bytes  # TPMT_SIGNATURE by the AK
    key_public: bytes  # TPM2B_PUBLIC of the signing key
    certify: bytes  # TPMS_ATTEST of TPM2_Certify of the signing key by the AK
    certify_signature: bytes  # TPMT_SIGNATURE by the AK
    ak_public: bytes  # TPM2B_PUBLIC of the AK
    runtime_log: bytes  # CEL-JSON runtime log
    boot_log: bytes | None = None  # TCG PC Client boot log, when asked for
    # The authority's approval the key signed under (attest.evidence.approval), for keys
    # bound by PolicyAuthorize: JSON bytes, covered by the JWS signature like the rest.
    approval: bytes | None = None
    # The prefix the runtime log continues (incremental logs); None: from record 0.
    runtime_log_base: RuntimeLogBase | None = None

    _FIELDS = (("quote", "quote"), ("quote_signature", "quote_sig"), ("key_public", "key"),
               ("certify", "certify"), ("certify_signature", "certify_sig"),
               ("ak_public", "ak"), ("runtime_log", "runtime_log"))
    _NAMES = frozenset({name for _, name in _FIELDS} | {"boot_log", "approval",
                                                          "runtime_log_base"})
    _LAZY = frozenset({"runtime_log", "boot_log"})
    # The same for every artifact of one host and key: decoded once (see _DECODED).
    _REPEATED = frozenset({"key_public", "certify", "certify_signature", "ak_public"})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: self.encoded(attr) for attr, name in self._FIELDS}
        boot = self.encoded("boot_log")
        if boot is not None:
            out["boot_log"] = boot
        if self.approval is not None:
            out["approval"] = b64url(self.approval)
        if self.runtime_log_base is not None:
            out["runtime_log_base"] = self.runtime_log_base.to_json()
        return out

    def encoded(self, attr: str) -> Any:
        """The base64url text of field ``attr`` (None for an absent boot log)."""
        text = self.__dict__.get("_text_" + attr)
        if text is not None:
            return text
        value = getattr(self, attr)
        return None if value is None else b64url(value)

    def __getattr__(self, attr: str) -> Any:
        # Called only for an attribute not set yet: a log from_json left encoded.
        text = self.__dict__.get("_text_" + attr) if attr in self._LAZY else None
        if text is None:
            raise AttributeError(attr)
        value = decode_b64url(text.encode("ascii"))
        self.__dict__[attr] = value
        return value

    @classmethod
    def from_json(cls, data: Any) -> Evidence:
        obj = _object(data, "evidence", cls._NAMES)
        values: dict[str, Any] = {}
        known = _DECODED
        for attr, name in cls._FIELDS:
            text = obj.get(name)
            if text is None:
                raise malformed(f"evidence.{name} is missing")
            if attr in cls._LAZY:
                check_b64url(text, f"evidence.{name}")
                values["_text_" + attr] = text
                continue
            repeated = (attr in cls._REPEATED and isinstance(text, str)
                        and len(text) <= DECODED_MAX_CHARS)
            value = known.get(text) if repeated else None
            if value is None:
                value = decode_b64url(check_b64url(text, f"evidence.{name}"))
                if repeated:
                    remember(known, text, value, DECODED_CACHE_SIZE)
            values[attr] = value
        boot = obj.get("boot_log")
        if boot is None:
            values["boot_log"] = None
        else:
            check_b64url(boot, "evidence.boot_log")
            values["_text_boot_log"] = boot
        approval = obj.get("approval")
        if approval is not None:
            # An approval is a few KiB (attest.evidence.approval bounds it): no more is read.
            if isinstance(approval, str) and len(approval) > APPROVAL_MAX_CHARS:
                raise malformed("evidence.approval is larger than an approval can be")
            approval = decode_b64url(check_b64url(approval, "evidence.approval"))
        values["approval"] = approval
        base = obj.get("runtime_log_base")
        values["runtime_log_base"] = None if base is None else RuntimeLogBase.from_json(base)
        # Checked above, field by field: set them without __init__, which would need the
        # logs decoded (Evidence has no __post_init__).
        evidence = object.__new__(cls)
        evidence.__dict__.update(values)
        return evidence


# Base64url text of evidence fields that repeat across a host's artifacts, decoded.
# Keyed by the whole text, so a hit is that exact text, checked when first decoded.
# Only texts of a TPM structure's size are kept: an artifact's fields are the sender's
# choice, and the cache must not hold megabytes for one.
_DECODED: dict[str, bytes] = {}
DECODED_CACHE_SIZE = 1024
DECODED_MAX_CHARS = 2048
# base64url of attest.evidence.approval.MAX_APPROVAL_BYTES (16 KiB).
APPROVAL_MAX_CHARS = (16 << 10) * 4 // 3 + 4

# The dataclass keeps boot_log's default in __init__; as a class attribute it would
# answer for an instance whose boot log is still encoded, before __getattr__ could.
del Evidence.boot_log

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
        obj = _object(data, "claims", _CLAIM_NAMES)
        if not obj.keys() >= _REQUIRED_CLAIMS:
            missing = next(name for name in _REQUIRED_ORDER if name not in obj)
            raise malformed(f"claim {missing!r} is missing")
        env = _object(obj["env"], "env", {"bank", "pcrs"})
        pcrs_raw = _object(env.get("pcrs"), "env.pcrs", None)
        pcrs: dict[int, str] = {}
        for key, value in pcrs_raw.items():
            index = _PCR_INDEX.get(key)  # "0".."23" exactly: one spelling per PCR
            if index is None:
                raise malformed(f"env.pcrs has a key that is not a PCR index: {key!r}")
            if not (_is_hex(value) and len(value) in _DIGEST_HEX_LENGTHS):
                raise malformed(f"env.pcrs[{key}] is not a hex digest")
            pcrs[index] = value
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
            check_b64url(nonce, "eat_nonce")
        lineage = obj.get("lineage")
        aud = obj.get("aud")
        # Every value checked above or here: set the fields without the frozen
        # dataclass's __init__ (one object.__setattr__ per field; Claims has no
        # __post_init__), a third of the time for the verifier's hottest object.
        claims = object.__new__(cls)
        claims.__dict__.update(
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
            aud=None if aud is None else _string(aud, "aud"),
            eat_nonce=nonce,
            policy_id=policy_obj.get("id"),
            policy_digest=policy_obj.get("digest"),
            lineage=None if lineage is None else Lineage.from_json(lineage),
            gov=dict(gov),
        )
        return claims


_CLAIM_NAMES = {"iss", "sub", "aud", "jti", "iat", "nbf", "exp", "eat_nonce", "scope",
                "policy", "lineage", "gov", "env", "evidence"}
_REQUIRED_ORDER = ("iss", "sub", "jti", "iat", "nbf", "exp", "scope", "env", "evidence")
_REQUIRED_CLAIMS = frozenset(_REQUIRED_ORDER)
_PCR_INDEX = {str(i): i for i in range(24)}
_DIGEST_HEX_LENGTHS = frozenset({40, 64, 96, 128})


def binding(claims: Claims) -> bytes:
    """SHA-256 of the RFC 8785 canonical JSON of the claims without ``evidence``.

    Raises EvidenceError (malformed_artifact) for claims with no canonical form.
    """
    return hashlib.sha256(canonical_bound(claims)).digest()


def canonical_bound(claims: Claims) -> bytes:
    """RFC 8785 (JCS) bytes of :meth:`Claims.bound_json`.

    The bound claims hold only strings, null and integers below 2**53 (from_json and
    the issuer allow nothing else), so Python's sorted, compact json.dumps without
    ASCII escaping writes exactly JCS, with two exceptions it cannot see: object keys
    are ordered by code point where JCS orders by UTF-16 unit (they differ only for
    keys beyond U+D7FF, and the only free keys are gov's and scope.env's), and a lone
    surrogate has
    no UTF-8 form. The first goes to the rfc8785 library, the second is refused as
    it refuses it; tests/artifact/test_canonical.py checks both against it.
    """
    bound = claims.bound_json()
    if any(not key.isascii() for key in claims.gov) or any(
            not key.isascii() for key in claims.scope.env):
        import rfc8785  # rare (a free key beyond ASCII): imported only then

        try:
            return rfc8785.dumps(bound)
        except (rfc8785.CanonicalizationError, UnicodeEncodeError) as exc:
            # The library raises the latter for a lone surrogate in a key it sorts.
            raise malformed(f"the claims have no canonical JSON: {exc}") from None
    try:
        return json.dumps(bound, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise malformed("the claims have no canonical JSON: a string holds a lone "
                        "surrogate") from None


# Kept injecting variables an artifact may name (attest.host.runtime.environment.MAX_KEPT).
MAX_SCOPE_ENV = 32


def _object(data: Any, what: str, allowed: AbstractSet[str] | None) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise malformed(f"{what} is not a JSON object")
    if allowed is not None:
        unknown = set(data) - allowed
        if unknown:
            raise malformed(f"{what} has unknown members: {', '.join(sorted(unknown))}")
    return data


def jti_namespace(iss: str) -> str:
    """The prefix every jti of the AK named ``iss`` carries: 32 hex digits of SHA-256(iss).

    Single use is on the jti, which the issuer chooses: without a namespace another
    enrolled host that saw an artifact in transit could spend its jti first and get the
    genuine artifact denied as replayed. A prefix derived from the issuer's AK name
    gives each AK its own jtis (128 bits: no AK can be ground to another's prefix).
    """
    return hashlib.sha256(iss.encode()).hexdigest()[:32]


def new_jti(iss: str, random: bytes) -> str:
    """A jti in ``iss``'s namespace: its prefix, a dot, then 128 random bits."""
    return f"{jti_namespace(iss)}.{b64url(random)}"


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise malformed(f"{what} is not a non-empty string")
    return value


def _strings(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise malformed(f"{what} is not a list of strings")
    return value


def _argv(value: Any) -> tuple[str, ...]:
    argv = _strings(value, "scope.argv")
    if len(argv) > MAX_ARGV_ELEMENTS:
        raise malformed(f"scope.argv has {len(argv)} elements; at most {MAX_ARGV_ELEMENTS}")
    longest = max(map(len, argv), default=0)
    if longest > MAX_ARG_CHARS:
        raise malformed(f"a scope.argv element has {longest} characters; at most "
                        f"{MAX_ARG_CHARS}")
    total = sum(map(len, argv))
    if total > MAX_ARGV_CHARS:
        raise malformed(f"scope.argv has {total} characters; at most {MAX_ARGV_CHARS}")
    return tuple(argv)


def _integer(value: Any, what: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < 2**53:
        raise malformed(f"{what} is not an integer in range")
    return value


def _is_hex(value: Any) -> bool:
    return isinstance(value, str) and bool(_HEX.fullmatch(value)) and len(value) % 2 == 0
