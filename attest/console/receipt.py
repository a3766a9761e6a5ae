"""An inclusion receipt pasted on the Audit page, checked the way ``attest audit
check-proof`` checks one: against the log's own verifier key, never a key the receipt
names (it names none; its checkpoint's signature line names a key, which must be the
log's).

What the page takes, all of them holding the same receipt (attest.audit.proofs
InclusionProof JSON): the receipt itself (``GET /v1/audit/proof/inclusion``, ``attest
audit prove``, or the ``attest.audit`` claim of a result); a ``/v1/verify`` answer; or
the answer's ``result`` token. From a token only the receipt is taken: the result's
own signature is the relying party's to check (``attest result``), and nothing here
depends on it, since the receipt stands or falls with the log key alone.

Pure: text in, a :class:`Checked` out; the steps of the path are recomputed here from
the proof (attest.audit.merkle.inclusion_steps, the climb verify_inclusion decides on)
so that the page can show each sibling with its side and level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from attest import strictjson
from attest.artifact.model import unb64url
from attest.audit.merkle import Step, inclusion_steps
from attest.audit.note import Checkpoint, VerifierKey
from attest.audit.proofs import InclusionProof, parse_proof
from attest.errors import AttestError

# A /v1/verify answer holding a result whose receipt holds its proof: a few levels.
MAX_DEPTH = 8
MAX_REASON = 400  # characters of a refusal shown: messages may quote the receipt
LEFT, RIGHT = "left", "right"  # a Step's side


class NotAReceipt(Exception):
    """The text holds no inclusion receipt (said as :attr:`reason`)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Checked:
    valid: bool
    reason: str | None  # why not, when not valid
    proof: InclusionProof | None = None  # None: the text held no receipt
    head: Checkpoint | None = None  # the signed head it verified against, when valid
    steps: tuple[Step, ...] = ()
    reached: bytes | None = None  # the root the path climbs to (None: no path walked)


def check(text: str, key: VerifierKey | None) -> Checked:
    """``text``'s receipt checked against ``key`` (the log's); never raises for what the
    text holds."""
    try:
        proof = parse(text)
    except NotAReceipt as exc:
        return Checked(False, _bounded(exc.reason))
    steps, reached = walk(proof.leaf_hash, proof.index, proof.tree_size, proof.proof)
    if key is None:
        return Checked(False, "this service has no log key at hand: nothing can vouch for "
                       "a receipt", proof, None, steps, reached)
    try:
        head = proof.verify(key)
    except AttestError as exc:
        return Checked(False, _bounded(exc.message), proof, None, steps, reached)
    except UnicodeError:  # a checkpoint's text that is no UTF-8 is no signed text
        return Checked(False, "the checkpoint is not UTF-8 text", proof, None, steps, reached)
    return Checked(True, None, proof, head, steps, reached)


def parse(text: str) -> InclusionProof:
    """The inclusion proof ``text`` holds; NotAReceipt otherwise."""
    text = text.strip()
    if not text:
        raise NotAReceipt("the form holds no receipt")
    if not text.startswith(("{", "[", '"')):  # no JSON text a receipt could be in
        return _from_token(text)
    document = _json(text, "the receipt")
    if not isinstance(document, dict):
        raise NotAReceipt("the receipt is not a JSON object")
    if "type" not in document and isinstance(document.get("result"), str):
        return _from_token(document["result"])  # a /v1/verify answer
    return _proof(document)


def walk(leaf: bytes, index: int, size: int, proof: tuple[bytes, ...]
         ) -> tuple[tuple[Step, ...], bytes | None]:
    """Each step of climbing from ``leaf`` at ``index`` in a tree of ``size`` with
    ``proof`` (attest.audit.merkle.inclusion_steps), and the hash reached; no steps (and
    None) when the index is outside the tree. Where the proof is too long for the tree,
    the extra hashes are not steps: the verification refuses it (its reason says so)."""
    if not 0 <= index < size:
        return (), None
    steps, _ = inclusion_steps(leaf, index, size, proof)
    return tuple(steps), steps[-1].combined if steps else leaf


def _from_token(token: str) -> InclusionProof:
    parts = token.split(".")
    if len(parts) != 3:
        raise NotAReceipt("the text is neither a receipt (JSON) nor a result token "
                          "(three dot-separated parts)")
    try:
        claims = _json(unb64url(parts[1], "the result's claims").decode(), "the result's claims")
    except (AttestError, UnicodeDecodeError):
        raise NotAReceipt("the result's claims are not base64url JSON") from None
    submods = claims.get("submods") if isinstance(claims, dict) else None
    submod = submods.get("attest") if isinstance(submods, dict) else None
    receipt = submod.get("attest.audit") if isinstance(submod, dict) else None
    if not isinstance(receipt, dict):
        raise NotAReceipt("the result carries no audit receipt")
    return _proof(receipt)


def _proof(document: dict[str, Any]) -> InclusionProof:
    try:
        proof = parse_proof(document)
    except AttestError as exc:
        raise NotAReceipt(f"the text is not a receipt: {exc.message}") from None
    except UnicodeError:
        # JSON may escape a lone surrogate (a \u escape of D800-DFFF): no UTF-8 text.
        raise NotAReceipt("the receipt holds a string that is not UTF-8 text") from None
    if not isinstance(proof, InclusionProof):
        raise NotAReceipt("that is a consistency proof: an inclusion receipt is wanted")
    return proof


def _json(text: str, what: str) -> Any:
    try:
        return strictjson.loads(text, max_depth=MAX_DEPTH)
    except (ValueError, RecursionError) as exc:
        raise NotAReceipt(f"{what} is not JSON: {str(exc)[:120]}") from None


def _bounded(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON else reason[:MAX_REASON] + "..."
