"""A summary as CSV or HXL: a row per site and a total row, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Collection
from typing import Any

from service.domain.suppression import mark, restricted, shown
from service.models import SADD_KEYS, VULNERABLE_KEYS

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_RISKY_START = ("=", "+", "-", "@", "\t", "\r")

NEED_UNITS = ("water_litres_per_day", "food_kcal_per_day", "covered_space_m2", "latrines")
_HXL_AGE = {"0_4": "age0_4", "5_17": "age5_17", "18_59": "age18_59", "60_plus": "age60plus"}

# (column header, HXL hashtag), in the order of the file
COLUMNS: list[tuple[str, str]] = [
    ("site_id", "#loc+code"),
    ("site_name", "#loc+name"),
    ("pcode", "#loc+pcode"),
    ("as_of", "#date+reported"),
    ("people", "#affected+displaced+total"),
    ("groups", "#affected+displaced+groups"),
    ("change_since_previous", "#affected+displaced+change"),
    ("departed_groups", "#affected+departed+groups"),
    ("departed_people", "#affected+departed+total"),
    *[(key, f"#affected+displaced+{key[0]}+{_HXL_AGE[key.split('_', 1)[1]]}") for key in SADD_KEYS],
    ("people_without_sadd", "#affected+displaced+nosadd"),
    *[(key, f"#affected+displaced+{key}") for key in VULNERABLE_KEYS],
    *[(f"need_{unit}", f"#inneed+{unit.split('_')[0]}+{unit}") for unit in NEED_UNITS],
    ("reported_needs", "#sector+needs"),
    ("flags", "#status+flags"),
]


def neutralise(value: Any) -> Any:
    """Keep a cell from being read as a formula (CWE-1236), unless it is a plain number."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return value
    text = str(value)
    if text.startswith(_RISKY_START) and not _NUMBER.match(text):
        return "'" + text
    return text


# Where each figure column is in a summary's site entry (and its totals).
FIELDS: dict[str, str] = {
    "people": "people",
    "groups": "groups",
    "change_since_previous": "change_since_previous",
    "departed_groups": "departures.groups",
    "departed_people": "departures.people",
    **{key: f"sadd.{key}" for key in SADD_KEYS},
    "people_without_sadd": "people_without_sadd",
    **{key: f"vulnerable.{key}" for key in VULNERABLE_KEYS},
    **{f"need_{unit}": f"needs.{unit}" for unit in NEED_UNITS},
}


def site_rows(
    document: dict[str, Any], site_ids: Collection[str] | None, threshold: int
) -> list[dict]:
    """A flat row per site, then the total over those sites. A suppressed figure (a
    reader's view) is written "< 5" when small, "suppressed" when hidden to protect one."""
    view = restricted(document, list(site_ids) if site_ids is not None else None)
    rows = [_flatten(view["as_of"], site, threshold) for site in view["sites"]]
    total: dict[str, Any] = {header: "" for header, _ in COLUMNS}
    total.update(site_name="Total", as_of=view["as_of"])
    total.update(_figures(view["totals"], threshold))
    return [*rows, total]


def _figures(entry: dict[str, Any], threshold: int) -> dict[str, Any]:
    return {
        header: mark(entry, path, threshold) or shown(entry, *path.split("."))
        for header, path in FIELDS.items()
    }


def _flatten(as_of: str, site: dict[str, Any], threshold: int) -> dict[str, Any]:
    return {
        "site_id": site["site_id"],
        "site_name": site["name"],
        "pcode": site.get("pcode") or "",
        "as_of": as_of,
        **_figures(site, threshold),
        "reported_needs": ";".join(
            f"{n['sector']}:{n['highest_severity']}" for n in site["reported_needs"]
        ),
        "flags": ";".join(f["code"] for f in site["flags"]),
    }


def to_csv(
    document: dict[str, Any],
    site_ids: Collection[str] | None = None,
    hxl: bool = False,
    *,
    threshold: int,
) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([header for header, _ in COLUMNS])
    if hxl:
        writer.writerow([tag for _, tag in COLUMNS])
    for row in site_rows(document, site_ids, threshold):
        writer.writerow([neutralise(row[header]) for header, _ in COLUMNS])
    return out.getvalue()
