"""Times in messages a person reads: ISO 8601 UTC and "11 min ago", never epoch seconds.

Pure: the caller passes the time to compare with (the verifier's ``now``), so a
message depends on nothing but its inputs. Machine-readable output (JSON fields, the
audit log, EAR claims) keeps its numbers; only the words change.
"""

from __future__ import annotations

from datetime import UTC, datetime


def iso(epoch: float) -> str:
    """``2026-12-03T16:14:20Z``; an instant no calendar holds (a hostile exp of 10^30)
    as its number, named as such."""
    try:
        moment = datetime.fromtimestamp(int(epoch), UTC)
    except (OverflowError, OSError, ValueError):
        return f"{epoch} (seconds since 1970)"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def about(seconds: float) -> str:
    """A span rounded for a person: ``45 s``, ``11 min``, ``3 h 5 min``, ``2 d 4 h``."""
    whole = int(abs(seconds))
    if whole < 90:
        return f"{whole} s"
    minutes = (whole + 30) // 60
    if minutes < 90:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def relative(epoch: float, now: float) -> str:
    """``11 min ago``, ``in 5 min``, or ``now`` (under a second apart)."""
    delta = epoch - now
    if abs(delta) < 1:
        return "now"
    return f"in {about(delta)}" if delta > 0 else f"{about(delta)} ago"


def moment(epoch: float, now: float) -> str:
    """``2026-12-03T16:03:20Z (11 min ago)``: when, and how far from ``now``."""
    return f"{iso(epoch)} ({relative(epoch, now)})"
