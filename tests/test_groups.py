"""Groups: registering them at sites, changing and moving them, and their field rules."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from service.models import AuditEvent, Group, GroupMove
from tests.helpers import AIRPORT, CENTRE, assert_problem, audit_events, count_rows, create_group


def post_group(client: Any, headers: dict[str, str], **fields: Any) -> Any:
    body = {"site_id": CENTRE, "label": "Families from Askeran", **fields}
    return client.post("/api/v1/groups", json=body, headers=headers)


def test_coordinator_registers_a_group_at_its_site(app, client, auth):
    headers = auth.headers("coordinator", CENTRE)
    response = post_group(client, headers, origin="Askeran")
    assert response.status_code == 201, response.get_json()
    group = response.get_json()
    assert uuid.UUID(group["id"])
    assert group["site_id"] == CENTRE
    assert group["label"] == "Families from Askeran"
    assert group["origin"] == "Askeran"
    assert group["status"] == "waiting"
    assert group["moves"] == []
    event = audit_events(app)[-1]
    assert event["action"] == "group.create"
    assert event["entity_id"] == group["id"]
    assert event["after"]["label"] == "Families from Askeran"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("label", ""),
        ("label", "   "),
        ("label", "l" * 201),
        ("label", None),
        ("label", 12),
        ("label", "Hangar\x002"),
        ("label", "Hangar\n2"),
        ("label", "Hangar\t2"),
        ("label", "Hangar\x7f2"),
        ("label", "Hangar \udc80"),
        ("origin", "o" * 201),
        ("origin", "Askeran\x00"),
        ("origin", "Askeran\x0b"),
        ("status", "teleported"),
        ("status", None),
        ("site_id", "atlantis"),
        ("site_id", None),
        ("site_id", 12),
        ("site_id", "centre\x00"),
        ("site_id", "s" * 300),
        ("site_id", "centre \ud800"),
        ("headcount", 12),
    ],
)
def test_group_field_rules(app, client, auth, field, value):
    events = count_rows(app, AuditEvent)
    response = post_group(client, auth.admin, **{field: value})
    assert_problem(response, 422, field)
    assert count_rows(app, Group) == 0
    assert count_rows(app, AuditEvent) == events


@pytest.mark.parametrize("field", ["site_id", "label"])
def test_group_required_fields(client, auth, field):
    body = {"site_id": CENTRE, "label": "Convoy"}
    del body[field]
    response = client.post("/api/v1/groups", json=body, headers=auth.admin)
    assert_problem(response, 422, field)


def test_group_label_is_trimmed(client, auth):
    group = post_group(client, auth.admin, label="  Convoy 4  ").get_json()
    assert group["label"] == "Convoy 4"


def test_group_cannot_be_placed_at_an_inactive_site(app, client, auth):
    admin = auth.admin
    client.patch(f"/api/v1/sites/{AIRPORT}", json={"active": False}, headers=admin)
    assert_problem(post_group(client, admin, site_id=AIRPORT), 422, "site_id")
    group = create_group(client, admin)
    response = client.patch(
        f"/api/v1/groups/{group['id']}", json={"site_id": AIRPORT}, headers=admin
    )
    assert_problem(response, 422, "site_id")
    assert count_rows(app, GroupMove) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("label", ""),
        ("label", "  "),
        ("label", None),
        ("label", "x" * 201),
        ("label", "a\x00b"),
        ("status", "teleported"),
        ("status", None),
        ("site_id", None),
        ("site_id", "atlantis"),
        ("site_id", "a\x00b"),
        ("id", str(uuid.uuid4())),
        ("current_count", 5),
    ],
)
def test_group_patch_field_rules(app, client, auth, field, value):
    admin = auth.admin
    group = create_group(client, admin)
    events = count_rows(app, AuditEvent)
    response = client.patch(f"/api/v1/groups/{group['id']}", json={field: value}, headers=admin)
    assert_problem(response, 422, field)
    after = client.get(f"/api/v1/groups/{group['id']}", headers=admin).get_json()
    assert {k: after[k] for k in ("site_id", "label", "status", "origin")} == {
        k: group[k] for k in ("site_id", "label", "status", "origin")
    }
    assert count_rows(app, AuditEvent) == events


def test_group_origin_can_be_cleared(client, auth):
    admin = auth.admin
    group = create_group(client, admin, origin="Martuni")
    response = client.patch(f"/api/v1/groups/{group['id']}", json={"origin": None}, headers=admin)
    assert response.status_code == 200
    assert response.get_json()["origin"] is None


def test_moving_a_group_keeps_its_history(app, client, auth):
    headers = auth.headers("coordinator", CENTRE, AIRPORT)
    group = create_group(client, headers)
    there = client.patch(
        f"/api/v1/groups/{group['id']}", json={"site_id": AIRPORT}, headers=headers
    ).get_json()
    back = client.patch(
        f"/api/v1/groups/{group['id']}",
        json={"site_id": CENTRE, "status": "in_transit"},
        headers=headers,
    )
    assert back.status_code == 200
    moved = back.get_json()
    assert there["site_id"] == AIRPORT
    assert moved["site_id"] == CENTRE
    assert moved["status"] == "in_transit"
    assert [(m["from_site_id"], m["to_site_id"]) for m in moved["moves"]] == [
        (CENTRE, AIRPORT),
        (AIRPORT, CENTRE),
    ]
    assert count_rows(app, GroupMove) == 2
    at_airport = client.get(f"/api/v1/groups?site_id={AIRPORT}", headers=headers).get_json()
    assert at_airport == []


def test_patching_to_the_same_site_is_not_a_move(app, client, auth):
    admin = auth.admin
    group = create_group(client, admin)
    response = client.patch(
        f"/api/v1/groups/{group['id']}", json={"site_id": CENTRE, "label": "Renamed"}, headers=admin
    )
    assert response.status_code == 200
    assert response.get_json()["moves"] == []
    assert count_rows(app, GroupMove) == 0


def test_groups_can_be_filtered_by_status_and_site(client, auth):
    admin = auth.admin
    waiting = create_group(client, admin, label="Waiting")
    create_group(client, admin, label="Gone", status="departed")
    create_group(client, admin, AIRPORT, label="Airport")
    response = client.get(f"/api/v1/groups?site_id={CENTRE}&status=waiting", headers=admin)
    assert [g["id"] for g in response.get_json()] == [waiting["id"]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=teleported", "status"),
        ("status=", "status"),
        ("page=0", "page"),
        ("page=first", "page"),
        ("page_size=100000", "page_size"),
    ],
)
def test_bad_group_query_is_422(client, auth, query, field):
    response = client.get(f"/api/v1/groups?{query}", headers=auth.admin)
    assert_problem(response, 422, field)


@pytest.mark.parametrize("page", [2, 10**6, 10**20, 10**400])
def test_a_page_past_the_last_is_empty(client, auth, page):
    create_group(client, auth.admin)
    response = client.get(f"/api/v1/groups?page={page}", headers=auth.admin)
    assert response.status_code == 200
    assert response.get_json() == []


def test_filtering_groups_by_an_unknown_site_finds_none(client, auth):
    create_group(client, auth.admin)
    response = client.get("/api/v1/groups?site_id=atlantis", headers=auth.admin)
    assert response.status_code == 200
    assert response.get_json() == []


@pytest.mark.parametrize("site_id", ["a%00b", "x" * 300, "Centre", "a%0A"])
def test_filtering_groups_by_what_cannot_be_a_site_id_is_422(client, auth, site_id):
    response = client.get(f"/api/v1/groups?site_id={site_id}", headers=auth.admin)
    assert_problem(response, 422, "site_id")


@pytest.mark.parametrize("path", [str(uuid.uuid4()), "not-a-uuid", "1234", "%00"])
def test_unknown_or_malformed_group_id_is_404(client, auth, path):
    assert_problem(client.get(f"/api/v1/groups/{path}", headers=auth.admin), 404)


def test_patching_an_unknown_group_is_404(client, auth):
    response = client.patch(
        f"/api/v1/groups/{uuid.uuid4()}", json={"label": "x"}, headers=auth.admin
    )
    assert_problem(response, 404)
