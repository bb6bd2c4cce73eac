"""Resends store nothing new: Idempotency-Key on POST /reports, client_id in batches.

A key is unique per token in the schema (reports' `uq_reports_token_key`), so whatever
the timing no second report is stored for it. A resend answers 200 with the report as
first stored and `Idempotent-Replayed: true` (single, batch and import alike).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from service.domain.canonical import digest
from service.domain.writer.postgres import key_lock_prefix
from service.extensions import db
from service.models import ApiToken, Report
from service.types import utcnow
from tests.backends import on_services
from tests.helpers import at_once, create_group, report_body


def stored_reports(app) -> int:
    with app.app_context():
        return db.session.execute(select(func.count()).select_from(Report)).scalar_one()


def test_resend_with_same_key_stores_one_report(app, client, auth):
    headers = auth.headers("coordinator", "stepanakert-centre")
    group = create_group(client, headers)
    body = report_body(group["id"], 80)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = client.post("/api/v1/reports", json=body, headers=headers | key)
    again = client.post("/api/v1/reports", json=body, headers=headers | key)
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert stored_reports(app) == 1


def test_quoted_key_as_in_the_draft_is_the_same_key(app, client, auth):
    headers = auth.admin
    group = create_group(client, headers)
    body = report_body(group["id"])
    client.post("/api/v1/reports", json=body, headers=headers | {"Idempotency-Key": '"k-1"'})
    again = client.post("/api/v1/reports", json=body, headers=headers | {"Idempotency-Key": "k-1"})
    assert again.headers["Idempotent-Replayed"] == "true"
    assert stored_reports(app) == 1


def test_same_key_with_different_body_is_422_and_stores_nothing(app, client, auth):
    headers = auth.admin
    group = create_group(client, headers)
    key = {"Idempotency-Key": "tally-7"}
    client.post("/api/v1/reports", json=report_body(group["id"], 80), headers=headers | key)
    other = client.post("/api/v1/reports", json=report_body(group["id"], 81), headers=headers | key)
    assert other.status_code == 422
    assert other.mimetype == "application/problem+json"
    assert "different" in other.get_json()["detail"]
    assert stored_reports(app) == 1


def test_same_moment_in_another_offset_is_the_same_request(app, client, auth):
    headers = auth.admin
    group = create_group(client, headers)
    key = {"Idempotency-Key": "tz-1"}
    utc = report_body(group["id"], 5, "2023-09-21T06:00:00+00:00")
    yerevan = report_body(group["id"], 5, "2023-09-21T10:00:00+04:00")
    assert client.post("/api/v1/reports", json=utc, headers=headers | key).status_code == 201
    again = client.post("/api/v1/reports", json=yerevan, headers=headers | key)
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"


def test_keys_are_scoped_to_the_token(app, client, auth):
    first, second = auth.admin, auth.admin
    group = create_group(client, first)
    body = report_body(group["id"])
    key = {"Idempotency-Key": "shared-key"}
    assert client.post("/api/v1/reports", json=body, headers=first | key).status_code == 201
    response = client.post("/api/v1/reports", json=body, headers=second | key)
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers
    assert stored_reports(app) == 2


def token_id_of(app, secret: str) -> int:
    from service.domain.tokens import hash_token

    with app.app_context():
        return db.session.execute(
            select(ApiToken.id).where(ApiToken.secret_hash == hash_token(secret))
        ).scalar_one()


@pytest.mark.skipif(
    not on_services(),
    reason="SQLite runs one write at a time: no request is ever in flight beside another",
)
def test_resend_while_first_is_in_flight_is_409_then_stores_once(app, client, auth):
    """The first request holds its key (a transaction-scoped lock, taken when it looked
    the key up) until it commits: a resend meanwhile is told to come back, at once."""
    secret = auth.token("admin")
    headers = {"Authorization": f"Bearer {secret}"}
    group = create_group(client, headers)
    body = report_body(group["id"])
    key = {"Idempotency-Key": "in-flight"}
    holder = key_lock_prefix(token_id_of(app, secret)) + "in-flight"
    with app.app_context(), db.engine.connect() as first:
        # The lock the writer takes for a key it is storing (as its SQL hashes the name).
        first.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:holder, 0))"), {"holder": holder}
        )
        response = client.post("/api/v1/reports", json=body, headers=headers | key)
        assert response.status_code == 409
        assert response.mimetype == "application/problem+json"
        assert response.headers["Retry-After"] == "1"
        assert stored_reports(app) == 0
        first.rollback()  # the first request died: its key is free again
    again = client.post("/api/v1/reports", json=body, headers=headers | key)
    assert again.status_code == 201
    assert stored_reports(app) == 1


def a_report(group: dict, token_id: int, key: str) -> Any:
    """An INSERT of a report under `key`, straight into the table."""
    return Report.__table__.insert().values(
        group_id=uuid.UUID(group["id"]),
        site_id=group["site_id"],
        observed_at=utcnow(),
        received_at=utcnow(),
        total=1,
        client_id=key,
        fingerprint="0" * 64,
        token_id=token_id,
    )


def test_a_request_that_died_mid_write_leaves_its_key_free(app, client, auth):
    """A request killed between storing and committing stored nothing: its transaction is
    rolled back by the database, so its resend stores the report, once."""
    secret = auth.token("admin")
    headers = {"Authorization": f"Bearer {secret}"}
    group = create_group(client, headers)
    body = report_body(group["id"])
    token_id = token_id_of(app, secret)
    with app.app_context(), db.engine.connect() as doomed:
        doomed.execute(a_report(group, token_id, "orphan"))
        doomed.invalidate()  # the connection is gone, its transaction with it
    response = client.post(
        "/api/v1/reports", json=body, headers=headers | {"Idempotency-Key": "orphan"}
    )
    assert response.status_code == 201, response.get_json()
    again = client.post(
        "/api/v1/reports", json=body, headers=headers | {"Idempotency-Key": "orphan"}
    )
    assert again.status_code == 200
    assert again.get_json() == response.get_json()
    assert stored_reports(app) == 1


def test_the_schema_refuses_a_second_report_for_one_tokens_key(app, client, auth):
    """Whatever a request does, the database stores one report per token and key."""
    secret = auth.token("admin")
    headers = {"Authorization": f"Bearer {secret}"}
    group = create_group(client, headers)
    first = client.post(
        "/api/v1/reports", json=report_body(group["id"]), headers=headers | {"Idempotency-Key": "k"}
    )
    assert first.status_code == 201
    with app.app_context():
        with pytest.raises(IntegrityError) as refused:
            db.session.execute(a_report(group, token_id_of(app, secret), "k"))
        # PostgreSQL names the constraint; SQLite names its columns.
        named = "uq_reports_token_key" if on_services() else "reports.token_id, reports.client_id"
        assert named in str(refused.value)
        db.session.rollback()
    assert stored_reports(app) == 1


def test_refused_request_frees_its_key_for_a_corrected_resend(app, client, auth):
    centre = auth.headers("coordinator", "stepanakert-centre")
    group = create_group(client, auth.admin, "stepanakert-airport")
    body = report_body(group["id"])
    key = {"Idempotency-Key": "retry-me"}
    assert client.post("/api/v1/reports", json=body, headers=centre | key).status_code == 403
    assert stored_reports(app) == 0

    # Corrected (a group at the token's own site), sent again with the same key: stored,
    # not answered as a replay nor refused as "the key was used for another body".
    mine = create_group(client, auth.admin, "stepanakert-centre")
    resent = client.post("/api/v1/reports", json=report_body(mine["id"]), headers=centre | key)
    assert resent.status_code == 201, resent.get_json()
    assert "Idempotent-Replayed" not in resent.headers


def test_header_and_client_id_must_agree(app, client, auth):
    headers = auth.admin
    group = create_group(client, headers)
    body = report_body(group["id"], client_id=str(uuid.uuid4()))
    response = client.post(
        "/api/v1/reports", json=body, headers=headers | {"Idempotency-Key": str(uuid.uuid4())}
    )
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["field"] == "client_id"
    assert stored_reports(app) == 0


def test_malformed_key_is_400(client, auth):
    headers = auth.admin
    group = create_group(client, headers)
    response = client.post(
        "/api/v1/reports",
        json=report_body(group["id"]),
        headers=headers | {"Idempotency-Key": "x" * 300},
    )
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"


def test_batch_resend_stores_each_report_once(app, client, auth):
    headers = auth.headers("coordinator", "stepanakert-centre")
    group = create_group(client, headers)
    items = [report_body(group["id"], n, client_id=str(uuid.uuid4())) for n in (10, 11, 12)]
    first = client.post("/api/v1/reports/batch", json={"reports": items}, headers=headers)
    assert [r["status"] for r in first.get_json()["results"]] == [201, 201, 201]
    again = client.post("/api/v1/reports/batch", json={"reports": items}, headers=headers)
    results = again.get_json()["results"]
    assert [r["status"] for r in results] == [200, 200, 200]
    assert [r["report"]["id"] for r in results] == [
        r["report"]["id"] for r in first.get_json()["results"]
    ]
    assert stored_reports(app) == 3


def test_one_key_many_times_in_a_batch_stores_once_and_replays_the_rest(app, client, auth):
    """An offline queue that kept one report five times (and a changed body under the same
    key) after it: one stored, the copies replay it, the changed one is refused."""
    headers = auth.headers("coordinator", "stepanakert-centre")
    group = create_group(client, headers)
    body = report_body(group["id"], 44, client_id=str(uuid.uuid4()))
    items = [body] * 5 + [body | {"total": 45}]
    response = client.post("/api/v1/reports/batch", json={"reports": items}, headers=headers)
    results = response.get_json()["results"]
    assert [r["status"] for r in results] == [201, 200, 200, 200, 200, 422]
    assert len({r["report"]["id"] for r in results[:5]}) == 1
    assert stored_reports(app) == 1


def test_single_post_then_batch_with_same_client_id_stores_once(app, client, auth):
    headers = auth.admin
    group = create_group(client, headers)
    client_id = str(uuid.uuid4())
    body = report_body(group["id"], 33)
    single = client.post(
        "/api/v1/reports", json=body, headers=headers | {"Idempotency-Key": client_id}
    )
    batch = client.post(
        "/api/v1/reports/batch",
        json={"reports": [body | {"client_id": client_id}]},
        headers=headers,
    )
    (item,) = batch.get_json()["results"]
    assert item["status"] == 200
    assert item["report"] == single.get_json()
    assert stored_reports(app) == 1


def test_eight_simultaneous_identical_requests_store_one_report(app, auth):
    """A unique constraint decides: one stores, the others replay it (200) or are told
    it is in flight (409)."""
    headers = auth.admin
    client = app.test_client()
    group = create_group(client, headers)
    body = report_body(group["id"], 61)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    answers: list[tuple[int, dict]] = []

    def send() -> None:
        response = app.test_client().post("/api/v1/reports", json=body, headers=headers | key)
        answers.append((response.status_code, response.get_json()))

    at_once(8, send)

    assert stored_reports(app) == 1
    assert len(answers) == 8
    statuses = [status for status, _ in answers]
    assert statuses.count(201) == 1 and set(statuses) <= {200, 201, 409}, statuses
    # Every answer with a report is the same report: the first answer, or it replayed.
    assert len({answer["id"] for status, answer in answers if status in (200, 201)}) == 1


def test_canonical_digest_ignores_key_order():
    assert digest({"a": 1, "b": 2}) == digest({"b": 2, "a": 1})
