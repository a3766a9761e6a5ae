"""The verifier's tables (SQLite here, PostgreSQL for replicas), described in :mod:`.ddl`.

Conventions that keep the SQL portable:
- times are integer epoch seconds (``BIGINT``): no time zones, no dialect date types;
- TPM names and key ids are lowercase hex text, so they compare, index and join the
  same on every backend and read the same in the artifact's ``kid``/``iss`` claims;
- raw blobs (public areas, certificates) are ``BLOB`` (``BYTEA`` on PostgreSQL);
- the surrogate key of ``revocations`` is SQLite's rowid or a PostgreSQL sequence.

Each component that owns tables records its schema version in ``schema_versions``
under its own name ("store" here; the audit log adds "audit" with its own tables),
so components migrate independently.
"""

from __future__ import annotations

from attest.store.ddl import BIGINT, BLOB, INTEGER, SERIAL, TEXT, Column, Table, varchar

STORE_COMPONENT = "store"
# 2: the tables added during version 1 and the replicas' heartbeats (attest.store.migrations).
# 3: the hosts' trust states (attest.store.hosttrust), the event stream and the webhooks'
# delivery cursors (attest.store.events).
STORE_SCHEMA_VERSION = 3

# Bounds the store checks before writing, so an oversized value is refused with a
# message rather than by a backend-specific error (PostgreSQL enforces VARCHAR(n)).
MAX_JTI = 128
MAX_HOST = 255
MAX_NONCE = 64
MAX_HEX_NAME = 256  # hex of a TPM name: 2-byte algorithm id + digest (<= 64 bytes)

schema_versions = Table("schema_versions", (
    Column("component", varchar(32), primary_key=True),
    Column("version", INTEGER),
))

hosts = Table("hosts", (
    Column("host", varchar(MAX_HOST), primary_key=True),
    Column("first_enrolled_at", BIGINT),
    Column("last_enrolled_at", BIGINT),
))

# One row per AK; a host re-provisioned with a new AK gets another row.
enrollments = Table("enrollments", (
    Column("ak_name", varchar(MAX_HEX_NAME), primary_key=True),
    Column("host", varchar(MAX_HOST), indexed=True, references=("hosts", "host")),
    Column("ak_public", BLOB),  # TPM2B_PUBLIC
    Column("ak_qualified_name", BLOB),
    Column("ek_certificate", BLOB, nullable=True),  # DER, when the host has one
    Column("enrolled_at", BIGINT),
    Column("updated_at", BIGINT),
))

# Interactive freshness: single-use challenges. used_at is set exactly once, by the
# conditional UPDATE in the acceptance transaction.
nonces = Table("nonces", (
    Column("nonce", varchar(MAX_NONCE), primary_key=True),
    Column("issued_at", BIGINT),
    Column("expires_at", BIGINT, indexed=True),  # for purging
    Column("used_at", BIGINT, nullable=True),
))

# Accepted artifacts: the seen-jti set (replay) and the lineage tree (revocation).
# No foreign key on parent_jti or ak_name: a parent may be judged by the verifier
# before this row exists, and offline set-ups trust AKs the store never enrolled.
artifacts = Table("artifacts", (
    Column("jti", varchar(MAX_JTI), primary_key=True),
    Column("sha256", varchar(64)),
    Column("parent_jti", varchar(MAX_JTI), nullable=True, indexed=True),
    Column("depth", INTEGER),
    Column("exp", BIGINT),
    Column("host", varchar(MAX_HOST)),
    Column("kid", varchar(MAX_HEX_NAME)),
    Column("ak_name", varchar(MAX_HEX_NAME)),
    Column("subject", TEXT),
    Column("scope", TEXT),  # JSON, as the artifact's scope claim
    Column("accepted_at", BIGINT),
))

# The TPM clock last accepted per AK: what clock_rollback and tpm_reset compare with.
ak_clocks = Table("ak_clocks", (
    Column("ak_name", varchar(MAX_HEX_NAME), primary_key=True),
    Column("clock", BIGINT),  # milliseconds, never obfuscated
    Column("reset_count", BIGINT),  # obfuscated: compare for change only
    Column("restart_count", BIGINT),
    Column("seen_at", BIGINT),
))

# The TPM's current boot epoch per AK, and where its clock stands in real time. Clock
# values are unique across the boots of one TPM (safe clocks only), so boots occupy
# disjoint, ordered clock ranges: floor_clock (the last clock of the boots before)
# < first_clock <= last_clock. last_time bounds when the TPM reached last_clock.
# Every update is a monotone merge (attest.store.epochs): a lost race only loosens.
ak_epochs = Table("ak_epochs", (
    Column("ak_name", varchar(MAX_HEX_NAME), primary_key=True),
    Column("reset_count", BIGINT),  # obfuscated: compare for equality only
    Column("restart_count", BIGINT),
    Column("first_clock", BIGINT),  # milliseconds, the lowest seen in this epoch
    Column("last_clock", BIGINT),  # the highest seen in this epoch
    Column("floor_clock", BIGINT, nullable=True),  # the highest seen in earlier epochs
    Column("last_time", BIGINT),  # ms since the Unix epoch: last_clock was reached by then
    # 0; 1: `attest readmit` allows the next TPM reset; 2: this epoch is a TPM reset a
    # policy with deny_reset refused, until re-admitted (see attest.store.epochs).
    Column("reset_state", INTEGER),
    Column("seen_at", BIGINT),
))

# Every revocation, of anything, by (kind, subject). A subject the store has not
# seen yet (a jti still in flight) is recorded all the same, so it is refused later.
revocations = Table("revocations", (
    Column("id", SERIAL, primary_key=True),
    Column("kind", varchar(8)),
    Column("subject", varchar(max(MAX_JTI, MAX_HOST, MAX_HEX_NAME))),
    Column("reason", TEXT),
    Column("revoked_at", BIGINT),
    # The jti whose revocation cascaded to this descendant; NULL when revoked directly.
    Column("cascaded_from", varchar(MAX_JTI), nullable=True),
), unique=(("uq_revocations_kind_subject", ("kind", "subject")),))

# The highest authority approval serial accepted per AK, authority and policyRef
# (key_policy.kind authorize): a host that signed under a newer approval is denied an
# older one, which it can use again only by rolling its firmware back. Added after
# schema version 1 (created IF NOT EXISTS, so existing databases gain it).
approval_serials = Table("approval_serials", (
    Column("ak_name", varchar(MAX_HEX_NAME), primary_key=True),
    Column("authority", varchar(MAX_HEX_NAME), primary_key=True),  # its TPM name, hex
    Column("policy_ref", varchar(128), primary_key=True),  # hex, at most 64 bytes
    Column("serial", BIGINT),
    Column("seen_at", BIGINT),
))


# The same mark per TPM: an AK is one of its TPM's identities, and a new AK of the same
# TPM (re-enrolled under the host id: same EK, no move) rolled back to old firmware must
# not start from nothing. The holder is "ek:<EK id>" when the store knows the TPM the AK
# was activated under, else "host:<host id>" (enrollment by policy, or without an EK):
# a host id moved to another TPM starts afresh with it, as that TPM's firmware may be on
# another track of the authority's approvals.
tpm_approval_serials = Table("tpm_approval_serials", (
    Column("holder", varchar(MAX_HOST + 5), primary_key=True),
    Column("authority", varchar(MAX_HEX_NAME), primary_key=True),
    Column("policy_ref", varchar(128), primary_key=True),
    Column("serial", BIGINT),
    Column("seen_at", BIGINT),
))

# The approval an accepted artifact's key signed under (key_policy.kind authorize), by
# its id: the artifact rests on it as on its key, AK and host, so revoking the approval
# (`attest revoke --approval`) reaches the artifact and its descendants.
artifact_approvals = Table("artifact_approvals", (
    Column("jti", varchar(MAX_JTI), primary_key=True),
    Column("approval", varchar(64)),
))

# A TPM identity, by its EK: the SHA-256 (hex) of the EK's SubjectPublicKeyInfo, the key
# credential activation encrypted to. No foreign keys: rows of databases older than
# these tables have no EK, and a revoked EK outlives its enrollments.
MAX_EK_ID = 64

# The EK a host id belongs to. Another EK takes the host id only when an administrator
# moves it (`attest enroll --move-host`), and the move is audited.
host_eks = Table("host_eks", (
    Column("host", varchar(MAX_HOST), primary_key=True),
    Column("ek", varchar(MAX_EK_ID), indexed=True),
    Column("bound_at", BIGINT),
))

# The EK each AK was activated under: revoking a host revokes its EK, and through it
# every AK of that TPM, under whatever host id it was enrolled.
ak_eks = Table("ak_eks", (
    Column("ak_name", varchar(MAX_HEX_NAME), primary_key=True),
    Column("ek", varchar(MAX_EK_ID), indexed=True),
    Column("enrolled_at", BIGINT),
))

# The verifier's seal over each enrollment it made: a MAC under a key derived from the
# audit log key (attest.audit.seals), which lives outside the database. A row written
# into the database by anyone else has none, so the audited verifier does not trust it.
# No foreign key: enrollments and seals are written and dropped in one transaction.
enrollment_seals = Table("enrollment_seals", (
    Column("ak_name", varchar(MAX_HEX_NAME), primary_key=True),
    Column("mac", BLOB),
))

# The verifier's seal over each artifact it accepted (attest.audit.seals): what a child's
# lineage check reads of its parent is trusted only under it, so a row inserted or
# changed by someone else (a wider scope, a later exp) vouches for no child.
# No foreign key: the seal is written in the acceptance's transaction, with the row.
artifact_seals = Table("artifact_seals", (
    Column("jti", varchar(MAX_JTI), primary_key=True),
    Column("mac", BLOB),
))

# The verifier's seal over each revocation it recorded, by the revocation's row id, and
# over the whole set (one row: its count and an order-independent digest), both MACs
# under a key derived from the audit log key (attest.audit.revseals). Revocations are
# append-only: a set that lost a row no longer matches its aggregate, and the audited
# verifier then accepts nothing. No foreign key: a seal outliving its row is the point.
revocation_seals = Table("revocation_seals", (
    Column("id", BIGINT, primary_key=True),
    Column("mac", BLOB),
))

revocation_aggregate = Table("revocation_aggregate", (
    Column("id", INTEGER, primary_key=True),  # always 1
    Column("total", BIGINT),  # how many rows the set holds
    Column("digest", BLOB),
    Column("mac", BLOB),
))

# The appraised prefixes of runtime logs (incremental logs: attest.store.prefixes), per
# AK, boot epoch (the quote's resetCount and restartCount, obfuscated: equality only)
# and policy digest: an artifact may send only the records after one of them. Written
# in the acceptance's transaction for the accepted artifact's whole log, into one of a
# few slots per AK and epoch (record_count modulo their number: the latest prefixes,
# bounded without a pruning statement); ``mac`` is the verifier's seal over the row
# (attest.audit.seals), written by the audited acceptance: the audited verifier uses
# no row without it.
MAX_PREFIX_POLICY = 64  # a policy digest: SHA-256 hex
log_prefixes = Table("log_prefixes", (
    Column("ak_name", varchar(MAX_HEX_NAME), primary_key=True),
    Column("reset_count", BIGINT, primary_key=True),
    Column("restart_count", BIGINT, primary_key=True),
    Column("policy_digest", varchar(MAX_PREFIX_POLICY), primary_key=True),
    Column("slot", INTEGER, primary_key=True),  # record_count % prefixes.SLOTS
    Column("record_count", BIGINT),  # records in the prefix
    Column("digest", BLOB),  # attest.eventlog.prefix
    Column("pcr_values", TEXT),  # JSON: {bank: hex} of the runtime PCR after the prefix
    Column("commands", TEXT),  # JSON: sorted SHA-256 hex of the commands it measured
    Column("accepted_at", BIGINT),
    Column("mac", BLOB, nullable=True),
))

# Secrets the replicas of one deployment share, by name, each created once by whichever
# replica starts first (attest.store.servicekeys): the challenge MAC key
# (attest.store.challenges). Never updated: a key that changed would void every
# challenge in flight. Added after schema version 1 (created IF NOT EXISTS).
service_keys = Table("service_keys", (
    Column("key_name", varchar(64), primary_key=True),
    Column("secret", BLOB),
    Column("created_at", BIGINT),
))

# Bearer tokens of the service's administrators (attest.store.tokens): the SHA-256 of
# each token, never the token, under a public id the token carries. A revoked token keeps
# its row (revoked_at set), so `attest admin token list` shows who held what.
MAX_TOKEN_NAME = 64
admin_tokens = Table("admin_tokens", (
    Column("token_id", varchar(32), primary_key=True),  # hex, also in the token's text
    Column("name", varchar(MAX_TOKEN_NAME)),
    Column("sha256", varchar(64)),  # hex SHA-256 of the whole token text
    Column("created_at", BIGINT),
    Column("revoked_at", BIGINT, nullable=True),
))

# Each host's last decision, for `GET /v1/hosts` (attest.store.hoststate): written in
# the decisions' own commit (one statement per host in a group). A row is created only
# by an acceptance (the host id is then authenticated); a denial naming a host updates
# its row only, so anyone's text can't grow the table.
MAX_HOST_REASONS = 1024
host_decisions = Table("host_decisions", (
    Column("host", varchar(MAX_HOST), primary_key=True),
    Column("accepted", INTEGER),  # the last decision: 1 accepted, 0 denied
    Column("reasons", varchar(MAX_HOST_REASONS)),  # its reason codes, comma-separated
    Column("decided_at", BIGINT),
    Column("audit_index", BIGINT, nullable=True),
    Column("accepted_at", BIGINT),  # the last acceptance: its quote was fresh then
    Column("accepted_index", BIGINT, nullable=True),
))

# Each host's trust state from its reports (continuous attestation: attest.store.
# hosttrust). Unlike host_decisions, only an authenticated report moves it: an accepted
# one (trusted, reported_at), or one whose quote verified and whose only reasons are
# measurements (untrusted). Stale is derived from reported_at, never stored.
host_trust = Table("host_trust", (
    Column("host", varchar(MAX_HOST), primary_key=True),
    Column("state", varchar(16)),  # trusted / untrusted
    Column("reasons", varchar(MAX_HOST_REASONS)),  # untrusted: the codes, comma-separated
    Column("changed_at", BIGINT),  # when the state last changed
    Column("reported_at", BIGINT, nullable=True),  # the last accepted report
    Column("audit_index", BIGINT, nullable=True),  # the state change's audit entry
    # The TPM clock (ms) of the quote of the last report that moved the state: a report
    # quoted no later (held back, then sent) moves nothing.
    Column("report_clock", BIGINT, nullable=True),
))

# One row per verifier process serving on this database (`attest serve`): what it is, and
# when it last wrote here. A replica updates its row every few seconds while it can reach
# the database; a row whose last_seen falls behind is a replica that died or lost the
# database (attest.store.replicas). Never read by a decision.
MAX_REPLICA_ID = 64
replicas = Table("replicas", (
    Column("replica", varchar(MAX_REPLICA_ID), primary_key=True),  # random, per process
    Column("host", varchar(MAX_HOST)),  # the machine's name, as the replica saw it
    Column("pid", BIGINT),
    Column("started_at", BIGINT),
    Column("last_seen", BIGINT, indexed=True),  # for pruning the long dead
    Column("attest_version", varchar(64)),
))

# The changes of trust the verifier streams (GET /v1/events) and POSTs to webhooks
# (attest.store.events): one row per event, written in the transaction of the change it
# reports, so none is lost or invented. The id is the stream's cursor, numbered by the
# database; rows are append-only. ``host``: the host the event concerns, if one (its own
# feed, GET /v1/hosts/{host}/events, reads by (host, id): attest.store.eventhosts).
MAX_EVENT_KIND = 32
MAX_EVENT_SUBJECT = 300  # "<revocation kind>:<subject>" and host ids fit
MAX_EVENT_DATA = 16384
events = Table("events", (
    Column("id", SERIAL, primary_key=True),
    Column("kind", varchar(MAX_EVENT_KIND)),
    Column("subject", varchar(MAX_EVENT_SUBJECT)),
    Column("details", TEXT),  # a JSON object, at most MAX_EVENT_DATA bytes
    Column("created_at", BIGINT),
    Column("host", varchar(MAX_HOST), nullable=True),
), indexes=(("ix_events_host_id", ("host", "id")),))

# Each webhook subscriber's delivery cursor: the last event id delivered to it, and who
# is delivering the next one until when (a lease). A replica claims the next event with a
# conditional UPDATE (WHERE last_id = the one it read and no other lease is in force) and
# advances last_id after the subscriber took it, so replicas deliver each event once per
# subscriber; a replica that dies mid-delivery leaves a lease that expires, and the event
# is delivered again (at least once: receivers dedupe by event id).
MAX_SUBSCRIBER = 64
webhook_cursors = Table("webhook_cursors", (
    Column("subscriber", varchar(MAX_SUBSCRIBER), primary_key=True),
    Column("last_id", BIGINT),
    Column("lease_owner", varchar(64), nullable=True),  # a replica id, while it delivers
    Column("lease_until", BIGINT),  # epoch seconds; 0: no lease
    Column("updated_at", BIGINT),
))

# The runtime log of the report that last changed each host's trust state (attest.store.
# hostreports): what the console's host page appraises record by record against the
# policy in force, to say which reference value allowed each measurement or why none
# did. Written in the transaction of the state change, so only a report whose quote
# verified under the host's AK is kept; one row a host, replaced at each change.
host_reports = Table("host_reports", (
    Column("host", varchar(MAX_HOST), primary_key=True),
    Column("accepted", INTEGER),  # 1: the report was accepted, 0: denied
    Column("reasons", varchar(MAX_HOST_REASONS)),  # denied: its reason codes
    Column("reported_at", BIGINT),
    Column("audit_index", BIGINT, nullable=True),  # the state change's audit entry
    Column("log_base", BIGINT),  # records of the prefix the log continues (0: whole)
    Column("runtime_log", BLOB),  # CEL-JSON, as the report carried it
))

# Schema version 1 as first released (tests compare it with a frozen copy).
V1_TABLES = (schema_versions, hosts, enrollments, nonces, artifacts, ak_clocks, revocations)

# Added while version 1 was current, and by version 2 (attest.store.migrations).
ADDED_IN_V2 = (host_eks, ak_eks, approval_serials, ak_epochs, tpm_approval_serials,
               artifact_approvals, enrollment_seals, artifact_seals, revocation_seals,
               revocation_aggregate, log_prefixes, replicas, service_keys, admin_tokens,
               host_decisions)

# Added by version 3 (attest.store.migrations).
ADDED_IN_V3 = (host_trust, events, webhook_cursors, host_reports)

# In creation order: a table after those its foreign keys name. A table added within a
# version comes last and is created whenever a store at that version opens without it.
TABLES = (*V1_TABLES, *ADDED_IN_V2, *ADDED_IN_V3)
