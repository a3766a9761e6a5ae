"""What reaches a person's terminal: every string from evidence, rendered visibly.

Subjects, argv, log descriptions, certificate subjects and denial messages are
chosen by whoever made the evidence. Printed as they are, a line feed forges an
extra ``accepted:`` line, an ESC sequence rewrites the screen, and a bidi
override reorders what a person reads. :func:`visible` writes each character
that is not printable (C0 and C1 controls, DEL, line and paragraph separators,
bidi and other format characters, lone surrogates) as a Python-style escape.
JSON output needs none of this: json.dumps escapes all of them (ensure_ascii).
"""

from __future__ import annotations


def visible(value: object) -> str:
    """``value`` as text on one line, every non-printable character as \\xNN or \\uNNNN."""
    text = str(value)
    if text.isprintable():  # the common case, checked in C
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
