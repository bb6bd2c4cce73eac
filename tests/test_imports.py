"""CSV import: `needs-tracker import FILE.csv` and `POST /api/v1/reports/import`.

Good rows are stored, bad rows store nothing and are reported by row and field, a
re-import stores nothing new, and a row passes exactly when the same report would pass
`POST /api/v1/reports`. An upload answers 202 at once and a worker imports it; its job
(`GET /api/v1/imports/{id}`) shows the counts.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from service.domain.imports import IMPORT_TOKEN_NAME
from service.domain.tokens import hash_token, system_caller
from service.extensions import db
from service.models import ApiToken, Group, ImportJob, Report, ReportNeed
from tests.backends import on_services
from tests.helpers import (
    AIRPORT,
    CENTRE,
    SADD_40,
    assert_problem,
    audit_events,
    count_rows,
    create_group,
    hours_ago,
    wait_for,
)

SADD_COLUMNS = list(SADD_40)


def csv_text(rows: list[dict[str, object]], columns: list[str] | None = None) -> str:
    columns = columns or list(dict.fromkeys(key for row in rows for key in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()


def write(tmp_path: Path, rows: list[dict[str, object]], name: str = "day.csv") -> Path:
    path = tmp_path / name
    path.write_text(csv_text(rows), encoding="utf-8")
    return path


def good_and_bad_rows(group_id: str) -> list[dict[str, object]]:
    return [
        # 2: a new group named by label: registered, and its count stored
        {
            "client_id": "7d0c2a4e-8f45-4c3a-9a1d-1b2c3d4e5f01",
            "site_id": AIRPORT,
            "group_label": "Hangar 7 families",
            "observed_at": hours_ago(3),
            "total": 40,
            **SADD_40,
            "disabled": 2,
            "needs": "water:4;shelter:3:one tent for 40 people",
            "note": "counted at the hangar door",
        },
        # 3: an existing group by id, no client_id (a key from the row's content)
        {"group_id": group_id, "observed_at": hours_ago(2), "total": 212},
        # 4: a negative total
        {"group_id": group_id, "observed_at": hours_ago(2), "total": -5},
        # 5: the breakdown does not add up
        {"group_id": group_id, "observed_at": hours_ago(2), "total": 41, **SADD_40},
        # 6: an unknown sector and a severity out of range
        {"group_id": group_id, "observed_at": hours_ago(2), "total": 9, "needs": "blankets:7"},
        # 7: in the future
        {
            "group_id": group_id,
            "observed_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
            "total": 9,
        },
        # 8: no time zone
        {"group_id": group_id, "observed_at": "2023-09-26T14:30:00", "total": 9},
        # 9: an unknown group
        {"group_id": str(uuid.uuid4()), "observed_at": hours_ago(2), "total": 9},
        # 10: a good one, by id, with a client_id
        {
            "client_id": "7d0c2a4e-8f45-4c3a-9a1d-1b2c3d4e5f02",
            "group_id": group_id,
            "observed_at": hours_ago(1),
            "total": 180,
            "needs": "transport:5",
        },
    ]


def keyed_reports(app) -> int:
    """Reports stored under a key (every imported one is)."""
    from sqlalchemy import func, select

    with app.app_context():
        return db.session.execute(
            select(func.count()).select_from(Report).where(Report.client_id.is_not(None))
        ).scalar_one()


def committing(result) -> None:
    """An importer's `on_chunk`, as the import job's: each chunk committed."""
    db.session.commit()


def read_errors(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_import_stores_good_rows_and_lists_bad_ones_by_row_and_field(app, client, auth, tmp_path):
    admin = auth.admin
    group = create_group(client, admin, CENTRE, label="School 5")
    path = write(tmp_path, good_and_bad_rows(group["id"]))

    result = app.test_cli_runner().invoke(args=["import", str(path)])

    assert result.exit_code == 1, result.output
    assert "9 rows: 3 stored, 0 already imported, 6 failed; 1 groups created." in result.output
    errors = read_errors(tmp_path / "day.errors.csv")
    failed = {(int(e["row"]), e["field"]) for e in errors}
    assert failed == {
        (4, "total"),
        (5, "sadd"),
        (6, "needs.0.sector"),
        (6, "needs.0.severity"),
        (7, "observed_at"),
        (8, "observed_at"),
        (9, "group_id"),
    }
    messages = {(int(e["row"]), e["field"]): e["message"] for e in errors}
    assert messages[(4, "total")] == "Must be 0 or more."
    assert messages[(5, "sadd")] == "The breakdown adds up to 40, not the total 41."
    assert messages[(7, "observed_at")] == "Must not be in the future."

    # Stored: exactly the good rows, with their breakdown, needs and notes.
    with app.app_context():
        reports = db.session.execute(db.select(Report).order_by(Report.observed_at)).scalars().all()
        assert [r.total for r in reports] == [40, 212, 180]
        hangar = db.session.execute(
            db.select(Group).where(Group.label == "Hangar 7 families")
        ).scalar_one()
        assert (hangar.site_id, reports[0].group_id) == (AIRPORT, hangar.id)
        assert reports[0].sadd == SADD_40
        assert reports[0].vulnerable == {"disabled": 2}
        assert reports[0].note == "counted at the hangar door"
        assert [(n.sector, n.severity, n.note) for n in reports[0].needs] == [
            ("water", 4, None),
            ("shelter", 3, "one tent for 40 people"),
        ]
        assert reports[2].client_id == "7d0c2a4e-8f45-4c3a-9a1d-1b2c3d4e5f02"
    # The counting rule sees them like any other report.
    shown = client.get(f"/api/v1/groups/{group['id']}", headers=admin).get_json()
    assert shown["current_count"] == 180


def test_reimporting_the_same_file_stores_nothing_new(app, client, auth, tmp_path):
    group = create_group(client, auth.admin, CENTRE)
    path = write(tmp_path, good_and_bad_rows(group["id"]))
    runner = app.test_cli_runner()
    runner.invoke(args=["import", str(path)])
    counts = [count_rows(app, m) for m in (Report, ReportNeed, Group)]

    again = runner.invoke(args=["import", str(path)])

    assert "9 rows: 0 stored, 3 already imported, 6 failed; 0 groups created." in again.output
    assert [count_rows(app, m) for m in (Report, ReportNeed, Group)] == counts


def test_a_client_id_reused_for_other_content_is_an_error_row(app, client, auth, tmp_path):
    group = create_group(client, auth.admin, CENTRE)
    key = "7d0c2a4e-8f45-4c3a-9a1d-1b2c3d4e5f09"
    first = {"client_id": key, "group_id": group["id"], "observed_at": hours_ago(2), "total": 50}
    runner = app.test_cli_runner()
    runner.invoke(args=["import", str(write(tmp_path, [first]))])

    changed = dict(first, total=51)
    twice_in_one_file = [changed, dict(changed)]
    result = runner.invoke(args=["import", str(write(tmp_path, twice_in_one_file, "b.csv"))])

    assert "2 rows: 0 stored, 0 already imported, 2 failed" in result.output
    errors = read_errors(tmp_path / "b.errors.csv")
    assert [(e["row"], e["field"]) for e in errors] == [("2", "client_id"), ("3", "client_id")]
    assert "already used for a different report" in errors[0]["message"]
    assert count_rows(app, Report) == 1


def test_a_file_mixing_new_rows_with_imported_ones_stores_only_the_new(app, client, auth, tmp_path):
    """On PostgreSQL a new import stores before it looks keys up; the keys taken show up
    at the reports' unique (token, key) constraint. Either way: the new rows stored
    once, in the file's order, the old ones "already imported" or refused, and no
    stray report."""
    group = create_group(client, auth.admin, CENTRE)
    keys = [f"7d0c2a4e-8f45-4c3a-9a1d-1b2c3d4e5f{n:02d}" for n in range(6)]
    rows = [
        {"client_id": key, "group_id": group["id"], "observed_at": hours_ago(1), "total": 10 + n}
        for n, key in enumerate(keys)
    ]
    runner = app.test_cli_runner()
    runner.invoke(args=["import", str(write(tmp_path, [rows[1], rows[3]], "first.csv"))])

    mixed = [*rows, dict(rows[3], total=99, client_id=keys[1])]
    result = runner.invoke(args=["import", str(write(tmp_path, mixed, "mixed.csv"))])

    assert "7 rows: 4 stored, 2 already imported, 1 failed" in result.output
    errors = read_errors(tmp_path / "mixed.errors.csv")
    assert [(e["row"], e["field"]) for e in errors] == [("8", "client_id")]
    assert count_rows(app, Report) == keyed_reports(app) == 6
    with app.app_context():
        # The first import's two, then the new four in the order of the file.
        stored = db.session.execute(
            db.select(Report.client_id, Report.total).order_by(Report.id)
        ).all()
    assert [total for _, total in stored] == [11, 13, 10, 12, 14, 15]
    assert sorted(key for key, _ in stored) == keys  # each key once, on its own report


def test_a_reimport_in_many_chunks_stores_nothing_and_still_spots_changed_rows(app, client, auth):
    """Once a chunk meets keys imported before, the next chunks look theirs up before
    placing the rows (on PostgreSQL, in the checking thread): nothing is stored twice,
    and a row whose content changed under the same client_id is still an error row."""
    from service.domain import imports

    group = create_group(client, auth.admin, CENTRE)
    rows = [
        {
            "client_id": f"7d0c2a4e-8f45-4c3a-9a1d-1b2c3d4e5e{n:02d}",
            "group_id": group["id"],
            "observed_at": hours_ago(5 - n / 10),
            "total": str(20 + n),
        }
        for n in range(7)
    ]
    numbered = [(n + 2, row) for n, row in enumerate(rows)]
    with app.app_context():
        caller = system_caller("test")
        db.session.commit()
        first = imports.Importer(caller, "x.csv", chunk_size=2, on_chunk=committing)
        first.feed(numbered)
        assert first.finish().stored == 7
        db.session.commit()

        changed = [*numbered[:5], (7, dict(rows[5], total="99")), numbered[6]]
        again = imports.Importer(caller, "x.csv", chunk_size=2, on_chunk=committing)
        again.feed(changed)
        result = again.finish()
        db.session.commit()

    assert (result.stored, result.already_imported, result.failed) == (0, 6, 1)
    assert [(e.row, e.field) for e in result.errors] == [(7, "client_id")]
    assert count_rows(app, Report) == keyed_reports(app) == 7


def test_a_row_twice_in_one_file_is_stored_once(app, client, auth, tmp_path):
    group = create_group(client, auth.admin, CENTRE)
    row = {"group_id": group["id"], "observed_at": hours_ago(2), "total": 50}
    result = app.test_cli_runner().invoke(
        args=["import", str(write(tmp_path, [row, dict(row), dict(row, total=51)]))]
    )
    assert "3 rows: 2 stored, 1 already imported, 0 failed" in result.output
    assert result.exit_code == 0
    assert not (tmp_path / "day.errors.csv").exists()


def test_import_shows_progress_and_runs_as_a_system_token(app, client, auth, tmp_path):
    group = create_group(client, auth.admin, CENTRE)
    rows = [
        {"group_id": group["id"], "observed_at": hours_ago(5 - i / 1000), "total": i}
        for i in range(2500)
    ]
    path = write(tmp_path, rows, "big.csv")

    result = app.test_cli_runner().invoke(args=["import", str(path)])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Importing big.csv: 2,500"
    assert "  2,000 of 2,500 (80%)" in lines
    assert "  2,500 of 2,500 (100%)" in lines
    with app.app_context():
        token = db.session.execute(
            db.select(ApiToken).where(ApiToken.name == IMPORT_TOKEN_NAME)
        ).scalar_one()
        # An unusable secret: no bearer token hashes to something that is not hex.
        assert len(token.secret_hash) != len(hash_token("x")) or not all(
            c in "0123456789abcdef" for c in token.secret_hash
        )
        owners = set(db.session.execute(db.select(Report.token_id)).scalars())
        assert owners == {token.id}
    imports = [e for e in audit_events(app) if e["action"] == "reports.import"]
    assert len(imports) == 1
    assert imports[0]["after"] == {
        "file": "big.csv",
        "rows": 2500,
        "stored": 2500,
        "already_imported": 0,
        "failed": 0,
        "groups_created": 0,
    }
    assert not any(e["action"] == "report.create" for e in audit_events(app))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The file is empty."),
        (b"group_id,total\n", "missing column(s): observed_at"),
        (b"group_label,observed_at,total\n", "missing column(s): site_id"),
        (b"group_id,observed_at,total,colour\n", "unknown column(s): colour"),
        ("group_id,observed_at,total,note\nx,y,1,caf\u00e9\n".encode("latin-1"), "not UTF-8"),
        ("group_id,observed_at,total\n".encode("utf-16"), "UTF-16"),
    ],
)
def test_a_file_that_cannot_be_read_stores_nothing(app, tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    result = app.test_cli_runner().invoke(args=["import", str(path)])
    assert result.exit_code != 0
    assert message in result.output
    assert count_rows(app, Report) == 0


def test_spreadsheet_exports_are_read_bom_semicolons_and_blank_rows(app, client, auth, tmp_path):
    group = create_group(client, auth.admin, CENTRE)
    text = f"\ufeffGroup_ID;observed_at;total;needs\n{group['id']};{hours_ago(1)};12;water:3\n;;;\n"
    path = tmp_path / "excel.csv"
    path.write_text(text, encoding="utf-8")
    result = app.test_cli_runner().invoke(args=["import", str(path)])
    assert "1 rows: 1 stored" in result.output, result.output


# --- the API upload -----------------------------------------------------------------------


def upload(client, headers, text: str | bytes, name: str = "day.csv"):
    data = text.encode() if isinstance(text, str) else text
    return client.post(
        "/api/v1/reports/import",
        data={"file": (io.BytesIO(data), name)},
        headers=headers,
        content_type="multipart/form-data",
    )


def imported(client, headers, text: str | bytes, name: str = "day.csv") -> dict:
    """Upload the file (202 at once), and follow its job until the worker is done."""
    response = upload(client, headers, text, name)
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["status"] == "running"
    location = response.headers["Location"]
    assert location == f"/api/v1/imports/{response.get_json()['id']}"

    def finished() -> dict | None:
        job = client.get(location, headers=headers).get_json()
        return job if job["status"] != "running" else None

    return wait_for(finished, every=0.1)


def test_admin_upload_is_imported_by_a_worker_and_stores_once(app, client, auth, module_worker):
    admin = auth.admin
    group = create_group(client, admin, CENTRE)
    text = csv_text(good_and_bad_rows(group["id"]))

    first = imported(client, admin, text)
    again = imported(client, admin, text)

    assert first["status"] == "done", first
    assert {k: first[k] for k in ("file", "total_rows", "rows", "stored", "failed")} == {
        "file": "day.csv",
        "total_rows": 9,
        "rows": 9,
        "stored": 3,
        "failed": 6,
    }
    assert first["already_imported"] == 0
    assert first["groups_created"] == 1
    assert {(e["row"], e["field"]) for e in first["errors"]} >= {(4, "total"), (9, "group_id")}
    assert first["errors_truncated"] is False
    assert first["finished_at"] is not None and first["error"] is None
    assert (again["stored"], again["already_imported"]) == (0, 3)
    assert count_rows(app, Report) == 3
    with app.app_context():  # the file itself is not kept once it is imported
        jobs = db.session.execute(db.select(ImportJob)).scalars().all()
        assert len(jobs) == 2 and all(job.content is None for job in jobs)


def test_an_imported_report_resent_through_the_api_gets_the_stored_answer(
    app, client, auth, module_worker
):
    headers = auth.admin
    group = create_group(client, headers, CENTRE)
    key = "7d0c2a4e-8f45-4c3a-9a1d-1b2c3d4e5f10"
    row = {
        "client_id": key,
        "group_id": group["id"],
        "observed_at": "2023-09-26T14:30:00+04:00",
        "total": 40,
        **SADD_40,
        "pregnant_lactating": 3,
        "needs": "water:4:one tank",
        "note": "hangar",
    }
    assert imported(client, headers, csv_text([row]))["stored"] == 1

    resent = client.post(
        "/api/v1/reports",
        json={
            "client_id": key,
            "group_id": group["id"],
            "observed_at": "2023-09-26T14:30:00+04:00",
            "total": 40,
            "sadd": SADD_40,
            "vulnerable": {"pregnant_lactating": 3},
            "needs": [{"sector": "water", "severity": 4, "note": "one tank"}],
            "note": "hangar",
        },
        headers=headers,
    )

    assert resent.status_code == 200, resent.get_json()
    assert resent.headers["Idempotent-Replayed"] == "true"
    assert count_rows(app, Report) == 1
    # The replayed answer is exactly the report as the API shows it.
    from service.api.reports import ReportOut

    with app.app_context():
        report = db.session.execute(db.select(Report)).scalar_one()
        assert resent.get_json() == ReportOut().dump(report)


@pytest.mark.parametrize("role", ["coordinator", "reader"])
def test_only_admins_may_upload(client, auth, role):
    headers = auth.headers(role, CENTRE) if role == "coordinator" else auth.headers(role)
    assert_problem(upload(client, headers, "group_id,observed_at,total\n"), 403)


def test_only_admins_may_follow_an_import(client, auth, module_worker):
    job = imported(client, auth.admin, "group_id,observed_at,total\n")
    for headers in (auth.headers("coordinator", CENTRE), auth.headers("reader")):
        assert_problem(client.get(f"/api/v1/imports/{job['id']}", headers=headers), 403)
    assert_problem(client.get(f"/api/v1/imports/{uuid.uuid4()}", headers=auth.admin), 404)


def test_upload_problems_are_4xx_never_500(make_app):
    """What can be told at once is answered at once, and no job is made."""
    app = make_app(MAX_IMPORT_BYTES=2000)
    client = app.test_client()
    from tests.conftest import Auth

    admin = Auth(app).admin
    missing = assert_problem(upload(client, admin, "group_label,total\n"), 422)
    assert {e["field"] for e in missing["errors"]} == {"observed_at", "site_id"}
    assert "observed_at" in missing["detail"]
    assert_problem(upload(client, admin, b""), 422)
    assert "UTF-8" in assert_problem(upload(client, admin, b"group_id,\xff\xfe\n"), 422)["detail"]
    big = "group_id,observed_at,total\n" + "x,y,1\n" * 1000
    assert "MAX_IMPORT_BYTES" in assert_problem(upload(client, admin, big), 413)["detail"]
    no_file = client.post(
        "/api/v1/reports/import",
        data={"other": "x"},
        headers=admin,
        content_type="multipart/form-data",
    )
    assert_problem(no_file, 422, "file")
    assert_problem(client.post("/api/v1/reports/import", json={"reports": []}, headers=admin), 415)
    assert count_rows(app, ImportJob) == 0
    as_body = client.post(
        "/api/v1/reports/import",
        data="group_id,observed_at,total\n",
        headers={**admin, "Content-Type": "text/csv"},
    )
    assert as_body.status_code == 202
    assert as_body.get_json()["file"] == "upload.csv"


def test_a_file_unreadable_past_its_header_fails_its_job_with_why(client, auth, module_worker):
    # Past the first few kilobytes, where the upload's quick check of the header reads.
    good = "x,y,1,plain\n" * 2000
    text = f"group_id,observed_at,total,note\n{good}x,y,1,caf\u00e9\n".encode("latin-1")
    job = imported(client, auth.admin, text)
    assert job["status"] == "failed"
    assert "not UTF-8" in job["error"]
    assert job["stored"] == 0


# --- the same rules as the API ------------------------------------------------------------

CASES = [
    ({"total": 10}, {}),
    ({"total": -1}, {}),
    ({"total": 1_000_001}, {}),
    ({"total": 40, "sadd": SADD_40}, {}),
    ({"total": 41, "sadd": SADD_40}, {}),
    ({"total": 40, "sadd": {k: v for k, v in SADD_40.items() if k != "male_0_4"}}, {}),
    ({"total": 5, "vulnerable": {"injured": 6}}, {}),
    ({"total": 5, "vulnerable": {"disabled": 5, "chronically_ill": 0}}, {}),
    ({"total": 5, "needs": [{"sector": "fuel", "severity": 5}]}, {}),
    ({"total": 5, "needs": [{"sector": "fuel", "severity": 0}]}, {}),
    ({"total": 5, "needs": [{"sector": "blankets", "severity": 3}]}, {}),
    ({"total": 5, "needs": [{"sector": "food", "severity": 3, "note": "x" * 1001}]}, {}),
    ({"total": 5, "note": "x" * 2000}, {}),
    ({"total": 5, "note": "x" * 2001}, {}),
    ({"total": 5, "note": "bell\x07"}, {}),
    ({"total": 5}, {"observed_at": "2023-09-26T14:30:00"}),
    ({"total": 5}, {"observed_at": "0023-09-26T14:30:00+04:00"}),
    ({"total": 5}, {"observed_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}),
    ({"total": 5}, {"observed_at": "yesterday"}),
]


def as_cells(body: dict) -> dict[str, object]:
    cells: dict[str, object] = {k: v for k, v in body.items() if k not in ("sadd", "vulnerable")}
    cells.update(body.get("sadd") or {})
    cells.update(body.get("vulnerable") or {})
    if "needs" in body:
        cells["needs"] = ";".join(
            ":".join(str(p) for p in (n["sector"], n["severity"], n.get("note")) if p is not None)
            for n in body["needs"]
        )
    return cells


@pytest.mark.parametrize(("fields", "overrides"), CASES)
def test_a_row_passes_exactly_when_the_api_would_take_the_report(
    app, client, auth, fields, overrides, module_worker
):
    admin = auth.admin
    group = create_group(client, admin, CENTRE)
    body = {"group_id": group["id"], "observed_at": hours_ago(1), **fields, **overrides}
    api = client.post("/api/v1/reports/batch", json={"reports": [body]}, headers=admin)
    item = api.get_json()["results"][0]
    api_fields = {e["field"] for e in (item.get("problem") or {}).get("errors", [])}

    job = imported(client, admin, csv_text([as_cells(body)]))
    import_fields = {e["field"] for e in job["errors"]}

    assert (item["status"] == 201) == (job["stored"] == 1), (item, job)
    assert import_fields == api_fields


def test_two_counts_at_the_same_moment_the_later_row_counts(app, client, auth, tmp_path):
    """Ties in observed_at go to the report received last: the later row of the file."""
    group = create_group(client, auth.admin, CENTRE)
    moment = hours_ago(1)
    rows = [
        {"group_id": group["id"], "observed_at": moment, "total": total, "note": f"count {n}"}
        for n, total in enumerate([300, 310, 290])
    ]
    app.test_cli_runner().invoke(args=["import", str(write(tmp_path, rows))])
    shown = client.get(f"/api/v1/groups/{group['id']}", headers=auth.admin).get_json()
    assert shown["current_count"] == 290


def test_an_import_stopped_halfway_keeps_whole_chunks_and_says_so(app, client, auth, monkeypatch):
    from service import importing
    from service.domain import imports
    from service.domain.imports import jobs
    from service.domain.writer import for_session

    group = create_group(client, auth.admin, CENTRE)
    rows = [
        {"group_id": group["id"], "observed_at": hours_ago(5 - n / 10), "total": str(n)}
        for n in range(5)
    ]
    with app.app_context():
        writer = for_session()
        # PostgreSQL COPYs the lines laid out in the checking thread; SQLite inserts.
        method = "copy" if on_services() else "store"
        original = getattr(type(writer), method)
        calls: list[int] = []

        def failing(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeError("the database went away")
            return original(self, *args, **kwargs)

        monkeypatch.setattr(type(writer), method, failing)
        monkeypatch.setattr(imports, "CHUNK_SIZE", 2)
        job = jobs.create_job(system_caller("test"), "x.csv", csv_text(rows).encode())
        db.session.commit()
        with pytest.raises(RuntimeError):
            importing.run_import(job.id)
        job = db.session.get(ImportJob, job.id, populate_existing=True)
        assert job.status.value == "failed"
        assert "stopped after" in job.error and "RuntimeError" in job.error
        assert job.stored == 2

    assert count_rows(app, Report) == 2  # the first chunk, whole; nothing of the second
    event = [e for e in audit_events(app) if e["action"] == "reports.import"][-1]
    assert event["after"]["interrupted"] is True
    assert event["after"]["stored"] == 2


def test_a_jobs_error_rows_show_as_its_chunks_are_written(app, client, auth, monkeypatch):
    """Someone watching an upload sees each bad row once its chunk is in, and a clean
    chunk after it leaves the errors shown so far as they were."""
    from service import importing
    from service.domain import imports
    from service.domain.imports import jobs

    group = create_group(client, auth.admin, CENTRE)
    rows = [
        {"group_id": group["id"], "observed_at": hours_ago(5 - n / 10), "total": str(n)}
        for n in range(6)
    ]
    rows[1]["total"] = "many"  # row 3, in the first chunk
    rows[5]["total"] = "-1"  # row 7, in the third
    with app.app_context():
        monkeypatch.setattr(imports, "CHUNK_SIZE", 2)
        job = jobs.create_job(system_caller("test"), "x.csv", csv_text(rows).encode())
        db.session.commit()
        shown: list[list[int]] = []

        def watch(_result: imports.ImportResult) -> None:
            errors = db.session.execute(
                select(ImportJob.errors).where(ImportJob.id == job.id)
            ).scalar_one()
            shown.append([error["row"] for error in errors or []])

        importing.run_import(job.id, on_progress=watch)

    assert shown == [[3], [3], [3, 7]]


@pytest.mark.parametrize("number", ["\u0661\u0662", "\uff15", "4\u0662", "\u00b2"])
def test_a_count_not_written_in_ascii_digits_is_an_error_row(app, client, auth, tmp_path, number):
    """`١٢` (Arabic-Indic) and `５` (full-width) are digits to Python's int(), not to a
    spreadsheet: refused in every count and severity cell, on the quick path and the
    careful one alike."""
    group = create_group(client, auth.admin, CENTRE)
    base = {"group_id": group["id"], "observed_at": hours_ago(1)}
    rows = [
        {**base, "total": number},
        {**base, "total": 40, **SADD_40, "male_0_4": number},
        {**base, "total": 40, "injured": number},
        {**base, "total": 40, "needs": f"water:{number}"},
    ]
    result = app.test_cli_runner().invoke(args=["import", str(write(tmp_path, rows))])

    assert "4 rows: 0 stored, 0 already imported, 4 failed" in result.output, result.output
    failed = {(int(e["row"]), e["field"]) for e in read_errors(tmp_path / "day.errors.csv")}
    assert failed >= {(2, "total"), (3, "sadd.male_0_4"), (4, "vulnerable.injured")}
    assert (5, "needs.0.severity") in failed or (5, "needs") in failed
    assert count_rows(app, Report) == 0
