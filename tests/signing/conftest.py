"""Signature bundles: a host on its own swtpm (the verifier tests' rig) signs for real."""

from tests.verify.conftest import rig

__all__ = ["rig"]
