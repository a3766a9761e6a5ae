"""The artifact: its model and the JWS codec, pure and shared by both sides (issuance on
the TPM is attest.host.issue)."""
