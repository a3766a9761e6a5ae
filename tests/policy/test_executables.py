"""The policy's executables and keep_env: read strictly, written back exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from attest.errors import PolicyError
from attest.policy import render_policy
from tests.policy.helpers import FULL, load_text

RULES = "rules:\n"
DIGEST = "ab" * 32


def _with(section: str) -> str:
    return FULL.replace(RULES, section + RULES)


def test_absent_section_means_none(tmp_path: Path) -> None:
    policy = load_text(tmp_path, FULL)
    assert policy.executables is None and policy.keep_env == ()


def test_any_is_the_explicit_opt_out(tmp_path: Path) -> None:
    policy = load_text(tmp_path, _with("executables: any\n"))
    assert policy.executables is not None and policy.executables.any


def test_a_list_allows_its_digests(tmp_path: Path) -> None:
    policy = load_text(tmp_path, _with(
        f'executables:\n  - name: /usr/bin/backup\n    digests: ["{DIGEST}"]\n'
        f'  - name: /opt/backup\n    digests: ["{DIGEST}", "{"cd" * 32}"]\n'
        "keep_env: [LD_LIBRARY_PATH]\n"))
    assert policy.executables is not None and not policy.executables.any
    assert dict(policy.executables.allowed) == {
        bytes.fromhex(DIGEST): ("/usr/bin/backup", "/opt/backup"),
        bytes.fromhex("cd" * 32): ("/opt/backup",)}
    assert policy.keep_env == ("LD_LIBRARY_PATH",)


@pytest.mark.parametrize(("section", "says"), [
    ("executables: all\n", "'any' or a list"),
    ("executables: true\n", "'any' or a list"),
    ("executables: {name: x}\n", "a list"),
    ('executables:\n  - name: x\n    digests: ["abcd"]\n', "SHA-256"),
    ("executables:\n  - name: x\n    digests: []\n", "allows nothing"),
    (f'executables:\n  - digests: ["{DIGEST}"]\n', "name"),
    (f'executables:\n  - name: x\n    digests: ["{DIGEST}"]\n    path: y\n', "unknown key"),
    ('keep_env: ["A=B"]\n', "variable name"),
    ("keep_env: LD_PRELOAD\n", "a list"),
])
def test_malformed_sections_are_refused(tmp_path: Path, section: str, says: str) -> None:
    with pytest.raises(PolicyError, match=says):
        load_text(tmp_path, _with(section))


@pytest.mark.parametrize("executables", ["any", {"/usr/bin/backup": [bytes(32), b"\x01" * 32]},
                                         None, {}])
def test_render_writes_what_loads_back(tmp_path: Path, executables: object) -> None:
    text = render_policy(policy_id="p", sealed_values={0: bytes(32)},
                         executables=executables,  # type: ignore[arg-type]
                         keep_env=["BASH_ENV"])
    policy = load_text(tmp_path, text)
    assert policy.keep_env == ("BASH_ENV",)
    if executables is None or executables == {}:
        assert policy.executables is None
    elif executables == "any":
        assert policy.executables is not None and policy.executables.any
    else:
        assert policy.executables is not None
        assert set(policy.executables.allowed) == {bytes(32), b"\x01" * 32}


def test_keep_env_may_list_the_values_allowed(tmp_path: Path) -> None:
    policy = load_text(tmp_path, _with(
        f'keep_env:\n  - BASH_ENV\n  - name: LD_PRELOAD\n    values: ["{DIGEST.upper()}"]\n'))
    assert policy.keep_env == ("BASH_ENV", "LD_PRELOAD")
    assert policy.keep_env_values == {"LD_PRELOAD": frozenset({DIGEST})}


@pytest.mark.parametrize(("section", "says"), [
    ("keep_env:\n  - name: LD_PRELOAD\n    values: []\n", "allows nothing"),
    ('keep_env:\n  - name: LD_PRELOAD\n    values: ["ab"]\n', "SHA-256"),
    (f'keep_env:\n  - name: LD_PRELOAD\n    values: ["{DIGEST}"]\n    x: 1\n', "unknown key"),
    (f'keep_env:\n  - values: ["{DIGEST}"]\n', "name"),
    ("keep_env:\n  - name: LD_PRELOAD\n", "values"),
    ("keep_env: [LD_PRELOAD, LD_PRELOAD]\n", "listed twice"),
])
def test_malformed_keep_env_entries_are_refused(tmp_path: Path, section: str, says: str) -> None:
    with pytest.raises(PolicyError, match=says):
        load_text(tmp_path, _with(section))
