"""``/ui/lineage``: an artifact's ancestry and descendants as a tree, each node accepted,
expired or revoked; "revoke this and its descendants" previews the cut, then an admin
confirms it.

The confirmation is the console's only write besides the session. It revokes the way
``POST /v1/revocations`` does (attest.audit.hooks.revoke_logged: the revocation, its
cascade, their seals and audit entries in one transaction, the entries naming
``admin:<token name>``). Admin tokens carry no scopes (attest.store.tokens): any token in
force may revoke through the API, and so any session may here. The POST is a form of the
session's own (CSRF field and Origin, attest.console.base.Console.own_form), its body
bounded and parsed strictly. Works without JavaScript: the page has no script.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from fastapi import FastAPI, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from attest.audit.hooks import revoke_logged
from attest.console import lineagetree
from attest.console.base import HEADERS, UI, Console, Session
from attest.console.html import Markup, join, tag, void
from attest.console.lineagetree import Branch, Cut, Lineage, Node
from attest.console.pages.fleet import when
from attest.errors import EnvironmentProblem, UsageError
from attest.server.admin import MAX_REASON, revoked_by
from attest.store import RevocationKind
from attest.store.schema import MAX_JTI

SECTION = "Lineage"
# What the API takes as a jti (opsschema: 1..MAX_JTI characters, no NUL).
JTI_PATTERN = r"^[^\x00]+$"
# The confirm form: a CSRF token (64 hex) and a reason of MAX_REASON characters, each
# percent-encoded at most as "%XX" per UTF-8 byte (4 bytes a character at most).
CONFIRM_BODY_BYTES = 12 * MAX_REASON + 256
SHORT = 12


def mount(app: FastAPI, console: Console) -> None:
    jti_path = Path(min_length=1, max_length=MAX_JTI, pattern=JTI_PATTERN)

    @app.get(f"{UI}/lineage", include_in_schema=False)
    async def lookup(request: Request,
                     jti: str = Query("", max_length=MAX_JTI, pattern=r"^[^\x00]*$")
                     ) -> Response:
        who = await console.require(request)
        if isinstance(who, Response):
            return who
        wanted = jti.strip()
        if "/" in wanted:  # no path can carry it (see address): shown here
            return await show(who, wanted)
        if wanted:  # the form's answer: the artifact's own page
            return RedirectResponse(address(wanted), status_code=303, headers=HEADERS)
        return console.render(who, "Lineage", _lookup_form(""), section=SECTION)

    @app.get(UI + "/lineage/{jti}", include_in_schema=False)
    async def tree(request: Request, jti: str = jti_path) -> Response:
        who = await console.require(request)
        if isinstance(who, Response):
            return who
        return await show(who, jti)

    async def show(who: Session, jti: str) -> Response:
        found = await run_in_threadpool(lineagetree.lineage, console.store, jti, console.now())
        if found is None:
            return _unknown(console, who, jti)
        return console.render(who, f"Lineage of {short(jti)}", _tree_page(found, console.now()),
                              section=SECTION)

    @app.get(UI + "/lineage/{jti}/revoke", include_in_schema=False)
    async def preview(request: Request, jti: str = jti_path) -> Response:
        who = await console.require(request)
        if isinstance(who, Response):
            return who
        found = await run_in_threadpool(lineagetree.cut, console.store, jti, console.now())
        if found is None:
            return _unknown(console, who, jti)
        return _preview(console, who, found, None)

    @app.post(UI + "/lineage/{jti}/revoke", include_in_schema=False)
    async def confirm(request: Request, jti: str = jti_path) -> Response:
        who = await console.require(request)
        if isinstance(who, Response):
            return who  # no session: to the login form, nothing revoked
        fields = await console.own_form(request, who, {"csrf", "reason"}, CONFIRM_BODY_BYTES)
        if fields is None:
            return console.render(who, "Refused", tag(
                "p", "The form is not this session's: nothing was revoked. ",
                tag("a", "Back to the preview", href=address(jti) + "/revoke")),
                section=SECTION, status=403)
        found = await run_in_threadpool(lineagetree.cut, console.store, jti, console.now())
        if found is None:
            return _unknown(console, who, jti)
        reason = fields["reason"]
        problem = reason_problem(reason)
        if problem is not None:
            return _preview(console, who, found, problem, status=422)
        service = console.service
        try:
            await run_in_threadpool(
                revoke_logged, service.store, service.log, RevocationKind.ARTIFACT, jti,
                reason, now=console.now(), verifier_id=revoked_by(service, who.info.name))
        except (UsageError, EnvironmentProblem) as exc:
            # Nothing was revoked (one transaction); say why, without internals.
            return console.render(who, "Not revoked", tag(
                "p", "Nothing was revoked: ", exc.message, role="alert", class_="error"),
                section=SECTION, status=503 if isinstance(exc, EnvironmentProblem) else 422)
        return RedirectResponse(address(jti), status_code=303, headers=HEADERS)


def address(jti: str) -> str:
    """The artifact's lineage page. A jti is the issuer's namespace, a dot, then whatever
    the host chose (the verifier checks the prefix only): one holding a "/" cannot be a
    path segment (the server decodes %2F before routing), so its page is the lookup's,
    ``/ui/lineage?jti=``, and it is revoked through an ancestor or the API."""
    if "/" in jti:
        return f"{UI}/lineage?" + urlencode({"jti": jti})
    return f"{UI}/lineage/{quote(jti, safe='')}"


def short(jti: str) -> str:
    """A jti as a node's label: a host's jtis share their namespace prefix (the issuer's)
    and differ in the random part after it, so the label keeps both ends."""
    return jti if len(jti) <= SHORT + 4 else f"{jti[:4]}\u2026{jti[-SHORT + 4:]}"


def reason_problem(reason: str) -> str | None:
    """Why ``reason`` is not one the API would take (attest.server.admin.revoke), or None."""
    if not reason.strip():
        return "A revocation needs a reason."
    if len(reason) > MAX_REASON:
        return f"The reason is {len(reason)} characters; at most {MAX_REASON}."
    if "\x00" in reason or "\ufffd" in reason:
        # NUL: the store's text cannot hold it; U+FFFD: the form's bytes were not UTF-8.
        return "The reason holds a character the store cannot keep."
    return None


def _unknown(console: Console, who: Session, jti: str) -> Response:
    return console.render(who, "Not found", join([
        tag("p", "No accepted artifact has the jti ", tag("code", jti), "."),
        _lookup_form(jti)]), section=SECTION, status=404)


def _lookup_form(jti: str) -> Markup:
    return tag("form", tag("label", "Artifact jti", for_="jti"),
               void("input", id="jti", name="jti", type="text", value=jti or None,
                    maxlength=str(MAX_JTI), required="required", autocomplete="off",
                    spellcheck="false"),
               tag("button", "Show lineage", type="submit"),
               method="get", action=f"{UI}/lineage", class_="filter")


def _state(node: Node) -> Markup:
    return tag("span", node.state, class_=f"state state-{node.state}")


def _revocation_text(node: Node) -> str | None:
    rev = node.revocation
    if rev is None:
        return None
    if (rev.kind, rev.subject) != (RevocationKind.ARTIFACT, node.jti):
        what = f"{rev.kind.value} {rev.subject}"  # an ancestor, its key, AK, host...
    elif rev.cascaded_from is not None:
        what = f"with its ancestor {short(rev.cascaded_from)}"
    else:
        what = "itself"
    return f"revoked ({what}): {rev.reason}"


def _label(node: Node, current: bool) -> Markup:
    """One node's line: its jti (short, the whole in the title), state, subject, host."""
    name = tag("code", short(node.jti), title=node.jti)
    link = name if current else tag("a", name, href=address(node.jti))
    why = _revocation_text(node)
    return join([link, " ", _state(node),
                 tag("span", f" {node.subject} on {node.host}", class_="who"),
                 tag("span", f" \u2014 {why}", class_="why") if why else None])


def _branch(branch: Branch, current: bool = False) -> Markup:
    node = branch.node
    kids = [_branch(child) for child in branch.children]
    if branch.hidden:
        kids.append(tag("li", f"{branch.hidden} more not shown", class_="more"))
    return tag("li", _label(node, current), tag("ul", *kids) if kids else None,
               data_jti=node.jti, data_state=node.state,
               aria_current="true" if current else None)


def _tree(found: Lineage) -> Markup:
    inner = _branch(found.viewed, current=True)
    for node in reversed(found.ancestors):
        inner = tag("li", _label(node, False), tag("ul", inner),
                    data_jti=node.jti, data_state=node.state)
    if found.missing_parent is not None:
        inner = tag("li", tag("span", "parent ", tag("code", short(found.missing_parent),
                                                     title=found.missing_parent),
                              " not held by this store"), tag("ul", inner), class_="more")
    elif found.older_hidden:
        inner = tag("li", "older ancestors not shown", tag("ul", inner), class_="more")
    return tag("ul", inner, class_="tree", aria_label="Lineage tree")


def _tree_page(found: Lineage, now: int) -> Markup:
    node = found.viewed.node
    facts = tag("dl", *[join([tag("dt", k), tag("dd", v)]) for k, v in (
        ("jti", tag("code", node.jti)),
        ("State", _state(node)),
        ("Subject", node.subject),
        ("Host", tag("a", node.host, href=f"{UI}/hosts/{quote(node.host, safe='')}")),
        ("Accepted", when(node.accepted_at)),
        ("Expires" if node.exp > now else "Expired", when(node.exp)),
        ("Revocation", _revocation_text(node) or "none"),
    )], class_="facts")
    legend = tag("p", "Each node: its jti, its state (accepted; expired: past its exp; "
                      "revoked: itself, an ancestor, its key, AK or host revoked), its "
                      "subject and host. The artifact viewed is marked.", class_="legend")
    revoke = tag("p", tag("a", "Revoke this and its descendants\u2026",
                          href=address(node.jti) + "/revoke", id="revoke")) \
        if "/" not in node.jti else tag(
            "p", "This jti holds a \"/\", which no revoke address can carry: revoke its "
                 "parent here, or this artifact with POST /v1/revocations.")
    return join([_lookup_form(""), facts, revoke,
                 tag("section", tag("h2", "Ancestry and descendants", id="tree-title"),
                     legend, _tree(found), aria_labelledby="tree-title")])


def _preview(console: Console, who: Session, found: Cut, problem: str | None,
             status: int = 200) -> Response:
    node = found.node
    fresh = sum(1 for j in found.shown if j not in found.already)
    items = [tag("li", tag("code", j),
                 " (already revoked: its reason and time stand)" if j in found.already
                 else None, data_jti=j,
                 data_revoked="true" if j in found.already else "false")
             for j in found.shown]
    left = found.total - len(found.shown)
    if left:
        items.append(tag("li", f"{left} more not shown", class_="more"))
    count = tag("p", f"Revoking {node.jti} cuts {found.total} artifact"
                     f"{'' if found.total == 1 else 's'}: it and every descendant. "
                     f"{len(found.already)} of those listed are revoked already.",
                id="cut-count")
    note = tag("p", problem, role="alert", class_="error") if problem else None
    form = tag("form", console.csrf_field(who),
               tag("label", "Reason", for_="reason"),
               void("input", id="reason", name="reason", type="text",
                    maxlength=str(MAX_REASON), required="required", autocomplete="off"),
               tag("button", f"Revoke {found.total} artifact"
                             f"{'' if found.total == 1 else 's'}", type="submit"),
               method="post", action=address(node.jti) + "/revoke", id="confirm",
               class_="confirm")
    back = tag("p", tag("a", "Back to the lineage, revoking nothing",
                        href=address(node.jti)))
    caution = tag("p", "The cut is computed again when you confirm: a descendant accepted "
                       "meanwhile is revoked too. Revocation cannot be undone."
                  if fresh or left else "Everything listed is revoked already; "
                  "confirming records the audit entries again.")
    body = join([note, count, tag("ul", *items, id="cut", aria_label="What would be cut"),
                 caution, form, back])
    return console.render(who, f"Revoke {short(node.jti)}?", body, section=SECTION,
                          status=status)
