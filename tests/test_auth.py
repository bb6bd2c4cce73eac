"""Who may do what: bearer tokens, the public paths, and the role-and-site matrix."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func

from service.domain.tokens import hash_token
from service.extensions import db
from service.models import ApiToken, AuditEvent, Group, GroupMove, Report, Site
from service.types import utcnow
from tests.conftest import Auth
from tests.helpers import (
    AIRPORT,
    CENTRE,
    SADD_40,
    assert_problem,
    audit_events,
    count_rows,
    create_group,
    report_body,
    wait_for,
)

# --- authentication ---------------------------------------------------------------------


def revoke(app: Flask, secret: str, at: Any = None) -> None:
    with app.app_context():
        token = db.session.execute(
            db.select(ApiToken).where(ApiToken.secret_hash == hash_token(secret))
        ).scalar_one()
        token.revoked_at = at or utcnow()
        db.session.commit()


def assert_unauthorized(response: Any) -> None:
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


PROTECTED = [
    ("GET", "/api/v1/sites"),
    ("GET", f"/api/v1/sites/{CENTRE}"),
    ("POST", "/api/v1/sites"),
    ("GET", "/api/v1/groups"),
    ("POST", "/api/v1/groups"),
    ("GET", "/api/v1/reports"),
    ("POST", "/api/v1/reports"),
    ("POST", "/api/v1/reports/batch"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_request_without_authorization_header_is_401(client, method, path):
    assert_unauthorized(client.open(path, method=method, json={}))


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNz",
        "Token nt_abc",
        "Bearer",
        "Bearer ",
        "Bearer    ",
        "nt_abc",
        "",
    ],
)
def test_wrong_scheme_or_empty_token_is_401(client, header):
    response = client.get("/api/v1/sites", headers={"Authorization": header})
    assert_unauthorized(response)


def test_unknown_token_is_401(client):
    response = client.get("/api/v1/sites", headers={"Authorization": "Bearer nt_not-a-real-token"})
    assert_unauthorized(response)


def test_revoked_token_reads_nothing_once_the_bound_is_past(app, client, auth):
    """A read may go by who held a token up to TOKEN_CACHE_SECONDS ago, and no longer."""
    secret = auth.token("admin")
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/sites", headers=headers).status_code == 200  # now remembered
    revoke(app, secret)
    revoked_at = time.monotonic()

    def refused() -> bool:
        return client.get("/api/v1/sites", headers=headers).status_code == 401

    bound = app.config["TOKEN_CACHE_SECONDS"]
    wait_for(refused, timeout=bound + 2, every=0.05)
    assert time.monotonic() - revoked_at <= bound + 0.5
    assert_unauthorized(client.get("/api/v1/sites", headers=headers))


def test_revoked_token_writes_nothing_from_the_moment_it_is_revoked(app, client, auth):
    secret = auth.token("admin")
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/sites", headers=headers).status_code == 200  # now remembered
    revoke(app, secret)
    assert_unauthorized(client.post("/api/v1/groups", json={}, headers=headers))
    assert count_rows(app, Group) == 0


def test_without_a_token_cache_a_revoked_token_reads_nothing_at_once(make_app):
    app = make_app(TOKEN_CACHE_SECONDS=0)
    client, secret = app.test_client(), Auth(app).token("reader")
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/sites", headers=headers).status_code == 200
    revoke(app, secret)
    assert_unauthorized(client.get("/api/v1/sites", headers=headers))


def test_token_revoked_for_a_later_moment_still_works_until_then(app, client, auth):
    secret = auth.token("reader")
    revoke(app, secret, at=utcnow() + timedelta(hours=1))
    response = client.get("/api/v1/sites", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200


def test_scheme_is_case_insensitive(client, auth):
    secret = auth.token("reader")
    response = client.get("/api/v1/sites", headers={"Authorization": f"bearer {secret}"})
    assert response.status_code == 200


def test_refused_token_writes_nothing(app, client, auth):
    before = count_rows(app, Group), count_rows(app, AuditEvent)
    response = client.post(
        "/api/v1/groups",
        json={"site_id": CENTRE, "label": "Convoy"},
        headers={"Authorization": "Bearer nt_forged"},
    )
    assert_unauthorized(response)
    assert (count_rows(app, Group), count_rows(app, AuditEvent)) == before


def test_openapi_document_is_public(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"].startswith("3.")
    assert "/api/v1/reports" in document["paths"]


def test_interactive_docs_are_public(client):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"


def test_docs_assets_are_public(client):
    response = client.get("/api/v1/docs/assets/swagger-ui.css")
    assert response.status_code == 200
    response.close()


def test_healthz_is_public(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


# --- readers ----------------------------------------------------------------------------


def test_reader_reads_sites_but_no_group_and_is_told_what_it_can_read(client, auth):
    group = create_group(client, auth.admin)
    reader = auth.headers("reader")
    assert client.get("/api/v1/sites", headers=reader).status_code == 200
    assert client.get(f"/api/v1/sites/{CENTRE}", headers=reader).status_code == 200
    for path in ("/api/v1/groups", f"/api/v1/groups/{group['id']}", "/api/v1/reports"):
        problem = assert_problem(client.get(path, headers=reader), 403)
        assert "Hangar 2 families" not in str(problem)
        assert "/api/v1/sites" in problem["detail"] and "/api/v1/summaries" in problem["detail"]


def test_reader_is_refused_before_its_query_is_read(client, auth):
    response = client.get("/api/v1/groups?status=teleported", headers=auth.headers("reader"))
    assert_problem(response, 403)


def test_reader_cannot_read_one_raw_report(client, auth):
    group = create_group(client, auth.admin)
    created = client.post("/api/v1/reports", json=report_body(group["id"]), headers=auth.admin)
    response = client.get(created.headers["Location"], headers=auth.headers("reader"))
    assert_problem(response, 403)


def test_coordinator_may_list_raw_reports(client, auth):
    response = client.get("/api/v1/reports", headers=auth.headers("coordinator", CENTRE))
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/sites", {"id": "NOT A SLUG", "kind": "castle"}),
        ("PATCH", f"/api/v1/sites/{CENTRE}", {"latitude": 500}),
        ("POST", "/api/v1/groups", {"site_id": 7, "label": ""}),
        ("POST", "/api/v1/reports", {"group_id": "nope", "total": -1}),
        ("POST", "/api/v1/reports/batch", {"reports": []}),
        ("POST", "/api/v1/reports/batch", ["not", "an", "object"]),
    ],
)
def test_reader_posting_an_invalid_body_is_403_not_422(app, client, auth, method, path, body):
    before = count_rows(app, AuditEvent)
    response = client.open(path, method=method, json=body, headers=auth.headers("reader"))
    assert_problem(response, 403)
    assert count_rows(app, AuditEvent) == before


def test_reader_posting_malformed_json_is_403(client, auth):
    response = client.post(
        "/api/v1/reports",
        data="{not json",
        content_type="application/json",
        headers=auth.headers("reader"),
    )
    assert_problem(response, 403)


def test_reader_cannot_patch_a_group_with_an_invalid_body(client, auth):
    group = create_group(client, auth.admin)
    response = client.patch(
        f"/api/v1/groups/{group['id']}",
        json={"status": "teleported"},
        headers=auth.headers("reader"),
    )
    assert_problem(response, 403)


# --- the write matrix -------------------------------------------------------------------

ROLES: dict[str, tuple[str, ...]] = {
    "admin": ("admin",),
    "coordinator-centre": ("coordinator", CENTRE),
    "coordinator-airport": ("coordinator", AIRPORT),
    "coordinator-both": ("coordinator", CENTRE, AIRPORT),
    "reader": ("reader",),
}


@dataclass
class World:
    """Two groups, one per seed site, made by an admin before the write under test."""

    app: Flask
    client: FlaskClient
    groups: dict[str, str]


@dataclass(frozen=True)
class Write:
    """One write: how to send it, what a success returns, and what it audits."""

    send: Callable[[World, dict[str, str]], Any]
    success: int
    action: str
    batch: bool = False


def _post_site(world: World, headers: dict[str, str]) -> Any:
    body = {"id": "lachin-corridor", "name": "Lachin corridor", "kind": "border_crossing"}
    return world.client.post("/api/v1/sites", json=body, headers=headers)


def _patch_site(world: World, headers: dict[str, str]) -> Any:
    return world.client.patch(f"/api/v1/sites/{CENTRE}", json={"capacity": 5000}, headers=headers)


def _post_group(site_id: str) -> Callable[[World, dict[str, str]], Any]:
    def send(world: World, headers: dict[str, str]) -> Any:
        body = {"site_id": site_id, "label": "Convoy from Martakert"}
        return world.client.post("/api/v1/groups", json=body, headers=headers)

    return send


def _patch_group(site_id: str, changes: dict[str, Any]) -> Callable[[World, dict[str, str]], Any]:
    def send(world: World, headers: dict[str, str]) -> Any:
        path = f"/api/v1/groups/{world.groups[site_id]}"
        return world.client.patch(path, json=changes, headers=headers)

    return send


def _post_report(site_id: str) -> Callable[[World, dict[str, str]], Any]:
    def send(world: World, headers: dict[str, str]) -> Any:
        body = report_body(world.groups[site_id], 40, sadd=SADD_40)
        return world.client.post("/api/v1/reports", json=body, headers=headers)

    return send


def _post_batch(site_id: str) -> Callable[[World, dict[str, str]], Any]:
    def send(world: World, headers: dict[str, str]) -> Any:
        body = {"reports": [report_body(world.groups[site_id], 12)]}
        return world.client.post("/api/v1/reports/batch", json=body, headers=headers)

    return send


WRITES: dict[str, Write] = {
    "create site": Write(_post_site, 201, "site.create"),
    "patch site": Write(_patch_site, 200, "site.update"),
    "create group at centre": Write(_post_group(CENTRE), 201, "group.create"),
    "create group at airport": Write(_post_group(AIRPORT), 201, "group.create"),
    "patch group at centre": Write(
        _patch_group(CENTRE, {"status": "in_transit"}), 200, "group.update"
    ),
    "patch group at airport": Write(
        _patch_group(AIRPORT, {"label": "Hangar 3"}), 200, "group.update"
    ),
    "move group centre to airport": Write(
        _patch_group(CENTRE, {"site_id": AIRPORT}), 200, "group.update"
    ),
    "move group airport to centre": Write(
        _patch_group(AIRPORT, {"site_id": CENTRE}), 200, "group.update"
    ),
    "report at centre": Write(_post_report(CENTRE), 201, "report.create"),
    "report at airport": Write(_post_report(AIRPORT), 201, "report.create"),
    "batch at centre": Write(_post_batch(CENTRE), 201, "report.create", batch=True),
    "batch at airport": Write(_post_batch(AIRPORT), 201, "report.create", batch=True),
}

# Who may: "all" of a write's sites must be on a coordinator's token.
ALLOWED: dict[str, set[str]] = {
    "create site": {"admin"},
    "patch site": {"admin"},
    "create group at centre": {"admin", "coordinator-centre", "coordinator-both"},
    "create group at airport": {"admin", "coordinator-airport", "coordinator-both"},
    "patch group at centre": {"admin", "coordinator-centre", "coordinator-both"},
    "patch group at airport": {"admin", "coordinator-airport", "coordinator-both"},
    "move group centre to airport": {"admin", "coordinator-both"},
    "move group airport to centre": {"admin", "coordinator-both"},
    "report at centre": {"admin", "coordinator-centre", "coordinator-both"},
    "report at airport": {"admin", "coordinator-airport", "coordinator-both"},
    "batch at centre": {"admin", "coordinator-centre", "coordinator-both"},
    "batch at airport": {"admin", "coordinator-airport", "coordinator-both"},
}

# Refused as "not found": a change to a group of a site the token does not hold, so the
# group's id is not confirmed (reading it is 404 too). Every other refusal is 403.
NOT_FOUND: dict[str, set[str]] = {
    "patch group at centre": {"coordinator-airport"},
    "patch group at airport": {"coordinator-centre"},
    "move group centre to airport": {"coordinator-airport"},
    "move group airport to centre": {"coordinator-centre"},
}

MATRIX = [
    pytest.param(
        write,
        role,
        role in ALLOWED[write],
        404 if role in NOT_FOUND.get(write, set()) else 403,
        id=f"{role}-{write.replace(' ', '-')}",
    )
    for write in WRITES
    for role in ROLES
]


def snapshot(app: Flask) -> dict[str, Any]:
    """Everything a write could change."""
    with app.app_context():
        sites = db.session.execute(db.select(Site).order_by(Site.id)).scalars()
        groups = db.session.execute(db.select(Group).order_by(Group.label)).scalars()
        return {
            "sites": [(s.id, s.capacity, s.name) for s in sites],
            "groups": [(str(g.id), g.site_id, g.label, g.status.value) for g in groups],
            "reports": _count(Report),
            "moves": _count(GroupMove),
            "audit": _count(AuditEvent),
        }


def _count(model: Any) -> int:
    return db.session.execute(db.select(func.count()).select_from(model)).scalar_one()


@pytest.fixture
def world(app, client, auth) -> World:
    admin = auth.admin
    groups = {
        CENTRE: create_group(client, admin, CENTRE, label="Centre families")["id"],
        AIRPORT: create_group(client, admin, AIRPORT, label="Airport hangar")["id"],
    }
    return World(app, client, groups)


def effective_status(write: Write, response: Any) -> int:
    """The status of the write itself: for a batch that is not refused whole, the item's."""
    if write.batch and response.status_code == 200:
        (item,) = response.get_json()["results"]
        return item["status"]
    return response.status_code


@pytest.mark.parametrize(("write_name", "role", "allowed", "refused"), MATRIX)
def test_write_matrix(world, auth, write_name, role, allowed, refused):
    write = WRITES[write_name]
    kind, *sites = ROLES[role]
    token_name = f"matrix {role}"
    secret = auth.token(kind, *sites, name=token_name)
    headers = {"Authorization": f"Bearer {secret}"}
    before = snapshot(world.app)

    response = write.send(world, headers)

    if write.batch and role != "reader":
        # A batch is never refused whole for a site: each item answers for itself.
        assert response.status_code == 200, response.get_json()
    status = effective_status(write, response)
    if not allowed:
        assert status == refused, (status, response.get_json())
        if not (write.batch and response.status_code == 200):
            assert_problem(response, refused)
        assert snapshot(world.app) == before
        return

    assert status == write.success, response.get_json()
    events = audit_events(world.app)[before["audit"] :]
    assert len(events) == 1, events
    (event,) = events
    assert event["actor"] == token_name
    assert event["action"] == write.action
    with world.app.app_context():
        token_id = db.session.execute(
            db.select(ApiToken.id).where(ApiToken.secret_hash == hash_token(secret))
        ).scalar_one()
    assert event["token_id"] == token_id
    assert event["after"] is not None
    if write.action.endswith(".create"):
        assert event["before"] is None
    else:
        assert event["before"] is not None
        assert event["before"] != event["after"]


def test_audit_of_a_move_records_both_sites(world, auth):
    headers = auth.headers("coordinator", CENTRE, AIRPORT)
    group_id = world.groups[CENTRE]
    response = world.client.patch(
        f"/api/v1/groups/{group_id}", json={"site_id": AIRPORT}, headers=headers
    )
    assert response.status_code == 200
    moved = response.get_json()
    assert moved["site_id"] == AIRPORT
    assert [(m["from_site_id"], m["to_site_id"]) for m in moved["moves"]] == [(CENTRE, AIRPORT)]
    event = audit_events(world.app)[-1]
    assert event["entity_type"] == "group"
    assert event["entity_id"] == group_id
    assert event["before"]["site_id"] == CENTRE
    assert event["after"]["site_id"] == AIRPORT


def test_audit_of_a_report_names_group_site_and_total(world, auth):
    headers = auth.headers("coordinator", CENTRE)
    body = report_body(world.groups[CENTRE], 40, sadd=SADD_40)
    report = world.client.post("/api/v1/reports", json=body, headers=headers).get_json()
    event = audit_events(world.app)[-1]
    assert event["action"] == "report.create"
    assert event["entity_id"] == str(report["id"])
    assert event["after"]["group_id"] == world.groups[CENTRE]
    assert event["after"]["site_id"] == CENTRE
    assert event["after"]["total"] == 40


def test_audit_of_a_site_change_keeps_before_and_after(world, auth):
    world.client.patch(f"/api/v1/sites/{CENTRE}", json={"capacity": 5000}, headers=auth.admin)
    event = audit_events(world.app)[-1]
    assert event["action"] == "site.update"
    assert event["before"]["capacity"] is None
    assert event["after"]["capacity"] == 5000


def test_coordinator_cannot_move_a_group_to_an_unknown_site_it_does_not_hold(world, auth):
    before = snapshot(world.app)
    response = world.client.patch(
        f"/api/v1/groups/{world.groups[CENTRE]}",
        json={"site_id": "nowhere"},
        headers=auth.headers("coordinator", CENTRE),
    )
    assert_problem(response, 403)
    assert snapshot(world.app) == before


def test_batch_for_a_coordinator_answers_each_site_on_its_own(world, auth):
    headers = auth.headers("coordinator", CENTRE)
    body = {
        "reports": [
            report_body(world.groups[CENTRE], 10),
            report_body(world.groups[AIRPORT], 20),
            report_body(world.groups[CENTRE], 30),
        ]
    }
    response = world.client.post("/api/v1/reports/batch", json=body, headers=headers)
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [r["status"] for r in results] == [201, 403, 201]
    assert [r["index"] for r in results] == [0, 1, 2]
    assert results[1]["report"] is None
    assert AIRPORT in results[1]["problem"]["detail"]
    assert count_rows(world.app, Report) == 2


def test_reader_batch_is_refused_whole(world, auth):
    body = {"reports": [report_body(world.groups[CENTRE], 10)]}
    response = world.client.post("/api/v1/reports/batch", json=body, headers=auth.headers("reader"))
    assert_problem(response, 403)
    assert count_rows(world.app, Report) == 0


def test_only_the_docs_themselves_are_public(client):
    response = client.get("/api/v1/docsX")
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
