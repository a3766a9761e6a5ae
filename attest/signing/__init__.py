"""Attested signatures: DSSE envelopes signed in the TPM, with the evidence that they were
(docs/signing.md). Pure: the host side that signs lives in attest.host.sign."""
