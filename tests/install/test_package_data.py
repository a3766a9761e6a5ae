"""What the commands read at run time is package data, so a wheel install has it: the
swtpm templates and the documentation, found through importlib.resources."""

from __future__ import annotations

import fnmatch
import importlib.resources
import re
import tomllib
from pathlib import Path

import attest
from attest import manual
from attest.simulator import load_templates, templates_dir

REPO = Path(__file__).resolve().parents[2]
PACKAGE = Path(attest.__file__).resolve().parent


def _package_data_globs() -> list[str]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs: list[str] = pyproject["tool"]["setuptools"]["package-data"]["attest"]
    return globs


def test_the_templates_are_found_in_the_package_not_the_repository(monkeypatch) -> None:
    monkeypatch.delenv("ATTEST_SWTPM_TEMPLATES", raising=False)
    found = templates_dir()
    assert found == importlib.resources.files("attest") / "templates" / "swtpm"
    assert Path(str(found)).resolve().is_relative_to(PACKAGE)
    # The old home beside the package is gone: nothing can be read from it by accident.
    assert not (REPO / "swtpm").exists()
    assert set(load_templates()) == {"swtpm_setup.conf", "swtpm-localca.conf",
                                     "swtpm-localca.options"}


def test_every_file_the_package_reads_is_covered_by_package_data() -> None:
    """A template or doc added without a matching glob would be missing from the wheel."""
    globs = _package_data_globs()
    for folder in ("templates", "docs"):
        files = [p for p in (PACKAGE / folder).rglob("*") if p.is_file()]
        assert files, folder
        for path in files:
            relative = path.relative_to(PACKAGE).as_posix()
            if folder == "docs" and not relative.endswith(".md"):
                continue  # docs/openapi.json: the service serves its own
            assert any(fnmatch.fnmatch(relative, g) for g in globs), relative


def test_the_packages_docs_are_the_repositorys() -> None:
    """attest/docs is a link to docs/: one copy, which the wheel carries as files."""
    assert (PACKAGE / "docs").resolve() == (REPO / "docs").resolve()
    assert set(manual.topics()) == {p.stem for p in (REPO / "docs").glob("*.md")}


def test_help_texts_name_only_topics_that_ship() -> None:
    named = set()
    for source in PACKAGE.rglob("*.py"):
        named |= set(re.findall(r"`attest docs ([a-z-]+)`", source.read_text()))
    assert named, "no help text points at `attest docs TOPIC`"
    assert named <= set(manual.topics()), named - set(manual.topics())


def test_the_openapi_document_points_at_attest_docs_not_at_files() -> None:
    """Clients read /v1/openapi.json without a checkout: no `docs/X.md` in it."""
    document = (REPO / "docs" / "openapi.json").read_text()
    assert "docs/" not in document and ".md" not in document
    assert "`attest docs reasons`" in document
