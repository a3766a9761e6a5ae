"""Appraising artifacts: the fail-closed verifier, decisions, lineage."""
