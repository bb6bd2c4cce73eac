"""The import's quick path and its careful path give the same verdict on every row.

`quick_row` checks plainly written rows inline; whatever it is not sure of goes to
`parse_row`, which is the one rule (`headcounts.read_report`) reading a CSV row. So for
any row: either the quick path steps aside (None) or it builds exactly the Row
`parse_row` builds, fingerprint and key included.
It must never take a row `parse_row` refuses, and it must take the rows a spreadsheet
writes (else the import is slow for nothing).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.domain.imports.checking import Row, parse_row, quick_row
from service.domain.imports.reading import COLUMNS
from service.models import NEEDS_SECTORS, SADD_KEYS, VULNERABLE_KEYS

# Touches no database and no broker: the embedded pass runs it, the PostgreSQL + Redis
# pass skips it (tests/conftest.py).
pytestmark = pytest.mark.backend_independent

THOROUGH = settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

NOW = datetime.now(UTC)
GROUP = "5b0f3c1e-2a4d-4e6f-8a9b-0c1d2e3f4a5b"


def _moment(offset_hours: float, zone: str = "+00:00") -> str:
    return (NOW - timedelta(hours=offset_hours)).isoformat().replace("+00:00", zone)


uuids = st.uuids().map(str)
odd_uuids = st.one_of(
    uuids.map(str.upper),
    uuids.map(lambda u: "{" + u + "}"),
    uuids.map(lambda u: u.replace("-", "")),
    uuids.map(lambda u: f" {u} "),
    uuids.map(lambda u: "urn:uuid:" + u),
    st.just("not-a-uuid"),
)
counts = st.integers(0, 1_200_000).map(str)
odd_counts = st.sampled_from(
    [
        "-1",
        "+5",
        " 5",
        "5 ",
        "1e3",
        "5.0",
        "0005",
        "\u0663",
        "\u0661\u0662",
        "\uff15",
        "\u00b2",
        "1_000",
        "",
        "  ",
        "x",
    ]
)
moments = st.one_of(
    st.floats(0, 24 * 365 * 20).map(_moment),
    st.floats(0, 24 * 30).map(lambda h: _moment(h, "+04:00")),
    st.floats(0, 24 * 30).map(lambda h: _moment(h).replace("+00:00", "Z")),
)
odd_moments = st.one_of(
    st.sampled_from(
        [
            "2023-09-26T14:30:00",  # no zone
            "2023-09-26",
            "0023-09-26T14:30:00+04:00",  # the year 23
            "1999-12-31T23:59:59+00:00",
            "2000-01-01T00:00:00+00:00",
            "2000-01-01T03:00:00+04:00",
            "0001-01-01T00:00:00+05:00",  # no UTC equivalent
            "yesterday",
            " 2023-09-26T14:30:00+04:00",
            "2023-09-26T14:30:00+04:00:30",
        ]
    ),
    st.floats(-1, 2).map(lambda h: _moment(-h)),  # around "now + the skew allowed"
)
plain_needs = st.lists(
    st.tuples(st.sampled_from(NEEDS_SECTORS), st.integers(1, 5)), min_size=1, max_size=50
).map(lambda items: ";".join(f"{s}:{n}" for s, n in items))
odd_needs = st.one_of(
    st.sampled_from(
        [
            "water:3:one tent for 40",
            "water:3;",
            " water:3",
            "water: 3",
            "water:0",
            "water:6",
            "blankets:2",
            "water",
            "water:\u0663",
            ";",
        ]
    ),
)
notes = st.sampled_from(["counted at the gate", 'caf\u00e9 "B" \\ 2', "x" * 2000, "two\nlines"])
texts = st.one_of(
    st.sampled_from(
        [
            "counted at the gate",
            "  padded  ",
            "   ",
            "bell\x07",
            "line\nbreak",
            "crlf\r\nline",
            'quote " and \\ backslash',
            "caf\u00e9 \u0531\u0580\u0581\u0561\u056d",
            "x" * 2000,
            "x" * 2001,
            "x" * 200,
            "x" * 201,
        ]
    ),
    st.text(max_size=40),
)
sites = st.sampled_from(["stepanakert-airport", "stepanakert-centre", "Bad Site", " goris", "a"])


def cell(plain: st.SearchStrategy[str], odd: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Mostly written plainly (so rows are often sound), now and then empty or odd."""
    return st.integers(0, 19).flatmap(lambda n: plain if n < 17 else st.just("") if n < 18 else odd)


@st.composite
def rows(draw: st.DrawFn) -> dict[str, str]:
    cells = dict.fromkeys(COLUMNS, "")
    cells["client_id"] = draw(st.one_of(st.just(""), cell(uuids, odd_uuids)))
    if draw(st.booleans()):
        cells["group_id"] = draw(cell(st.one_of(st.just(GROUP), uuids), odd_uuids))
        cells["site_id"] = draw(st.one_of(st.just(""), sites))
    else:
        cells["group_label"] = draw(cell(st.just("Hangar 7 families"), texts))
        cells["site_id"] = draw(cell(st.just("stepanakert-airport"), sites))
    if draw(st.integers(0, 9)) == 0:  # now and then both, or neither
        cells["group_id"] = draw(cell(uuids, odd_uuids))
    cells["observed_at"] = draw(cell(moments, st.one_of(odd_moments, texts)))
    total = draw(st.integers(0, 1000))
    cells["total"] = draw(cell(st.just(str(total)), st.one_of(counts, odd_counts)))
    breakdown = draw(st.sampled_from(["none", "adds up", "any"]))
    if breakdown == "adds up":
        cuts = sorted(draw(st.lists(st.integers(0, total), min_size=7, max_size=7)))
        parts = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]
        cells.update({k: str(v) for k, v in zip(SADD_KEYS, parts, strict=True)})
    if breakdown == "any" or draw(st.integers(0, 9)) == 0:
        for key in draw(st.lists(st.sampled_from(SADD_KEYS), max_size=8, unique=True)):
            cells[key] = draw(cell(counts, odd_counts))
    for key in draw(st.lists(st.sampled_from(VULNERABLE_KEYS), max_size=5, unique=True)):
        cells[key] = draw(cell(st.integers(0, total + 2).map(str), st.one_of(counts, odd_counts)))
    cells["needs"] = draw(st.one_of(st.just(""), cell(plain_needs, st.one_of(odd_needs, texts))))
    cells["note"] = draw(st.one_of(st.just(""), cell(notes, texts)))
    return cells


def verdicts(cells: dict[str, str]) -> tuple[Row | None, Row | list[tuple[str, str]]]:
    latest = datetime.now(UTC) + timedelta(seconds=120)
    return quick_row(7, cells, latest), parse_row(7, cells, latest)


@pytest.fixture
def context(app):
    with app.app_context():
        yield


@THOROUGH
@given(cells=rows())
def test_the_quick_path_takes_a_row_only_as_the_careful_path_would(context, cells):
    quick, careful = verdicts(cells)
    if quick is not None:
        assert quick == careful


def test_the_quick_path_takes_the_rows_a_spreadsheet_writes(context):
    plain = [
        {"group_id": GROUP, "observed_at": _moment(2), "total": "212"},
        {
            "client_id": str(uuid.uuid4()),
            "group_id": GROUP,
            "site_id": "stepanakert-airport",
            "observed_at": _moment(3, "+04:00"),
            "total": "40",
            **{key: "5" for key in SADD_KEYS},
            "disabled": "2",
            "injured": "0",
            "needs": "water:4;shelter:3",
            "note": 'counted at the hangar door; caf\u00e9 "B"',
        },
        {
            "site_id": "stepanakert-airport",
            "group_label": "Hangar 7 families",
            "observed_at": _moment(1).replace("+00:00", "Z"),
            "total": "0",
        },
    ]
    for cells in plain:
        quick, careful = verdicts({**dict.fromkeys(COLUMNS, ""), **cells})
        assert isinstance(careful, Row), careful
        assert quick == careful


def test_a_moment_written_any_iso_way_gets_the_careful_fingerprint(context):
    """The quick path keeps a moment's text as written when it is already canonical;
    spellings that only look alike (same length, same zone) must be formatted again."""
    for moment in [
        "2023-09-19T14:30:00+00:00",
        "2023-09-19T14:30:00.500000+00:00",
        "2023-09-19T14:30:00.000000+00:00",  # microseconds that are zero
        "2023-09-19T14:30:00.5+00:00",
        "2023-09-19T14:30:00,500000+00:00",
        "2023-09-19 14:30:00+00:00",  # a space for the T, same length
        "2023-W38-2T14:30:00+00:00",  # a week date, same length
        "2023-09-19T143000.5+00:00",  # basic time, same length
        "2023-09-19T14:30:00Z",
        "2023-09-19T18:30:00+04:00",
    ]:
        cells = {**dict.fromkeys(COLUMNS, ""), "group_id": GROUP, "total": "9"}
        quick, careful = verdicts({**cells, "observed_at": moment})
        assert isinstance(careful, Row), (moment, careful)
        assert quick == careful, moment


def test_the_quick_path_leaves_every_bad_row_to_the_careful_path(context):
    good = {**dict.fromkeys(COLUMNS, ""), "group_id": GROUP, "observed_at": _moment(2)}
    for change in [
        {"total": "-5"},
        {"total": "1000001"},
        {"total": "40", **{key: "5" for key in SADD_KEYS}, "male_0_4": "6"},
        {"total": "4", "injured": "5"},
        {"total": "4", "observed_at": (NOW + timedelta(hours=1)).isoformat()},
        {"total": "4", "observed_at": "1999-12-31T23:59:59+00:00"},
        {"total": "4", "observed_at": "2023-09-26T14:30:00"},
        {"total": "4", "needs": "water:6"},
        {"total": "4", "needs": ";".join(["water:3"] * 46)},
        {"total": "4", "note": "bell\x07"},
        {"total": "4", "group_label": "also a label"},
    ]:
        quick, careful = verdicts({**good, **change})
        assert quick is None, change
        assert isinstance(careful, list) and careful, change
