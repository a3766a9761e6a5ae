"""in-toto Statement v1 (in-toto/attestation, spec v1): what `attest sign --statement`
signs instead of a file's bytes: each file named by its SHA-256 as a subject.

Facts from the in-toto attestation specification: ``_type`` is
"https://in-toto.io/Statement/v1"; ``subject`` is a non-empty list of resource
descriptors ({"name", "digest": {alg: hex}}); ``predicateType`` a URI; ``predicate`` an
object; the DSSE payloadType for it is "application/vnd.in-toto+json".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from attest import strictjson
from attest.signing.dsse import malformed

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
# attest's predicate: the statement says only "these files were signed by an attested key"
PREDICATE_TYPE = "https://attest.dev/signature/v1"
MAX_SUBJECTS = 4096
MAX_NAME_CHARS = 4096
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Subject:
    name: str
    sha256: str  # hex


@dataclass(frozen=True)
class Statement:
    subjects: tuple[Subject, ...]
    predicate_type: str = PREDICATE_TYPE
    predicate: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        body = {"_type": STATEMENT_TYPE,
                "subject": [{"name": s.name, "digest": {"sha256": s.sha256}}
                            for s in self.subjects],
                "predicateType": self.predicate_type,
                "predicate": self.predicate}
        return json.dumps(body, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Statement:
        """Strict: duplicate members, unknown top-level members, a digest other than
        lowercase SHA-256 hex: malformed. Other digest algorithms are refused rather than
        ignored, since a subject the verifier cannot check proves nothing."""
        try:
            obj = strictjson.loads(data)
        except (strictjson.StrictJSONError, ValueError, RecursionError):
            raise malformed("the payload is not a JSON in-toto statement") from None
        if not isinstance(obj, dict) or set(obj) != {"_type", "subject", "predicateType",
                                                      "predicate"}:
            raise malformed("the payload is not an in-toto Statement v1 object")
        if obj["_type"] != STATEMENT_TYPE:
            raise malformed(f"the statement's _type is not {STATEMENT_TYPE}")
        subjects = obj["subject"]
        if not isinstance(subjects, list) or not 0 < len(subjects) <= MAX_SUBJECTS:
            raise malformed(f"the statement needs 1 to {MAX_SUBJECTS} subjects")
        parsed = []
        for item in subjects:
            if not isinstance(item, dict) or set(item) != {"name", "digest"}:
                raise malformed("a subject is not {name, digest}")
            name, digest = item["name"], item["digest"]
            if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
                raise malformed("a subject's name is not text")
            if (not isinstance(digest, dict) or set(digest) != {"sha256"}
                    or not isinstance(digest["sha256"], str)
                    or not _SHA256.fullmatch(digest["sha256"])):
                raise malformed("a subject's digest is not {sha256: lowercase hex}")
            parsed.append(Subject(name, digest["sha256"]))
        kind, predicate = obj["predicateType"], obj["predicate"]
        if not isinstance(kind, str) or not 0 < len(kind) <= 1024:
            raise malformed("predicateType is not text")
        if not isinstance(predicate, dict):
            raise malformed("predicate is not an object")
        return cls(tuple(parsed), kind, predicate)
