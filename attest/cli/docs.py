"""`attest docs`: the documentation that ships with the package, on any install.

It stands in for a man page: `attest COMMAND --help` is the synopsis and the options,
`attest docs TOPIC` the full text (the same Markdown as the repository's docs/). A man
page would need a generator and a place on MANPATH that a pip install does not have.
"""

from __future__ import annotations

import sys

import click
from click.shell_completion import CompletionItem

from attest import manual
from attest.cli.failure import json_option


def _complete_topic(ctx: click.Context, param: click.Parameter,
                    incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(name, help=entry.title) for name, entry in manual.topics().items()
            if name.startswith(incomplete)]


@click.command("docs")
@click.argument("topic", required=False, shell_complete=_complete_topic)
@click.option("--path", "as_path", is_flag=True,
              help="Print where the document is on disk instead of its text.")
@json_option(help='With no TOPIC: print [{"topic", "title", "path"}].')
def docs(topic: str | None, as_path: bool, as_json: bool) -> None:
    """Read attest's documentation: list the topics, or print one (Markdown).

    \b
    attest docs                  # the topics, one line each
    attest docs reasons          # every reason code, on stdout (a pager on a terminal)
    attest docs policy --path    # the file, for an editor or a Markdown viewer

    Help texts and `attest policy init`'s comments name their topic. Exit 2 for a
    topic that is not shipped.
    """
    if topic is None:
        shelved = manual.topics()
        if as_json:
            from attest.cli.common import echo_json

            echo_json([{"topic": t.name, "title": t.title,
                        "path": str(t.path()) if t.path() else None}
                       for t in shelved.values()])
            return
        width = max(map(len, shelved), default=0)
        for entry in shelved.values():
            click.echo(f"{entry.name:<{width}}  {entry.title}")
        click.echo("\n`attest docs TOPIC` prints one.", err=True)
        return
    chosen = manual.topic(topic)
    if as_path:
        where = chosen.path()
        if where is None:
            from attest.errors import EnvironmentProblem

            raise EnvironmentProblem(f"{chosen.name} is inside a zipped package: no path",
                                     hint=f"`attest docs {chosen.name}` prints its text")
        click.echo(str(where))
        return
    text = chosen.text()
    if sys.stdout.isatty():
        click.echo_via_pager(text)  # $PAGER, as man does
    else:
        click.echo(text, nl=False)
