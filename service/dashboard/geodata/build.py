"""Rebuild outlines.json: the region's country outlines for the dashboard's map.

Run once, by hand, when the region changes (nothing at run time needs it):

    npm pack world-atlas@2 && tar xzf world-atlas-2.0.2.tgz
    python -m service.dashboard.geodata.build package/countries-50m.json

world-atlas 2.0.2 is Natural Earth 4.1.0's Admin 0 countries (1:50m) as TopoJSON. This
decodes the TopoJSON arcs, keeps the countries named in COUNTRIES, clips them to BOX,
simplifies them (Douglas-Peucker) and rounds to 3 decimals (about 100 m).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

COUNTRIES = ("Armenia", "Azerbaijan", "Georgia", "Iran", "Turkey", "Russia")
BOX = (38.0, 36.0, 52.0, 44.0)  # west, south, east, north (degrees)
TOLERANCE = 0.01  # degrees (about 1 km)
OUT = Path(__file__).with_name("outlines.json")


def decode_arcs(topology: dict) -> list[list[tuple[float, float]]]:
    (sx, sy), (tx, ty) = topology["transform"]["scale"], topology["transform"]["translate"]
    arcs = []
    for arc in topology["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x, y = x + dx, y + dy
            points.append((x * sx + tx, y * sy + ty))
        arcs.append(points)
    return arcs


def ring(arcs: list[list[tuple[float, float]]], indexes: list[int]) -> list[tuple[float, float]]:
    points: list[tuple[float, float]] = []
    for index in indexes:
        arc = arcs[index] if index >= 0 else arcs[~index][::-1]
        points.extend(arc[1:] if points else arc)
    return points


def clip(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sutherland-Hodgman against BOX."""
    west, south, east, north = BOX
    edges = (
        (lambda p: p[0] >= west, lambda a, b: _at_x(a, b, west)),
        (lambda p: p[0] <= east, lambda a, b: _at_x(a, b, east)),
        (lambda p: p[1] >= south, lambda a, b: _at_y(a, b, south)),
        (lambda p: p[1] <= north, lambda a, b: _at_y(a, b, north)),
    )
    for inside, cross in edges:
        if not points:
            break
        result = []
        for i, current in enumerate(points):
            previous = points[i - 1]
            if inside(current):
                if not inside(previous):
                    result.append(cross(previous, current))
                result.append(current)
            elif inside(previous):
                result.append(cross(previous, current))
        points = result
    return points


def _at_x(a, b, x):
    return (x, a[1] + (b[1] - a[1]) * (x - a[0]) / (b[0] - a[0]))


def _at_y(a, b, y):
    return (a[0] + (b[0] - a[0]) * (y - a[1]) / (b[1] - a[1]), y)


def simplify(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) < 4:
        return points
    keep = [False] * len(points)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    while stack:
        first, last = stack.pop()
        (ax, ay), (bx, by) = points[first], points[last]
        length = math.hypot(bx - ax, by - ay)
        worst, at = 0.0, None
        for i in range(first + 1, last):
            px, py = points[i]
            if (ax, ay) == (bx, by):  # a closed ring's ends: the distance to that point
                distance = math.hypot(px - ax, py - ay)
            else:
                distance = abs((bx - ax) * (ay - py) - (ax - px) * (by - ay)) / length
            if distance > worst:
                worst, at = distance, i
        if at is not None and worst > TOLERANCE:
            keep[at] = True
            stack += [(first, at), (at, last)]
    return [p for p, kept in zip(points, keep, strict=True) if kept]


def main(source: str) -> None:
    topology = json.loads(Path(source).read_text())
    arcs = decode_arcs(topology)
    countries: dict[str, list] = {}
    for geometry in topology["objects"]["countries"]["geometries"]:
        name = geometry.get("properties", {}).get("name")
        if name not in COUNTRIES:
            continue
        polygons = geometry["arcs"] if geometry["type"] == "MultiPolygon" else [geometry["arcs"]]
        rings = []
        for polygon in polygons:
            for indexes in polygon:
                points = simplify(clip(ring(arcs, indexes)))
                if len(points) >= 4:
                    rings.append([[round(x, 3), round(y, 3)] for x, y in points])
        if rings:
            countries[name] = rings
    document = {
        "source": "Natural Earth 4.1.0, Admin 0 countries, 1:50m, via world-atlas 2.0.2 "
        "(npm); clipped to the region and simplified by service/dashboard/geodata/build.py",
        "notice": "Made with Natural Earth. Free vector and raster map data at "
        "naturalearthdata.com. Natural Earth is in the public domain.",
        "box": BOX,
        "countries": countries,
    }
    OUT.write_text(json.dumps(document, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
