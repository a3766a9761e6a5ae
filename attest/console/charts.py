"""Decisions per minute as a stacked bar chart: inline SVG built with attest.console.html
(every label escaped, no script, no inline style: colours are classes in console.css),
with a table of the same counts under it as its text alternative.

The hour is 60 one-minute bars. The day's 1440 minutes would be bars under a pixel wide
at 1280x800, so the day is 96 bars of 15 minutes, each bar's height the mean decisions
per minute over its 15 minutes, and its table has one row an hour (counts).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from attest.console.decisionlog import RESULTS, Tally
from attest.console.html import Markup, join, tag
from attest.timetext import iso

BY = ("result", "reason")
TOP_REASONS = 5
OTHER = "other"
WIDTH, HEIGHT = 960, 220
LEFT, BOTTOM, TOP = 56, 28, 12


@dataclass(frozen=True)
class Series:
    names: tuple[str, ...]  # in drawing order, bottom up
    classes: tuple[str, ...]  # each name's CSS class


@dataclass(frozen=True)
class Bucket:
    start: int  # epoch seconds
    counts: Counter[str]  # series name -> decisions


def series(tally: Tally, by: str) -> Series:
    """By result: accepted, denied. By reason: the window's most frequent reasons of
    denials, then the rest as "other" (only when there is a rest)."""
    if by == "result":
        return Series(RESULTS, tuple(f"series-{r}" for r in RESULTS))
    total: Counter[str] = Counter()
    for counts in tally.minutes.values():
        total.update(counts.reasons)
    ranked = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))
    names = [name for name, _ in ranked[:TOP_REASONS]]
    if len(ranked) > TOP_REASONS:
        names.append(OTHER)
    return Series(tuple(names), tuple(f"series-{i}" for i in range(len(names))))


def buckets(tally: Tally, by: str, shown: Series, width: int) -> list[Bucket]:
    """The tally in buckets of ``width`` minutes, oldest first, counted by ``shown``."""
    named = set(shown.names)
    out: list[Bucket] = []
    for first in range(tally.first, tally.last + 1, width):
        counts: Counter[str] = Counter()
        for minute in range(first, min(first + width, tally.last + 1)):
            found = tally.minutes.get(minute)
            if found is None:
                continue
            if by == "result":
                counts.update(found.results)
            else:
                for reason, n in found.reasons.items():
                    counts[reason if reason in named else OTHER] += n
        out.append(Bucket(first * 60, counts))
    return out


def _clock(seconds: int) -> str:
    return iso(seconds)[11:16]


def _rate(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if value else "0"


def svg(label: str, bars: list[Bucket], shown: Series, *, per: int, tick_every: int) -> Markup:
    """The bars, stacked bottom up in ``shown``'s order; height is decisions per minute
    (a bucket's count over its ``per`` minutes); a time label every ``tick_every`` bars."""
    rates = [sum(b.counts[n] for n in shown.names) / per for b in bars]
    peak = max(rates, default=0.0) or 1.0
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(bars), 1)
    parts: list[Markup] = [
        tag("line", x1=str(LEFT), y1=str(TOP + plot_h), x2=str(WIDTH - 8),
            y2=str(TOP + plot_h), class_="axis"),
        tag("text", _rate(peak) + "/min", x=str(LEFT - 6), y=str(TOP + 10),
            class_="tick", text_anchor="end"),
        tag("text", "0", x=str(LEFT - 6), y=str(TOP + plot_h), class_="tick",
            text_anchor="end"),
    ]
    for i, bar in enumerate(bars):
        x = LEFT + i * step
        base = float(TOP + plot_h)
        pieces: list[Markup] = []
        for name, cls in zip(shown.names, shown.classes, strict=True):
            if not bar.counts[name]:
                continue
            h = bar.counts[name] / per / peak * plot_h
            base -= h
            pieces.append(tag("rect", x=f"{x + 0.5:.2f}", y=f"{base:.2f}",
                              width=f"{max(step - 1, 0.5):.2f}", height=f"{h:.2f}",
                              class_=f"bar {cls}"))
        said = ", ".join(f"{bar.counts[n]} {n}" for n in shown.names if bar.counts[n])
        title = tag("title", f"{_clock(bar.start)} UTC: {said or 'none'}")
        parts.append(tag("g", title, *pieces))
        if i % tick_every == 0:
            parts.append(tag("text", _clock(bar.start), x=f"{x:.2f}", y=str(HEIGHT - 8),
                             class_="tick"))
    return tag("svg", *parts, viewBox=f"0 0 {WIDTH} {HEIGHT}", role="img",
               aria_label=label, class_="chart", focusable="false")


def summary(what: str, bars: list[Bucket], shown: Series) -> str:
    """The chart's words (its aria-label): totals per series and the busiest bar."""
    totals: Counter[str] = Counter()
    for bar in bars:
        totals.update(bar.counts)
    said = ", ".join(f"{totals[n]} {n}" for n in shown.names) or "no denials"
    busiest = max(bars, key=lambda b: sum(b.counts.values()), default=None)
    peak = "" if busiest is None or not busiest.counts else (
        f"; the most at {_clock(busiest.start)} UTC ({sum(busiest.counts.values())})")
    return f"{what}: {said}{peak}."


def table(caption: str, rows: list[Bucket], shown: Series, first_column: str) -> Markup:
    """The counts as a table: one row a bucket, one column a series, and the total."""
    head = tag("tr", tag("th", first_column, scope="col"),
               *[tag("th", n, scope="col") for n in shown.names],
               tag("th", "total", scope="col"))
    body = [tag("tr", tag("th", tag("time", _clock(r.start), datetime=iso(r.start)),
                          scope="row"),
                *[tag("td", r.counts[n]) for n in shown.names],
                tag("td", sum(r.counts[n] for n in shown.names)))
            for r in rows]
    return tag("div", tag("table", tag("caption", caption), tag("thead", head),
                          tag("tbody", *body)),
               class_="chart-table", tabindex="0", role="region", aria_label=caption)


def legend(shown: Series) -> Markup:
    return tag("ul", *[tag("li", tag("span", "", class_=f"swatch {cls}"), name)
                       for name, cls in zip(shown.names, shown.classes, strict=True)],
               class_="legend")


def figure(ident: str, title: str, tally: Tally, by: str, *, per: int, tick_every: int,
           table_per: int, note: str) -> Markup:
    """One chart: a caption, the legend, the SVG, and the table of the same counts
    (``table_per`` minutes a row)."""
    shown = series(tally, by)
    bars = buckets(tally, by, shown, per)
    words = summary(f"{title}, by {by}", bars, shown)
    rows = bars if table_per == per else buckets(tally, by, shown, table_per)
    unit = "minute" if table_per == 1 else "hour" if table_per == 60 else f"{table_per} minutes"
    return tag("figure",
               tag("figcaption", join([tag("strong", title), f" by {by}. ", note])),
               legend(shown) if shown.names else tag("p", "No denials in this window."),
               svg(words, bars, shown, per=per, tick_every=tick_every),
               table(f"{title}, by {by}: decisions per {unit} (UTC)", rows, shown,
                     "From (UTC)"),
               id=ident, class_="chart")
