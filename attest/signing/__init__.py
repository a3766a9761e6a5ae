"""The TPM-backed signer (issue 15): DSSE envelopes signed in the TPM with the evidence that
they were (docs/signing.md), and the Merkle batches that let one TPM signature cover many of
them. Pure modules here: the host side that signs lives in attest.host.sign."""
