"""Chart geometry for server-side SVG: numbers in, coordinates out; the templates draw.

No chart library and no script: the page is plain HTML and SVG, so it works offline,
on a slow connection and on a phone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from service import i18n

# Okabe-Ito: told apart by people with colour-blindness too.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00")
TOTAL_COLOUR = "#1f2933"
DEPARTED_COLOUR = "#D55E00"
# Summaries further apart than this are drawn as separate stretches with a break between.
GAP = timedelta(days=2)


def nice_ticks(maximum: float, count: int = 5) -> list[int]:
    """Round tick values from 0 to at least `maximum`."""
    if maximum <= 0:
        return [0, 1]
    raw = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    step = max(1, int(step))
    top = int(math.ceil(maximum / step)) * step
    return list(range(0, top + 1, step))


def thousands(value: float) -> str:
    return i18n.number(round(value))


def site_colour(index: int) -> str:
    """The colour of the site at `index` (in the summary's order), the same in every chart."""
    return PALETTE[index % len(PALETTE)]


@dataclass
class Bar:
    label: str
    value: int
    percent: float
    colour: str
    capacity_percent: float | None = None


def bar_chart(rows: list[tuple[str, int, int | None]]) -> list[Bar]:
    """One bar per (label, people, capacity), as a share of the largest; a mark where the
    capacity is. Drawn as HTML text over an SVG bar of that share, so the bars stretch to
    any screen while the text stays its readable size."""
    top = nice_ticks(max([v for _, v, _ in rows] + [c or 0 for _, _, c in rows] + [1]), 4)[-1]
    return [
        Bar(
            label=label,
            value=value,
            percent=round(100 * value / top, 2),
            colour=site_colour(index),
            capacity_percent=round(100 * capacity / top, 2) if capacity else None,
        )
        for index, (label, value, capacity) in enumerate(rows)
    ]


@dataclass
class Series:
    name: str
    colour: str
    dashed: bool
    # One polyline per stretch of time (no line across a break).
    lines: list[str]
    # The value at the summary shown (or the newest).
    shown: int


@dataclass
class Mark:
    x: float
    y: float
    href: str
    title: str
    current: bool


@dataclass
class LineChart:
    width: int
    height: int
    left: int
    top: int
    bottom: int
    series: list[Series]
    y_ticks: list[tuple[float, str]]
    x_ticks: list[tuple[float, str]]
    breaks: list[float]
    marks: list[Mark] = field(default_factory=list)
    current_x: float | None = None


class TimeAxis:
    """Time to x, with long gaps between summaries collapsed into a narrow break, so a
    replay of 2023 and this week's summaries both get room."""

    BREAK = 18

    def __init__(self, moments: list[datetime], left: float, right: float) -> None:
        self.stretches: list[tuple[datetime, datetime]] = []
        for moment in moments:
            if self.stretches and moment - self.stretches[-1][1] <= GAP:
                self.stretches[-1] = (self.stretches[-1][0], moment)
            else:
                self.stretches.append((moment, moment))
        durations = [(end - start).total_seconds() for start, end in self.stretches]
        total = sum(durations) or 1.0
        weights = [max(d, total * 0.06) for d in durations]
        usable = right - left - self.BREAK * (len(self.stretches) - 1)
        self.spans: list[tuple[float, float]] = []
        x = left
        for weight in weights:
            width = usable * weight / sum(weights)
            self.spans.append((x, x + width))
            x += width + self.BREAK

    def stretch_of(self, moment: datetime) -> int:
        for index, (start, end) in enumerate(self.stretches):
            if start <= moment <= end:
                return index
        return len(self.stretches) - 1

    def x(self, moment: datetime) -> float:
        index = self.stretch_of(moment)
        start, end = self.stretches[index]
        x0, x1 = self.spans[index]
        if end == start:
            return (x0 + x1) / 2
        return x0 + (x1 - x0) * (moment - start).total_seconds() / (end - start).total_seconds()

    def breaks(self) -> list[float]:
        return [self.spans[i][1] + self.BREAK / 2 for i in range(len(self.spans) - 1)]

    def ticks(self) -> list[tuple[float, str]]:
        """Day labels (UTC), as many as fit in each stretch; the year on each stretch's first."""
        found = []
        for index, (start, end) in enumerate(self.stretches):
            x0, x1 = self.spans[index]
            fit = max(1, int((x1 - x0) // 70))
            days = max(1, (end - start).days + 1)
            step = max(1, math.ceil(days / fit))
            day = datetime(start.year, start.month, start.day, tzinfo=UTC)
            if day < start:
                day += timedelta(days=1)
            first = True
            while day <= end:
                label = i18n.moment(day, "d MMM y" if first else "d MMM", UTC)
                found.append((self.x(day), label))
                first = False
                day += timedelta(days=step)
            if first:  # no midnight inside the stretch: label its start
                found.append((self.x(start), i18n.moment(start, "d MMM y", UTC)))
        return found


def line_chart(
    moments: list[datetime],
    series: list[tuple[str, list[int], str, bool]],
    *,
    links: list[str],
    titles: list[str],
    current: datetime | None,
    width: int = 760,
    height: int = 300,
) -> LineChart | None:
    """Lines over time, one per (name, values, colour, dashed); marks on the first series
    link to each moment. None when there is nothing to draw."""
    if not moments:
        return None
    left, right, top, bottom = 64, width - 16, 16, height - 34
    axis = TimeAxis(moments, left, right)
    maximum = max((max(values) for _, values, _, _ in series if values), default=1)
    y_ticks = nice_ticks(maximum)
    peak = y_ticks[-1] or 1

    def y(value: int) -> float:
        return bottom - (bottom - top) * value / peak

    shown_at = moments.index(current) if current in moments else len(moments) - 1
    drawn = []
    for name, values, colour, dashed in series:
        lines: dict[int, list[str]] = {}
        for moment, value in zip(moments, values, strict=True):
            lines.setdefault(axis.stretch_of(moment), []).append(
                f"{axis.x(moment):.1f},{y(value):.1f}"
            )
        drawn.append(
            Series(
                name=name,
                colour=colour,
                dashed=dashed,
                lines=[" ".join(points) for _, points in sorted(lines.items())],
                shown=values[shown_at] if values else 0,
            )
        )
    first_values = series[0][1]
    marks = [
        Mark(
            x=axis.x(moment),
            y=y(value),
            href=href,
            title=title,
            current=moment == current,
        )
        for moment, value, href, title in zip(moments, first_values, links, titles, strict=True)
    ]
    return LineChart(
        width=width,
        height=height,
        left=left,
        top=top,
        bottom=bottom,
        series=drawn,
        y_ticks=[(y(t), thousands(t)) for t in y_ticks],
        x_ticks=axis.ticks(),
        breaks=axis.breaks(),
        marks=marks,
        current_x=axis.x(current) if current is not None and current in moments else None,
    )
