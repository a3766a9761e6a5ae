"""`attest docs`: the shipped documentation, listed and printed; a topic is a name from
the listing, never a path; every --help and the generated policy point at it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from attest import manual
from attest.cli.main import cli
from attest.policy.render import render_policy


def _docs(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["docs", *args])
    return result.exit_code, result.stdout, result.stderr


def test_docs_lists_every_topic_with_its_title() -> None:
    code, out, _ = _docs()
    assert code == 0
    lines = dict(line.split(maxsplit=1) for line in out.splitlines())
    assert lines["reasons"] == "Reason codes"
    assert lines["install"].startswith("Installing")
    assert set(lines) == set(manual.topics())


def test_docs_json_lists_paths() -> None:
    code, out, _ = _docs("--json")
    assert code == 0
    listed = {entry["topic"]: entry for entry in json.loads(out)}
    assert listed["policy"]["path"].endswith("policy.md")


@pytest.mark.parametrize("name", ["reasons", "reasons.md"])
def test_docs_prints_a_topic(name: str) -> None:
    code, out, _ = _docs(name)
    assert code == 0
    assert out == manual.topic("reasons").text()
    assert out.startswith("# Reason codes\n")


def test_docs_path_names_the_file() -> None:
    code, out, _ = _docs("policy", "--path")
    assert code == 0
    assert Path(out.strip()).read_text(encoding="utf-8") == manual.topic("policy").text()


@pytest.mark.parametrize("name", ["../README", "../README.md", "/etc/passwd", "docs/reasons",
                                  "reasons/../policy", "./reasons", "", "REASONS", "reasons\n",
                                  "openapi"])
def test_docs_refuses_what_is_not_a_listed_topic(name: str) -> None:
    code, out, err = _docs(name)
    assert code == 2
    assert out == ""
    assert "no documentation topic" in err and "topics: architecture" in err


def _commands(group: click.Group, ctx: click.Context) -> Iterator[tuple[click.Command,
                                                                       click.Context]]:
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        sub = click.Context(command, info_name=name, parent=ctx)
        yield command, sub
        if isinstance(command, click.Group):
            yield from _commands(command, sub)


def test_no_help_text_points_at_a_file_an_install_lacks() -> None:
    """`docs/X.md` is in a checkout only; `attest docs X` is everywhere."""
    root = click.Context(cli, info_name="attest")
    texts = [cli.get_help(root)] + [c.get_help(ctx) for c, ctx in _commands(cli, root)]
    assert len(texts) > 30
    offenders = [t.splitlines()[0] for t in texts if "docs/" in t or ".md" in t]
    assert offenders == []
    assert any("attest docs reasons" in t for t in texts)


def test_the_generated_policy_points_at_attest_docs() -> None:
    text = render_policy(policy_id="p", sealed_values={0: bytes(32)})
    first = text.splitlines()[0]
    assert "`attest docs policy`" in first and "docs/" not in first


def test_a_package_without_its_docs_says_so(tmp_path: Path) -> None:
    """An install that lost attest/docs (a repackager's trim) exits 3 naming the remedy,
    never a traceback or an empty listing."""
    import shutil
    import subprocess
    import sys

    import attest

    site = tmp_path / "site"
    shutil.copytree(Path(attest.__file__).resolve().parent, site / "attest", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "docs"))
    for args in (["docs"], ["docs", "reasons"]):
        done = subprocess.run([sys.executable, "-m", "attest", *args], capture_output=True,
                              text=True, timeout=60, cwd=tmp_path, check=False,
                              env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site)})
        assert done.returncode == 3, done.stderr
        assert "the documentation is not installed" in done.stderr
        assert "hint: reinstall attest" in done.stderr and "Traceback" not in done.stderr
