"""Situation summaries: the counting rule, departures, moves, as-of, needs and flags.

Every summary here is built by a real Celery worker (one for the module, on the
backend's broker), as in production: the API answers 202, the test polls until ready.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from service.api.summaries import SummaryOut
from service.domain import summaries, suppression
from service.extensions import db
from service.models import Summary
from tests.helpers import (
    AIRPORT,
    CENTRE,
    SADD_40,
    assert_problem,
    at_once,
    count_rows,
    create_group,
    hours_ago,
    iso,
    post_report,
    report_body,
    summary_now,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("module_worker")


def site(document: dict, site_id: str) -> dict:
    return next(s for s in document["sites"] if s["site_id"] == site_id)


def codes(entry: dict) -> list[str]:
    return [flag["code"] for flag in entry["flags"]]


def test_latest_observation_per_group_summed_per_site(app, client, auth):
    admin = auth.admin
    hangar = create_group(client, admin, AIRPORT, label="Hangar 1")
    convoy = create_group(client, admin, CENTRE, label="Convoy from Martuni")
    school = create_group(client, admin, CENTRE, label="School 5")
    # Sent out of order: the latest observation wins, not the latest arrival.
    post_report(client, admin, hangar["id"], 4800, 2)
    post_report(client, admin, hangar["id"], 5000, 1)
    post_report(client, admin, hangar["id"], 3000, 3)
    post_report(client, admin, convoy["id"], 120, 1)
    post_report(client, admin, school["id"], 300, 1.5)

    document = summary_now(app, client, admin)

    assert site(document, AIRPORT)["people"] == 5000
    assert site(document, AIRPORT)["groups"] == 1
    assert site(document, CENTRE)["people"] == 420
    assert site(document, CENTRE)["groups"] == 2
    assert document["totals"]["people"] == 5420
    assert document["totals"]["groups"] == 3
    for key in ("id", "as_of", "generated_at"):
        assert document[key]


def test_departed_groups_leave_the_count_and_show_as_departures(app, client, auth):
    admin = auth.admin
    leaving = create_group(client, admin, CENTRE, label="Convoy 1")
    staying = create_group(client, admin, CENTRE, label="Convoy 2")
    post_report(client, admin, leaving["id"], 250, 1)
    post_report(client, admin, staying["id"], 80, 1)
    patched = client.patch(
        f"/api/v1/groups/{leaving['id']}", json={"status": "departed"}, headers=admin
    )
    assert patched.status_code == 200

    document = summary_now(app, client, admin)
    centre = site(document, CENTRE)
    assert centre["people"] == 80
    assert centre["groups"] == 1
    assert centre["departures"] == {"groups": 1, "people": 250}
    assert document["totals"]["departures"] == {"groups": 1, "people": 250}


def test_moved_group_counts_where_it_was_at_the_moment(app, client, auth):
    admin = auth.admin
    group = create_group(client, admin, CENTRE, label="Families from Askeran")
    post_report(client, admin, group["id"], 60, 3)
    assert (
        client.patch(
            f"/api/v1/groups/{group['id']}", json={"site_id": AIRPORT}, headers=admin
        ).status_code
        == 200
    )

    now = summary_now(app, client, admin)
    assert site(now, AIRPORT)["people"] == 60
    assert site(now, CENTRE)["people"] == 0

    before_the_move = summary_now(app, client, admin, as_of=hours_ago(1))
    assert site(before_the_move, CENTRE)["people"] == 60
    assert site(before_the_move, AIRPORT)["people"] == 0


def test_as_of_in_the_past_ignores_later_reports_and_repeats_exactly(app, client, auth):
    admin = auth.admin
    group = create_group(client, admin, AIRPORT)
    post_report(client, admin, group["id"], 700, 5)
    post_report(client, admin, group["id"], 715, 1)
    moment = hours_ago(3)

    first = summary_now(app, client, admin, as_of=moment)
    assert site(first, AIRPORT)["people"] == 700
    # Asked again, the moment is the summary already built; and building it anew gives
    # the very same figures, so reusing it never shows other numbers.
    again = client.post("/api/v1/summaries", json={"as_of": moment}, headers=admin)
    assert again.status_code == 202
    assert again.headers["Location"] == f"/api/v1/summaries/{first['id']}"
    with app.app_context():
        anew = summaries.compose(uuid.UUID(first["id"]), datetime.fromisoformat(first["as_of"]))
        exact = suppression.view(anew, True, app.config["SMALL_CELL_THRESHOLD"])
        anew = SummaryOut().dump({**exact, "status": "ready"})
    strip = ("generated_at",)
    assert {k: v for k, v in first.items() if k not in strip} == {
        k: v for k, v in anew.items() if k not in strip
    }


def test_breakdowns_vulnerable_and_sphere_needs(app, client, auth):
    admin = auth.admin
    with_breakdown = create_group(client, admin, CENTRE, label="A")
    without = create_group(client, admin, CENTRE, label="B")
    post_report(
        client,
        admin,
        with_breakdown["id"],
        40,
        1,
        sadd=SADD_40,
        vulnerable={"disabled": 2, "pregnant_lactating": 3},
    )
    post_report(client, admin, without["id"], 21, 1, vulnerable={"disabled": 1})

    centre = site(summary_now(app, client, admin), CENTRE)
    assert centre["people"] == 61
    assert centre["sadd"] == SADD_40
    assert centre["people_without_sadd"] == 21
    assert centre["vulnerable"]["disabled"] == 3
    assert centre["vulnerable"]["pregnant_lactating"] == 3
    assert centre["needs"] == {
        "water_litres_per_day": 61 * 15,
        "food_kcal_per_day": 61 * 2100,
        "covered_space_m2": round(61 * 3.5, 1),
        "latrines": math.ceil(61 / 20),
    }


def test_sphere_standards_are_configurable(make_app, auth):
    app = make_app(
        SPHERE={
            "water_litres_per_person_per_day": 20.0,
            "food_kcal_per_person_per_day": 2100.0,
            "covered_space_m2_per_person": 4.5,
            "people_per_latrine": 50.0,
        }
    )
    client = app.test_client()
    admin = {"Authorization": f"Bearer {auth.__class__(app).token('admin')}"}
    group = create_group(client, admin, CENTRE)
    post_report(client, admin, group["id"], 100, 1)
    needs = site(summary_now(app, client, admin), CENTRE)["needs"]
    assert needs["water_litres_per_day"] == 2000
    assert needs["latrines"] == 2


def test_reported_needs_by_sector_with_highest_and_typical_severity(app, client, auth):
    admin = auth.admin
    for severities in ((3, 2), (3, 5), (4, 2)):
        group = create_group(client, admin, CENTRE, label=f"group {severities}")
        post_report(
            client,
            admin,
            group["id"],
            10,
            1,
            needs=[
                {"sector": "water", "severity": severities[0]},
                {"sector": "shelter", "severity": severities[1], "note": "nights are cold"},
            ],
        )
    needs = {
        n["sector"]: n for n in site(summary_now(app, client, admin), CENTRE)["reported_needs"]
    }
    assert needs["water"] == {
        "sector": "water",
        "groups": 3,
        "highest_severity": 4,
        "typical_severity": 3,
    }
    assert needs["shelter"]["highest_severity"] == 5
    assert needs["shelter"]["typical_severity"] == 2


def test_change_since_previous_compares_with_the_previous_period(app, client, auth):
    admin = auth.admin
    group = create_group(client, admin, AIRPORT)
    # Half past an hour that is over, whatever the clock says now: the previous scheduled
    # moment (on the hour) falls between the two counts.
    as_of = (datetime.now(UTC) - timedelta(hours=1)).replace(minute=30, second=0, microsecond=0)
    for total, observed in (
        (5000, as_of - timedelta(hours=3)),
        (715, as_of - timedelta(minutes=1)),
    ):
        body = report_body(group["id"], total, iso(observed))
        assert client.post("/api/v1/reports", json=body, headers=admin).status_code == 201
    document = summary_now(app, client, admin, as_of=iso(as_of))
    airport = site(document, AIRPORT)
    assert airport["people_previous"] == 5000
    assert airport["change_since_previous"] == 715 - 5000
    assert document["totals"]["change_since_previous"] == 715 - 5000


def test_stale_groups_and_sites_are_flagged(app, client, auth):
    admin = auth.admin
    old = create_group(client, admin, AIRPORT, label="Hangar 4")
    post_report(client, admin, old["id"], 90, 8)
    fresh = create_group(client, admin, CENTRE, label="Fresh")
    post_report(client, admin, fresh["id"], 20, 1)
    never = create_group(client, admin, CENTRE, label="Never counted")

    document = summary_now(app, client, admin)
    airport, centre = site(document, AIRPORT), site(document, CENTRE)
    assert "stale_site" in codes(airport)
    assert [f["group_id"] for f in airport["flags"] if f["code"] == "stale_group"] == [old["id"]]
    assert [f.get("group_id") for f in centre["flags"] if f["code"] == "stale_group"] == [
        never["id"]
    ]
    assert "stale_site" not in codes(centre)


def test_conflicting_counts_within_an_hour_are_flagged(app, client, auth):
    admin = auth.admin
    conflicting = create_group(client, admin, CENTRE, label="Two tallies")
    post_report(client, admin, conflicting["id"], 100, 1.5)
    post_report(client, admin, conflicting["id"], 130, 1.2)  # 23% apart, 18 minutes apart
    calm = create_group(client, admin, CENTRE, label="Agreeing tallies")
    post_report(client, admin, calm["id"], 100, 1.5)
    post_report(client, admin, calm["id"], 110, 1.2)
    far_apart = create_group(client, admin, CENTRE, label="Hours apart")
    post_report(client, admin, far_apart["id"], 100, 4)
    post_report(client, admin, far_apart["id"], 130, 1)

    flags = site(summary_now(app, client, admin), CENTRE)["flags"]
    conflicts = [f["group_id"] for f in flags if f["code"] == "conflicting_counts"]
    assert conflicts == [conflicting["id"]]


def test_a_correction_does_not_count_as_a_conflict(app, client, auth):
    admin = auth.admin
    group = create_group(client, admin, CENTRE)
    wrong = post_report(client, admin, group["id"], 100, 1.5)
    post_report(client, admin, group["id"], 150, 1.4, supersedes=wrong["id"])
    flags = site(summary_now(app, client, admin), CENTRE)["flags"]
    assert "conflicting_counts" not in codes({"flags": flags})


def test_sudden_jump_between_consecutive_reports_is_flagged(app, client, auth):
    admin = auth.admin
    jumped = create_group(client, admin, AIRPORT, label="Jumped")
    post_report(client, admin, jumped["id"], 700, 5)
    post_report(client, admin, jumped["id"], 1100, 3)  # +57%
    steady = create_group(client, admin, AIRPORT, label="Steady")
    post_report(client, admin, steady["id"], 700, 5)
    post_report(client, admin, steady["id"], 1000, 3)  # +43%
    flags = site(summary_now(app, client, admin), AIRPORT)["flags"]
    jumps = [f for f in flags if f["code"] == "sudden_jump"]
    assert [f["group_id"] for f in jumps] == [jumped["id"]]
    assert "700" in jumps[0]["message"] and "1100" in jumps[0]["message"]


def test_site_over_capacity_and_missing_breakdown_are_flagged(app, client, auth):
    admin = auth.admin
    assert (
        client.patch(f"/api/v1/sites/{AIRPORT}", json={"capacity": 1000}, headers=admin).status_code
        == 200
    )
    group = create_group(client, admin, AIRPORT)
    post_report(client, admin, group["id"], 1200, 1)
    airport = site(summary_now(app, client, admin), AIRPORT)
    assert "over_capacity" in codes(airport)
    assert "breakdown_missing" in codes(airport)


def test_scheduled_summary_is_created_once_per_period(app):
    with app.app_context():
        now = datetime(2023, 9, 24, 22, 17, tzinfo=UTC)
        first = summaries.ensure_scheduled(now)
        again = summaries.ensure_scheduled(now + timedelta(minutes=20))
        assert first is not None and again is None
        assert first.as_of == datetime(2023, 9, 24, 22, 0, tzinfo=UTC)
        assert first.period == first.as_of
        due = summaries.due_for_build(now)
        assert due == [first.id]
        assert summaries.due_for_build(now) == []  # handed out once
        assert summaries.build(first.id) is True
        assert summaries.build(first.id) is False  # built once


def test_summary_as_of_in_the_future_is_refused(client, auth):
    response = client.post("/api/v1/summaries", json={"as_of": hours_ago(-2)}, headers=auth.admin)
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "as_of"


@pytest.mark.parametrize("as_of", ["0001-01-01T00:00:00Z", "0023-09-26T12:00:00+04:00"])
def test_summary_as_of_before_2000_is_refused_and_nothing_stored(app, client, auth, as_of):
    """Found while fuzzing the API: year 1 was accepted (202) and its build then failed in
    the worker (OverflowError a period before it); a typo'd year built a summary of nothing.
    The same floor as a report's observed_at."""
    response = client.post("/api/v1/summaries", json={"as_of": as_of}, headers=auth.admin)
    problem = assert_problem(response, 422, field="as_of")
    assert "2000" in problem["errors"][0]["message"]
    assert count_rows(app, Summary) == 0


@pytest.mark.parametrize("role", ["reader"])
def test_readers_pull_but_cannot_request_summaries(app, client, auth, role):
    headers = auth.headers(role)
    assert client.post("/api/v1/summaries", json={}, headers=headers).status_code == 403
    summary_now(app, client, auth.admin)
    latest = client.get("/api/v1/summaries/latest", headers=headers)
    assert latest.status_code == 200
    assert client.get("/api/v1/summaries", headers=headers).status_code == 200


def test_latest_is_the_newest_ready_by_as_of(app, client, auth):
    admin = auth.admin
    newer = summary_now(app, client, admin, as_of=hours_ago(1))
    summary_now(app, client, admin, as_of=hours_ago(3))  # built later, but older as_of
    with app.app_context():  # pending, not ready (no task: the module's worker leaves it)
        summaries.request_summary(None)
        db.session.commit()
    latest = client.get("/api/v1/summaries/latest", headers=admin).get_json()
    assert latest["id"] == newer["id"]


def test_latest_without_any_summary_is_404(client, auth):
    response = client.get("/api/v1/summaries/latest", headers=auth.admin)
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_etag_and_if_none_match_give_304(app, client, auth):
    admin = auth.admin
    document = summary_now(app, client, admin)
    url = f"/api/v1/summaries/{document['id']}"
    first = client.get(url, headers=admin)
    etag = first.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert "immutable" in first.headers["Cache-Control"]
    again = client.get(url, headers=admin | {"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    latest = client.get("/api/v1/summaries/latest", headers=admin | {"If-None-Match": etag})
    assert latest.status_code == 304
    csv_version = client.get(url + "?format=csv", headers=admin | {"If-None-Match": etag})
    assert csv_version.status_code == 200
    assert csv_version.headers["ETag"] != etag


def test_list_summaries_filters_by_date(app, client, auth):
    admin = auth.admin
    summary_now(app, client, admin, as_of=hours_ago(5))
    recent = summary_now(app, client, admin, as_of=hours_ago(1))
    listed = client.get(
        f"/api/v1/summaries?since={hours_ago(2).replace('+', '%2B')}", headers=admin
    )
    assert listed.status_code == 200
    assert [s["id"] for s in listed.get_json()] == [recent["id"]]
    assert "X-Pagination" in listed.headers


def test_unknown_summary_is_404(client, auth):
    response = client.get(f"/api/v1/summaries/{uuid.uuid4()}", headers=auth.admin)
    assert response.status_code == 404


def test_build_failure_marks_the_summary_failed(app, client, auth, monkeypatch):
    from workers import tasks

    admin = auth.admin
    with app.app_context():
        # Requested without handing it to the worker: this test builds it itself.
        summary_id = str(summaries.request_summary(None).summary.id)
        db.session.commit()

    def broken(*_args, **_kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(summaries, "compose", broken)
    with app.app_context():
        assert tasks.build_summary.run(summary_id) is False
        db.session.remove()
    state = client.get(f"/api/v1/summaries/{summary_id}", headers=admin).get_json()
    assert state["status"] == "failed"

    # Asked for again (the bug fixed), that moment's summary is built again: the same one.
    monkeypatch.undo()
    again = client.post("/api/v1/summaries", json={"as_of": state["as_of"]}, headers=admin)
    assert again.headers["Location"] == f"/api/v1/summaries/{summary_id}"
    rebuilt = wait_for(
        lambda: (
            (d := client.get(again.headers["Location"], headers=admin).get_json())["status"]
            == "ready"
            and d
        )
    )
    assert rebuilt["id"] == summary_id


def test_the_same_as_of_asked_at_once_is_one_summary(app, client, auth):
    """Requests racing for one moment all answer the one summary of it: the database's
    unique key decides, not a look-up (on PostgreSQL the requests truly run together)."""
    coordinator = auth.headers("coordinator", AIRPORT)
    group = create_group(client, coordinator, AIRPORT)
    post_report(client, coordinator, group["id"], 120, 5)
    moment = hours_ago(2)
    answers: list = []

    def ask() -> None:
        answers.append(
            app.test_client().post("/api/v1/summaries", json={"as_of": moment}, headers=coordinator)
        )

    at_once(8, ask)
    assert {a.status_code for a in answers} == {202}
    assert len({a.headers["Location"] for a in answers}) == 1
    with app.app_context():
        as_of = datetime.fromisoformat(moment)
        rows = db.session.execute(select(Summary).where(Summary.as_of == as_of)).scalars()
        assert len(list(rows)) == 1
    document = wait_for(
        lambda: (
            (d := client.get(answers[0].headers["Location"], headers=coordinator).get_json())[
                "status"
            ]
            == "ready"
            and d
        )
    )
    assert site(document, AIRPORT)["people"] == 120


def test_two_summaries_asked_for_one_moment_are_refused_by_the_database(app):
    with app.app_context():
        moment = datetime.now(UTC) - timedelta(hours=1)
        db.session.add(Summary(as_of=moment))
        db.session.commit()
        db.session.add(Summary(as_of=moment))
        with pytest.raises(IntegrityError, match="uq_summaries_on_demand_as_of|summaries.as_of"):
            db.session.commit()
        db.session.rollback()
        # A period's summary of that moment is another thing: it is allowed beside it.
        db.session.add(Summary(as_of=moment, period=moment))
        db.session.commit()
