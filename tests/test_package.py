"""A summary as a publishable dataset: the zip validated by the Frictionless library
itself, with HDX's dataset metadata, and small cells suppressed for everyone."""

from __future__ import annotations

import csv
import io
import json
import uuid
import zipfile
from pathlib import Path

import frictionless
import pytest

from service.domain.package import update_frequency
from tests.helpers import AIRPORT, CENTRE
from tests.test_small_cells import GORIS, seed

HDX_FIELDS = (
    "title",
    "notes",
    "dataset_source",
    "owner_org",
    "maintainer",
    "dataset_date",
    "data_update_frequency",
    "license_id",
    "methodology",
    "tags",
)


def unpacked(body: bytes, folder: Path) -> dict:
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert sorted(archive.namelist()) == [
            "datapackage.json",
            "summary.csv",
            "summary.hxl.csv",
        ]
        archive.extractall(folder)
    return json.loads((folder / "datapackage.json").read_text())


def test_the_package_validates_carries_hdx_metadata_and_hides_small_cells_even_for_admins(
    app, client, auth, tmp_path
):
    summary = seed(app, client, auth.admin)
    response = client.get(f"/api/v1/summaries/{summary['id']}/package", headers=auth.admin)
    assert response.status_code == 200
    assert response.mimetype == "application/zip"
    assert response.headers["Content-Disposition"].endswith('.zip"')
    descriptor = unpacked(response.data, tmp_path)

    report = frictionless.validate(str(tmp_path / "datapackage.json"))
    assert report.valid, report.flatten(["resourceName", "rowNumber", "fieldName", "message"])
    # Validation read every row of both files against their schemas.
    assert [task.stats["rows"] for task in report.tasks] == [4, 4]
    # The zip as downloaded validates too (README: `frictionless validate summary.zip`).
    (tmp_path / "summary.zip").write_bytes(response.data)
    zipped = frictionless.validate(str(tmp_path / "summary.zip"))
    assert zipped.valid and [task.stats["rows"] for task in zipped.tasks] == [4, 4]

    hdx = descriptor["hdx"]
    for name in HDX_FIELDS:
        assert hdx[name], name
    assert hdx["owner_org"] == app.config["DATASET_ORGANISATION"]
    assert hdx["maintainer"] == app.config["MAIL_FROM"]
    assert hdx["data_update_frequency"] == "0"  # hourly summaries: HDX's "live"
    assert hdx["dataset_date"].startswith(f"[{summary['as_of'][:19]} TO ")
    assert descriptor["licenses"][0]["name"] == "CC-BY-3.0-IGO"

    rows = {
        r["site_id"]: r for r in csv.DictReader(io.StringIO((tmp_path / "summary.csv").read_text()))
    }
    # The admin asked, but the family of three is hidden as for readers...
    assert rows[CENTRE]["people"] == "< 5"
    assert rows[CENTRE]["injured"] == "< 5"
    assert rows[GORIS]["people"] == "suppressed"  # else the total would reveal the three
    assert int(rows[AIRPORT]["people"]) == 300
    # ...and what a reader's CSV says is exactly what the package holds.
    reader_csv = client.get(
        f"/api/v1/summaries/{summary['id']}?format=csv", headers=auth.headers("reader")
    ).data
    assert (tmp_path / "summary.csv").read_bytes() == reader_csv
    # The HXL file's second line is its hashtags, which the schema skips as a comment.
    hxl_lines = (tmp_path / "summary.hxl.csv").read_text().splitlines()
    assert hxl_lines[1].startswith("#loc+code")
    tags = [field["hxl"] for field in descriptor["resources"][1]["schema"]["fields"]]
    assert hxl_lines[1].split(",") == tags


def test_latest_package_etag_and_refusals(app, client, auth):
    reader = auth.headers("reader")
    assert client.get("/api/v1/summaries/latest/package", headers=reader).status_code == 404
    summary = seed(app, client, auth.admin)
    latest = client.get("/api/v1/summaries/latest/package", headers=reader)
    assert latest.status_code == 200
    by_id = client.get(f"/api/v1/summaries/{summary['id']}/package", headers=reader)
    assert latest.data == by_id.data
    again = client.get(
        "/api/v1/summaries/latest/package",
        headers={**reader, "If-None-Match": latest.headers["ETag"]},
    )
    assert again.status_code == 304
    pending = client.post("/api/v1/summaries", json={}, headers=auth.admin).get_json()
    refused = client.get(f"/api/v1/summaries/{pending['id']}/package", headers=reader)
    # No worker runs here: the summary asked for stays pending.
    assert refused.status_code == 409
    assert "ready" in refused.get_json()["detail"]
    unknown = client.get(f"/api/v1/summaries/{uuid.uuid4()}/package", headers=reader)
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    ("minutes", "hdx"), [(15, "0"), (60, "0"), (1440, "1"), (3 * 1440, "7"), (10**6, "365")]
)
def test_update_frequency_is_one_hdx_knows(minutes, hdx):
    assert update_frequency(minutes) == hdx
