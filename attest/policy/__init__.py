"""The verifier policy: a YAML file read into frozen dataclasses, and its writer.

``load_policy(path)`` returns a :class:`VerifierPolicy` or raises
:class:`attest.errors.PolicyError` naming the file, line, column and key path.
``render_policy(...)`` writes a commented policy (``attest policy init``).
Nothing here talks to a TPM or a database.

The file, with every key (defaults shown where there are any; the attributes
of the classes in :mod:`attest.policy.model` document each one)::

    version: 1                       # required
    id: prod-web                     # required
    ek_roots: [roots/]               # files or folders, relative to this file
    enrollment: store                # store | policy
    trusted_aks:                     # only, and required, with enrollment: policy
      - host: web-1
        ak_public: "<hex TPM2B_PUBLIC>"
        ak_qualified_name: "<hex>"   # optional
    pcrs:
      bank: sha256                   # sha1 | sha256 | sha384 | sha512
      sealed: [0, 1, 2, 3, 4, 5, 6, 7]
      runtime: 15
    key_policy:                      # required
      kind: pcr                      # pcr | authorize
      sealed_values: {"0": "<hex>", ...}    # kind pcr: every sealed PCR
      authority: |                   # kind authorize: inline PEM, or
        -----BEGIN PUBLIC KEY----- ...
      authority_file: authority.pem  #   a PEM file (one of the two)
      policy_ref: ""                 # kind authorize, hex
      min_approval_serial: 0         # kind authorize: lower serials are denied
      revoked_approvals: []          # kind authorize: approval ids denied
    reference:                       # optional: attest.eventlog.appraise.ReferenceValues
      bank: sha256                   # defaults to, and must equal, pcrs.bank
      runtime: [{name: /usr/bin/backup, digests: ["<hex>"]}]
      boot: {pcrs: {"0": ["<hex>"]}, secure_boot: true, boot_applications: ["<hex>"]}
    freshness:
      nonce: required                # required | optional | forbidden
      max_age: 300s                  # durations: 300, 300s, 5m, 1h, 2d, 1h30m
      clock_skew: 30s
      deny_reset: false
    artifacts:
      max_lifetime: 600s
      single_use: true
    lineage:
      max_depth: 3                   # 0 forbids child artifacts
    rules:                           # required, at least one; all four lists required
      - subjects: ["deploy-bot"]     # fnmatch patterns over sub
        actions: ["exec"]            # ... over scope.action
        argv: ["/usr/bin/backup --full *"]  # ... over argv joined with single spaces
        hosts: ["*"]                 # ... over the host id
"""

from attest.policy.authority import authority_name, authority_public
from attest.policy.load import load_policy, parse_policy
from attest.policy.model import (
    ArtifactLimits,
    EnrollmentMode,
    ExecutablePolicy,
    Freshness,
    KeyPolicy,
    KeyPolicyKind,
    LineageLimits,
    NonceMode,
    PCRPolicy,
    Rule,
    TrustedAK,
    VerifierPolicy,
)
from attest.policy.render import render_policy

__all__ = [
    "ArtifactLimits",
    "EnrollmentMode",
    "ExecutablePolicy",
    "Freshness",
    "KeyPolicy",
    "KeyPolicyKind",
    "LineageLimits",
    "NonceMode",
    "PCRPolicy",
    "Rule",
    "TrustedAK",
    "VerifierPolicy",
    "authority_name",
    "authority_public",
    "load_policy",
    "parse_policy",
    "render_policy",
]
