"""attest: execution conditional on cryptographic proof.

The package is layered (see docs/architecture.md); dependencies point down only:
``cli`` -> ``tpm`` / ``simulator`` -> ``evidence`` / ``eventlog`` (pure) -> ``errors`` /
``reasons``.
"""

__version__ = "0.1.0"
