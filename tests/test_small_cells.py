"""Small cells as a reader and an email recipient see them, through the real app.

A small site (a family of three) beside two large ones: every way a reader or a
recipient reads the summary (JSON, CSV, HXL, the list, the email's text, HTML and CSV,
the dashboard) shows none of its figures; admins and coordinators see them exact. Every
/api/v1 answer is also held to the OpenAPI document (tests/openapi_check.py), so the
nulls and the `suppressed` flags are documented.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from celery.contrib.testing.worker import start_worker

from service.domain.summaries import period_start
from service.domain.suppression import BELOW, COLUMNS, COMPLEMENTARY
from service.models import SADD_KEYS
from tests.conftest import Auth
from tests.helpers import AIRPORT, CENTRE, create_group, post_report, summary_now
from tests.test_dashboard import signed_in
from tests.test_subscriptions_mail import attachments, send_now, subscribe, wait_for_status

GORIS = "goris-hall"


def seed(app, client, admin) -> dict[str, Any]:
    """Airport 300 and Goris 60 (no count from 1 to 4 anywhere), and a family of three
    at the centre: 2 women 18-59, a boy under 5, one of them injured."""
    created = client.post(
        "/api/v1/sites", json={"id": GORIS, "name": "Goris hall", "kind": "other"}, headers=admin
    )
    assert created.status_code == 201, created.get_json()
    big = {"female_18_59": 150, "male_18_59": 150}
    for site, total, sadd, injured in (
        (AIRPORT, 300, big, 10),
        (GORIS, 60, {"female_18_59": 30, "male_18_59": 30}, 0),
        (CENTRE, 3, {"female_18_59": 2, "male_0_4": 1}, 1),
    ):
        group = create_group(client, admin, site, label=f"group at {site}")
        sadd = {**dict.fromkeys(SADD_KEYS, 0), **sadd}
        post_report(
            client, admin, group["id"], total, 1, sadd=sadd, vulnerable={"injured": injured}
        )
    return summary_now(app, client, admin, build_here=True)


def figures(entry: dict[str, Any]) -> list[tuple[str, Any]]:
    out = []
    for field in COLUMNS:
        value: Any = entry
        for step in field:
            value = value[step]
        out.append((".".join(field), value))
    return out


def assert_no_small_figure(document: dict[str, Any]) -> None:
    for entry in [*document["sites"], document["totals"]]:
        for name, value in figures(entry):
            assert value is None or value == 0 or value >= 5, (entry.get("site_id"), name, value)
        if entry["people"] is None:
            assert all(v is None for v in entry["needs"].values())


def centre_row(text: str, hxl: bool = False) -> dict[str, str]:
    rows = list(csv.DictReader(io.StringIO(text)))
    return next(r for r in rows[1 if hxl else 0 :] if r["site_id"] == CENTRE)


def test_a_reader_sees_no_figure_below_the_threshold_in_json_csv_hxl_and_the_list(
    app, client, auth
):
    admin, reader = auth.admin, auth.headers("reader")
    summary = seed(app, client, admin)
    exact = client.get(f"/api/v1/summaries/{summary['id']}", headers=admin).get_json()
    centre = next(s for s in exact["sites"] if s["site_id"] == CENTRE)
    assert centre["people"] == 3 and centre["sadd"]["male_0_4"] == 1  # admins: exact
    coordinator = auth.headers("coordinator", CENTRE)
    as_coordinator = client.get("/api/v1/summaries/latest", headers=coordinator).get_json()
    assert as_coordinator["sites"] == exact["sites"]
    assert exact["suppression"]["applied"] is False

    for path in (f"/api/v1/summaries/{summary['id']}", "/api/v1/summaries/latest"):
        seen = client.get(path, headers=reader).get_json()
        assert seen["suppression"] == {
            "threshold": 5,
            "applied": True,
            "cells": seen["suppression"]["cells"],
        }
        assert_no_small_figure(seen)
        small = next(s for s in seen["sites"] if s["site_id"] == CENTRE)
        assert small["people"] is None and small["suppressed"]["people"] == BELOW
        assert small["vulnerable"]["injured"] is None
        # The total is shown, so one more site's people is hidden with it.
        assert seen["totals"]["people"] == 363
        assert sum(1 for s in seen["sites"] if s["people"] is None) >= 2

    for fmt in ("csv", "hxl"):
        response = client.get(f"/api/v1/summaries/latest?format={fmt}", headers=reader)
        row = centre_row(response.get_data(as_text=True), hxl=fmt == "hxl")
        assert row["people"] == "< 5"
        assert row["female_18_59"] == "< 5" and row["male_0_4"] == "< 5"
        assert row["injured"] == "< 5" and row["need_water_litres_per_day"] == "suppressed"
        for column, value in row.items():
            if column not in ("groups", "departed_groups") and value.isdigit():
                assert int(value) == 0 or int(value) >= 5, (column, value)
        admin_csv = client.get(f"/api/v1/summaries/latest?format={fmt}", headers=admin)
        assert centre_row(admin_csv.get_data(as_text=True), hxl=fmt == "hxl")["people"] == "3"

    listed = client.get("/api/v1/summaries", headers=reader).get_json()
    assert listed[0]["people"] == 363


def test_a_reader_never_gets_the_exact_body_from_the_cache_or_an_etag(app, client, auth):
    admin, reader = auth.admin, auth.headers("reader")
    summary = seed(app, client, admin)
    for path in (f"/api/v1/summaries/{summary['id']}", "/api/v1/summaries/latest"):
        for fmt in ("json", "csv", "hxl"):
            url = f"{path}?format={fmt}"
            exact = client.get(url, headers=admin)  # cached first, as the admin's
            assert exact.status_code == 200
            tag = exact.headers["ETag"]
            seen = client.get(url, headers={**reader, "If-None-Match": tag})
            assert seen.status_code == 200, (url, "a reader got 304 for the exact ETag")
            assert seen.headers["ETag"] != tag
            assert seen.get_data() != exact.get_data()
            assert "Authorization" in seen.headers["Vary"]
            again = client.get(url, headers={**reader, "If-None-Match": seen.headers["ETag"]})
            assert again.status_code == 304
            # And the admin after the reader still gets the exact figures.
            assert client.get(url, headers=admin).get_data() == exact.get_data()
        body = client.get(path, headers=reader).get_json()
        assert_no_small_figure(body)


def test_an_email_recipient_sees_the_small_site_suppressed_in_text_html_and_csv(
    make_app, smtp_server
):
    app = make_app(**smtp_server.settings)
    client, auth = app.test_client(), Auth(app)
    admin = auth.admin
    summary = seed(app, client, admin)
    subscription = subscribe(client, admin, timezone="UTC", formats=["csv", "hxl"])
    import workers.tasks  # noqa: F401 - registers the tasks

    celery_app = app.extensions["celery"]
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        location = send_now(client, admin, subscription["id"])
        assert wait_for_status(client, admin, location, "sent", "failed")["status"] == "sent"
    (received,) = smtp_server.received
    message = received.message
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    centre_part = text.split("== Stepanakert (centre) ==")[1].split("==")[0]
    assert "People:        < 5" in centre_part
    assert "\n3" not in centre_part and " 3 " not in centre_part
    assert "363" in text and "&lt; 5" in html
    for name, body in attachments(message).items():
        row = centre_row(body.get_payload(decode=True).decode(), hxl="hxl" in name)
        assert row["people"] == "< 5" and row["male_0_4"] == "< 5"
    # What the recipient got is what a reader pulls from the API.
    api = client.get(
        f"/api/v1/summaries/{summary['id']}?format=csv", headers=auth.headers("reader")
    )
    assert api.data in [p.get_payload(decode=True) for p in attachments(message).values()]


ROW = '<th scope="row">Stepanakert (centre)<br>'


def test_a_signed_in_reader_sees_the_small_site_suppressed_on_the_dashboard(app, client, auth):
    seed(app, client, auth.admin)
    reader = signed_in(app, auth.token("reader"))
    page = reader.get("/").get_data(as_text=True)
    row = page.split(ROW)[1].split("</tr>")[0]
    assert 'data-value="&lt; 5"' in row and "&lt; 5" in row
    assert ">3<" not in row
    # No history line for the sites whose people a reader does not see.
    assert 'data-name="Stepanakert (centre)"' not in page
    assert 'data-name="Goris hall"' not in page  # the complementary one
    assert 'data-name="All sites"' in page
    admin = signed_in(app, auth.token("admin"))
    admin_row = admin.get("/").get_data(as_text=True).split(ROW)[1]
    assert 'data-value="3"' in admin_row.split("</tr>")[0]
    assert 'data-name="Stepanakert (centre)"' in admin.get("/").get_data(as_text=True)


def test_the_openapi_document_shows_the_nullable_figures_and_the_flag(client):
    schemas = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    site = schemas["SiteSummaryOut"]["properties"]
    assert site["people"]["nullable"] is True
    assert "suppressed" in site and "below_threshold" in site["suppressed"]["description"]
    assert schemas["SummaryOut"]["properties"]["suppression"]


def test_the_next_summary_hides_the_previous_people_the_previous_one_hid_for_a_breakdown(
    app, client, auth
):
    """A man over 60 and a group of 5 without a breakdown at one site: a reader's view
    of that summary hides the site's 6 people (6 - 5 would give the man away). The
    next summary's people_previous is those 6: shown, it would undo that, side by side."""
    admin, reader = auth.admin, auth.headers("reader")
    man = create_group(client, admin, CENTRE, label="one man")
    one_man = {**dict.fromkeys(SADD_KEYS, 0), "male_60_plus": 1}
    post_report(client, admin, man["id"], 1, 5, sadd=one_man)
    five = create_group(client, admin, CENTRE, label="five people")
    post_report(client, admin, five["id"], 5, 5)
    every = timedelta(minutes=app.config["SUMMARY_INTERVAL_MINUTES"])
    later = period_start(datetime.now(UTC), every)
    earlier = later - every
    assert earlier > datetime.now(UTC) - timedelta(hours=5)  # the reports count in both
    first = summary_now(app, client, admin, earlier.isoformat(), build_here=True)
    second = summary_now(app, client, admin, later.isoformat(), build_here=True)

    exact = client.get(f"/api/v1/summaries/{second['id']}", headers=admin).get_json()
    assert exact["previous_as_of"] == first["as_of"]
    assert at_centre(exact)["people_previous"] == 6

    then = client.get(f"/api/v1/summaries/{first['id']}", headers=reader).get_json()
    seen = client.get(f"/api/v1/summaries/{second['id']}", headers=reader).get_json()
    assert at_centre(then)["people"] is None
    assert at_centre(then)["suppressed"]["people"] == COMPLEMENTARY
    assert at_centre(seen)["people_previous"] is None
    assert at_centre(seen)["suppressed"]["people_previous"] == COMPLEMENTARY
    assert at_centre(seen)["change_since_previous"] is None
    assert (then["totals"]["people"] is None) == (seen["totals"]["people_previous"] is None)
    for fmt in ("csv", "hxl"):
        text = client.get(f"/api/v1/summaries/{second['id']}?format={fmt}", headers=reader)
        row = centre_row(text.get_data(as_text=True), hxl=fmt == "hxl")
        assert row["change_since_previous"] == "suppressed"  # exports carry no people_previous


def at_centre(document: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in document["sites"] if s["site_id"] == CENTRE)
