"""Submitting head counts: the SPEC's rules, and the counting rule on groups."""

from __future__ import annotations

from tests.helpers import AIRPORT, CENTRE, SADD_40, create_group, hours_ago, report_body


def test_report_with_full_breakdown_is_stored_and_counted(client, auth):
    admin = auth.admin
    group = create_group(client, admin)
    body = report_body(
        group["id"],
        40,
        sadd=SADD_40,
        vulnerable={"pregnant_lactating": 2, "disabled": 1},
        needs=[{"sector": "water", "severity": 4, "note": "one tap for the hangar"}],
        note="counted at the gate",
    )
    response = client.post("/api/v1/reports", json=body, headers=admin)
    assert response.status_code == 201, response.get_json()
    report = response.get_json()
    assert report["total"] == 40
    assert report["sadd"] == SADD_40
    assert report["vulnerable"] == {"pregnant_lactating": 2, "disabled": 1}
    assert report["needs"] == [{"sector": "water", "severity": 4, "note": "one tap for the hangar"}]
    assert report["site_id"] == CENTRE
    assert response.headers["Location"] == f"/api/v1/reports/{report['id']}"

    group_now = client.get(f"/api/v1/groups/{group['id']}", headers=admin).get_json()
    assert group_now["current_count"] == 40
    assert group_now["last_observed_at"] is not None


def test_latest_observation_wins_not_latest_arrival(client, auth):
    admin = auth.admin
    group = create_group(client, admin)
    for total, hours in ((120, 1), (300, 5), (200, 3)):
        response = client.post(
            "/api/v1/reports", json=report_body(group["id"], total, hours_ago(hours)), headers=admin
        )
        assert response.status_code == 201
    group_now = client.get(f"/api/v1/groups/{group['id']}", headers=admin).get_json()
    assert group_now["current_count"] == 120


def test_same_observation_time_latest_received_wins(client, auth):
    admin = auth.admin
    group = create_group(client, admin)
    moment = hours_ago(2)
    for total in (50, 55):
        client.post("/api/v1/reports", json=report_body(group["id"], total, moment), headers=admin)
    group_now = client.get(f"/api/v1/groups/{group['id']}", headers=admin).get_json()
    assert group_now["current_count"] == 55


def test_group_without_reports_has_no_count(client, auth):
    group = create_group(client, auth.admin)
    assert group["current_count"] is None
    assert group["last_observed_at"] is None


def test_groups_list_shows_each_groups_current_count(client, auth):
    admin = auth.admin
    first = create_group(client, admin, label="Convoy A")
    second = create_group(client, admin, AIRPORT, label="Hangar 1")
    client.post("/api/v1/reports", json=report_body(first["id"], 10), headers=admin)
    client.post("/api/v1/reports", json=report_body(second["id"], 700), headers=admin)
    client.post(
        "/api/v1/reports", json=report_body(second["id"], 650, hours_ago(0.5)), headers=admin
    )
    listed = client.get("/api/v1/groups", headers=admin).get_json()
    counts = {g["label"]: g["current_count"] for g in listed}
    assert counts == {"Convoy A": 10, "Hangar 1": 650}
    at_airport = client.get(f"/api/v1/groups?site_id={AIRPORT}", headers=admin).get_json()
    assert [g["label"] for g in at_airport] == ["Hangar 1"]
