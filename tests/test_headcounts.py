"""The one rule: a head count reads the same from a JSON body and from a CSV row, and its
fingerprint is the canonical JSON of what it says, hashed."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.headcounts import Spelling, canonical, made, read_report
from service.models import NEEDS_SECTORS, SADD_KEYS, VULNERABLE_KEYS

# Touches no database and no broker: the embedded pass runs it, the PostgreSQL + Redis
# pass skips it (tests/conftest.py).
pytestmark = pytest.mark.backend_independent

NOW = datetime.now(UTC)
LATEST = NOW + timedelta(minutes=2)
THOROUGH = settings(max_examples=300, deadline=None, database=None)

# Sound text: no surrogates, controls, invisible format characters or line separators
# (rules.text refuses those).
SOUND = st.characters(
    blacklist_categories=("Cs", "Cc", "Cf", "Zl", "Zp"), blacklist_characters=";:"
)
text = st.text(SOUND, min_size=1).map(str.strip).filter(bool)


@st.composite
def reports(draw: st.DrawFn) -> dict:
    """A sound report as a JSON body sends it, named by its group's id."""
    total = draw(st.integers(0, 1_000_000))
    body: dict = {
        "group_id": str(draw(st.uuids())),
        "observed_at": (NOW - timedelta(seconds=draw(st.integers(0, 10**8)))).isoformat(),
        "total": total,
    }
    if draw(st.booleans()):
        parts = draw(st.lists(st.integers(0, total), min_size=7, max_size=7).map(sorted))
        cuts = [0, *parts, total]
        body["sadd"] = {k: cuts[i + 1] - cuts[i] for i, k in enumerate(SADD_KEYS)}
    if draw(st.booleans()):
        keys = draw(st.lists(st.sampled_from(VULNERABLE_KEYS), min_size=1, unique=True))
        body["vulnerable"] = {k: draw(st.integers(0, total)) for k in keys}
    if draw(st.booleans()):
        needs = draw(
            st.lists(
                st.tuples(st.sampled_from(NEEDS_SECTORS), st.integers(1, 5), st.none() | text),
                min_size=1,
                max_size=5,
            )
        )
        body["needs"] = [
            {"sector": s, "severity": n} | ({"note": note} if note else {}) for s, n, note in needs
        ]
    if draw(st.booleans()):
        body["note"] = draw(text)
    if draw(st.booleans()):
        body["client_id"] = str(draw(st.uuids()))
    return body


def as_cells(body: dict) -> dict[str, str]:
    """The same report as a CSV row writes it."""
    cells = {k: str(v) for k, v in body.items() if k not in ("sadd", "vulnerable", "needs")}
    cells.update({k: str(v) for k, v in (body.get("sadd") or {}).items()})
    cells.update({k: str(v) for k, v in (body.get("vulnerable") or {}).items()})
    if "needs" in body:
        cells["needs"] = ";".join(
            ":".join(str(p) for p in (n["sector"], n["severity"], n.get("note")) if p is not None)
            for n in body["needs"]
        )
    return cells


@THOROUGH
@given(body=reports())
def test_a_report_reads_the_same_from_json_and_from_a_csv_row(body):
    """A row imported, then resent through the API, is recognised as the same report."""
    from_json = read_report(body, latest=LATEST)
    from_row = read_report(as_cells(body), latest=LATEST, spelling=Spelling.CELLS)
    assert from_row == from_json
    assert from_row.fingerprint == from_json.fingerprint


@THOROUGH
@given(body=reports(), supersedes=st.none() | st.integers(1, 2**31 - 1), label=st.booleans())
def test_the_fingerprint_is_the_canonical_json_hashed(body, supersedes, label):
    report = read_report(body, latest=LATEST)
    fields = {name: getattr(report, name) for name in report._fields if name != "fingerprint"}
    fields["supersedes"] = supersedes
    if label:  # an import row naming its group by label at a site
        fields.update(group_id=None, group_label='Hangar \u00e9 "7"', site_id="stepanakert-centre")
    again = made(**fields)
    text = json.dumps(canonical(again), sort_keys=True, separators=(",", ":"))
    assert again.fingerprint == hashlib.sha256(text.encode()).hexdigest()


def test_the_client_id_is_not_part_of_what_is_sent():
    body = {"group_id": str(uuid.uuid4()), "observed_at": NOW.isoformat(), "total": 3}
    keyed = read_report(body | {"client_id": str(uuid.uuid4())}, latest=LATEST)
    assert keyed.fingerprint == read_report(body, latest=LATEST).fingerprint


def test_what_is_left_out_and_what_is_null_are_the_same_report():
    body = {"group_id": str(uuid.uuid4()), "observed_at": NOW.isoformat(), "total": 3}
    nulls = body | {"sadd": None, "vulnerable": None, "note": "   ", "supersedes": None}
    assert read_report(nulls, latest=LATEST) == read_report(body, latest=LATEST)
