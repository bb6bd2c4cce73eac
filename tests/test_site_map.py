"""The map's geometry: sites where they are, circles by people, colours by flags."""

from __future__ import annotations

from service.dashboard.site_map import NO_FLAG_COLOUR, SMALLEST, outlines, site_map

CENTRE = (39.8177, 46.7528)
AIRPORT = (39.9014, 46.7870)
GORIS = (39.5111, 46.3411)


def entry(site_id: str, people: int | None, *flags: str) -> dict:
    return {
        "site_id": site_id,
        "name": site_id.title(),
        "people": people,
        "flags": [{"code": code} for code in flags],
    }


def test_sites_are_placed_by_their_coordinates_and_sized_by_people():
    drawn = site_map(
        [entry("centre", 700), entry("airport", 4800, "over_capacity"), entry("goris", 60)],
        {"centre": CENTRE, "airport": AIRPORT, "goris": GORIS},
    )
    dots = {d.site_id: d for d in drawn.dots}
    # North is up, east is right.
    assert dots["airport"].y < dots["centre"].y < dots["goris"].y
    assert dots["goris"].x < dots["centre"].x < dots["airport"].x
    for dot in dots.values():
        assert 0 <= dot.x <= drawn.width and 0 <= dot.y <= drawn.height
    # Areas go with people: the radius with the square root.
    assert dots["airport"].r > dots["centre"].r > dots["goris"].r
    ratio = (dots["centre"].r - SMALLEST) / (dots["airport"].r - SMALLEST)
    assert abs(ratio - (700 / 4800) ** 0.5) < 0.01
    assert dots["airport"].colour != NO_FLAG_COLOUR == dots["centre"].colour
    # The largest is drawn first, so the small ones stay on top and clickable.
    assert [d.site_id for d in drawn.dots] == ["airport", "centre", "goris"]
    # Armenia and Azerbaijan are drawn around Stepanakert and Goris.
    names = {name for name, _ in drawn.countries}
    assert {"Armenia", "Azerbaijan"} <= names


def test_a_suppressed_site_is_a_small_ring_and_a_site_without_coordinates_is_listed():
    drawn = site_map(
        [entry("centre", None), entry("airport", 4800), entry("nowhere", 12)],
        {"centre": CENTRE, "airport": AIRPORT},
    )
    centre = next(d for d in drawn.dots if d.site_id == "centre")
    assert centre.people is None and centre.r == SMALLEST
    assert drawn.unplaced == ["Nowhere"]
    assert site_map([entry("nowhere", 3)], {}) is None


def test_the_outlines_carry_their_source_and_notice():
    data = outlines()
    assert "Natural Earth" in data["source"] and "public domain" in data["notice"]
    assert {"Armenia", "Azerbaijan", "Georgia", "Iran", "Turkey"} <= set(data["countries"])
