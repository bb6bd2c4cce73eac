"""CSV and HXL exports: parsed as a spreadsheet or an HXL tool would read them."""

from __future__ import annotations

import csv
import io

import hxl
import pytest

from service.domain import summaries
from service.domain.exports import neutralise
from service.extensions import db
from tests.helpers import AIRPORT, CENTRE, SADD_40, create_group, post_report, summary_now

pytestmark = pytest.mark.usefixtures("module_worker")


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def seeded_summary(app, client, admin) -> dict:
    hangar = create_group(client, admin, AIRPORT, label="Hangar 1")
    convoy = create_group(client, admin, CENTRE, label="Convoy")
    post_report(
        client,
        admin,
        hangar["id"],
        40,
        1,
        sadd=SADD_40,
        vulnerable={"injured": 2},
        needs=[{"sector": "health", "severity": 4}],
    )
    post_report(client, admin, convoy["id"], 75, 1)
    return summary_now(app, client, admin)


def test_csv_has_a_row_per_site_and_a_total_that_adds_up(app, client, auth):
    admin = auth.admin
    document = seeded_summary(app, client, admin)
    response = client.get(f"/api/v1/summaries/{document['id']}?format=csv", headers=admin)
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = rows_of(response.get_data(as_text=True))
    by_site = {row["site_id"]: row for row in rows[:-1]}
    total = rows[-1]
    assert set(by_site) == {AIRPORT, CENTRE}
    assert int(by_site[AIRPORT]["people"]) == 40
    assert int(by_site[CENTRE]["people"]) == 75
    assert total["site_name"] == "Total"
    assert int(total["people"]) == 115 == document["totals"]["people"]
    assert int(total["groups"]) == 2
    assert int(by_site[AIRPORT]["female_18_59"]) == SADD_40["female_18_59"]
    assert int(total["people_without_sadd"]) == 75
    assert int(by_site[AIRPORT]["injured"]) == 2
    assert float(total["need_water_litres_per_day"]) == 115 * 15
    assert by_site[AIRPORT]["reported_needs"] == "health:4"


def test_accept_header_chooses_csv(app, client, auth):
    admin = auth.admin
    seeded_summary(app, client, admin)
    response = client.get("/api/v1/summaries/latest", headers=admin | {"Accept": "text/csv"})
    assert response.mimetype == "text/csv"
    assert rows_of(response.get_data(as_text=True))[-1]["site_name"] == "Total"


def test_hxl_export_is_valid_hxl_with_the_expected_hashtags(app, client, auth):
    admin = auth.admin
    document = seeded_summary(app, client, admin)
    response = client.get(f"/api/v1/summaries/{document['id']}?format=hxl", headers=admin)
    assert response.status_code == 200
    dataset = hxl.data(io.BytesIO(response.get_data()), hxl.InputOptions(allow_local=True))
    tags = [column.display_tag for column in dataset.columns]
    for expected in (
        "#loc+name",
        "#loc+code",
        "#date+reported",
        "#affected+displaced+total",
        "#affected+displaced+f+age0_4",
        "#affected+displaced+m+age60plus",
    ):
        assert expected in tags
    assert any(tag.startswith("#inneed") for tag in tags)
    rows = list(dataset)
    people = {row.get("#loc+code"): row.get("#affected+displaced+total") for row in rows}
    assert people[AIRPORT] == "40"
    assert people[CENTRE] == "75"
    total = next(row for row in rows if row.get("#loc+name") == "Total")
    assert total.get("#affected+displaced+total") == "115"
    assert total.get("#affected+displaced+f+age18_59") == str(SADD_40["female_18_59"])


def test_cells_that_a_spreadsheet_would_run_are_neutralised(app, client, auth):
    admin = auth.admin
    created = client.post(
        "/api/v1/sites",
        json={
            "id": "hostile-site",
            "name": '=HYPERLINK("http://x","click")',
            "kind": "other",
            "pcode": "@SUM(A1)",
        },
        headers=admin,
    )
    assert created.status_code == 201
    document = summary_now(app, client, admin)
    text = client.get(f"/api/v1/summaries/{document['id']}?format=csv", headers=admin).get_data(
        as_text=True
    )
    row = next(r for r in rows_of(text) if r["site_id"] == "hostile-site")
    assert row["site_name"].startswith("'=")
    assert row["pcode"] == "'@SUM(A1)"


def test_neutralise_keeps_numbers_and_quotes_formulas():
    assert neutralise(-12) == -12
    assert neutralise("-12") == "-12"
    assert neutralise("+3.5") == "+3.5"
    assert neutralise("=1+1") == "'=1+1"
    assert neutralise("-1+cmd|' /C calc'!A0") == "'-1+cmd|' /C calc'!A0"
    assert neutralise("\tlabel") == "'\tlabel"
    assert neutralise("\rlabel") == "'\rlabel"
    assert neutralise("Stepanakert") == "Stepanakert"
    assert neutralise(None) == ""


def test_pending_summary_has_no_csv_yet(app, client, auth):
    admin = auth.admin
    with app.app_context():  # requested without a task: the module's worker cannot build it
        summary_id = summaries.request_summary(None).summary.id
        db.session.commit()
    response = client.get(f"/api/v1/summaries/{summary_id}?format=csv", headers=admin)
    assert response.status_code == 409
    assert response.mimetype == "application/problem+json"
