"""Sites: creating and changing them, and every rule a site's fields follow."""

from __future__ import annotations

from typing import Any

import pytest

from service.models import AuditEvent, Site
from tests.helpers import AIRPORT, CENTRE, assert_problem, audit_events, count_rows

LACHIN = {"id": "lachin-corridor", "name": "Lachin corridor", "kind": "border_crossing"}


def post_site(client: Any, headers: dict[str, str], **fields: Any) -> Any:
    return client.post("/api/v1/sites", json={**LACHIN, **fields}, headers=headers)


def test_admin_creates_a_site_with_all_fields(app, client, auth):
    response = post_site(
        client,
        auth.admin,
        pcode="AM-SU-01",
        latitude=39.6,
        longitude=46.5,
        capacity=2000,
        parent_id=CENTRE,
    )
    assert response.status_code == 201, response.get_json()
    site = response.get_json()
    assert site["id"] == "lachin-corridor"
    assert site["kind"] == "border_crossing"
    assert site["parent_id"] == CENTRE
    assert site["active"] is True
    assert site["capacity"] == 2000
    listed = client.get("/api/v1/sites", headers=auth.headers("reader")).get_json()
    assert [s["id"] for s in listed] == ["lachin-corridor", AIRPORT, CENTRE]
    event = audit_events(app)[-1]
    assert event["action"] == "site.create"
    assert event["entity_id"] == "lachin-corridor"
    assert event["after"]["kind"] == "border_crossing"


def test_site_names_are_trimmed(client, auth):
    response = post_site(client, auth.admin, name="  Goris reception centre \t ")
    assert response.status_code == 201
    assert response.get_json()["name"] == "Goris reception centre"


@pytest.mark.parametrize(
    "site_id",
    [
        "Lachin",
        "lachin corridor",
        "lachin_corridor",
        "-lachin",
        "lachin-",
        "lachin--corridor",
        "x",
        "a" * 65,
        "lachin\x00",
        "lachin\n",
        "lachín",
        "",
        7,
        None,
    ],
)
def test_site_id_must_be_a_slug(app, client, auth, site_id):
    before = count_rows(app, Site)
    response = post_site(client, auth.admin, id=site_id)
    assert_problem(response, 422, "id")
    assert count_rows(app, Site) == before


def test_duplicate_site_id_is_409_and_changes_nothing(app, client, auth):
    before = client.get(f"/api/v1/sites/{CENTRE}", headers=auth.admin).get_json()
    events = count_rows(app, AuditEvent)
    response = post_site(client, auth.admin, id=CENTRE, name="Someone else's centre")
    problem = assert_problem(response, 409)
    assert CENTRE in problem["detail"]
    assert client.get(f"/api/v1/sites/{CENTRE}", headers=auth.admin).get_json() == before
    assert count_rows(app, AuditEvent) == events


def test_site_with_unknown_parent_is_422(app, client, auth):
    response = post_site(client, auth.admin, parent_id="atlantis")
    assert_problem(response, 422, "parent_id")
    assert count_rows(app, Site) == 2


def test_site_cannot_be_its_own_parent(app, client, auth):
    response = post_site(client, auth.admin, parent_id=LACHIN["id"])
    assert_problem(response, 422, "parent_id")
    assert count_rows(app, Site) == 2


def test_site_parent_change_that_makes_a_cycle_is_422(client, auth):
    admin = auth.admin
    assert post_site(client, admin, parent_id=CENTRE).status_code == 201
    # centre -> lachin -> centre would be a cycle.
    response = client.patch(
        f"/api/v1/sites/{CENTRE}", json={"parent_id": LACHIN["id"]}, headers=admin
    )
    assert_problem(response, 422, "parent_id")
    assert client.get(f"/api/v1/sites/{CENTRE}", headers=admin).get_json()["parent_id"] is None


def test_site_patched_to_be_its_own_parent_is_422(client, auth):
    response = client.patch(
        f"/api/v1/sites/{CENTRE}", json={"parent_id": CENTRE}, headers=auth.admin
    )
    assert_problem(response, 422, "parent_id")


def test_site_parent_can_be_cleared(client, auth):
    admin = auth.admin
    post_site(client, admin, parent_id=CENTRE)
    response = client.patch(
        f"/api/v1/sites/{LACHIN['id']}", json={"parent_id": None}, headers=admin
    )
    assert response.status_code == 200
    assert response.get_json()["parent_id"] is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("latitude", 90.5),
        ("latitude", -91),
        ("latitude", "north"),
        ("latitude", True),
        ("latitude", float("nan")),
        ("latitude", float("inf")),
        ("latitude", 10**400),
        ("longitude", 180.01),
        ("longitude", -181),
        ("capacity", -1),
        ("capacity", 1.5),
        ("capacity", "200"),
        ("capacity", 10**12),
        ("kind", "castle"),
        ("kind", None),
        ("name", ""),
        ("name", "   "),
        ("name", "n" * 201),
        ("name", "Lachin\x00"),
        ("name", "Lachin\ncorridor"),
        ("name", "Lachin\x1bcorridor"),
        ("name", "Lachin \ud800"),
        ("name", None),
        ("pcode", "p" * 33),
        ("pcode", "AM\x00"),
        ("parent_id", "centre\x00"),
        ("parent_id", 12),
        ("active", "maybe"),
        ("population", 5),
    ],
)
def test_site_field_rules(app, client, auth, field, value):
    response = post_site(client, auth.admin, **{field: value})
    assert_problem(response, 422, field)
    assert count_rows(app, Site) == 2


def test_site_name_is_required(client, auth):
    body = {"id": "goris", "kind": "city"}
    assert_problem(client.post("/api/v1/sites", json=body, headers=auth.admin), 422, "name")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("latitude", 123.0),
        ("name", ""),
        ("name", None),
        ("name", "x\x00y"),
        ("kind", "castle"),
        ("active", None),
        ("capacity", -5),
        ("parent_id", "atlantis"),
        ("id", "renamed"),
    ],
)
def test_site_patch_field_rules(app, client, auth, field, value):
    admin = auth.admin
    before = client.get(f"/api/v1/sites/{CENTRE}", headers=admin).get_json()
    events = count_rows(app, AuditEvent)
    response = client.patch(f"/api/v1/sites/{CENTRE}", json={field: value}, headers=admin)
    assert_problem(response, 422, field)
    assert client.get(f"/api/v1/sites/{CENTRE}", headers=admin).get_json() == before
    assert count_rows(app, AuditEvent) == events


def test_site_patch_changes_only_what_is_sent(client, auth):
    admin = auth.admin
    before = client.get(f"/api/v1/sites/{AIRPORT}", headers=admin).get_json()
    response = client.patch(
        f"/api/v1/sites/{AIRPORT}", json={"capacity": 12000, "active": False}, headers=admin
    )
    assert response.status_code == 200
    after = response.get_json()
    assert after["capacity"] == 12000
    assert after["active"] is False
    assert after["name"] == before["name"]
    assert after["latitude"] == before["latitude"]


def test_inactive_sites_can_be_filtered(client, auth):
    admin = auth.admin
    client.patch(f"/api/v1/sites/{AIRPORT}", json={"active": False}, headers=admin)
    active = client.get("/api/v1/sites?active=true", headers=admin).get_json()
    assert [s["id"] for s in active] == [CENTRE]
    inactive = client.get("/api/v1/sites?active=false", headers=admin).get_json()
    assert [s["id"] for s in inactive] == [AIRPORT]


def test_bad_active_filter_is_422(client, auth):
    response = client.get("/api/v1/sites?active=perhaps", headers=auth.admin)
    assert_problem(response, 422, "active")


@pytest.mark.parametrize("path", ["atlantis", "a" * 300, "%00", "centre%00x", "%F0%9F%98%80"])
def test_unknown_site_is_404(client, auth, path):
    assert_problem(client.get(f"/api/v1/sites/{path}", headers=auth.admin), 404)


def test_patching_an_unknown_site_is_404(app, client, auth):
    response = client.patch("/api/v1/sites/atlantis", json={"capacity": 3}, headers=auth.admin)
    assert_problem(response, 404)
    assert count_rows(app, Site) == 2
