"""The sites on a map, for the dashboard: numbers in, SVG coordinates out; the template
draws. No tiles and no script: country outlines from Natural Earth ship with the package
(geodata/outlines.json, public domain), so the map works offline like the charts.

Each site is a circle whose area is its people waiting, coloured by the most serious of
its flags; a site whose figure readers may not see is a small hollow ring (its size would
give the figure away). Coordinates are the sites' current ones; figures are those of the
summary on the page.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

OUTLINES = Path(__file__).with_name("geodata") / "outlines.json"
WIDTH = 640
MIN_SPAN_DEGREES = 1.6  # the map shows at least this much, so borders give context
MARGIN_DEGREES = 0.25
SMALLEST, LARGEST = 6.0, 28.0  # circle radii (px)
CHARACTER = 7.8  # about how wide a character of a name is drawn (px)
GRID = 24  # candidate places for a country's name, this many across

# The most serious flag first; its colour is the circle's (Okabe-Ito, as the charts).
FLAG_COLOURS = (
    ("over_capacity", "#D55E00"),
    ("conflicting_counts", "#D55E00"),
    ("sudden_jump", "#E69F00"),
    ("breakdown_missing", "#E69F00"),
    ("stale_site", "#6B7280"),
    ("stale_group", "#6B7280"),
)
NO_FLAG_COLOUR = "#0072B2"


@dataclass
class Dot:
    site_id: str
    name: str
    x: float
    y: float
    r: float
    colour: str
    people: int | None  # None: not shown to this caller
    flags: list[str]
    label_x: float = 0.0
    anchor: str = "start"  # the name's side: right of the circle, or left near the edge


@dataclass
class SiteMap:
    width: int
    height: int
    countries: list[tuple[str, str]]  # (name, SVG path)
    labels: list[tuple[str, float, float]]  # (country, x, y)
    dots: list[Dot]
    unplaced: list[str] = field(default_factory=list)  # sites with no coordinates
    notice: str = ""


@cache
def outlines() -> dict[str, Any]:
    return json.loads(OUTLINES.read_text())


def colour_of(flags: list[str]) -> str:
    return next((colour for code, colour in FLAG_COLOURS if code in flags), NO_FLAG_COLOUR)


def site_map(sites: list[dict[str, Any]], where: dict[str, tuple[float, float]]) -> SiteMap | None:
    """`sites`: the summary's site entries as the caller sees them (`people` None when
    suppressed); `where`: site id → (latitude, longitude). None when no site has both."""
    placed = [s for s in sites if s["site_id"] in where]
    if not placed:
        return None
    lats = [where[s["site_id"]][0] for s in placed]
    lons = [where[s["site_id"]][1] for s in placed]
    middle = math.radians((min(lats) + max(lats)) / 2)
    squeeze = math.cos(middle)  # a degree of longitude is this much of one of latitude
    west, east = _span(min(lons), max(lons), MIN_SPAN_DEGREES / squeeze)
    south, north = _span(min(lats), max(lats), MIN_SPAN_DEGREES * 0.6)
    scale = WIDTH / ((east - west) * squeeze)
    height = round((north - south) * scale)

    def project(lat: float, lon: float) -> tuple[float, float]:
        return round((lon - west) * squeeze * scale, 1), round((north - lat) * scale, 1)

    largest = max([s["people"] or 0 for s in placed] + [1])
    dots = []
    for site in sorted(placed, key=lambda s: -(s["people"] or 0)):  # small ones on top
        x, y = project(*where[site["site_id"]])
        people = site["people"]
        flags = sorted({f["code"] for f in site.get("flags", [])})
        radius = round(
            SMALLEST + (LARGEST - SMALLEST) * math.sqrt((people or 0) / largest)
            if people is not None
            else SMALLEST,
            1,
        )
        dot = Dot(
            site_id=site["site_id"],
            name=site["name"],
            x=x,
            y=y,
            r=radius,
            colour=colour_of(flags),
            people=people,
            flags=flags,
            label_x=round(x + radius + 4, 1),
        )
        if dot.label_x + len(dot.name) * CHARACTER > WIDTH:  # no room on the right
            dot.label_x, dot.anchor = round(x - radius - 4, 1), "end"
        dots.append(dot)
    countries = []
    view = (west, south, east, north)
    for name, rings in outlines()["countries"].items():
        shown = [
            [project(lat, lon) for lon, lat in ring] for ring in rings if _overlaps(ring, view)
        ]
        if shown:
            countries.append((name, shown))
    return SiteMap(
        width=WIDTH,
        height=height,
        countries=[
            (name, " ".join("M" + " L".join(f"{x},{y}" for x, y in ring) + " Z" for ring in rings))
            for name, rings in countries
        ],
        labels=_country_labels(countries, dots, height),
        dots=dots,
        unplaced=[s["name"] for s in sites if s["site_id"] not in where],
        notice=outlines()["notice"],
    )


def _country_labels(
    countries: list[tuple[str, list[list[tuple[float, float]]]]], dots: list[Dot], height: int
) -> list[tuple[str, float, float]]:
    """Each country's name where it is clearest: of a grid of points inside the country
    and the map, the one farthest from the sites, the other names and the map's edge."""
    step = WIDTH / GRID
    grid = [
        (step * (i + 0.5), step * (j + 0.5))
        for i in range(GRID)
        for j in range(max(1, int(height / step)))
    ]
    taken = [(d.x, d.y, d.r + 40) for d in dots]
    labels: list[tuple[str, float, float]] = []
    for name, rings in countries:
        room = 0.0
        best = None
        for x, y in grid:
            if not any(_inside((x, y), ring) for ring in rings):
                continue
            edge = min(x, WIDTH - x, y, height - y) * 2
            clear = min([edge] + [math.hypot(x - cx, y - cy) - reach for cx, cy, reach in taken])
            if clear > room:
                room, best = clear, (x, y)
        if best is not None and room > 30:
            labels.append((name, round(best[0], 1), round(best[1], 1)))
            taken.append((best[0], best[1], 90))
    return labels


def _inside(point: tuple[float, float], ring: list[tuple[float, float]]) -> bool:
    """Even-odd rule."""
    x, y = point
    inside = False
    for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1], strict=True):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def _span(low: float, high: float, least: float) -> tuple[float, float]:
    low, high = low - MARGIN_DEGREES, high + MARGIN_DEGREES
    if high - low < least:
        centre = (low + high) / 2
        low, high = centre - least / 2, centre + least / 2
    return low, high


def _overlaps(ring: list[list[float]], view: tuple[float, float, float, float]) -> bool:
    west, south, east, north = view
    lons = [p[0] for p in ring]
    lats = [p[1] for p in ring]
    return min(lons) <= east and max(lons) >= west and min(lats) <= north and max(lats) >= south
