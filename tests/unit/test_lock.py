"""scripts/lock's offline parts: which build dependencies an sdist brings, what is an sdist.

The resolution itself needs PyPI and is not run here; tests/unit/test_pins.py checks its
output, constraints.txt.
"""

from __future__ import annotations

import io
import tarfile
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "lock"


def load_lock() -> ModuleType:
    loader = SourceFileLoader("attest_scripts_lock", str(SCRIPT))
    spec = spec_from_loader(loader.name, loader)
    assert spec is not None
    module = module_from_spec(spec)
    loader.exec_module(module)
    return module


lock = load_lock()


def sdist(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_an_sdist_brings_its_build_system_and_its_setup_requires(tmp_path):
    archive = sdist(
        tmp_path / "tpm2-pytss-3.0.0.tar.gz",
        {
            "tpm2-pytss-3.0.0/pyproject.toml": (
                '[build-system]\nrequires = ["setuptools>=44", "pkgconfig"]\n'
            ),
            "tpm2-pytss-3.0.0/setup.cfg": (
                "[options]\nsetup_requires =\n\tsetuptools_scm[toml]>=3.4.3\n\tcffi>=1.0.0\n"
            ),
        },
    )
    assert lock.build_requirements(archive) == [
        "setuptools>=44",
        "pkgconfig",
        "setuptools_scm[toml]>=3.4.3",
        "cffi>=1.0.0",
    ]


def test_an_sdist_without_a_build_system_gets_setuptools_default(tmp_path):
    archive = sdist(tmp_path / "old-1.0.tar.gz", {"old-1.0/setup.py": "", "old-1.0/PKG-INFO": ""})
    assert lock.build_requirements(archive) == ["setuptools>=40.8.0", "wheel"]


def test_only_the_top_folders_own_files_count(tmp_path):
    # A vendored project's pyproject deeper down, or a stray one at the archive's root, is
    # not the sdist's build system.
    archive = sdist(
        tmp_path / "x-1.0.tar.gz",
        {
            "pyproject.toml": '[build-system]\nrequires = ["evil"]\n',
            "x-1.0/vendor/pyproject.toml": '[build-system]\nrequires = ["evil"]\n',
            "x-1.0/pyproject.toml": '[build-system]\nrequires = ["flit_core>=3.2"]\n',
        },
    )
    assert lock.build_requirements(archive) == ["flit_core>=3.2"]


def test_a_zip_sdist_is_refused_not_skipped(tmp_path):
    archive = tmp_path / "y-1.0.zip"
    archive.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    with pytest.raises(SystemExit, match="not a tar sdist"):
        lock.build_requirements(archive)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://files.example/p/cryptography-50.0.2-cp311-abi3-manylinux_2_34_x86_64.whl",
         False),
        ("https://files.example/p/tpm2_pytss-3.0.0.tar.gz", True),
        ("https://files.example/p/old-1.0.zip", True),
        ("file:///work/attest", False),  # the project itself
    ],
)
def test_what_pip_builds_from_source_is_an_sdist(url, expected):
    assert lock.is_sdist({"download_info": {"url": url}, "metadata": {}}) is expected
