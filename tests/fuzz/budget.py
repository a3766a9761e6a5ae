"""The fuzz suite's budget: one settings object every fuzz test uses."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# 200 examples a test keep the whole suite near 20 s on two idle cores; raise it locally.
EXAMPLES = int(os.environ.get("ATTEST_FUZZ_EXAMPLES", "200"))
# Derandomized by default: CI runs the same inputs every time, so a failure reproduces.
RANDOM = os.environ.get("ATTEST_FUZZ_RANDOM", "") not in ("", "0")

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not RANDOM,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture,
                           HealthCheck.large_base_example],
)
