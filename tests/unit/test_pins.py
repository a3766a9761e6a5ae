"""constraints.txt pins what CI and the README's commands install; pyproject.toml keeps ranges.

The file is written by scripts/lock and read by scripts/_setup.sh and .ci/run. These tests hold
it to that: exact pins only, every distribution the venv has among them, every pin inside
pyproject's ranges, and a venv built from it (marked .attest-pinned by ensure_venv) at exactly
those versions.
"""

from __future__ import annotations

import hashlib
import re
import sys
import tomllib
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "constraints.txt"
# Not from PyPI: the project itself (editable, or on PYTHONPATH).
OWN = {"attest"}
PIN = re.compile(r"(?P<name>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)==(?P<version>[A-Za-z0-9.+!]+)")
RESOLVED_ON = re.compile(r"^# .*resolved on CPython (\d+)\.(\d+),", re.MULTILINE)


def parse_pins(text: str) -> dict[str, str]:
    """NAME==VERSION lines, canonical names, sorted, once each; anything else is refused.

    Strict because pip reads more than pins here (ranges, markers, options, hashes): any of
    them would quietly let a version float.
    """
    pins: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        if raw.startswith("#") or not raw.strip():
            continue
        match = PIN.fullmatch(raw)
        if match is None:
            raise ValueError(f"line {number}: not an exact NAME==VERSION pin: {raw!r}")
        name = match["name"]
        if canonicalize_name(name) != name:
            raise ValueError(f"line {number}: {name!r} is not the canonical name")
        if name in pins:
            raise ValueError(f"line {number}: {name} pinned twice")
        if pins and name < max(pins):
            raise ValueError(f"line {number}: {name} out of order (scripts/lock sorts)")
        pins[name] = match["version"]
    return pins


def unpinned(installed: Iterable[str], pins: Mapping[str, str]) -> list[str]:
    """The installed distributions that no pin names."""
    names = {canonicalize_name(name) for name in installed}
    return sorted(names - OWN - set(pins))


def off_pin(installed: Mapping[str, str], pins: Mapping[str, str]) -> list[str]:
    """Installed distributions whose version is not their pin."""
    found = []
    for canonical, version in sorted((canonicalize_name(n), v) for n, v in installed.items()):
        if canonical not in OWN and pins.get(canonical) != version:
            found.append(f"{canonical} {version} (pinned: {pins.get(canonical, 'nothing')})")
    return found


def outside_ranges(requirements: Iterable[tuple[str, str]], pins: Mapping[str, str]) -> list[str]:
    """(extra, requirement) pairs that pyproject declares and the pins do not satisfy."""
    found = []
    for extra, text in requirements:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        pinned = pins.get(name)
        if pinned is None:
            found.append(f"{text} ({extra or 'base'}): not pinned")
        elif not requirement.specifier.contains(pinned, prereleases=True):
            found.append(f"{text} ({extra or 'base'}): pinned {pinned}")
    return found


def declared_requirements() -> list[tuple[str, str]]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        pyproject = tomllib.load(f)
    declared = [("", text) for text in pyproject["project"]["dependencies"]]
    for extra, texts in pyproject["project"]["optional-dependencies"].items():
        declared += [(extra, text) for text in texts]
    declared += [("build", text) for text in pyproject["build-system"]["requires"]]
    return declared


def installed_here() -> dict[str, str]:
    """The distributions of the interpreter running the tests (its venv, not PYTHONPATH)."""
    found: dict[str, str] = {}
    for dist in metadata.distributions(path=[p for p in sys.path if p.startswith(sys.prefix)]):
        found[dist.metadata["Name"]] = dist.version
    return found


PINS = parse_pins(CONSTRAINTS.read_text())


def test_the_constraints_are_exact_pins():
    assert len(PINS) > 10
    assert {"pip", "setuptools", "cryptography", "tpm2-pytss", "ruff", "mypy"} <= set(PINS)


@pytest.mark.parametrize(
    "text",
    [
        "cryptography>=41\n",  # a range
        "cryptography==41.*\n",  # a wildcard is a range too
        "cryptography===41.0\n",  # arbitrary equality, not a version
        "cryptography==41.0 ; python_version < '3.12'\n",  # a marker: unpinned elsewhere
        "cryptography==41.0 --hash=sha256:00\n",  # an option on the line
        "-e .\n",
        "--extra-index-url https://example.invalid/simple\n",
        "Cryptography==41.0\n",  # not canonical
        "types_pyyaml==6.0\n",  # not canonical
        "click==8.1\nclick==8.2\n",  # twice
        "pyyaml==6.0\npy-yaml==6.0\nPyYAML==6.0\n",
        "zope==1\nabc==1\n",  # out of order: a merge that skipped scripts/lock
        "cryptography==41.0  \n",  # trailing blanks are where options hide
    ],
)
def test_anything_but_an_exact_sorted_pin_is_refused(text):
    with pytest.raises(ValueError):
        parse_pins(text)


def _pinned_venv() -> None:
    """Skip unless scripts/_setup.sh built this venv at the pins (on another Python it
    installs at pyproject's ranges, unpinned, and says so)."""
    if not (Path(sys.prefix) / ".attest-pinned").is_file():
        pytest.skip("a venv not built by scripts/_setup.sh at the pins (no .attest-pinned)")


def test_the_pins_were_resolved_for_this_python():
    # Markers (python_version) decide which dependencies exist: pins from another Python
    # may miss some.
    _pinned_venv()
    match = RESOLVED_ON.search(CONSTRAINTS.read_text())
    assert match is not None, "constraints.txt lost its header: run scripts/lock"
    assert (int(match[1]), int(match[2])) == sys.version_info[:2]


def test_pyproject_ranges_admit_the_pins():
    assert outside_ranges(declared_requirements(), PINS) == []


def test_a_pin_outside_its_range_or_a_missing_pin_is_named():
    pins = {"cryptography": "40.0.2", "click": "8.1.7", "pytest": "8.0.0rc1"}
    found = outside_ranges(
        [
            ("", "cryptography>=41"),
            ("", "click>=8.1,<8.1.7"),
            ("dev", "hypothesis>=6.80"),
            ("dev", "PyJWT[crypto]>=2.8"),
            ("dev", "pytest>=7.4"),  # a pinned pre-release inside the range is admitted
            ("host", "tpm2-pytss>=2.1; extra == 'other'"),  # not this extra's
            ("", "pywin32>=300; sys_platform == 'win32'"),  # not this platform
        ],
        pins,
    )
    assert found == [
        "cryptography>=41 (base): pinned 40.0.2",
        "click>=8.1,<8.1.7 (base): pinned 8.1.7",
        "hypothesis>=6.80 (dev): not pinned",
        "PyJWT[crypto]>=2.8 (dev): not pinned",
    ]


def test_every_distribution_in_the_venv_is_pinned():
    # The venv is what `pip install -c constraints.txt` made (or any venv these tests run
    # in): a package in it that no pin names is one a new release can change.
    _pinned_venv()
    assert unpinned(installed_here(), PINS) == []


def test_a_distribution_no_pin_names_is_named():
    pins = {"pyyaml": "6.0.1", "click": "8.1.7"}
    assert unpinned(["PyYAML", "click", "attest", "Some_Thing", "some.thing"], pins) == [
        "some-thing"
    ]


def test_a_pinned_venv_has_exactly_the_pinned_versions():
    marker = Path(sys.prefix) / ".attest-pinned"
    if not marker.exists():
        pytest.skip("a venv not built by scripts/_setup.sh (no .attest-pinned)")
    digest = hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()
    assert marker.read_text().strip() == digest, (
        "the venv was built from other pins: ./scripts/test reinstalls it"
    )
    assert off_pin(installed_here(), PINS) == [], "leftovers: rm -rf .venv; ./scripts/test"


def test_a_version_other_than_its_pin_is_named():
    pins = {"pyyaml": "6.0.1", "click": "8.1.7"}
    installed = {"PyYAML": "6.0.2", "click": "8.1.7", "attest": "0.1.0", "extra": "1"}
    assert off_pin(installed, pins) == [
        "extra 1 (pinned: nothing)",
        "pyyaml 6.0.2 (pinned: 6.0.1)",
    ]
