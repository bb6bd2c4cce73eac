"""Bad input gets a clear 4xx problem+json naming the field, and nothing is stored."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.models import SADD_KEYS, VULNERABLE_KEYS, AuditEvent, Report
from tests.conftest import Auth
from tests.helpers import (
    AIRPORT,
    CENTRE,
    PROBLEM_JSON,
    SADD_40,
    assert_problem,
    count_rows,
    create_group,
    hours_ago,
    iso,
    report_body,
)


def nothing_stored(app: Any) -> bool:
    return count_rows(app, Report) == 0


@pytest.fixture
def group(client, auth) -> dict[str, Any]:
    return create_group(client, auth.admin)


@pytest.fixture
def other_group(client, auth) -> dict[str, Any]:
    return create_group(client, auth.admin, AIRPORT, label="Airport hangar")


# --- one report: each rule -------------------------------------------------------------

Change = Callable[[dict[str, Any]], None]


def setting(field: str, value: Any) -> Change:
    def change(body: dict[str, Any]) -> None:
        body[field] = value

    return change


def removing(field: str) -> Change:
    def change(body: dict[str, Any]) -> None:
        del body[field]

    return change


def sadd_with(**changes: Any) -> dict[str, Any]:
    return {k: v for k, v in {**SADD_40, **changes}.items() if v is not None}


def future(seconds: float) -> str:
    return iso(datetime.now(UTC) + timedelta(seconds=seconds))


INVALID_REPORTS = [
    # observed_at
    pytest.param(setting("observed_at", "2023-09-25T10:00:00"), "observed_at", id="naive-time"),
    pytest.param(setting("observed_at", "2023-09-25"), "observed_at", id="date-only"),
    pytest.param(setting("observed_at", "yesterday"), "observed_at", id="not-a-date"),
    pytest.param(setting("observed_at", ""), "observed_at", id="empty-date"),
    pytest.param(setting("observed_at", 1695636000), "observed_at", id="epoch-number"),
    pytest.param(setting("observed_at", None), "observed_at", id="null-date"),
    pytest.param(setting("observed_at", future(3600)), "observed_at", id="an-hour-ahead"),
    pytest.param(
        setting("observed_at", "9999-12-31T23:59:59-12:00"), "observed_at", id="year-9999"
    ),
    pytest.param(setting("observed_at", "0001-01-01T00:00:00+05:00"), "observed_at", id="year-1"),
    pytest.param(removing("observed_at"), "observed_at", id="missing-date"),
    # total
    pytest.param(setting("total", -1), "total", id="negative"),
    pytest.param(setting("total", "12"), "total", id="string"),
    pytest.param(setting("total", 1.5), "total", id="float"),
    pytest.param(setting("total", 12.0), "total", id="float-whole"),
    pytest.param(setting("total", True), "total", id="boolean"),
    pytest.param(setting("total", 1_000_001), "total", id="over-a-million"),
    pytest.param(setting("total", 10**30), "total", id="huge"),
    pytest.param(setting("total", None), "total", id="null-total"),
    pytest.param(setting("total", [40]), "total", id="list"),
    pytest.param(removing("total"), "total", id="missing-total"),
    # sadd
    pytest.param(setting("sadd", sadd_with(male_0_4=None)), "sadd.male_0_4", id="sadd-missing-key"),
    pytest.param(setting("sadd", sadd_with(male_0_4=5)), "sadd", id="sadd-sum"),
    pytest.param(setting("sadd", sadd_with(other=0)), "sadd.other", id="sadd-unknown-key"),
    pytest.param(
        setting("sadd", sadd_with(male_0_4=-1, male_5_17=10)), "sadd.male_0_4", id="sadd-negative"
    ),
    pytest.param(setting("sadd", sadd_with(male_0_4="4")), "sadd.male_0_4", id="sadd-string"),
    pytest.param(setting("sadd", [1, 2]), "sadd", id="sadd-list"),
    # vulnerable
    pytest.param(
        setting("vulnerable", {"disabled": 41}), "vulnerable.disabled", id="vulnerable-over-total"
    ),
    pytest.param(
        setting("vulnerable", {"elderly": 1}), "vulnerable.elderly", id="vulnerable-unknown-key"
    ),
    pytest.param(
        setting("vulnerable", {"injured": -1}), "vulnerable.injured", id="vulnerable-negative"
    ),
    # needs
    pytest.param(
        setting("needs", [{"sector": "electricity", "severity": 3}]),
        "needs.0.sector",
        id="need-unknown-sector",
    ),
    pytest.param(
        setting("needs", [{"sector": "water", "severity": 0}]),
        "needs.0.severity",
        id="need-severity-0",
    ),
    pytest.param(
        setting("needs", [{"sector": "water", "severity": 6}]),
        "needs.0.severity",
        id="need-severity-6",
    ),
    pytest.param(
        setting("needs", [{"sector": "water", "severity": "3"}]),
        "needs.0.severity",
        id="need-severity-string",
    ),
    pytest.param(
        setting("needs", [{"sector": "food", "severity": 2}, {"sector": "water"}]),
        "needs.1.severity",
        id="need-without-severity",
    ),
    pytest.param(
        setting("needs", [{"sector": "water", "severity": 3, "urgent": True}]),
        "needs.0.urgent",
        id="need-unknown-key",
    ),
    pytest.param(
        setting("needs", [{"sector": "water", "severity": 3, "note": "tap\x00"}]),
        "needs.0.note",
        id="need-note-nul",
    ),
    pytest.param(setting("needs", {"sector": "water"}), "needs", id="needs-not-a-list"),
    pytest.param(
        setting("needs", [{"sector": "water", "severity": 1}] * 46), "needs", id="needs-too-many"
    ),
    # the rest
    pytest.param(setting("reporter", "Anna"), "reporter", id="unknown-field"),
    pytest.param(setting("group_id", "convoy-4"), "group_id", id="group-not-uuid"),
    pytest.param(setting("group_id", 4), "group_id", id="group-number"),
    pytest.param(setting("group_id", str(uuid.uuid4())), "group_id", id="group-unknown"),
    pytest.param(removing("group_id"), "group_id", id="group-missing"),
    pytest.param(setting("note", "counted\x00"), "note", id="note-nul"),
    pytest.param(setting("note", "counted \x07 at the gate"), "note", id="note-bell"),
    pytest.param(setting("note", "counted \x1b[31m"), "note", id="note-escape"),
    pytest.param(setting("note", "counted \ud83d"), "note", id="note-lone-surrogate"),
    pytest.param(setting("note", "n" * 2001), "note", id="note-too-long"),
    pytest.param(setting("note", 12), "note", id="note-number"),
    pytest.param(setting("supersedes", 0), "supersedes", id="supersedes-zero"),
    pytest.param(setting("supersedes", "1"), "supersedes", id="supersedes-string"),
    pytest.param(setting("supersedes", 987654), "supersedes", id="supersedes-unknown"),
    pytest.param(setting("supersedes", 2**62), "supersedes", id="supersedes-huge-unknown"),
    pytest.param(setting("supersedes", 2**63), "supersedes", id="supersedes-out-of-range"),
    pytest.param(setting("supersedes", 2**31), "supersedes", id="supersedes-past-int32"),
    pytest.param(setting("client_id", "tally-1"), "client_id", id="client-id-not-uuid"),
]


@pytest.mark.parametrize(("change", "field"), INVALID_REPORTS)
def test_invalid_report_is_422_naming_the_field_and_stores_nothing(
    app, client, auth, group, change, field
):
    body = report_body(group["id"], 40)
    change(body)
    events = count_rows(app, AuditEvent)
    response = client.post("/api/v1/reports", json=body, headers=auth.admin)
    assert_problem(response, 422, field)
    assert nothing_stored(app)
    assert count_rows(app, AuditEvent) == events


@pytest.mark.parametrize(("change", "field"), INVALID_REPORTS)
def test_invalid_report_with_idempotency_key_leaves_the_key_free(
    app, client, auth, group, change, field
):
    body = report_body(group["id"], 40)
    change(body)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    response = client.post("/api/v1/reports", json=body, headers=auth.admin | key)
    assert_problem(response, 422, field)
    assert nothing_stored(app)


def test_sadd_mismatch_message_names_both_numbers(client, auth, group):
    body = report_body(group["id"], 41, sadd=SADD_40)
    problem = assert_problem(client.post("/api/v1/reports", json=body, headers=auth.admin), 422)
    (error,) = [e for e in problem["errors"] if e["field"] == "sadd"]
    assert "40" in error["message"] and "41" in error["message"]


def test_every_broken_rule_is_reported_at_once(client, auth, group):
    body = report_body(
        group["id"],
        10,
        observed_at=future(86400),
        sadd=SADD_40,
        vulnerable={"disabled": 11, "injured": 12},
    )
    problem = assert_problem(client.post("/api/v1/reports", json=body, headers=auth.admin), 422)
    named = {e["field"] for e in problem["errors"]}
    assert named == {"observed_at", "sadd", "vulnerable.disabled", "vulnerable.injured"}


def test_observed_at_within_clock_skew_is_accepted(client, auth, group):
    body = report_body(group["id"], 40, observed_at=future(60))
    response = client.post("/api/v1/reports", json=body, headers=auth.admin)
    assert response.status_code == 201, response.get_json()


def test_observed_at_beyond_clock_skew_is_refused(app, client, auth, group):
    skew = app.config["CLOCK_SKEW_SECONDS"]
    body = report_body(group["id"], 40, observed_at=future(skew + 60))
    assert_problem(
        client.post("/api/v1/reports", json=body, headers=auth.admin), 422, "observed_at"
    )


def test_clock_skew_is_configurable(make_app):
    app = make_app(CLOCK_SKEW_SECONDS=0)
    client, auth = app.test_client(), Auth(app)
    group = create_group(client, auth.admin)
    body = report_body(group["id"], 40, observed_at=future(30))
    assert_problem(
        client.post("/api/v1/reports", json=body, headers=auth.admin), 422, "observed_at"
    )
    assert nothing_stored(app)


def test_observed_at_in_another_time_zone_is_stored_in_utc(client, auth, group):
    moment = datetime.now(timezone(timedelta(hours=4))) - timedelta(hours=2)
    body = report_body(group["id"], 40, observed_at=moment.isoformat())
    report = client.post("/api/v1/reports", json=body, headers=auth.admin).get_json()
    stored = datetime.fromisoformat(report["observed_at"])
    assert stored == moment
    assert stored.utcoffset() == timedelta(0)


def test_vulnerable_equal_to_total_is_accepted(client, auth, group):
    body = report_body(group["id"], 5, vulnerable={k: 5 for k in VULNERABLE_KEYS})
    assert client.post("/api/v1/reports", json=body, headers=auth.admin).status_code == 201


def test_zero_people_is_a_valid_count(client, auth, group):
    sadd = dict.fromkeys(SADD_KEYS, 0)
    body = report_body(group["id"], 0, sadd=sadd)
    assert client.post("/api/v1/reports", json=body, headers=auth.admin).status_code == 201


def test_note_with_windows_line_endings_is_kept_as_lines(client, auth, group):
    body = report_body(group["id"], 40, note="gate A\r\ngate B\n")
    report = client.post("/api/v1/reports", json=body, headers=auth.admin).get_json()
    assert report["note"] == "gate A\ngate B"


def test_empty_note_is_stored_as_none(client, auth, group):
    body = report_body(group["id"], 40, note="   ")
    report = client.post("/api/v1/reports", json=body, headers=auth.admin).get_json()
    assert report["note"] is None


def test_supersedes_a_report_of_another_group_is_422(app, client, auth, group, other_group):
    admin = auth.admin
    theirs = client.post(
        "/api/v1/reports", json=report_body(other_group["id"], 700), headers=admin
    ).get_json()
    body = report_body(group["id"], 40, supersedes=theirs["id"])
    assert_problem(client.post("/api/v1/reports", json=body, headers=admin), 422, "supersedes")
    assert count_rows(app, Report) == 1


def test_supersedes_an_earlier_report_of_the_same_group_is_stored(client, auth, group):
    admin = auth.admin
    first = client.post("/api/v1/reports", json=report_body(group["id"], 40), headers=admin)
    body = report_body(group["id"], 42, supersedes=first.get_json()["id"])
    response = client.post("/api/v1/reports", json=body, headers=admin)
    assert response.status_code == 201
    assert response.get_json()["supersedes"] == first.get_json()["id"]


def test_location_of_a_new_report_answers_with_it(client, auth, group):
    created = client.post("/api/v1/reports", json=report_body(group["id"], 40), headers=auth.admin)
    fetched = client.get(created.headers["Location"], headers=auth.headers("coordinator", CENTRE))
    assert fetched.status_code == 200
    assert fetched.get_json() == created.get_json()


@pytest.mark.parametrize("report_id", ["987654", str(2**31), str(10**30), "-1", "abc"])
def test_unknown_report_is_404(client, auth, report_id):
    assert_problem(client.get(f"/api/v1/reports/{report_id}", headers=auth.admin), 404)


def test_observed_at_in_zulu_form_is_accepted(client, auth, group):
    moment = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = report_body(group["id"], 40, observed_at=moment)
    assert client.post("/api/v1/reports", json=body, headers=auth.admin).status_code == 201


def test_report_for_unknown_group_names_group_id_for_a_coordinator_too(app, client, auth):
    body = report_body(str(uuid.uuid4()), 40)
    headers = auth.headers("coordinator", CENTRE)
    assert_problem(client.post("/api/v1/reports", json=body, headers=headers), 422, "group_id")
    assert nothing_stored(app)


# --- the body as a whole ---------------------------------------------------------------

WRITE_PATHS = ["/api/v1/reports", "/api/v1/reports/batch", "/api/v1/groups", "/api/v1/sites"]


@pytest.mark.parametrize("path", WRITE_PATHS)
@pytest.mark.parametrize(
    "raw",
    [
        "{not json",
        '{"total": 4',
        "{'single': 'quotes'}",
        '{"total": 4}}',
        "\ufeff{}",
        "nul\x00",
    ],
)
def test_malformed_json_is_400(app, client, auth, path, raw):
    response = client.post(path, data=raw, content_type="application/json", headers=auth.admin)
    assert_problem(response, 400)
    assert nothing_stored(app)


@pytest.mark.parametrize("path", WRITE_PATHS)
def test_body_that_is_not_utf8_is_400(client, auth, path):
    response = client.post(
        path, data=b'{"label": "\xff\xfe"}', content_type="application/json", headers=auth.admin
    )
    assert_problem(response, 400)


@pytest.mark.parametrize("path", WRITE_PATHS)
def test_json_nested_too_deep_is_400(client, auth, path):
    raw = "[" * 100_000 + "]" * 100_000
    response = client.post(path, data=raw, content_type="application/json", headers=auth.admin)
    assert_problem(response, 400)


@pytest.mark.parametrize("path", WRITE_PATHS)
def test_number_with_too_many_digits_is_400(client, auth, path):
    raw = '{"total": ' + "9" * 5000 + "}"
    response = client.post(path, data=raw, content_type="application/json", headers=auth.admin)
    assert_problem(response, 400)


@pytest.mark.parametrize("path", WRITE_PATHS)
@pytest.mark.parametrize("body", [[], [{}], "a string", 42, None, True])
def test_json_that_is_not_an_object_is_422(app, client, auth, path, body):
    response = client.post(
        path, data=json.dumps(body), content_type="application/json", headers=auth.admin
    )
    assert_problem(response, 422)
    assert nothing_stored(app)


def test_patch_with_array_body_is_422(client, auth, group):
    response = client.patch(
        f"/api/v1/groups/{group['id']}", json=[{"label": "x"}], headers=auth.admin
    )
    assert_problem(response, 422)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/xml", None],
)
def test_report_sent_as_another_content_type_is_415(app, client, auth, group, content_type):
    raw = json.dumps(report_body(group["id"], 40))
    headers = auth.admin
    if content_type:
        headers = headers | {"Content-Type": content_type}
    response = client.post("/api/v1/reports", data=raw, headers=headers)
    problem = assert_problem(response, 415)
    assert "application/json" in problem["detail"]
    assert nothing_stored(app)


def test_json_with_charset_and_problem_suffix_types_are_json(client, auth, group):
    raw = json.dumps(report_body(group["id"], 40))
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        headers = auth.admin | {"Content-Type": content_type}
        response = client.post("/api/v1/reports", data=raw, headers=headers)
        assert response.status_code == 201, (content_type, response.get_json())


def test_empty_body_names_the_missing_fields(client, auth):
    response = client.post("/api/v1/reports", headers=auth.admin)
    problem = assert_problem(response, 422)
    assert {"group_id", "observed_at", "total"} <= {e["field"] for e in problem["errors"]}


def test_body_over_the_limit_is_413(make_app):
    app = make_app(MAX_CONTENT_LENGTH=2048)
    client, auth = app.test_client(), Auth(app)
    group = create_group(client, auth.admin)
    body = report_body(group["id"], 40, note="n" * 1900, needs=[{"sector": "water", "severity": 2}])
    body["needs"] *= 10
    assert len(json.dumps(body)) > 2048
    for path in ("/api/v1/reports", "/api/v1/reports/batch"):
        payload = body if path == "/api/v1/reports" else {"reports": [body]}
        problem = assert_problem(client.post(path, json=payload, headers=auth.admin), 413)
        assert "larger" in problem["detail"]
    assert nothing_stored(app)
    small = report_body(group["id"], 40)
    assert client.post("/api/v1/reports", json=small, headers=auth.admin).status_code == 201


# --- batches ---------------------------------------------------------------------------


def test_batch_with_mixed_items_stores_the_good_ones_and_answers_each_in_order(
    app, client, auth, group
):
    good = report_body(group["id"], 40, client_id=str(uuid.uuid4()))
    bad_total = report_body(group["id"], -3)
    good_too = report_body(group["id"], 42, observed_at=hours_ago(0.5))
    bad_sadd = report_body(group["id"], 41, sadd=SADD_40, client_id=str(uuid.uuid4()))
    unknown_group = report_body(str(uuid.uuid4()), 5)
    items = [good, bad_total, good_too, bad_sadd, "not a report", unknown_group, None]
    response = client.post("/api/v1/reports/batch", json={"reports": items}, headers=auth.admin)
    assert response.status_code == 200, response.get_json()
    results = response.get_json()["results"]
    assert [r["index"] for r in results] == list(range(len(items)))
    assert [r["status"] for r in results] == [201, 422, 201, 422, 422, 422, 422]
    assert results[0]["client_id"] == good["client_id"]
    assert results[0]["report"]["total"] == 40
    assert results[2]["report"]["total"] == 42
    assert results[3]["client_id"] == bad_sadd["client_id"]
    for index, field in ((1, "total"), (3, "sadd"), (5, "group_id")):
        assert results[index]["report"] is None
        assert field in [e["field"] for e in results[index]["problem"]["errors"]], results[index]
    assert count_rows(app, Report) == 2
    group_now = client.get(f"/api/v1/groups/{group['id']}", headers=auth.admin).get_json()
    assert group_now["current_count"] == 42


def test_batch_bad_item_leaves_its_client_id_free_for_a_corrected_resend(app, client, auth, group):
    client_id = str(uuid.uuid4())
    bad = report_body(group["id"], -1, client_id=client_id)
    first = client.post("/api/v1/reports/batch", json={"reports": [bad]}, headers=auth.admin)
    assert first.get_json()["results"][0]["status"] == 422
    fixed = report_body(group["id"], 1, client_id=client_id)
    again = client.post("/api/v1/reports/batch", json={"reports": [fixed]}, headers=auth.admin)
    assert again.get_json()["results"][0]["status"] == 201
    assert count_rows(app, Report) == 1


def test_batch_of_501_reports_is_422_and_stores_nothing(app, client, auth, group):
    items = [report_body(group["id"], 1)] * 501
    response = client.post("/api/v1/reports/batch", json={"reports": items}, headers=auth.admin)
    assert_problem(response, 422, "reports")
    assert nothing_stored(app)


def test_batch_of_500_reports_is_accepted(app, client, auth, group):
    items = [report_body(group["id"], n) for n in range(500)]
    response = client.post("/api/v1/reports/batch", json={"reports": items}, headers=auth.admin)
    assert response.status_code == 200
    assert {r["status"] for r in response.get_json()["results"]} == {201}
    assert count_rows(app, Report) == 500


@pytest.mark.parametrize(
    "body",
    [
        {"reports": []},
        {"reports": None},
        {"reports": {"0": {}}},
        {"reports": "all of them"},
        {},
        {"reports": [], "extra": 1},
    ],
)
def test_batch_without_a_list_of_reports_is_422(app, client, auth, body):
    response = client.post("/api/v1/reports/batch", json=body, headers=auth.admin)
    assert_problem(response, 422, "reports" if "extra" not in body else "extra")
    assert nothing_stored(app)


# --- paths, methods and query arguments ------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/v1/nothing-here", "/api/v1/sites/a/b", "/api/v1/groups/x/y", "/nope"]
)
def test_unknown_path_is_404_problem(client, auth, path):
    assert_problem(client.get(path, headers=auth.admin), 404)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/api/v1/sites", "POST"),
        ("PUT", f"/api/v1/sites/{CENTRE}", "PATCH"),
        ("DELETE", f"/api/v1/groups/{uuid.uuid4()}", "PATCH"),
        ("PATCH", "/api/v1/reports", "POST"),
        ("GET", "/api/v1/reports/batch", "POST"),
    ],
)
def test_wrong_method_is_405_problem_with_allow(client, auth, method, path, allowed):
    response = client.open(path, method=method, headers=auth.admin)
    assert_problem(response, 405)
    assert allowed in response.headers["Allow"]


def test_invalid_uuid_in_group_path_is_404(client, auth):
    response = client.patch("/api/v1/groups/not-a-uuid", json={"label": "x"}, headers=auth.admin)
    assert_problem(response, 404)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=yesterday", "since"),
        ("since=2023-09-25T10:00:00", "since"),
        ("since=0001-01-01T00:00:00%2B05:00", "since"),
        ("received_since=soon", "received_since"),
        ("group_id=convoy", "group_id"),
        ("site_id=Centre%00", "site_id"),
        ("page=-1", "page"),
        ("page_size=0", "page_size"),
    ],
)
def test_bad_report_query_is_422(client, auth, query, field):
    assert_problem(client.get(f"/api/v1/reports?{query}", headers=auth.admin), 422, field)


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/v1/summaries", {"as_of": "0001-01-01T00:00:00+05:00"}, "as_of"),
        ("POST", "/api/v1/summaries", {"as_of": "2023-09-25T10:00:00"}, "as_of"),
        ("GET", "/api/v1/summaries?since=0001-01-01T00:00:00%2B05:00", None, "since"),
        ("GET", "/api/v1/summaries?until=9999-12-31T23:59:59-12:00", None, "until"),
        ("GET", "/api/v1/summaries?since=last-week", None, "since"),
    ],
)
def test_summary_moments_out_of_range_are_422(app, client, auth, method, path, body, field):
    response = client.open(path, method=method, json=body, headers=auth.admin)
    assert_problem(response, 422, field)


def test_report_query_filters_by_since(client, auth, group):
    admin = auth.admin
    for hours in (5, 1):
        client.post(
            "/api/v1/reports", json=report_body(group["id"], 10, hours_ago(hours)), headers=admin
        )
    since = (datetime.now(UTC) - timedelta(hours=2)).isoformat().replace("+", "%2B")
    listed = client.get(f"/api/v1/reports?since={since}", headers=admin).get_json()
    assert len(listed) == 1


# --- robustness: arbitrary input never gets a 500 --------------------------------------

# Any code point, lone surrogates too (JSON can carry "\ud800"; no database can store it).
text = st.lists(
    st.characters() | st.sampled_from(["\x00", "\x1b", "\ud800", "\udfff", "\r\n"]), max_size=20
).map("".join)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(text | st.sampled_from(["total", "sadd", "label"]), children, max_size=4)
    ),
    max_leaves=12,
)
moments = st.datetimes(
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12, minutes=-30))]
    ),
).map(datetime.isoformat) | st.sampled_from(
    # The ends of the calendar, where converting to UTC overflows.
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "2023-09-25T10:00:00"]
)
counts = st.integers(min_value=-5, max_value=2_000_000)


def report_values(group_ids: list[str]) -> dict[str, st.SearchStrategy[Any]]:
    """For each report key, something plausible (valid or nearly so)."""
    return {
        "group_id": st.sampled_from(group_ids) | st.uuids().map(str),
        "observed_at": moments,
        "total": counts,
        "sadd": st.dictionaries(st.sampled_from([*SADD_KEYS, "other"]), counts, max_size=9),
        "vulnerable": st.dictionaries(st.sampled_from([*VULNERABLE_KEYS, "x"]), counts),
        "needs": st.lists(
            st.fixed_dictionaries(
                {"sector": st.sampled_from(["water", "food", "fuel", "x"])},
                optional={"severity": st.integers(-1, 7), "note": text},
            ),
            max_size=3,
        ),
        "note": text,
        "supersedes": st.integers(min_value=-1, max_value=2**64),
        "client_id": st.uuids().map(str) | text,
    }


def group_values() -> dict[str, st.SearchStrategy[Any]]:
    return {
        "site_id": st.sampled_from([CENTRE, AIRPORT, "atlantis"]) | text,
        "label": text,
        "origin": text,
        "status": st.sampled_from(["waiting", "closed", "gone"]),
    }


def site_values() -> dict[str, st.SearchStrategy[Any]]:
    return {
        "id": st.sampled_from(["goris", CENTRE, "a"]) | text,
        "name": text,
        "kind": st.sampled_from(["city", "airport", "castle"]),
        "pcode": text,
        "latitude": st.floats() | st.integers(min_value=-(2**1100), max_value=2**1100),
        "longitude": st.floats(),
        "capacity": st.integers(min_value=-(2**64), max_value=2**64),
        "parent_id": st.sampled_from([CENTRE, "goris", "atlantis"]) | text,
        "active": st.booleans(),
    }


def bodies(values: dict[str, st.SearchStrategy[Any]], valid: dict[str, Any]) -> Any:
    """Dicts with these keys: any of them, each plausible or anything at all; or a valid
    body with one to three of its fields changed (the shape most bugs hide behind)."""
    anything = {key: value | json_values for key, value in values.items()}

    @st.composite
    def nearly_valid(draw: Any) -> dict[str, Any]:
        body = dict(valid)
        for key in draw(st.lists(st.sampled_from(sorted(values)), min_size=1, max_size=3)):
            body[key] = draw(anything[key])
        return body

    return st.fixed_dictionaries({}, optional=anything) | nearly_valid()


def assert_never_500(response: Any) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)
    if 400 <= response.status_code < 500:
        assert response.mimetype == PROBLEM_JSON


ROBUST = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def admin(auth) -> dict[str, str]:
    return auth.admin


@ROBUST
@given(body=json_values)
def test_arbitrary_json_never_gets_a_500(client, admin, body):
    for path in ("/api/v1/reports", "/api/v1/reports/batch", "/api/v1/groups", "/api/v1/sites"):
        response = client.post(
            path, data=json.dumps(body), content_type="application/json", headers=admin
        )
        assert_never_500(response)


@pytest.fixture
def coordinator_world(client, auth) -> tuple[dict[str, str], list[str]]:
    headers = auth.headers("coordinator", CENTRE)
    own = create_group(client, headers)["id"]
    other = create_group(client, auth.admin, AIRPORT)["id"]
    return headers, [own, other]


@ROBUST
@given(data=st.data())
def test_arbitrary_reports_never_get_a_500(client, coordinator_world, data):
    headers, group_ids = coordinator_world
    reports = bodies(report_values(group_ids), report_body(group_ids[0], 40))
    body = data.draw(reports)
    assert_never_500(client.post("/api/v1/reports", json=body, headers=headers))
    batch = data.draw(st.lists(reports | json_values, min_size=1, max_size=4))
    response = client.post("/api/v1/reports/batch", json={"reports": batch}, headers=headers)
    assert_never_500(response)
    if response.status_code == 200:
        results = response.get_json()["results"]
        assert [r["index"] for r in results] == list(range(len(batch)))
        assert all(r["status"] < 500 for r in results), results


@ROBUST
@given(body=bodies(group_values(), {"site_id": CENTRE, "label": "Convoy"}))
def test_arbitrary_groups_never_get_a_500(client, coordinator_world, body):
    headers, group_ids = coordinator_world
    assert_never_500(client.post("/api/v1/groups", json=body, headers=headers))
    assert_never_500(client.patch(f"/api/v1/groups/{group_ids[0]}", json=body, headers=headers))


@ROBUST
@given(body=bodies(site_values(), {"id": "goris", "name": "Goris", "kind": "city"}))
def test_arbitrary_sites_never_get_a_500(client, admin, body):
    assert_never_500(client.post("/api/v1/sites", json=body, headers=admin))
    assert_never_500(client.patch(f"/api/v1/sites/{AIRPORT}", json=body, headers=admin))


def test_implausibly_old_observation_is_refused(client, auth):
    headers = auth.admin
    group = client.post(
        "/api/v1/groups",
        json={"site_id": "stepanakert-centre", "label": "Year typo"},
        headers=headers,
    ).get_json()
    response = client.post(
        "/api/v1/reports",
        json={"group_id": group["id"], "observed_at": "0023-09-25T10:00:00+04:00", "total": 5},
        headers=headers,
    )
    assert response.status_code == 422
    assert response.get_json()["errors"] == [
        {"field": "observed_at", "message": "Must be in 2000 or later; check the year."}
    ]


# --- invisible and text-direction characters ---------------------------------------------

HIDDEN = [
    "Hangar\u200b7",  # zero-width space
    "\u202eselimaf 7 ragnaH",  # right-to-left override
    "Hangar \u2066 7\u2069",  # left-to-right isolate
    "Hangar\u00ad7",  # soft hyphen
    "\ufeffHangar 7",  # byte-order mark
    "Hangar\u20607",  # word joiner
    "Hangar\u20287",  # line separator
    "Hangar\u20297",  # paragraph separator
]


@pytest.mark.parametrize("label", HIDDEN)
def test_a_label_with_invisible_or_direction_characters_is_422(app, client, auth, label):
    for field in ("label", "origin"):
        body = {"site_id": CENTRE, "label": "Hangar 7", field: label}
        response = client.post("/api/v1/groups", json=body, headers=auth.admin)
        problem = assert_problem(response, 422, field)
        message = next(e["message"] for e in problem["errors"] if e["field"] == field)
        assert "U+" in message, message


@pytest.mark.parametrize("name", ["Goris\u2028school", "Goris\u202e", "Go\u200bris"])
def test_a_site_name_with_a_separator_or_invisible_character_is_422(client, auth, name):
    response = client.post(
        "/api/v1/sites",
        json={"id": "goris-school", "name": name, "kind": "other"},
        headers=auth.admin,
    )
    assert_problem(response, 422, "name")


@pytest.mark.parametrize(
    "label",
    [
        "\u0531\u0580\u0581\u0561\u056d\u056b \u0564\u057a\u0580\u0578\u0581",  # Armenian
        "\u0428\u043a\u043e\u043b\u0430 \u2116 5",  # Russian
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian, with a ZWNJ
        "\u0915\u094d\u200d\u0937",  # Devanagari, with a ZWJ
    ],
)
def test_labels_in_other_scripts_are_kept_as_written(client, auth, label):
    group = create_group(client, auth.admin, CENTRE, label=label, origin=label)
    assert (group["label"], group["origin"]) == (label, label)
