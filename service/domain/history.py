"""The situation over time, for the dashboard's chart: people waiting from the summaries'
history, and people departed from the groups' status history.

A ready summary never changes, so what the chart needs from each (its moment, the
people waiting in total and per site) is kept in memory once read: a page that
refreshes every minute reads only the summaries that are new since.
"""

from __future__ import annotations

import bisect
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select

from service.domain import suppression
from service.domain.counting import latest_report
from service.extensions import db
from service.models import GroupStatus, GroupStatusChange, Report, Summary, SummaryStatus

# The chart shows at most this many summaries, the newest ones.
HISTORY_POINTS = 500
_CACHE_LIMIT = 5000


@dataclass(frozen=True)
class Point:
    summary_id: uuid.UUID
    as_of: datetime
    people: int
    sites: dict[str, int]


_cache: dict[uuid.UUID, Point] = {}
# Points as readers see them, by summary and threshold (a reader view is worked out once).
_readers: dict[tuple[uuid.UUID, int], Point] = {}
_lock = threading.Lock()


def _point(summary_id: uuid.UUID, as_of: datetime, document: dict[str, Any]) -> Point:
    return Point(
        summary_id=summary_id,
        as_of=as_of,
        people=int(document["totals"]["people"]),
        sites={s["site_id"]: int(s["people"]) for s in document["sites"]},
    )


def readers_history(threshold: int, limit: int = HISTORY_POINTS) -> list[Point]:
    """The same points as readers see them: each from its summary's reader view, with
    the sites whose people are shown there (points whose total is suppressed are left out)."""
    points = []
    for point in people_history(limit):
        key = (point.summary_id, threshold)
        with _lock:
            seen = _readers.get(key)
        if seen is None:
            document = db.session.get_one(Summary, point.summary_id).document or {}
            view = suppression.for_readers(document, threshold)
            people = view["totals"]["people"]
            sites = {s["site_id"]: s["people"] for s in view["sites"] if s["people"] is not None}
            seen = Point(point.summary_id, point.as_of, people, sites)
            with _lock:
                if len(_readers) > _CACHE_LIMIT:
                    _readers.clear()
                _readers[key] = seen
        if seen.people is not None:
            points.append(seen)
    return points


def people_history(limit: int = HISTORY_POINTS) -> list[Point]:
    """The newest `limit` ready summaries, oldest first, one per `as_of`."""
    rows = db.session.execute(
        select(Summary.id, Summary.as_of)
        .where(Summary.status == SummaryStatus.ready)
        .order_by(Summary.as_of.desc(), Summary.generated_at.desc())
        .limit(limit)
    ).all()
    with _lock:
        missing = [summary_id for summary_id, _ in rows if summary_id not in _cache]
    for start in range(0, len(missing), 200):
        batch = missing[start : start + 200]
        found = db.session.execute(
            select(Summary.id, Summary.as_of, Summary.document).where(Summary.id.in_(batch))
        )
        points = [_point(sid, as_of, document) for sid, as_of, document in found]
        with _lock:
            if len(_cache) + len(points) > _CACHE_LIMIT:
                _cache.clear()
            _cache.update((p.summary_id, p) for p in points)
    by_moment: dict[datetime, Point] = {}
    with _lock:
        for summary_id, as_of in rows:
            point = _cache.get(summary_id)
            if point is not None:
                by_moment.setdefault(as_of, point)
    return sorted(by_moment.values(), key=lambda p: p.as_of)


def departures_timeline(until: datetime) -> list[tuple[datetime, int]]:
    """Each change of a group into (or out of) `departed` up to `until`, with the people
    it carried: the group's latest count at that moment (minus, when undone)."""
    change = GroupStatusChange
    people = latest_report(Report.total, change.group_id, change.changed_at)
    rows = db.session.execute(
        select(change.changed_at, change.to_status, people)
        .where(
            change.changed_at <= until,
            or_(
                change.to_status == GroupStatus.departed,
                change.from_status == GroupStatus.departed,
            ),
        )
        .order_by(change.changed_at, change.id)
    )
    return [
        (moment, (total or 0) * (1 if to_status == GroupStatus.departed else -1))
        for moment, to_status, total in rows
    ]


def cumulative(events: list[tuple[datetime, int]], moments: Iterable[datetime]) -> list[int]:
    """The running total of `events` at each of `moments`."""
    times = [moment for moment, _ in events]
    running = []
    total = 0
    for _, change in events:
        total += change
        running.append(total)
    return [running[i - 1] if (i := bisect.bisect_right(times, m)) else 0 for m in moments]
