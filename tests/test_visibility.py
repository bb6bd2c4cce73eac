"""Who sees what below site level (README "Who sees what"): a site's groups, head counts,
notes and single-group flags are for admins and the coordinators of that site; readers
and email recipients see site-level figures only. The walk over every route is
tests/test_authorization_walk.py; these look at what the answers carry."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from service.domain.deliveries import Letter
from service.extensions import db
from service.mail import compose
from service.models import Summary
from tests.helpers import (
    AIRPORT,
    CENTRE,
    assert_problem,
    create_group,
    post_report,
    summary_now,
)
from tests.test_dashboard import signed_in

JUMP_CENTRE = "Count jumped from 40 to 100"
JUMP_AIRPORT = "Count jumped from 30 to 90"


def two_sites(client, auth):
    """A group at each site, each counted twice far apart (a single-group flag)."""
    admin = auth.admin
    centre = create_group(client, admin, CENTRE, label="School 5 families")
    airport = create_group(client, admin, AIRPORT, label="Hangar 1 families")
    post_report(client, admin, centre["id"], 40, 2, note="Centre: two need insulin")
    post_report(client, admin, centre["id"], 100, 1)
    post_report(client, admin, airport["id"], 30, 2, note="Airport: a child alone")
    post_report(client, admin, airport["id"], 90, 1)
    return centre, airport


def test_a_coordinator_lists_the_groups_and_reports_of_its_sites_only(client, auth):
    centre, airport = two_sites(client, auth)
    coordinator = auth.headers("coordinator", CENTRE)

    groups = client.get("/api/v1/groups", headers=coordinator).get_json()
    assert [g["id"] for g in groups] == [centre["id"]]
    reports = client.get("/api/v1/reports", headers=coordinator).get_json()
    assert {r["group_id"] for r in reports} == {centre["id"]}
    assert "Airport: a child alone" not in str(reports)
    # Another site's group named in a filter finds nothing: its id is not confirmed.
    other = client.get(f"/api/v1/reports?group_id={airport['id']}", headers=coordinator)
    assert other.status_code == 200 and other.get_json() == []
    # Another site named in a filter is refused, saying which sites the token sees.
    problem = assert_problem(
        client.get(f"/api/v1/groups?site_id={AIRPORT}", headers=coordinator), 403
    )
    assert CENTRE in problem["detail"]
    assert_problem(client.get(f"/api/v1/reports?site_id={AIRPORT}", headers=coordinator), 403)
    # An admin sees both sites.
    assert len(client.get("/api/v1/groups", headers=auth.admin).get_json()) == 2


def test_a_coordinator_without_sites_sees_no_group(client, auth):
    two_sites(client, auth)
    nobody = auth.headers("coordinator")
    assert client.get("/api/v1/groups", headers=nobody).get_json() == []
    assert client.get("/api/v1/reports", headers=nobody).get_json() == []


def flags_of(document, site_id):
    (site,) = [s for s in document["sites"] if s["site_id"] == site_id]
    return [f for f in site["flags"] if f["code"] == "sudden_jump"]


def test_single_group_flags_show_the_group_only_to_who_sees_its_site(app, client, auth):
    centre, airport = two_sites(client, auth)
    summary = summary_now(app, client, auth.admin, build_here=True)
    url = f"/api/v1/summaries/{summary['id']}"

    admin = client.get(url, headers=auth.admin)
    (jump,) = flags_of(admin.get_json(), AIRPORT)
    assert jump["group_id"] == airport["id"] and jump["message"].startswith(JUMP_AIRPORT)

    reader = client.get(url, headers=auth.headers("reader"))
    body = reader.get_data(as_text=True)
    assert centre["id"] not in body and airport["id"] not in body
    assert JUMP_CENTRE not in body and JUMP_AIRPORT not in body
    (jump,) = flags_of(reader.get_json(), AIRPORT)  # the site still shows it has one
    assert "group_id" not in jump
    # Figures this large are not small cells: the reader's totals are the admin's.
    reader_totals = reader.get_json()["totals"]
    assert reader_totals.pop("suppressed") == {}
    assert reader_totals == admin.get_json()["totals"]

    coordinator = client.get(url, headers=auth.headers("coordinator", CENTRE))
    document = coordinator.get_json()
    assert flags_of(document, CENTRE)[0]["group_id"] == centre["id"]
    assert flags_of(document, CENTRE)[0]["message"].startswith(JUMP_CENTRE)
    assert "group_id" not in flags_of(document, AIRPORT)[0]
    assert airport["id"] not in coordinator.get_data(as_text=True)

    # Each view is its own representation: its own ETag, and 304 for it.
    etags = {admin.headers["ETag"], reader.headers["ETag"], coordinator.headers["ETag"]}
    assert len(etags) == 3
    reader_headers = auth.headers("reader") | {"If-None-Match": reader.headers["ETag"]}
    assert client.get(url, headers=reader_headers).status_code == 304
    latest = client.get("/api/v1/summaries/latest", headers=auth.headers("reader"))
    assert airport["id"] not in latest.get_data(as_text=True)


def test_the_dashboard_names_groups_only_to_coordinators_of_their_site(app, client, auth):
    two_sites(client, auth)
    summary_now(app, client, auth.admin, build_here=True)

    page = signed_in(app, auth.token("coordinator", CENTRE)).get("/").get_data(as_text=True)
    assert "School 5 families" in page and JUMP_CENTRE in page
    assert "Hangar 1 families" not in page and JUMP_AIRPORT not in page

    page = signed_in(app, auth.token("reader")).get("/").get_data(as_text=True)
    assert "families" not in page and "Count jumped" not in page
    assert "sudden jump" in page  # the flag itself stays, for the site

    page = signed_in(app, auth.token("admin")).get("/").get_data(as_text=True)
    assert "Hangar 1 families" in page and JUMP_AIRPORT in page


def test_an_email_carries_no_single_groups_figures(app, client, auth):
    two_sites(client, auth)
    summary = summary_now(app, client, auth.admin, build_here=True)
    with app.app_context():
        stored = db.session.get_one(Summary, uuid.UUID(summary["id"]))
        letter = Letter(
            delivery_id=uuid.uuid4(),
            subscription_id=uuid.uuid4(),
            scheduled_for=datetime.now(UTC),
            email="sitrep@ngo.example.org",
            zone="UTC",
            cron="0 7 * * *",
            site_ids=[],
            formats=["csv"],
            summary_id=stored.id,
            summary_as_of=stored.as_of,
            document=stored.document or {},
            unsubscribe_url="http://localhost/unsubscribe?token=x",
        )
        message = compose(letter).message
    text = "".join(
        part.get_content() for part in message.walk() if part.get_content_maintype() == "text"
    )
    assert "changed by more than half" in text  # the flag, told without the group
    assert "jumped from" not in text
