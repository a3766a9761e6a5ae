"""Issuing authorization artifacts: the model, the JWS codec, issuance on the TPM."""
