"""A summary as a publishable dataset: a Frictionless data package, ready for HDX.

One zip: `datapackage.json` (a Table Schema for each file, and the dataset metadata HDX
asks of every dataset), the summary's CSV and its HXL CSV. What is published is always
the readers' view: small cells suppressed, whoever downloads it, because a package is
made to be passed on.
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime
from typing import Any

from service.domain import suppression
from service.domain.exports import COLUMNS, to_csv

CSV_PATH = "summary.csv"
HXL_PATH = "summary.hxl.csv"

# HDX's licence ids, as Frictionless names them (https://licenses.opendefinition.org).
LICENCES: dict[str, dict[str, str]] = {
    "cc-by": {"name": "CC-BY-4.0", "path": "https://creativecommons.org/licenses/by/4.0/"},
    "cc-by-igo": {
        "name": "CC-BY-3.0-IGO",
        "path": "https://creativecommons.org/licenses/by/3.0/igo/",
    },
    "cc-by-sa": {"name": "CC-BY-SA-4.0", "path": "https://creativecommons.org/licenses/by-sa/4.0/"},
    "odc-by": {"name": "ODC-By-1.0", "path": "https://opendatacommons.org/licenses/by/1-0/"},
    "odc-odbl": {"name": "ODbL-1.0", "path": "https://opendatacommons.org/licenses/odbl/1-0/"},
    "odc-pddl": {"name": "PDDL-1.0", "path": "https://opendatacommons.org/licenses/pddl/1-0/"},
    "cc0": {"name": "CC0-1.0", "path": "https://creativecommons.org/publicdomain/zero/1.0/"},
}
# HDX's update frequencies, in days ("0": live, more often than daily).
UPDATE_FREQUENCIES = (1, 7, 14, 30, 90, 180, 365)

_TEXT = {"site_id", "site_name", "pcode", "reported_needs", "flags"}
_DESCRIPTIONS = {
    "site_id": "The site's id in needs-tracker; empty on the total row.",
    "site_name": "The site's name; 'Total' on the last row (the sum over the sites above).",
    "pcode": "The site's P-code, where it has one.",
    "as_of": "The moment the figures describe (UTC).",
    "reported_needs": "Sectors reported in need, each with its highest severity (1-5).",
    "flags": "Data-quality flags, ';'-separated.",
}


def data_package(document: dict[str, Any], metadata: dict[str, Any], threshold: int) -> bytes:
    """The zip of a ready summary's `document`, as readers see it. `metadata` holds the
    DATASET_* settings (config.py) and SUMMARY_INTERVAL_MINUTES."""
    seen = suppression.view(document, False, threshold)
    descriptor = describe(seen, metadata, threshold)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("datapackage.json", json.dumps(descriptor, indent=2, ensure_ascii=False))
        archive.writestr(CSV_PATH, to_csv(seen, threshold=threshold))
        archive.writestr(HXL_PATH, to_csv(seen, hxl=True, threshold=threshold))
    return out.getvalue()


def describe(document: dict[str, Any], metadata: dict[str, Any], threshold: int) -> dict:
    as_of = datetime.fromisoformat(document["as_of"])
    stamp = as_of.strftime("%Y%m%dt%H%Mz")
    licence_id = metadata["DATASET_LICENSE"]
    tags = [tag.strip() for tag in metadata["DATASET_TAGS"].split(",") if tag.strip()]
    notes = metadata["DATASET_NOTES"]
    caveats = (
        f"Figures from 1 to {threshold - 1} people are shown as '< {threshold}', and a "
        "figure that would reveal one of them as 'suppressed', to protect small groups."
        if threshold > 1
        else "No figure is suppressed."
    )
    licence = LICENCES.get(licence_id, {"name": licence_id})
    return {
        "name": f"needs-tracker-summary-{stamp}",
        "title": f"{metadata['DATASET_TITLE']} ({as_of:%Y-%m-%d %H:%M} UTC)",
        "description": f"{notes}\n\n{caveats}",
        "version": document.get("generated_at") or document["as_of"],
        "created": document.get("generated_at") or document["as_of"],
        "licenses": [{**licence, "title": licence_id}],
        "sources": [{"title": metadata["DATASET_SOURCE"]}],
        "contributors": [
            {"title": metadata["DATASET_ORGANISATION"], "role": "publisher"},
            {"title": metadata["DATASET_MAINTAINER"], "role": "maintainer"},
        ],
        "keywords": tags,
        # What HDX asks of a dataset, under HDX's own names, for whoever uploads it.
        "hdx": {
            "title": metadata["DATASET_TITLE"],
            "notes": notes,
            "dataset_source": metadata["DATASET_SOURCE"],
            "owner_org": metadata["DATASET_ORGANISATION"],
            "maintainer": metadata["DATASET_MAINTAINER"],
            "dataset_date": f"[{as_of:%Y-%m-%dT%H:%M:%S} TO {as_of:%Y-%m-%dT%H:%M:%S}]",
            "data_update_frequency": metadata.get("DATASET_UPDATE_FREQUENCY")
            or update_frequency(metadata["SUMMARY_INTERVAL_MINUTES"]),
            "license_id": licence_id,
            "methodology": metadata["DATASET_METHODOLOGY"],
            "caveats": caveats,
            "tags": [{"name": tag} for tag in tags],
        },
        "resources": [
            _resource(
                "summary", CSV_PATH, "The summary: a row per site, then the total.", threshold
            ),
            {
                **_resource(
                    "summary-hxl",
                    HXL_PATH,
                    "The same rows with HXL hashtags (https://hxlstandard.org) on the second line.",
                    threshold,
                ),
                "dialect": {"commentRows": [2]},
            },
        ],
    }


def update_frequency(interval_minutes: int) -> str:
    """HDX's `data_update_frequency` for summaries made every `interval_minutes`."""
    days = interval_minutes / (24 * 60)
    if days < 1:
        return "0"
    return str(next((d for d in UPDATE_FREQUENCIES if d >= days), UPDATE_FREQUENCIES[-1]))


def _resource(name: str, path: str, description: str, threshold: int) -> dict[str, Any]:
    hidden = ["", "suppressed"] + ([f"< {threshold}"] if threshold > 1 else [])
    return {
        "name": name,
        "path": path,
        "title": description,
        "format": "csv",
        "mediatype": "text/csv",
        "encoding": "utf-8",
        "schema": {
            "fields": [_field(header, tag) for header, tag in COLUMNS],
            # A suppressed figure reads as missing to a tool; the description says why.
            "missingValues": hidden,
        },
    }


def _field(header: str, tag: str) -> dict[str, Any]:
    if header in _TEXT:
        kind = "string"
    elif header == "as_of":
        kind = "datetime"
    elif header.startswith("need_"):
        kind = "number"
    else:
        kind = "integer"
    field: dict[str, Any] = {"name": header, "type": kind, "hxl": tag}
    if header == "as_of":
        field["format"] = "any"
    field["description"] = _DESCRIPTIONS.get(header) or (
        f"{header.replace('_', ' ').capitalize()} (suppressed figures are empty or marked)."
    )
    if kind == "integer" and header != "change_since_previous":
        field["constraints"] = {"minimum": 0}
    return field
