"""Attestation results (EAR): what a verifier answers, signed, and what relying parties
(hosts running a command, `attest result verify`) check before they act on it.

- :mod:`attest.ear.vector`: the AR4SI trustworthiness vector of each reason code;
- :mod:`attest.ear.token`: ES256 JWTs with ``cryptography``;
- :mod:`attest.ear.result`: issue a result, read one, check its binding and receipt;
- :mod:`attest.ear.keys`: the verifier's signing key, the keys a host trusts.

Base install: no server and no TPM dependencies.
"""
