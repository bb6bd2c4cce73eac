"""Small builders shared by the tests."""

from __future__ import annotations

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
