"""Groups registered with an id the client chose: once, however often it is sent."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from service.domain.callers import Caller
from service.domain.errors import Conflict
from service.domain.groups import register_group
from service.extensions import db
from service.models import AuditEvent, Group, Role
from tests.helpers import AIRPORT, CENTRE, assert_problem, at_once, count_rows


def registration(group_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": group_id, "site_id": CENTRE, "label": "Families from Askeran", **fields}


def group_audit_events(app: Any, group_id: str) -> list[str]:
    with app.app_context():
        return list(
            db.session.execute(
                select(AuditEvent.action)
                .where(AuditEvent.entity_type == "group", AuditEvent.entity_id == group_id)
                .order_by(AuditEvent.id)
            ).scalars()
        )


def test_a_group_registered_with_its_own_id_keeps_it(app, client, auth):
    group_id = str(uuid.uuid4())
    headers = auth.headers("coordinator", CENTRE)
    response = client.post("/api/v1/groups", json=registration(group_id), headers=headers)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["id"] == group_id
    assert client.get(f"/api/v1/groups/{group_id}", headers=headers).status_code == 200


def test_the_same_registration_again_answers_the_group_and_stores_nothing(app, client, auth):
    group_id = str(uuid.uuid4())
    headers = auth.headers("coordinator", CENTRE)
    body = registration(group_id, origin="Askeran", status="waiting")
    first = client.post("/api/v1/groups", json=body, headers=headers)
    again = client.post("/api/v1/groups", json=body, headers=headers)
    assert first.status_code == 201 and again.status_code == 200, again.get_json()
    assert again.get_json() == first.get_json()
    assert count_rows(app, Group) == 1
    assert group_audit_events(app, group_id) == ["group.create"]


def test_defaults_compare_as_sent_explicitly(client, auth):
    """`status` left out is `waiting`, `origin` left out is none: the same registration."""
    group_id = str(uuid.uuid4())
    headers = auth.admin
    assert (
        client.post("/api/v1/groups", json=registration(group_id), headers=headers).status_code
        == 201
    )
    explicit = registration(group_id, status="waiting", origin=None)
    assert client.post("/api/v1/groups", json=explicit, headers=headers).status_code == 200


@pytest.mark.parametrize(
    "changed",
    [
        {"label": "Families from Martuni"},
        {"origin": "Askeran"},
        {"status": "in_transit"},
        {"site_id": AIRPORT},
    ],
)
def test_the_same_id_with_another_registration_is_409(app, client, auth, changed):
    group_id = str(uuid.uuid4())
    headers = auth.headers("coordinator", CENTRE, AIRPORT)
    assert (
        client.post("/api/v1/groups", json=registration(group_id), headers=headers).status_code
        == 201
    )
    response = client.post(
        "/api/v1/groups", json=registration(group_id, **changed), headers=headers
    )
    assert_problem(response, 409)
    assert count_rows(app, Group) == 1
    shown = client.get(f"/api/v1/groups/{group_id}", headers=headers).get_json()
    assert shown["label"] == "Families from Askeran" and shown["site_id"] == CENTRE


def test_a_resend_after_a_colleague_moved_the_group_answers_it_as_it_is_now(app, client, auth):
    """Compared with what was registered, not with the group now: the phone that sent the
    registration before the move gets the group (moved, in transit), not a conflict."""
    group_id = str(uuid.uuid4())
    phone = auth.headers("coordinator", CENTRE, AIRPORT)
    body = registration(group_id)
    assert client.post("/api/v1/groups", json=body, headers=phone).status_code == 201
    moved = client.patch(
        f"/api/v1/groups/{group_id}",
        json={"site_id": AIRPORT, "status": "in_transit", "label": "Askeran, hangar 2"},
        headers=auth.admin,
    )
    assert moved.status_code == 200, moved.get_json()

    again = client.post("/api/v1/groups", json=body, headers=phone)
    assert again.status_code == 200, again.get_json()
    group = again.get_json()
    assert (group["site_id"], group["status"], group["label"]) == (
        AIRPORT,
        "in_transit",
        "Askeran, hangar 2",
    )
    assert [m["to_site_id"] for m in group["moves"]] == [AIRPORT]
    # A registration as the group is now is not the one registered: a conflict.
    now_body = registration(
        group_id, site_id=AIRPORT, status="in_transit", label="Askeran, hangar 2"
    )
    assert_problem(client.post("/api/v1/groups", json=now_body, headers=phone), 409)


def test_an_id_taken_at_a_site_the_caller_cannot_see_tells_nothing(app, client, auth):
    """The same 409, word for word, as any other conflict: nothing of the other site's
    group (its label, site, or that the registration matched) comes back."""
    group_id = str(uuid.uuid4())
    body = registration(group_id)
    assert client.post("/api/v1/groups", json=body, headers=auth.admin).status_code == 201
    client.patch(f"/api/v1/groups/{group_id}", json={"site_id": AIRPORT}, headers=auth.admin)

    centre_only = auth.headers("coordinator", CENTRE)
    hidden = client.post("/api/v1/groups", json=body, headers=centre_only)
    problem = assert_problem(hidden, 409)
    other = client.post(
        "/api/v1/groups", json=registration(group_id, label="Other"), headers=centre_only
    )
    assert other.get_json() == problem
    text = hidden.get_data(as_text=True)
    assert AIRPORT not in text and "Families" not in text
    assert count_rows(app, Group) == 1


def test_the_body_site_is_checked_before_the_id(client, auth):
    """A coordinator naming a site it does not hold is refused for the site (403), whether
    or not the id is taken: the answer does not depend on the id."""
    group_id = str(uuid.uuid4())
    assert (
        client.post(
            "/api/v1/groups", json=registration(group_id, site_id=AIRPORT), headers=auth.admin
        ).status_code
        == 201
    )
    centre_only = auth.headers("coordinator", CENTRE)
    taken = client.post(
        "/api/v1/groups", json=registration(group_id, site_id=AIRPORT), headers=centre_only
    )
    free = client.post(
        "/api/v1/groups", json=registration(str(uuid.uuid4()), site_id=AIRPORT), headers=centre_only
    )
    assert_problem(taken, 403)
    assert taken.get_json() == free.get_json()


@pytest.mark.parametrize("bad", ["not-a-uuid", "", 12, None, "1234"])
def test_an_id_that_is_not_a_uuid_is_422(app, client, auth, bad):
    response = client.post("/api/v1/groups", json=registration(bad), headers=auth.admin)
    assert_problem(response, 422, "id")
    assert count_rows(app, Group) == 0


def test_eight_simultaneous_registrations_with_one_id_store_one_group(app, auth):
    """Eight requests at once, each with its own session: one row, one 201, the rest the
    same group (200), one audit event."""
    headers = auth.headers("coordinator", CENTRE)
    group_id = str(uuid.uuid4())
    answers: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def send() -> None:
        response = app.test_client().post(
            "/api/v1/groups", json=registration(group_id), headers=headers
        )
        with lock:
            answers.append((response.status_code, response.get_json()))

    at_once(8, send)
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] * 7 + [201], answers
    assert {answer["id"] for _, answer in answers} == {group_id}
    assert count_rows(app, Group) == 1
    assert group_audit_events(app, group_id) == ["group.create"]


def test_a_registration_racing_an_uncommitted_one_reads_the_winner(app):
    """Two sessions, the first holding its insert uncommitted while the second registers
    the same id: the second waits on the database (the primary key on PostgreSQL, the
    write lock on SQLite), then answers the first's group without a second row; with
    another registration it is a conflict."""
    admin = Caller(token_id=None, name="operator", role=Role.admin, site_ids=frozenset())
    group_id = uuid.uuid4()
    first_added = threading.Event()
    release_first = threading.Event()
    results: dict[str, Any] = {}

    def first() -> None:
        with app.app_context():
            register_group(admin, registration(group_id))
            first_added.set()
            release_first.wait(30)
            db.session.commit()

    def second(label: str) -> None:
        with app.app_context():
            try:
                group, created = register_group(admin, registration(group_id, label=label))
                results[label] = (group.id, created)
                db.session.commit()
            except Conflict as refused:
                results[label] = refused
                db.session.rollback()

    holder = threading.Thread(target=first)
    holder.start()
    assert first_added.wait(30)
    same = threading.Thread(target=second, args=("Families from Askeran",))
    same.start()
    waiting_on_the_database(app, same)
    release_first.set()
    holder.join(30)
    same.join(30)
    assert results["Families from Askeran"] == (group_id, False)

    other = threading.Thread(target=second, args=("Another group",))
    other.start()
    other.join(30)
    assert isinstance(results["Another group"], Conflict)
    assert count_rows(app, Group) == 1


def waiting_on_the_database(app: Any, thread: threading.Thread) -> None:
    """Wait until `thread` is blocked in the database (PostgreSQL: a lock wait seen in
    pg_stat_activity; SQLite: it cannot be seen from outside, so the thread must simply
    still be running after its write lock request - it cannot finish before the first
    commits)."""
    import time

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            assert thread.is_alive()
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            waiting = db.session.execute(
                db.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            ).scalar_one()
            db.session.rollback()
            if waiting:
                return
            time.sleep(0.05)
        raise AssertionError("the second registration never waited on the first")
