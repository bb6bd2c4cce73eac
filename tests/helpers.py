"""Small builders shared by the tests."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from flask.testing import FlaskClient

CENTRE = "stepanakert-centre"
AIRPORT = "stepanakert-airport"


def iso(moment: datetime) -> str:
    return moment.isoformat()


def hours_ago(hours: float) -> str:
    return iso(datetime.now(UTC) - timedelta(hours=hours))


def create_group(
    client: FlaskClient, headers: dict[str, str], site_id: str = CENTRE, **fields: Any
) -> dict[str, Any]:
    response = client.post(
        "/api/v1/groups",
        json={"site_id": site_id, "label": "Hangar 2 families", **fields},
        headers=headers,
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def report_body(
    group_id: str, total: int = 40, observed_at: str | None = None, **fields: Any
) -> dict[str, Any]:
    return {
        "group_id": group_id,
        "observed_at": observed_at or hours_ago(1),
        "total": total,
        **fields,
    }


SADD_40 = {
    "female_0_4": 3,
    "female_5_17": 6,
    "female_18_59": 9,
    "female_60_plus": 2,
    "male_0_4": 4,
    "male_5_17": 5,
    "male_18_59": 8,
    "male_60_plus": 3,
}


PROBLEM_JSON = "application/problem+json"


def assert_problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    """The response is a problem+json of `status`; with `field`, its errors name that field."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == PROBLEM_JSON, response.mimetype
    problem = response.get_json()
    assert problem["status"] == status
    assert problem["title"] and problem["detail"]
    if field is not None:
        named = [e["field"] for e in problem.get("errors", [])]
        assert field in named, (field, problem)
    return problem


def count_rows(app: Any, model: Any) -> int:
    """How many rows `model`'s table holds (read in the app's own context)."""
    from sqlalchemy import func, select

    from service.extensions import db

    with app.app_context():
        return db.session.execute(select(func.count()).select_from(model)).scalar_one()


def audit_events(app: Any) -> list[dict[str, Any]]:
    """Every audit event, oldest first, as plain dicts."""
    from service.extensions import db
    from service.models import AuditEvent

    with app.app_context():
        events = db.session.execute(db.select(AuditEvent).order_by(AuditEvent.id)).scalars()
        return [
            {
                "token_id": e.token_id,
                "actor": e.actor,
                "action": e.action,
                "entity_type": e.entity_type,
                "entity_id": e.entity_id,
                "before": e.before,
                "after": e.after,
            }
            for e in events
        ]


def at_once(count: int, target: Callable[[], object]) -> None:
    """Run `target` in `count` threads released together (a barrier), and wait for all."""
    barrier = threading.Barrier(count)

    def run() -> None:
        barrier.wait()
        target()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def post_report(
    client: FlaskClient, headers: dict[str, str], group_id: str, total: int, hours: float, **fields
) -> dict[str, Any]:
    """A head count of `total` observed `hours` ago, stored (201) through the API."""
    response = client.post(
        "/api/v1/reports",
        json=report_body(group_id, total, hours_ago(hours), **fields),
        headers=headers,
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def wait_for(check: Callable[[], object], timeout: float = 30, every: float = 0.2) -> Any:
    """`check()`'s first truthy answer, asked every `every` seconds for up to `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(every)


def summary_now(
    app: Any,
    client: FlaskClient,
    headers: dict[str, str],
    as_of: str | None = None,
    *,
    build_here: bool = False,
) -> dict[str, Any]:
    """Ask for a summary through the API and wait until it is ready: built by the test's
    worker, or here as a worker would (`build_here`; when a worker is running too,
    whichever gets there first builds it and the other has nothing to do)."""
    from service.domain import summaries
    from service.extensions import db

    response = client.post(
        "/api/v1/summaries", json={"as_of": as_of} if as_of else {}, headers=headers
    )
    assert response.status_code == 202, response.get_json()
    if build_here:
        with app.app_context():
            summaries.build(uuid.UUID(response.get_json()["id"]))
            db.session.commit()
    location = response.headers["Location"]

    def built() -> dict[str, Any] | None:
        document = client.get(location, headers=headers).get_json()
        return None if document["status"] == "pending" else document

    document = wait_for(built, every=0.1)
    assert document["status"] == "ready", document
    return document
