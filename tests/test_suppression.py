"""Small-cell suppression, the pure function: no hidden small cell can be recovered.

The attacker here is independent of the function's own search: it writes down what a
reader knows from the view (every shown figure, the lines the figures obey, that a
"< T" cell is 1..T-1 and a complementary one at least T, that a vulnerable count is at
most its site's people) and asks a small constraint solver whether each hidden small
cell could take another value. It is stronger than a reader: it also knows every
hidden figure is at most a bound the reader does not know.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from service.domain import suppression
from service.models import SADD_KEYS, VULNERABLE_KEYS

# Touches no database and no broker: the embedded pass runs it, the PostgreSQL + Redis
# pass skips it (tests/conftest.py).
pytestmark = pytest.mark.backend_independent

SADD = [("sadd", k) for k in SADD_KEYS]
VULNERABLE = [("vulnerable", k) for k in VULNERABLE_KEYS]
BREAKDOWN = [*SADD, ("people_without_sadd",)]
COLUMNS = [("people",), ("people_previous",), ("departures", "people"), *BREAKDOWN, *VULNERABLE]


# ---------------------------------------------------------------------------
# Documents shaped as summaries.compose writes them
# ---------------------------------------------------------------------------


def sphere(people: int) -> dict[str, Any]:
    return {
        "water_litres_per_day": round(people * 15.0, 1),
        "food_kcal_per_day": round(people * 2100.0, 1),
        "covered_space_m2": round(people * 3.5, 1),
        "latrines": -(-people // 20),
    }


def site(
    index: int,
    sadd: dict[str, int],
    without: int,
    vulnerable: dict[str, int],
    previous: int,
    departed: int,
) -> dict[str, Any]:
    people = sum(sadd.values()) + without
    return {
        "site_id": f"site-{index}",
        "name": f"Site {index}",
        "kind": "other",
        "pcode": None,
        "capacity": None,
        "people": people,
        "groups": 1 if people else 0,
        "people_previous": previous,
        "change_since_previous": people - previous,
        "departures": {"groups": 1 if departed else 0, "people": departed},
        "sadd": dict(sadd),
        "people_without_sadd": without,
        "vulnerable": {k: min(v, people) for k, v in vulnerable.items()},
        "needs": sphere(people),
        "reported_needs": [],
        "last_observed_at": None,
        "flags": [],
    }


def document_of(sites: list[dict[str, Any]]) -> dict[str, Any]:
    def total(*field: str) -> int:
        return sum(get(s, field) for s in sites)

    people = total("people")
    return {
        "id": "x",
        "as_of": "2026-01-01T00:00:00+00:00",
        "generated_at": "2026-01-01T00:00:00+00:00",
        "previous_as_of": None,
        "totals": {
            "people": people,
            "groups": total("groups"),
            "sites": sum(1 for s in sites if s["groups"]),
            "people_previous": total("people_previous"),
            "change_since_previous": people - total("people_previous"),
            "departures": {
                "groups": total("departures", "groups"),
                "people": total("departures", "people"),
            },
            "sadd": {k: total("sadd", k) for k in SADD_KEYS},
            "people_without_sadd": total("people_without_sadd"),
            "vulnerable": {k: total("vulnerable", k) for k in VULNERABLE_KEYS},
            "needs": {u: sum(s["needs"][u] for s in sites) for u in sphere(0)},
            "reported_needs": [],
        },
        "sites": sites,
        "flags": [],
        "standards": {},
    }


def get(entry: dict[str, Any], field: tuple[str, ...]) -> Any:
    for step in field:
        entry = entry[step]
    return entry


# Small figures are the point; a few large ones make the complementary cells.
figure = st.sampled_from([0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 9, 12])
sites_strategy = st.lists(
    st.builds(
        lambda sadd, without, vulnerable, previous, departed: (
            sadd,
            without,
            vulnerable,
            previous,
            departed,
        ),
        st.fixed_dictionaries({k: figure for k in SADD_KEYS}),
        figure,
        st.fixed_dictionaries({k: figure for k in VULNERABLE_KEYS}),
        figure,
        figure,
    ),
    min_size=1,
    max_size=3,
)


# A site with a few breakdown (and vulnerable) cells: where one small cell can make the
# site's people complementary, which the column of people alone does not show.
def few_cells(keys: list[str]) -> st.SearchStrategy[dict[str, int]]:
    return st.dictionaries(st.sampled_from(keys), st.integers(1, 6), max_size=2).map(
        lambda cells: {**dict.fromkeys(keys, 0), **cells}
    )


few_cells_strategy = st.lists(
    st.tuples(
        few_cells(SADD_KEYS),
        st.sampled_from([0, 1, 2, 3, 4, 5, 6, 9]),
        few_cells(VULNERABLE_KEYS),
        figure,
        figure,
    ),
    min_size=1,
    max_size=3,
)


def build(raw: list[tuple]) -> dict[str, Any]:
    return document_of([site(i, *r) for i, r in enumerate(raw)])


# ---------------------------------------------------------------------------
# The attacker: a constraint solver over what a reader knows
# ---------------------------------------------------------------------------


class Knowledge:
    """Integer unknowns with bounds, linear equalities and "x <= y" with +-1 coefficients."""

    def __init__(self) -> None:
        self.bounds: dict[Any, tuple[int, int]] = {}
        self.equalities: list[tuple[dict[Any, int], int]] = []  # sum(coef * x) == const
        self.at_most: list[tuple[Any, Any]] = []  # x <= y (either may be a number)

    def solvable(self, bounds: dict[Any, tuple[int, int]]) -> bool:
        bounds = self.propagate(dict(bounds))
        if bounds is None:
            return False
        open_ = [v for v, (lo, hi) in bounds.items() if lo < hi]
        if not open_:
            return True
        var = min(open_, key=lambda v: bounds[v][1] - bounds[v][0])
        lo, hi = bounds[var]
        mid = (lo + hi) // 2
        return self.solvable({**bounds, var: (lo, mid)}) or self.solvable(
            {**bounds, var: (mid + 1, hi)}
        )

    def propagate(self, b: dict[Any, tuple[int, int]]) -> dict[Any, tuple[int, int]] | None:
        changed = True
        while changed:
            changed = False
            for coefs, const in self.equalities:
                for var, coef in coefs.items():
                    rest_lo = sum(
                        (c * b[v][0] if c > 0 else c * b[v][1])
                        for v, c in coefs.items()
                        if v != var
                    )
                    rest_hi = sum(
                        (c * b[v][1] if c > 0 else c * b[v][0])
                        for v, c in coefs.items()
                        if v != var
                    )
                    # coef * var = const - rest
                    lo, hi = (const - rest_hi, const - rest_lo)
                    if coef < 0:
                        lo, hi = -hi, -lo
                    new = (max(b[var][0], lo), min(b[var][1], hi))
                    if new[0] > new[1]:
                        return None
                    if new != b[var]:
                        b[var], changed = new, True
            for x, y in self.at_most:
                if x in b and y in b:
                    nx = (b[x][0], min(b[x][1], b[y][1]))
                    ny = (max(b[y][0], b[x][0]), b[y][1])
                    if nx[0] > nx[1] or ny[0] > ny[1]:
                        return None
                    if (nx, ny) != (b[x], b[y]):
                        b[x], b[y], changed = nx, ny, True
        return b


def knowledge_of(view: dict[str, Any], threshold: int, cap: int) -> Knowledge:
    entries = [*enumerate(view["sites"]), (-1, view["totals"])]
    known = Knowledge()
    value: dict[Any, Any] = {}
    for index, entry in entries:
        for field in COLUMNS:
            name = ".".join(field)
            kind = entry["suppressed"].get(name)
            if kind is None:
                value[(index, field)] = get(entry, field)
                assert value[(index, field)] is not None
                continue
            assert get(entry, field) is None
            assert kind in (suppression.BELOW, suppression.COMPLEMENTARY, suppression.WITHHELD)
            value[(index, field)] = (index, field)
            # Zeros are shown, but where a line's total is below the threshold (a small
            # site's breakdown and vulnerable counts, a small column), all its parts are hidden.
            small_site = entry["suppressed"].get("people") == suppression.BELOW
            small_column = (
                index >= 0 and view["totals"]["suppressed"].get(name) == suppression.BELOW
            )
            low = (
                0
                if (small_site and field[0] != "people" and field in [*BREAKDOWN, *VULNERABLE])
                or small_column
                else 1
            )
            known.bounds[(index, field)] = (
                (low, threshold - 1)
                if kind == suppression.BELOW
                else (threshold, cap)
                if kind == suppression.COMPLEMENTARY
                else (0, cap)
            )

    def equal(total: Any, parts: list[Any]) -> None:
        coefs: dict[Any, int] = {}
        const = 0
        for item, sign in [(total, -1), *((p, 1) for p in parts)]:
            if isinstance(item, int):
                const -= sign * item
            else:
                coefs[item] = coefs.get(item, 0) + sign
        if coefs:
            known.equalities.append((coefs, const))

    sites = range(len(view["sites"]))
    for field in COLUMNS:
        equal(value[(-1, field)], [value[(i, field)] for i in sites])
    for index in [*sites, -1]:
        equal(value[(index, ("people",))], [value[(index, f)] for f in BREAKDOWN])
        for field in VULNERABLE:
            vulnerable, people = value[(index, field)], value[(index, ("people",))]
            if not isinstance(vulnerable, int):
                known.at_most.append((vulnerable, people if not isinstance(people, int) else None))
                if isinstance(people, int):
                    lo, hi = known.bounds[vulnerable]
                    known.bounds[vulnerable] = (lo, min(hi, people))
    known.at_most = [(x, y) for x, y in known.at_most if y is not None]
    return known


def recoverable(view: dict[str, Any], original: dict[str, Any], threshold: int) -> list[str]:
    """The hidden small cells (not zero) whose value the reader can pin down."""
    cap = 4 * max(
        [1, *(get(e, f) for e in [*original["sites"], original["totals"]] for f in COLUMNS)]
    )
    known = knowledge_of(view, threshold, cap)
    pinned = []
    for index, entry in [*enumerate(original["sites"]), (-1, original["totals"])]:
        shown = view["sites"][index] if index >= 0 else view["totals"]
        for field in COLUMNS:
            if shown["suppressed"].get(".".join(field)) != suppression.BELOW:
                continue
            true = get(entry, field)
            if true == 0:
                continue  # a hidden zero blurs its neighbours; a zero total may give it away
            lo, hi = known.bounds[(index, field)]
            others = [(lo, true - 1), (true + 1, hi)]
            if not any(
                a <= b and known.solvable({**known.bounds, (index, field): (a, b)})
                for a, b in others
            ):
                pinned.append(f"{index}:{'.'.join(field)}={true}")
    return pinned


# ---------------------------------------------------------------------------
# The properties
# ---------------------------------------------------------------------------


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sites_strategy, st.sampled_from([3, 5]))
def test_no_hidden_small_cell_can_be_recovered_from_totals_and_siblings(raw, threshold):
    original = build(raw)
    view = suppression.for_readers(original, threshold)
    assert recoverable(view, original, threshold) == []


@settings(max_examples=60, deadline=None)
@given(sites_strategy, st.sampled_from([3, 5]))
def test_a_reader_sees_no_figure_below_the_threshold_and_what_is_shown_is_exact(raw, threshold):
    original = build(raw)
    view = suppression.for_readers(original, threshold)
    for index, entry in [*enumerate(view["sites"]), (-1, view["totals"])]:
        exact = original["sites"][index] if index >= 0 else original["totals"]
        for field in COLUMNS:
            figure = get(entry, field)
            if figure is None:
                continue
            assert figure == get(exact, field)
            assert figure == 0 or figure >= threshold, (index, field, figure)
        # Derived figures are shown only with what they derive from.
        if entry["change_since_previous"] is not None:
            assert entry["people"] is not None and entry["people_previous"] is not None
        if entry["needs"]["water_litres_per_day"] is not None:
            assert entry["people"] is not None
        if entry["people_previous"] is None:
            assert entry["departures"]["people"] in (None, 0)
    if any(s["people"] is None for s in view["sites"]):
        assert view["totals"]["needs"]["latrines"] is None


def test_zeros_are_shown_but_in_a_small_site_and_a_threshold_of_one_hides_nothing():
    zeros = {k: 0 for k in SADD_KEYS}
    none = {k: 0 for k in VULNERABLE_KEYS}
    original = build([(zeros, 3, none, 0, 0), (zeros, 40, none, 0, 0)])
    assert suppression.for_readers(original, 1)["sites"][0]["people"] == 3
    small, large = suppression.for_readers(original, 5)["sites"]
    assert large["sadd"]["female_0_4"] == 0 and large["vulnerable"]["injured"] == 0
    assert small["people"] is None and small["suppressed"]["people"] == suppression.BELOW
    # A family of four in four categories must not read as one of each.
    assert small["sadd"]["female_0_4"] is None and small["vulnerable"]["injured"] is None
    assert suppression.mark(small, "people", 5) == "< 5"


def test_a_small_site_next_to_a_large_one_hides_the_large_ones_people_as_complementary():
    zeros = {k: 0 for k in SADD_KEYS}
    none = {k: 0 for k in VULNERABLE_KEYS}
    original = build([(zeros, 3, none, 0, 0), (zeros, 300, none, 290, 0), (zeros, 40, none, 40, 0)])
    view = suppression.for_readers(original, 5)
    small, large, middle = view["sites"]
    assert small["people"] is None and middle["people"] is None
    assert large["people"] == 300
    assert middle["suppressed"]["people"] == suppression.COMPLEMENTARY
    assert view["totals"]["people"] == 343
    assert suppression.mark(middle, "people", 5) == "suppressed"


ZERO_SADD = {k: 0 for k in SADD_KEYS}
ZERO_VULNERABLE = {k: 0 for k in VULNERABLE_KEYS}


@settings(max_examples=300, deadline=None)
@given(few_cells_strategy, sites_strategy, st.sampled_from([3, 5]))
# The previous summary hides a site's 4 people for its breakdown's sake (1 man over 60,
# 3 without a breakdown), which the column of people_previous alone does not show.
@example(
    earlier=[({**ZERO_SADD, "male_60_plus": 1}, 3, ZERO_VULNERABLE, 0, 0)],
    later=[(ZERO_SADD, 0, ZERO_VULNERABLE, 0, 0)],
    threshold=3,
)
def test_people_previous_hides_the_sites_the_previous_summary_hid(earlier, later, threshold):
    """A summary's people_previous are the previous summary's people: shown where that
    one showed them, so putting the two side by side gives nothing away."""
    previous = build(earlier)
    # As many sites as before, each with the people it had then as people_previous.
    rows = (later + earlier)[: len(earlier)]
    now = build([(*row[:3], previous["sites"][i]["people"], row[4]) for i, row in enumerate(rows)])
    # As compose records it: from the previous moment's people figures alone.
    people_then = build([(*row[:3], 0, 0) for row in earlier])
    now[suppression.PREVIOUS_HIDDEN] = suppression.hidden_people(people_then, threshold)
    then, seen = (suppression.for_readers(d, threshold) for d in (previous, now))
    if suppression.WITHHELD in then["totals"]["suppressed"].values():
        return  # nothing of it was shown (README: the residue of a withheld summary)
    assert [s["people"] is None for s in then["sites"]] == [
        s["people_previous"] is None for s in seen["sites"]
    ]
    assert (then["totals"]["people"] is None) == (seen["totals"]["people_previous"] is None)


def test_people_previous_is_all_hidden_where_the_record_is_of_another_threshold_or_missing():
    """A summary records what the previous one hid at the threshold it was built with;
    at another threshold (SMALL_CELL_THRESHOLD changed since) that is not known."""
    zeros = {k: 0 for k in SADD_KEYS}
    none = {k: 0 for k in VULNERABLE_KEYS}
    now = build([(zeros, 40, none, 30, 0), (zeros, 50, none, 60, 6)])
    then = build([(zeros, 30, none, 0, 0), (zeros, 60, none, 0, 0)])
    now[suppression.PREVIOUS_HIDDEN] = suppression.hidden_people(then, 5)
    seen = suppression.for_readers(now, 5)
    assert [s["people_previous"] for s in seen["sites"]] == [30, 60]
    assert seen["totals"]["people_previous"] == 90 and seen["sites"][1]["departures"]["people"] == 6
    assert suppression.PREVIOUS_HIDDEN not in seen
    unrecorded = {k: v for k, v in now.items() if k != suppression.PREVIOUS_HIDDEN}
    for other in (suppression.for_readers(now, 7), suppression.for_readers(unrecorded, 5)):
        for entry in [*other["sites"], other["totals"]]:
            assert entry["people_previous"] is None and entry["change_since_previous"] is None
            assert entry["departures"]["people"] in (0, None)
    assert seen["sites"][0]["people"] == 40  # this summary's own figures are as they were
