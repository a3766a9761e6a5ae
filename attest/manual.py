"""The documentation shipped with the package: `attest docs TOPIC`.

`--help` says what a command's options are; the why and the how (reason codes, the
policy file's keys, the service's API) are in docs/*.md. Those files ship inside the
package (attest/docs links to the repository's docs/, package data in a wheel), so
what `--help`, hints and `policy init`'s comments point at (`attest docs TOPIC`) is
there on every install, editable or not, without a network or a source checkout.

A topic is a file's name without `.md`, and only a name from the listing is opened:
a topic is never joined to a path as given (`../../etc/passwd` is unknown, not read).
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path

from attest.errors import EnvironmentProblem, UsageError

_SUFFIX = ".md"


@dataclass(frozen=True)
class Topic:
    name: str
    title: str
    source: Traversable

    def text(self) -> str:
        return self.source.read_text(encoding="utf-8")

    def path(self) -> Path | None:
        """The file on disk, or None when the package is not unpacked (a zip import)."""
        return self.source if isinstance(self.source, Path) else None


def shelf() -> Traversable:
    return importlib.resources.files("attest") / "docs"


def topics() -> dict[str, Topic]:
    """Every shipped document by topic name, in name order."""
    folder = shelf()
    if not folder.is_dir():
        raise EnvironmentProblem(
            f"the documentation is not installed: {folder} is missing",
            hint="reinstall attest (docs/*.md ship as package data); in a source "
                 "checkout attest/docs is a link to docs/")
    found = {}
    for entry in folder.iterdir():
        if entry.name.endswith(_SUFFIX) and entry.is_file():
            name = entry.name.removesuffix(_SUFFIX)
            found[name] = Topic(name, _title(entry), entry)
    return dict(sorted(found.items()))


def topic(name: str) -> Topic:
    """The topic ``name`` (``reasons`` or ``reasons.md``); UsageError naming the topics."""
    shelved = topics()
    found = shelved.get(name.removesuffix(_SUFFIX))
    if found is None:
        raise UsageError(f"no documentation topic {name!r}",
                         hint=f"topics: {', '.join(shelved)} (`attest docs` lists them)")
    return found


def _title(entry: Traversable) -> str:
    """The document's first heading, without its `#`: the listing's one line."""
    with entry.open("r", encoding="utf-8") as stream:
        for _, line in zip(range(20), stream, strict=False):
            if line.startswith("# "):
                return line[2:].strip()
    return ""
