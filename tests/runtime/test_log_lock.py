"""The runtime log's lock: a holder that does not let go is the environment's problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from attest.errors import EXIT_ENVIRONMENT, EnvironmentProblem
from attest.host.runtime.log import RuntimeLog


def test_a_lock_held_past_the_timeout_is_an_environment_error(tmp_path: Path) -> None:
    log = RuntimeLog(tmp_path / "home")
    # flock locks belong to an open file: a second open in this process contends too.
    with log.locked(), pytest.raises(EnvironmentProblem) as raised, log.locked(timeout=0.01):
        pass
    assert raised.value.exit_code == EXIT_ENVIRONMENT
    assert str(log.lock_path) in raised.value.message


def test_the_lock_is_free_again_after_its_holder_leaves(tmp_path: Path) -> None:
    log = RuntimeLog(tmp_path / "home")
    with log.locked():
        pass
    with log.locked(timeout=0.01):
        assert log.lock_path.is_file()
