"""The host side: what needs this host's TPM and home.

``issue`` makes artifacts (quote, certification, signature), ``run`` is `attest run`'s
steps (measure, issue, verify, exec), and ``runtime`` is the runtime log kept in step
with its PCR. The pure artifact model and JWS stay in :mod:`attest.artifact`, which the
verifier side shares; nothing on the verifier side imports this package.
"""
