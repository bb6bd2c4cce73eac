"""`needs-tracker demo`: the replay of 20 September - 3 October 2023.

The demo runs once for this module (it builds a summary for every hour of those days);
its summaries are checked against the shipped CSV files, computed here independently
of the aggregation code, and against the public figures in SOURCES.md.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from service import create_app
from service.demo import GROUPS_CSV, REPLAY_CSV, replay
from service.domain import history
from service.extensions import db
from service.models import (
    Group,
    GroupMove,
    GroupStatusChange,
    Report,
    ReportNeed,
    Summary,
)
from tests import browser
from tests.conftest import Auth, _empty_tables, _settings
from tests.helpers import AIRPORT, CENTRE, count_rows

TABLES = (Group, GroupMove, GroupStatusChange, Report, ReportNeed, Summary)


@pytest.fixture(scope="module")
def demo(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The demo loaded once; yields the app, the first run's output and the summaries."""
    instance = tmp_path_factory.mktemp("demo-instance")
    app = create_app(_settings(instance, database_url))
    result = app.test_cli_runner().invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        summaries = {
            s.as_of: s.document
            for s in db.session.execute(db.select(Summary).order_by(Summary.as_of)).scalars()
        }
    yield {"app": app, "output": result.output, "summaries": summaries, "instance": instance}
    with app.app_context():
        _empty_tables()
        db.session.remove()
        db.engine.dispose()


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def site(document: dict[str, Any], site_id: str) -> dict[str, Any]:
    return next(s for s in document["sites"] if s["site_id"] == site_id)


def expected_people(moment: datetime) -> dict[str, int]:
    """People waiting per site at `moment`, straight from the two CSV files: each group's
    latest count by then, at its site by then, if it had not left by then."""
    with GROUPS_CSV.open(newline="", encoding="utf-8") as stream:
        groups = {row["group_id"]: row for row in csv.DictReader(stream)}
    latest: dict[str, tuple[datetime, int]] = {}
    with REPLAY_CSV.open(newline="", encoding="utf-8") as stream:
        for row in csv.DictReader(stream):
            observed = utc(row["observed_at"])
            if observed <= moment and (
                row["group_id"] not in latest or observed >= latest[row["group_id"]][0]
            ):
                latest[row["group_id"]] = (observed, int(row["total"]))
    people = {CENTRE: 0, AIRPORT: 0}
    for group_id, (_, total) in latest.items():
        group = groups[group_id]
        if group["departed_at"] and utc(group["departed_at"]) <= moment:
            continue
        moved = group["moved_at"] and utc(group["moved_at"]) <= moment
        people[group["moved_to"] if moved else group["site_id"]] += total
    return people


def test_the_shipped_replay_is_what_its_generator_writes(tmp_path: Path) -> None:
    groups, reports = tmp_path / "groups.csv", tmp_path / "replay.csv"
    replay.write(replay.build(), groups, reports)
    assert groups.read_bytes() == GROUPS_CSV.read_bytes()
    assert reports.read_bytes() == REPLAY_CSV.read_bytes()


def test_demo_builds_a_summary_for_every_hour_and_shows_progress(demo) -> None:
    moments = sorted(demo["summaries"])
    assert moments[0] == datetime(2023, 9, 20, tzinfo=UTC)
    assert moments[-1] == datetime(2023, 10, 3, 18, tzinfo=UTC)
    assert all(b - a == timedelta(hours=1) for a, b in zip(moments, moments[1:], strict=False))
    output = demo["output"]
    assert "Replaying head counts: 3,738" in output
    assert "Building summaries: 331" in output
    assert "3,738 stored, 0 already there, 0 failed; summaries: 331 built of 331." in output


def test_the_airport_base_rises_to_5000_and_falls_to_715(demo) -> None:
    at = demo["summaries"]
    # 21 Sep, 20:00 local: about 5,000 people at the peacekeepers' base.
    assert site(at[datetime(2023, 9, 21, 16, tzinfo=UTC)], AIRPORT)["people"] == 5000
    assert max(site(d, AIRPORT)["people"] for d in at.values()) == 5000
    # By 24 Sep, 12:00 local: 715.
    assert site(at[datetime(2023, 9, 24, 8, tzinfo=UTC)], AIRPORT)["people"] == 715
    # Stepanakert holds tens of thousands before the convoys start.
    assert site(at[datetime(2023, 9, 24, 8, tzinfo=UTC)], CENTRE)["people"] > 70000


@pytest.mark.parametrize(
    ("moment", "arrived"),
    [
        ("2023-09-24T22:00:00+04:00", 1050),
        ("2023-09-26T20:00:00+04:00", 28120),
        ("2023-09-29T06:00:00+04:00", 84770),
        ("2023-09-30T10:00:00+04:00", 100417),
        ("2023-10-03T10:00:00+04:00", 100617),
    ],
)
def test_departures_add_up_to_the_arrivals_counted_in_armenia(demo, moment, arrived) -> None:
    """Each hourly summary counts the departures of its hour, so their running sum is the
    cumulative departures: exactly the Armenian government's figures at their moments."""
    until = utc(moment)
    departed = sum(
        d["totals"]["departures"]["people"] for m, d in demo["summaries"].items() if m <= until
    )
    assert departed == arrived
    waiting = demo["summaries"][until]["totals"]["people"]
    assert waiting + departed <= 100617
    # The dashboard's "departed" line, from the groups' status history, says the same.
    with demo["app"].app_context():
        events = history.departures_timeline(until)
        assert history.cumulative(events, [until]) == [arrived]


def test_every_summary_matches_the_csv(demo) -> None:
    for moment, document in demo["summaries"].items():
        if moment.hour % 6:
            continue
        expected = expected_people(moment)
        shown = {s["site_id"]: s["people"] for s in document["sites"]}
        assert shown == expected, moment
        assert document["totals"]["people"] == sum(expected.values())


def test_running_the_demo_again_stores_nothing_new(demo) -> None:
    app: Flask = demo["app"]
    before = [count_rows(app, model) for model in TABLES]
    result = app.test_cli_runner().invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    assert "0 stored, 3,738 already there" in result.output
    assert "summaries: 0 built of 331" in result.output
    assert [count_rows(app, model) for model in TABLES] == before


def test_the_dashboard_tells_the_story_in_a_browser(demo) -> None:
    browser.require_chromium()
    app: Flask = demo["app"]
    secret = Auth(app).token("reader", name="demo screenshot")
    peak = "2023-09-25T12:00:00Z"
    expected = demo["summaries"][datetime(2023, 9, 25, 12, tzinfo=UTC)]
    with (
        browser.live_server(app.config["DATABASE_URL"], demo["instance"] / "web") as base,
        browser.chromium() as chromium,
    ):
        page = chromium.new_page(viewport={"width": 1200, "height": 900})
        browser.sign_in(page, base, secret)
        page.goto(f"{base}/?at={peak}")
        total = page.locator("#total-people")
        assert total.get_attribute("data-value") == str(expected["totals"]["people"])
        assert total.inner_text() == f"{expected['totals']['people']:,}"
        # The history chart draws the whole replay: a line with a point per summary.
        assert page.locator("svg.chart.line polyline").count() >= 3
        assert page.locator("svg.chart.line .marks circle").count() == len(demo["summaries"])
        box = page.locator("svg.chart.line").bounding_box()
        assert box and box["width"] > 600 and box["height"] > 200
        browser.screenshot(page, "dashboard-demo.png")
        # The map: a circle per site, where it is, the larger crowd the larger circle; the
        # same summary's figures in the table read to screen readers.
        dots = page.locator("svg.map g.site-dot")
        assert dots.count() == len(expected["sites"]) == 2
        people = {s["site_id"]: s["people"] for s in expected["sites"]}
        radius = {
            site: float(
                page.locator(f'svg.map g[data-map-site="{site}"] circle').get_attribute("r")
            )
            for site in people
        }
        larger, smaller = sorted(people, key=people.get, reverse=True)
        assert radius[larger] > radius[smaller]
        airport = page.locator(f'svg.map g[data-map-site="{AIRPORT}"] circle').bounding_box()
        centre = page.locator(f'svg.map g[data-map-site="{CENTRE}"] circle').bounding_box()
        assert airport["y"] + airport["height"] / 2 < centre["y"] + centre["height"] / 2  # north
        assert page.locator("svg.map path.country").count() >= 2  # Armenia, Azerbaijan
        rows = page.locator("#map-table tbody tr")
        assert rows.count() == 2
        assert f"{people[AIRPORT]:,}" in rows.filter(has_text="airport").inner_text()
        page.locator("figure.site-map").screenshot(path=str(browser.OUTPUT / "map-demo.png"))
        page.set_viewport_size({"width": 390, "height": 844})
        browser.screenshot(page, "dashboard-demo-phone.png")
