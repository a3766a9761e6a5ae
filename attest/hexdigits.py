"""Bytes written as hex digits, for the policy file and the command line alike.

One syntax: hex digits only (no ``0x``, no separators). The error is ValueError, which
each caller turns into its own (the policy loader names the line, the CLI exits 2).
"""

from __future__ import annotations


def parse_hex(text: str, *, what: str = "hex", size: int | None = None,
              max_size: int | None = None) -> bytes:
    """Bytes from hex digits; exactly ``size`` bytes, or at most ``max_size``, when given."""
    digits = text.strip()
    if digits.lower().startswith("0x"):
        raise ValueError(f"expected {what} as hex digits without a 0x prefix")
    if any(c.isspace() for c in digits):
        raise ValueError(f"expected {what} as hex digits without spaces")
    try:
        value = bytes.fromhex(digits)
    except ValueError:
        raise ValueError(f"expected {what} as hex digits; {_excerpt(digits)} is not hex") from None
    if size is not None and len(value) != size:
        raise ValueError(f"expected {what} of {size} bytes ({2 * size} hex digits), "
                         f"found {len(value)} bytes")
    if max_size is not None and len(value) > max_size:
        raise ValueError(f"{what} is {len(value)} bytes; at most {max_size} fit")
    return value


def _excerpt(text: str, limit: int = 24) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
