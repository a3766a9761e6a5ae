"""The verifier's tables, in portable SQLAlchemy Core (SQLite now, PostgreSQL later).

Conventions that keep the SQL portable:
- times are integer epoch seconds (``BigInteger``): no time zones, no dialect date types;
- TPM names and key ids are lowercase hex text, so they compare, index and join the
  same on every backend and read the same in the artifact's ``kid``/``iss`` claims;
- raw blobs (public areas, certificates) are ``LargeBinary``;
- surrogate keys are plain ``Integer`` primary keys, which SQLAlchemy renders as
  SQLite's rowid alias or PostgreSQL's identity/serial without dialect tricks.

Each component that owns tables records its schema version in ``schema_versions``
under its own name ("store" here; the audit log adds "audit" with its own
``MetaData``), so components migrate independently.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

STORE_COMPONENT = "store"
STORE_SCHEMA_VERSION = 1

# Bounds the store checks before writing, so an oversized value is refused with a
# message rather than by a backend-specific error (PostgreSQL enforces VARCHAR(n)).
MAX_JTI = 128
MAX_HOST = 255
MAX_NONCE = 64
MAX_HEX_NAME = 256  # hex of a TPM name: 2-byte algorithm id + digest (<= 64 bytes)

metadata = MetaData()

schema_versions = Table(
    "schema_versions",
    metadata,
    Column("component", String(32), primary_key=True),
    Column("version", Integer, nullable=False),
)

hosts = Table(
    "hosts",
    metadata,
    Column("host", String(MAX_HOST), primary_key=True),
    Column("first_enrolled_at", BigInteger, nullable=False),
    Column("last_enrolled_at", BigInteger, nullable=False),
)

# One row per AK; a host re-provisioned with a new AK gets another row.
enrollments = Table(
    "enrollments",
    metadata,
    Column("ak_name", String(MAX_HEX_NAME), primary_key=True),
    Column("host", String(MAX_HOST), ForeignKey("hosts.host"), nullable=False, index=True),
    Column("ak_public", LargeBinary, nullable=False),  # TPM2B_PUBLIC
    Column("ak_qualified_name", LargeBinary, nullable=False),
    Column("ek_certificate", LargeBinary, nullable=True),  # DER, when the host has one
    Column("enrolled_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# Interactive freshness: single-use challenges. used_at is set exactly once, by the
# conditional UPDATE in the acceptance transaction.
nonces = Table(
    "nonces",
    metadata,
    Column("nonce", String(MAX_NONCE), primary_key=True),
    Column("issued_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False, index=True),  # for purging
    Column("used_at", BigInteger, nullable=True),
)

# Accepted artifacts: the seen-jti set (replay) and the lineage tree (revocation).
# No foreign key on parent_jti or ak_name: a parent may be judged by the verifier
# before this row exists, and offline set-ups trust AKs the store never enrolled.
artifacts = Table(
    "artifacts",
    metadata,
    Column("jti", String(MAX_JTI), primary_key=True),
    Column("sha256", String(64), nullable=False),
    Column("parent_jti", String(MAX_JTI), nullable=True, index=True),
    Column("depth", Integer, nullable=False),
    Column("exp", BigInteger, nullable=False),
    Column("host", String(MAX_HOST), nullable=False),
    Column("kid", String(MAX_HEX_NAME), nullable=False),
    Column("ak_name", String(MAX_HEX_NAME), nullable=False),
    Column("subject", Text, nullable=False),
    Column("scope", Text, nullable=False),  # JSON, as the artifact's scope claim
    Column("accepted_at", BigInteger, nullable=False),
)

# The TPM clock last accepted per AK: what clock_rollback and tpm_reset compare with.
ak_clocks = Table(
    "ak_clocks",
    metadata,
    Column("ak_name", String(MAX_HEX_NAME), primary_key=True),
    Column("clock", BigInteger, nullable=False),  # milliseconds, never obfuscated
    Column("reset_count", BigInteger, nullable=False),  # obfuscated: compare for change only
    Column("restart_count", BigInteger, nullable=False),
    Column("seen_at", BigInteger, nullable=False),
)

# Every revocation, of anything, by (kind, subject). A subject the store has not
# seen yet (a jti still in flight) is recorded all the same, so it is refused later.
revocations = Table(
    "revocations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(8), nullable=False),
    Column("subject", String(max(MAX_JTI, MAX_HOST, MAX_HEX_NAME)), nullable=False),
    Column("reason", Text, nullable=False),
    Column("revoked_at", BigInteger, nullable=False),
    # The jti whose revocation cascaded to this descendant; NULL when revoked directly.
    Column("cascaded_from", String(MAX_JTI), nullable=True),
    UniqueConstraint("kind", "subject", name="uq_revocations_kind_subject"),
)
