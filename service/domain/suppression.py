"""Small-cell suppression: the summary a reader or an email recipient sees.

A threshold rule with primary and secondary (complementary) cell suppression, as in
the OCHA Centre for Humanitarian Data's guidance on statistical disclosure control:

- Primary: a count of people from 1 to threshold - 1 is hidden ("< 5"). Zeros are shown.
- Secondary: a hidden cell must not be recoverable from the totals and siblings that
  are shown. The figures are tied by lines (a total and the parts that sum to it):
  each column across sites (people, people_previous, departures.people, each sadd
  key, people_without_sadd, each vulnerable key) sums to its total, and at each site
  (and in the totals) the sadd cells and people_without_sadd sum to people. A hidden
  cell is safe when another solution of all the lines exists in which it differs by
  one, within what the reader knows of each hidden cell (a small one is 1..T-1, a
  complementary one is at least T: zeros and small cells are never complementary).
  Until every small cell has such a move, the smallest shown non-zero cell of a line
  that lacks one is hidden too.
- Derived figures are hidden with what they derive from: a site's change and needs
  with its people (and previous people); the totals' latrines (a sum of roundings up)
  whenever any site's needs are hidden; departures.people with people_previous, so
  that a departure cannot stand in for a hidden figure of the previous summary.
- Across summaries: people_previous is hidden wherever a reader's view of the previous
  summary hid people. That view hides some people for their breakdown's sake, which
  the column of people_previous alone cannot tell, so the build records it in the
  document (`previous_hidden`, from `hidden_people`); where the record is missing or
  was made at another threshold, every people_previous is hidden.

The function is pure: the same document and threshold give the same view.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from service.domain import visibility
from service.models import SADD_KEYS, VULNERABLE_KEYS

# The document's record of the people a reader's view of the previous summary hid.
PREVIOUS_HIDDEN = "previous_hidden"

BELOW = "below_threshold"  # 1 .. threshold-1
COMPLEMENTARY = "complementary"  # hidden so that a small cell cannot be recovered; >= threshold
DERIVED = "derived"  # computed from a hidden cell (change, needs)
WITHHELD = "withheld"  # too few people in all to protect the small cells otherwise

# A figure of a site or of the totals, as a path inside the entry: ("sadd", "male_0_4").
Field = tuple[str, ...]
COLUMNS: list[Field] = [
    ("people",),
    ("people_previous",),
    ("departures", "people"),
    *[("sadd", key) for key in SADD_KEYS],
    ("people_without_sadd",),
    *[("vulnerable", key) for key in VULNERABLE_KEYS],
]
BREAKDOWN: list[Field] = [*[("sadd", key) for key in SADD_KEYS], ("people_without_sadd",)]
VULNERABLE: list[Field] = [("vulnerable", key) for key in VULNERABLE_KEYS]
SMALL_SITE_BLOCK = {*BREAKDOWN, *VULNERABLE}
NEEDS = ("water_litres_per_day", "food_kcal_per_day", "covered_space_m2", "latrines")
# How far the search for a move goes (cells changed by one); deeper is never needed by
# the lines above (a move crosses at most two sites and the totals), and it bounds cost.
MAX_MOVE = 8

# A cell: (entry, field), entry -1 for the totals, i for sites[i].
Cell = tuple[int, Field]


@dataclass(frozen=True, slots=True)
class Line:
    total: Cell
    parts: tuple[Cell, ...]

    def cells(self) -> tuple[Cell, ...]:
        return (self.total, *self.parts)

    def sign(self, cell: Cell) -> int:
        return -1 if cell == self.total else 1


def for_readers(document: dict[str, Any], threshold: int) -> dict[str, Any]:
    """The summary with small cells (and the cells that would give them away) as null.

    Each site and the totals carry `suppressed`: {"people": "below_threshold", ...},
    and the document `suppression`: {"threshold", "applied", "cells"}."""
    seen = copy.deepcopy(document)
    seen.pop(PREVIOUS_HIDDEN, None)
    sites, totals = seen.get("sites", []), seen.get("totals")
    hidden: dict[Cell, str] = {}
    if threshold > 1 and sites and totals is not None:
        values = _values(seen)
        then = _hidden_then(document, threshold)
        hidden = _choose(values, _lines(len(sites)), threshold, _caps(values), then)
        hidden |= _derived_from(hidden, len(sites))
    for index, entry in enumerate(sites):
        _apply(entry, {f: kind for (i, f), kind in hidden.items() if i == index})
        entry["flags"] = [_reader_flag(f, entry) for f in entry["flags"] if _keep(f, entry)]
    if totals is not None:
        _apply(totals, {f: kind for (i, f), kind in hidden.items() if i == -1})
    seen["flags"] = [
        _reader_flag(f, entry) | {"site_id": entry["site_id"]}
        for entry in sites
        for f in entry["flags"]
    ]
    seen["suppression"] = {"threshold": threshold, "applied": True, "cells": len(hidden)}
    return seen


def hidden_people(document: dict[str, Any], threshold: int) -> dict[str, Any]:
    """Which sites' people (and whether the totals' people) a reader's view of this
    summary hides: the next summary records it as its `previous_hidden`.

    Only people, their breakdown and vulnerable counts decide it: the columns of
    people_previous and departures share no line with them, so they are left out (and
    the summary need not know its own previous one). The one exception, a summary
    withheld for its departures' sake, hid more than recorded; what the record leaves
    shown is then what that summary would have shown had it not been withheld."""
    people_only = copy.deepcopy(document)
    people_only.pop(PREVIOUS_HIDDEN, None)
    for entry in [*people_only["sites"], people_only["totals"]]:
        entry["people_previous"] = 0
        entry["departures"] = {"groups": 0, "people": 0}
    seen = for_readers(people_only, threshold)
    return {
        "threshold": threshold,
        "sites": [s["site_id"] for s in seen["sites"] if s["people"] is None],
        "totals": seen["totals"]["people"] is None,
    }


def exact(document: dict[str, Any], threshold: int) -> dict[str, Any]:
    """What admins and coordinators see: the figures as built, said so."""
    seen = {k: v for k, v in document.items() if k != PREVIOUS_HIDDEN}
    return {**seen, "suppression": {"threshold": threshold, "applied": False, "cells": 0}}


def view(document: dict[str, Any], exact_figures: bool, threshold: int) -> dict[str, Any]:
    """The summary as a caller sees it: exact, or with small cells suppressed."""
    return exact(document, threshold) if exact_figures else for_readers(document, threshold)


def restricted(seen: dict[str, Any], site_ids: list[str] | None) -> dict[str, Any]:
    """A view over some of the sites (an email's subscription): the totals are over
    those sites, and a total whose column holds a hidden cell there is hidden too (it
    would give the hidden cells' sum away)."""
    if not site_ids:
        return seen
    sites = [s for s in seen["sites"] if s["site_id"] in site_ids]
    totals: dict[str, Any] = {"suppressed": {}}
    for field in [*COLUMNS, ("groups",), ("departures", "groups"), ("change_since_previous",)]:
        _total_of(totals, sites, field)
    for unit in NEEDS:
        _total_of(totals, sites, ("needs", unit))
    totals["sites"] = sum(1 for s in sites if s["groups"])
    totals["reported_needs"] = (
        seen["totals"].get("reported_needs", []) if len(sites) == len(seen["sites"]) else []
    )
    return {
        **seen,
        "sites": sites,
        "totals": totals,
        "flags": [f for f in seen["flags"] if f["site_id"] in site_ids],
    }


def shown(entry: dict[str, Any], *field: str) -> Any:
    """A figure of a site or of the totals, None when it is suppressed."""
    value: Any = entry
    for step in field:
        value = value.get(step) if isinstance(value, dict) else None
    return value


def mark(entry: dict[str, Any], field: str, threshold: int) -> str | None:
    """How a suppressed figure ("people", "sadd.male_0_4") is written: "< 5" for a small
    one, "suppressed" for one hidden to protect another; None when it is shown."""
    kind = (entry.get("suppressed") or {}).get(field)
    if kind is None:
        return None
    return f"< {threshold}" if kind == BELOW else "suppressed"


def marked(entry: dict[str, Any], threshold: int) -> dict[str, Any]:
    """A site's entry (or the totals) with each suppressed figure replaced by its mark,
    for pages and emails that print figures as they come."""
    out = copy.deepcopy(entry)
    for path in entry.get("suppressed") or {}:
        into = out
        steps = path.split(".")
        for step in steps[:-1]:
            into = into[step]
        into[steps[-1]] = mark(entry, path, threshold)
    return out


# ---------------------------------------------------------------------------
# The lines and the choice of cells
# ---------------------------------------------------------------------------


def _get(entry: dict[str, Any], field: Field) -> int:
    value: Any = entry
    for step in field:
        value = value.get(step, 0) if isinstance(value, dict) else 0
    return int(value or 0)


def _values(view: dict[str, Any]) -> dict[Cell, int]:
    values: dict[Cell, int] = {}
    for index, entry in [*enumerate(view["sites"]), (-1, view["totals"])]:
        for field in COLUMNS:
            values[(index, field)] = _get(entry, field)
    return values


def _lines(sites: int) -> list[Line]:
    """The columns across sites, then the breakdown of each site and of the totals."""
    columns = [Line((-1, f), tuple((i, f) for i in range(sites))) for f in COLUMNS]
    rows = [
        Line((index, ("people",)), tuple((index, f) for f in BREAKDOWN))
        for index in [*range(sites), -1]
    ]
    return columns + rows


def _hidden_then(document: dict[str, Any], threshold: int) -> set[Cell]:
    """The people_previous cells whose people a reader's view of the previous summary
    hid; all of them when that is not known at this threshold (a document built before
    the record, or SMALL_CELL_THRESHOLD changed since)."""
    sites = document["sites"]
    record = document.get(PREVIOUS_HIDDEN)
    if not record or record.get("threshold") != threshold:
        return {(i, ("people_previous",)) for i in [*range(len(sites)), -1]}
    hid = set(record["sites"])
    then = {(i, ("people_previous",)) for i, s in enumerate(sites) if s["site_id"] in hid}
    return then | ({(-1, ("people_previous",))} if record["totals"] else set())


def _caps(values: dict[Cell, int]) -> dict[Cell, int]:
    """Upper bounds a reader knows besides the lines: a vulnerable count is at most the
    people it is of (kept at the true people, which is no looser than what a reader knows)."""
    return {(i, f): values[(i, ("people",))] for (i, f) in values if f[0] == "vulnerable"}


def _choose(
    values: dict[Cell, int],
    lines: list[Line],
    threshold: int,
    caps: dict[Cell, int],
    then: set[Cell],
) -> dict[Cell, str]:
    hidden: dict[Cell, str] = {
        cell: BELOW for cell, value in sorted(values.items(), key=_order) if 0 < value < threshold
    }
    # A line whose total is small hides all its parts, zeros too (a small site's breakdown,
    # a small column): four cells of "< 5" adding up to a site of "< 5" would otherwise
    # say that a family of four is one of each. A reader knows such a cell is 0..T-1.
    zeros: set[Cell] = set()
    for line in lines:
        if hidden.get(line.total) == BELOW:
            zeros.update(line.parts)
    zeros.update(c for c in values if c[1] in VULNERABLE and hidden.get((c[0], ("people",))))
    hidden.update(dict.fromkeys(sorted(zeros, key=lambda c: _order((c, 0))), BELOW))
    # What the previous summary hid, hidden here too: shown, it would undo that summary's
    # suppression side by side. A small figure is hidden already; a zero tells nothing.
    for cell in sorted(then, key=lambda c: _order((c, 0))):
        if cell not in hidden and values[cell] > 0:
            hidden[cell] = COMPLEMENTARY
    if not hidden:
        return hidden
    of: dict[Cell, list[Line]] = {}
    for line in lines:
        for cell in line.cells():
            of.setdefault(cell, []).append(line)
    search = _Search(values, hidden, threshold, caps, zeros)
    # A hidden zero is there to blur its small neighbours; a zero a zero total gives away
    # tells nothing about a person.
    protect = {cell for cell, kind in hidden.items() if kind == BELOW and values[cell] > 0}
    # Phase 1: each column across sites on its own, so that a column's pattern depends
    # on its figures only (with what the previous summary hid added above, its people
    # and this one's people_previous then hide the same sites).
    for line in lines[: len(COLUMNS)]:
        alone = {c: [line] for c in line.cells()}
        while not all(search.has_move(c, alone) for c in line.cells() if c in protect):
            if not _hide_one(line, hidden, values, avoid_people=False):
                break
        if line.total[1] == ("people_previous",):
            # A departure must not stand in for a hidden figure of the previous summary.
            for index in [*(i for i, _ in line.parts), -1]:
                departed = (index, ("departures", "people"))
                if (index, ("people_previous",)) in hidden and values[departed] > 0:
                    if departed not in hidden:
                        hidden[departed] = COMPLEMENTARY
                    protect.add(departed)
    # Phase 2: all lines together.
    while True:
        stuck = next(
            (
                c
                for c in sorted(protect, key=lambda c: _order((c, 0)))
                if not search.has_move(c, of)
            ),
            None,
        )
        if stuck is None:
            return hidden
        needy = sorted(
            _reachable_lines(stuck, hidden, of),
            key=lambda line: sum(1 for c in line.cells() if c in hidden),
        )
        if not any(
            _hide_one(line, hidden, values, avoid_people=True) for line in needy
        ) and not any(_hide_one(line, hidden, values, avoid_people=False) for line in needy):
            # Nothing left to hide around it (a handful of people in all): every figure
            # is withheld, and a reader learns nothing of any of them.
            return dict.fromkeys(values, WITHHELD)


def _order(item: tuple[Cell, Any]) -> tuple[int, Field]:
    (index, field), _ = item
    return (index if index >= 0 else 1 << 30, field)


def _hide_one(
    line: Line, hidden: dict[Cell, str], values: dict[Cell, int], avoid_people: bool
) -> bool:
    """Hide the smallest shown non-zero part of the line (the total only when no part is
    left): the complementary cell that costs readers least."""
    candidates = [
        c
        for c in line.parts
        if c not in hidden and values[c] > 0 and not (avoid_people and c[1] == ("people",))
    ]
    if not candidates and line.total not in hidden and values[line.total] > 0:
        if not (avoid_people and line.total[1] == ("people",)):
            candidates = [line.total]
    if not candidates:
        return False
    hidden[min(candidates, key=lambda c: (values[c], _order((c, 0))))] = COMPLEMENTARY
    return True


def _reachable_lines(
    start: Cell, hidden: dict[Cell, str], of: dict[Cell, list[Line]]
) -> list[Line]:
    seen_cells, seen_lines, todo = {start}, [], [start]
    while todo:
        cell = todo.pop()
        for line in of.get(cell, []):
            if line in seen_lines:
                continue
            seen_lines.append(line)
            for other in line.cells():
                if other in hidden and other not in seen_cells:
                    seen_cells.add(other)
                    todo.append(other)
    return seen_lines


@dataclass(slots=True)
class _Search:
    values: dict[Cell, int]
    hidden: dict[Cell, str]
    threshold: int
    caps: dict[Cell, int]
    zeros: set[Cell]

    def bounds(self, cell: Cell) -> tuple[int, int]:
        """What a reader knows of a hidden cell: a small one is 1..T-1 (0..T-1 where zeros
        are hidden too), a complementary one is at least T."""
        if self.hidden[cell] == WITHHELD:
            return (0, 1 << 62)
        if self.hidden[cell] != BELOW:
            return (self.threshold, self.caps.get(cell, 1 << 62))
        high = min(self.threshold - 1, self.caps.get(cell, self.threshold - 1))
        return (0 if cell in self.zeros else 1, high)

    def fits(self, cell: Cell, step: int) -> bool:
        low, high = self.bounds(cell)
        return low <= self.values[cell] + step <= high

    def has_move(self, cell: Cell, of: dict[Cell, list[Line]]) -> bool:
        """Whether another solution of the lines exists where `cell` differs by one: hidden
        cells changed by +-1 that keep every line's sum and every bound."""
        return any(self.fits(cell, step) and self._search({cell: step}, of) for step in (1, -1))

    def _search(self, moved: dict[Cell, int], of: dict[Cell, list[Line]]) -> bool:
        # The first line whose sum the move changed: fix it with one more hidden cell.
        for cell in moved:
            for line in of.get(cell, []):
                off = sum(line.sign(x) * moved.get(x, 0) for x in line.cells())
                if off == 0:
                    continue
                if len(moved) >= MAX_MOVE:
                    return False
                for other in line.cells():
                    if other in moved or other not in self.hidden:
                        continue
                    step = -off * line.sign(other)
                    if abs(step) == 1 and self.fits(other, step):
                        if self._search({**moved, other: step}, of):
                            return True
                return False
        return True


def _derived_from(hidden: dict[Cell, str], sites: int) -> dict[Cell, str]:
    more: dict[Cell, str] = {}
    for index in [*range(sites), -1]:
        people = (index, ("people",)) in hidden
        if people or (index, ("people_previous",)) in hidden:
            more[(index, ("change_since_previous",))] = DERIVED
        if people:
            for unit in NEEDS:
                more[(index, ("needs", unit))] = DERIVED
    if any((i, ("people",)) in hidden for i in range(sites)):
        more[(-1, ("needs", "latrines"))] = DERIVED
    return more


def _apply(entry: dict[str, Any], kinds: dict[Field, str]) -> None:
    for field in kinds:
        into = entry
        for step in field[:-1]:
            into = into.setdefault(step, {})
        into[field[-1]] = None
    entry["suppressed"] = {".".join(field): kind for field, kind in sorted(kinds.items())}


# ---------------------------------------------------------------------------
# Flags: the code and a message without figures; no group ids for readers
# ---------------------------------------------------------------------------

# A single group's flags are told as to anyone who does not see the group's site.
_READER_MESSAGES = {
    **visibility.GROUP_FLAG_MESSAGES,
    "stale_site": "No recent head count at this site.",
    "over_capacity": "More people than the site's capacity.",
    "breakdown_missing": "No sex-and-age breakdown for most people.",
}


def _keep(flag: dict[str, Any], entry: dict[str, Any]) -> bool:
    # Over capacity with a small capacity would narrow a hidden count down.
    return not (flag.get("code") == "over_capacity" and entry.get("people") is None)


def _reader_flag(flag: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """A flag as a reader sees it: site-level figures only where they are shown, never a
    group's id or count."""
    code = flag.get("code", "")
    people, without = entry.get("people"), entry.get("people_without_sadd")
    if code == "breakdown_missing" and people is not None and without is not None:
        message = f"No sex-and-age breakdown for {without} of {people} people."
    elif code == "over_capacity" and people is not None:
        message = f"{people} people for a capacity of {entry.get('capacity')}."
    else:
        message = _READER_MESSAGES.get(code, "See the data-quality flags.")
    return {"code": code, "message": message}


def _total_of(totals: dict[str, Any], sites: list[dict[str, Any]], field: Field) -> None:
    into = totals
    for step in field[:-1]:
        into = into.setdefault(step, {})
    figures = [shown(site, *field) for site in sites]
    if any(site.get("suppressed", {}).get(".".join(field)) for site in sites):
        into[field[-1]] = None
        totals["suppressed"][".".join(field)] = COMPLEMENTARY
    else:
        total = sum(f or 0 for f in figures)
        into[field[-1]] = round(total, 1) if isinstance(total, float) else total
