"""The console's pages, written from Python with one rule: every value is escaped
where it is put on the page.

:class:`Markup` is text this module vouches for (its own literals, and what
:func:`tag` and :func:`page` build from escaped parts); any ``str`` passed where a page
is built is escaped, quotes included. A host id or a reason holding ``<script>`` is
shown as text; the Content-Security-Policy the routes send (no inline script) is the
second wall behind this one.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

TITLE = "attest console"


class Markup(str):
    """HTML that is safe as it is: built here from escaped parts, never from input."""


def escape(value: Markup | str | int | None) -> Markup:
    if value is None:
        return Markup("")
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def join(parts: Iterable[Markup | str | int | None]) -> Markup:
    return Markup("".join(escape(p) for p in parts))


def tag(name: str, /, *content: Markup | str | int | None, **attrs: str | None) -> Markup:
    """``<name attrs>content</name>``; ``name`` and attribute names are this module's
    callers' literals, attribute values and content are escaped. An attribute whose
    value is None is left out; ``class_`` is ``class``."""
    said = "".join(f' {k.rstrip("_").replace("_", "-")}="{escape(v)}"'
                   for k, v in attrs.items() if v is not None)
    return Markup(f"<{name}{said}>{join(content)}</{name}>")


def void(name: str, /, **attrs: str | None) -> Markup:
    """An element without content (input, meta, link)."""
    said = "".join(f' {k.rstrip("_").replace("_", "-")}="{escape(v)}"'
                   for k, v in attrs.items() if v is not None)
    return Markup(f"<{name}{said}>")


def page(title: str, body: Markup, *, nav: Markup | None = None,
         scripts: tuple[str, ...] = ()) -> str:
    """A whole document: the stylesheet and ``scripts`` (names of the package's assets),
    no inline script or style."""
    head = join([void("meta", charset="utf-8"),
                 void("meta", name="viewport", content="width=device-width, initial-scale=1"),
                 tag("title", f"{title} - {TITLE}"),
                 void("link", rel="stylesheet", href="/ui/assets/console.css"),
                 # An icon of the console's own: without one the browser asks for
                 # /favicon.ico, a 404 on every page (an error in its console).
                 void("link", rel="icon", href="/ui/assets/icon.svg", type="image/svg+xml"),
                 *[tag("script", src=f"/ui/assets/{name}", defer="defer")
                   for name in scripts]])
    skip = tag("a", "Skip to content", href="#main", class_="skip")
    header = tag("header", tag("p", TITLE, class_="brand"), nav)
    main = tag("main", tag("h1", title), body, id="main")
    return "<!doctype html>" + tag("html", tag("head", head),
                                   tag("body", skip, header, main), lang="en")
