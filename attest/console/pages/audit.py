"""``/ui/audit``: the audit log's signed head, its last whole-log verification, and a
form that checks an inclusion receipt server-side (attest.console.receipt) and shows
its path.

The head is the latest signed one, opened with the log's own key before its root is
shown: a head row the key did not sign (the database is writable by others) is shown
as refused, not as the log's root. The last verification is what ``attest audit
verify`` recorded in the store (attest.audit.verifications), or "never".
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from attest.audit import verifications
from attest.audit.log import AuditLog, SignedHead
from attest.audit.note import Checkpoint
from attest.console import session
from attest.console.base import UI, Console, Session, form_fields, is_form, same_origin
from attest.console.html import Markup, join, tag
from attest.console.pages.fleet import when
from attest.console.receipt import Checked, check
from attest.errors import AttestError, ProofError
from attest.server.bodies import RequestRefused, read_body

TITLE = "Audit log"
SECTION = "Audit"
# A receipt with its entry is a few kilobytes; a /v1/verify answer around it, its
# result token and the form's percent-encoding (up to three bytes a character) stay
# well under this.
RECEIPT_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class HeadView:
    signed: SignedHead | None
    head: Checkpoint | None  # the signed head opened with the log key
    refused: str | None  # why the latest head row did not open, when it did not
    key: str | None  # the log key's name and ID
    entries: int | str  # the log's size now, or why it could not be read
    verified: verifications.Verification | str | None  # str: why it could not be read


def mount(app: FastAPI, console: Console) -> None:
    verifications.ensure(console.store)  # the table an `attest audit verify` fills

    @app.get(f"{UI}/audit", include_in_schema=False)
    async def audit(request: Request) -> Response:
        who = await console.require(request)
        if isinstance(who, Response):
            return who
        view = await run_in_threadpool(head_view, console)
        return page(console, who, view, None, "")

    @app.post(f"{UI}/audit/receipt", include_in_schema=False)
    async def receipt(request: Request) -> Response:
        who = await console.require(request)
        if isinstance(who, Response):
            return who
        if not same_origin(request):
            return refused(console, who, 403, "The form is not this console's.")
        try:
            body = await read_body(request, RECEIPT_BODY_BYTES)
        except RequestRefused as exc:
            return refused(console, who, exc.status,
                           f"The receipt was not read: {exc.message} (a receipt is a few "
                           "kilobytes; paste one receipt).")
        fields = form_fields(body, {"csrf", "receipt"}) if is_form(request) else None
        if fields is None:
            return refused(console, who, 400, "The form could not be read: it wants exactly "
                           "its two fields, form-encoded.")
        if not session.csrf_matches(console.key, who.cookie, fields["csrf"]):  # Origin: above
            return refused(console, who, 403, "The form is not this session's.")
        text = fields["receipt"]
        view = await run_in_threadpool(head_view, console)
        log = console.service.log
        checked = await run_in_threadpool(check, text, log.verifier_key)
        checked = await run_in_threadpool(held, log, checked)
        return page(console, who, view, checked, text)


def held(log: AuditLog, checked: Checked) -> Checked:
    """``checked`` refused unless this log holds the tree its receipt was signed over.
    The key's signature says the key signed that head, not that this log is its tree: a
    database restored from an older copy, or a second log given the same key, answers
    receipts the key signed for a tree that is not (or no longer) this one. Blocking."""
    proof = checked.proof
    if not checked.valid or proof is None:
        return checked
    try:
        size = log.size()
        if proof.tree_size > size:
            why = (f"the log key signed this receipt's head at size {proof.tree_size}, but "
                   f"this log holds {size} entries: it is not this log's tree (a log "
                   "restored from an older copy, or another log under the same key)")
        elif log.root(proof.tree_size) != proof.root:
            why = (f"this log's root at size {proof.tree_size} is not the root of the "
                   "receipt's signed head: the key signed another tree (a forked or "
                   "rewritten log)")
        else:
            return checked
    except AttestError as exc:
        why = f"this log could not be read to compare the receipt with: {exc.message}"
    return replace(checked, valid=False, reason=why, head=None)


def head_view(console: Console) -> HeadView:
    """The latest signed head, opened with the log key; blocking (store reads). What
    the database holds is hostile: a head the key did not sign, or a row changed
    outside attest (attest.store.rowtypes), is said on the page, never shown as the
    log's."""
    log = console.service.log
    key = log.verifier_key
    signed, head, refused_because = None, None, None
    try:
        signed = log.latest_head()
        if signed is not None:
            if key is None:
                raise ProofError("this service has no log key at hand to check it")
            head = key.open(signed.note)
            if head.size != signed.size:
                raise ProofError(f"it is stored as size {signed.size} but signs size "
                                 f"{head.size}")
    except AttestError as exc:
        head, refused_because = None, exc.message
    try:
        entries: int | str = log.size()
    except AttestError as exc:
        entries = f"unreadable: {exc.message}"
    try:
        verified: verifications.Verification | str | None = verifications.last(console.store)
    except AttestError as exc:
        verified = f"the recorded verification is unreadable: {exc.message}"
    named = None if key is None else f"{key.name} (key ID {key.key_id.hex()})"
    return HeadView(signed, head, refused_because, named, entries, verified)


def page(console: Console, who: Session, view: HeadView, checked: Checked | None,
         text: str) -> Response:
    body = join([_head(view), _receipt_form(console, who, text),
                 None if checked is None else _result(checked)])
    return console.render(who, TITLE, body, section=SECTION)


def refused(console: Console, who: Session, status: int, message: str) -> Response:
    body = join([tag("p", message, role="alert", class_="error"),
                 tag("p", tag("a", "Back to the audit log", href=f"{UI}/audit"))])
    return console.render(who, TITLE, body, section=SECTION, status=status)


def _head(view: HeadView) -> Markup:
    def row(label: str, field: str, value: Markup | str | int | None) -> Markup:
        return join([tag("dt", label), tag("dd", value, data_field=field)])

    if view.signed is None and view.refused is None:
        size: Markup | str | int = "no head signed yet"
        root: Markup | str = "none"
        signed_at: Markup | str = "never"
    elif view.head is None or view.signed is None:
        size = "unreadable" if view.signed is None else view.signed.size
        root = tag("span", f"refused: the latest head is not one the log key signed "
                   f"({view.refused})", class_="state state-untrusted")
        signed_at = "unknown" if view.signed is None else when(view.signed.signed_at)
    else:
        size, signed_at = view.head.size, when(view.signed.signed_at)
        root = tag("code", view.head.root.hex(), class_="hash")
    rows = join([
        row("Signed size", "size", size),
        row("Root (SHA-256, hex)", "root", root),
        row("Signed at", "signed-at", signed_at),
        row("Signed by", "key", view.key or "no log key at hand"),
        row("Entries now", "entries", view.entries),
        row("Last verification", "verified", _verified(view.verified)),
    ])
    return tag("section", tag("h2", "Signed head", id="head-title"),
               tag("dl", rows, id="head", class_="facts"), aria_labelledby="head-title")


def _verified(done: verifications.Verification | str | None) -> Markup:
    if isinstance(done, str):
        return tag("span", done, class_="state state-untrusted")
    if done is None:
        return join(["never on this deployment: ", tag("code", "attest audit verify"),
                     " records its result here"])
    if done.valid:
        return join([tag("span", "valid", class_="state state-trusted"), " at ",
                     when(done.checked_at), f": {done.entries} entries and {done.heads} "
                     "heads recomputed"])
    more = f" ({done.findings - 1} more findings)" if done.findings > 1 else ""
    return join([tag("span", "invalid", class_="state state-untrusted"), " at ",
                 when(done.checked_at), ": ", done.problem, more])


def _receipt_form(console: Console, who: Session, text: str) -> Markup:
    hint = tag("p", "A receipt as ", tag("code", "GET /v1/audit/proof/inclusion"), " or ",
               tag("code", "attest audit prove"), " gives it, a ", tag("code", "/v1/verify"),
               " answer, or its result token. It is checked here against this log's own "
               "key, never a key the receipt names.", id="receipt-hint")
    return tag("section", tag("h2", "Check an inclusion receipt", id="receipt-title"),
               tag("form", console.csrf_field(who),
                   tag("label", "Inclusion receipt", for_="receipt-text"),
                   tag("textarea", text, id="receipt-text", name="receipt", rows="10",
                       required="required", spellcheck="false",
                       aria_describedby="receipt-hint"),
                   hint, tag("button", "Check receipt", type="submit"),
                   id="receipt", method="post", action=f"{UI}/audit/receipt"),
               aria_labelledby="receipt-title")


def _result(checked: Checked) -> Markup:
    verdict = "valid" if checked.valid else "not valid"
    said = [tag("h2", f"Receipt: {verdict}", id="result-title"),
            tag("p", tag("span", verdict, class_="state state-"
                         + ("trusted" if checked.valid else "untrusted")),
                None if checked.valid else join([": ", tag("span", checked.reason,
                                                            id="receipt-reason")]),
                class_="verdict", role="status")]
    proof = checked.proof
    if proof is not None:
        facts = [("Entry index", str(proof.index)), ("Tree size", str(proof.tree_size)),
                 ("Leaf hash", tag("code", proof.leaf_hash.hex(), class_="hash")),
                 ("Root reached" if checked.valid else "Path ends at",
                  "no path: the index is outside the tree"
                  if checked.reached is None
                  else tag("code", checked.reached.hex(), class_="hash")),
                 ("Root the receipt names", tag("code", proof.root.hex(), class_="hash"))]
        if checked.head is not None:
            facts.append(("Signed head", f"{checked.head.origin}, size {checked.head.size}"))
        said.append(tag("dl", *[join([tag("dt", k), tag("dd", v)]) for k, v in facts],
                        class_="facts"))
        said.append(_path(checked))
        if proof.entry is not None:
            said.append(tag("details", tag("summary", "The entry"),
                            tag("pre", proof.entry.decode("utf-8", errors="replace"))))
    return tag("section", *said, id="receipt-result",
               data_valid="true" if checked.valid else "false",
               aria_labelledby="result-title")


def _path(checked: Checked) -> Markup:
    """The climb from the leaf to the root: the leaf, each sibling met (its level and
    side, and the hash of the two), the root reached. A tree of one entry has no
    siblings: the leaf is the root."""
    proof = checked.proof
    assert proof is not None  # noqa: S101 - only called with a receipt
    items = [tag("li", "the leaf (level 0) ", tag("code", proof.leaf_hash.hex(), class_="hash"),
                 data_step="leaf")]
    items += [tag("li", f"level {step.level}: sibling on the {step.side} ",
                  tag("code", step.sibling.hex(), class_="hash"), ", giving ",
                  tag("code", step.combined.hex(), class_="hash"),
                  data_step="sibling", data_level=str(step.level), data_side=step.side)
              for step in checked.steps]
    # Not the root unless the receipt holds: then it is the signed head's root.
    ends = "the root reached " if checked.valid else "the path ends at "
    items.append(tag("li", ends, tag("code", checked.reached.hex(), class_="hash"),
                     data_step="root") if checked.reached is not None
                 else tag("li", "no root reached: the index is outside the tree",
                          data_step="root"))
    return join([tag("h3", "Path from the leaf to the root", id="path-title"),
                 tag("ol", *items, id="path", aria_labelledby="path-title")])
