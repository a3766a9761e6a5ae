"""The TPM-backed signer (issue 15): DSSE bundles and the Merkle batches that let one TPM
signature cover many of them. Pure modules here; the TPM side lives in attest.host."""
