"""Situation summaries: requested (on demand or by the schedule), built once, never changed.

The database is the source of truth. A summary row is written first (`pending`); a
worker builds it into an immutable document (`ready`), or gives up (`failed`). If
the broker lost the task or a worker died, the periodic sweep hands it out again,
and the row lock plus the `pending` check make a second build a no-op.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from service.domain import aggregation, hot, rules, suppression, webhooks
from service.domain.canonical import digest
from service.domain.errors import FieldError, Invalid
from service.domain.headcounts import latest_observation
from service.domain.settings import setting
from service.extensions import db
from service.models import Site, Summary, SummaryStatus
from service.types import utcnow

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5


def interval() -> timedelta:
    return timedelta(minutes=setting("SUMMARY_INTERVAL_MINUTES"))


def period_start(moment: datetime, every: timedelta) -> datetime:
    """The start of the scheduled period holding `moment` (periods count from the epoch, UTC)."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    periods = (moment - epoch) // every
    return epoch + periods * every


def previous_as_of(as_of: datetime, every: timedelta) -> datetime:
    """The scheduled moment before `as_of`: what "change since the previous summary" compares to.

    Fixed by `as_of` alone, so the same `as_of` always gives the same numbers.
    """
    start = period_start(as_of, every)
    return start - every if start == as_of else start


@dataclass(frozen=True, slots=True)
class Requested:
    """What a request for a summary got: its summary, and whether the edge must hand
    its build out (a new one, or a failed one asked for again)."""

    summary: Summary
    hand_out: bool


def request_summary(token_id: int | None, as_of: datetime | None = None) -> Requested:
    """The summary as of `as_of` (default: now), pending and counted as handed out when
    new: the edge commits, then hands it out.

    The same `as_of` asked again gets the same summary: a unique key on the on-demand
    summaries' `as_of` (a scheduled one of that moment serves as well), so requests
    racing for one moment make one row. A summary of the same `as_of` gives the same
    numbers (reports count by when they were observed), so reusing it never differs from
    building anew. "Now" is the request's own moment, to the microsecond: a second
    "now" a moment later reuses nothing, since reports observed in between must count.
    """
    now = utcnow()
    if as_of is not None and as_of > latest_observation():
        raise Invalid(
            "A summary can only be as of now or a past moment.",
            errors=[FieldError("as_of", "Must not be in the future.")],
        )
    if as_of is not None and as_of < rules.EARLIEST_OBSERVATION:
        # No report is older; and year 1 could not even be built (the period before it
        # is out of range).
        raise Invalid(
            "A summary can only be as of 2000 or later.",
            errors=[FieldError("as_of", "Must be in 2000 or later; check the year.")],
        )
    moment = min(as_of or now, now)
    existing = _of_the_moment(moment)
    if existing is not None:
        return Requested(existing, _asked_again(existing, now))
    summary = Summary(as_of=moment, requested_by=token_id, enqueued_at=now, attempts=1)
    try:
        with db.session.begin_nested():
            db.session.add(summary)
    except IntegrityError:
        # Another request for this moment got in first: it hands the build out.
        first = select(Summary).where(Summary.as_of == moment, Summary.period.is_(None))
        return Requested(db.session.execute(first).scalar_one(), False)
    return Requested(summary, True)


def _of_the_moment(moment: datetime) -> Summary | None:
    """The summary as of exactly `moment`: a scheduled one unless it failed (asking again
    retries the on-demand one only), else the on-demand one."""
    return db.session.execute(
        select(Summary)
        .where(
            Summary.as_of == moment,
            or_(Summary.period.is_(None), Summary.status != SummaryStatus.failed),
        )
        .order_by(Summary.period.is_(None))
        .limit(1)
    ).scalar_one_or_none()


def _asked_again(summary: Summary, now: datetime) -> bool:
    """A failed on-demand summary asked for again is built again (one request wins the
    retry); any other is left as it is."""
    if summary.status is not SummaryStatus.failed:
        return False
    retried = db.session.execute(
        update(Summary)
        .where(Summary.id == summary.id, Summary.status == SummaryStatus.failed)
        .values(status=SummaryStatus.pending, error=None, enqueued_at=now, attempts=1)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(summary)
    return retried.rowcount == 1


def on_demand_among(summary_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Those of these summaries someone asked for (not a period's): their builds go to
    the on-demand queue."""
    if not summary_ids:
        return set()
    return set(
        db.session.execute(
            select(Summary.id).where(Summary.id.in_(summary_ids), Summary.period.is_(None))
        ).scalars()
    )


def not_handed_out(summary_id: uuid.UUID) -> None:
    """The broker did not take the build: the next sweep hands it out."""
    db.session.execute(update(Summary).where(Summary.id == summary_id).values(enqueued_at=None))


def ensure_scheduled(now: datetime | None = None) -> Summary | None:
    """Create the summary of the current period and of each period missed since the
    latest one (the scheduler or the database was away), oldest first, unless it exists:
    a unique key keeps each period to one summary. Returns the current period's summary
    when this call created it."""
    every = interval()
    current = period_start(now or utcnow(), every)
    _reopen_failed_by_an_outage(current, every)
    periods = _periods_to_schedule(current, every)
    exists = set(
        db.session.execute(select(Summary.period).where(Summary.period.in_(periods))).scalars()
    )
    created = None
    for period in periods:
        if period in exists:
            continue
        # as_of is the period's own moment: built late, it counts what was known then.
        summary = Summary(as_of=period, period=period)
        try:
            with db.session.begin_nested():
                db.session.add(summary)
        except IntegrityError:
            # Another scheduler got there first: one summary per period.
            continue
        log.info(
            "scheduled summary created",
            extra={"summary_id": str(summary.id), "missed": period != current},
        )
        if period == current:
            created = summary
    return created


# What a build that lost its database was marked failed with before such builds were
# retried instead (workers/tasks.py). Those periods, within the catch-up window, are
# built again; a fault that is not the database gives up after MAX_ATTEMPTS handouts.
FAILED_BY_AN_OUTAGE = ("PendingRollbackError", "InterfaceError")


def _reopen_failed_by_an_outage(current: datetime, every: timedelta) -> None:
    since = current - (setting("SUMMARY_CATCH_UP_PERIODS") - 1) * every
    db.session.execute(
        update(Summary)
        .where(
            Summary.period.between(since, current),
            Summary.status == SummaryStatus.failed,
            Summary.error.in_(FAILED_BY_AN_OUTAGE),
            Summary.attempts < MAX_ATTEMPTS,
        )
        .values(status=SummaryStatus.pending, error=None, enqueued_at=None)
    )


def _periods_to_schedule(current: datetime, every: timedelta) -> list[datetime]:
    """The current period, after those since the latest scheduled one, at most
    SUMMARY_CATCH_UP_PERIODS in all (a new service has none before its first)."""
    latest = db.session.execute(
        select(func.max(Summary.period)).where(Summary.period <= current)
    ).scalar_one_or_none()
    if latest is None or latest == current:
        return [current]
    missed = min(int((current - latest) / every) - 1, setting("SUMMARY_CATCH_UP_PERIODS") - 1)
    return [current - n * every for n in range(missed, 0, -1)] + [current]


def due_for_build(now: datetime | None = None) -> list[uuid.UUID]:
    """Pending summaries whose build was never handed out or seems lost; claims them.

    A summary handed out MAX_ATTEMPTS times without being built is marked failed.
    """
    now = now or utcnow()
    # A build handed out this long ago and still pending was lost (broker, dead worker).
    lost_after = timedelta(seconds=setting("SUMMARY_BUILD_TIMEOUT_SECONDS"))
    due = (
        Summary.status == SummaryStatus.pending,
        or_(Summary.enqueued_at.is_(None), Summary.enqueued_at < now - lost_after),
    )
    db.session.execute(
        update(Summary)
        .where(*due, Summary.attempts >= MAX_ATTEMPTS)
        .values(status=SummaryStatus.failed, error="gave up after repeated lost builds")
    )
    ids = list(db.session.execute(select(Summary.id).where(*due).order_by(Summary.as_of)).scalars())
    if ids:
        db.session.execute(
            update(Summary)
            .where(Summary.id.in_(ids))
            .values(enqueued_at=now, attempts=Summary.attempts + 1)
        )
    return ids


def build(summary_id: uuid.UUID) -> bool:
    """Build a pending summary into its document (flushed; the caller commits, which
    releases the row lock); False when there is nothing to do."""
    query = select(Summary).where(Summary.id == summary_id)
    if db.engine.dialect.name == "postgresql":
        # A second build of the same summary skips it rather than waiting for the first.
        query = query.with_for_update(skip_locked=True)
    summary = db.session.execute(query).scalar_one_or_none()
    if summary is None or summary.status is not SummaryStatus.pending:
        return False
    document = compose(summary.id, summary.as_of)
    summary.document = document
    summary.etag = digest(document)
    summary.generated_at = datetime.fromisoformat(document["generated_at"])
    summary.status = SummaryStatus.ready
    db.session.flush()
    webhooks.summary_ready(summary)
    log.info("summary built", extra={"summary_id": str(summary_id)})
    return True


@dataclass(frozen=True, slots=True)
class SummaryRef:
    """A ready summary, without its document: enough to answer a poll with 304."""

    id: uuid.UUID
    etag: str
    as_of: datetime


# Built once: NGOs poll the latest summary, and most polls are answered 304.
_LATEST_REF = (
    select(Summary.id, Summary.etag, Summary.as_of)
    .where(Summary.status == SummaryStatus.ready)
    .order_by(Summary.as_of.desc(), Summary.generated_at.desc())
    .limit(1)
)


def latest_ready_ref() -> SummaryRef | None:
    """The newest ready summary by `as_of`, without its document (one index probe)."""
    found = hot.rows(_LATEST_REF)
    if not found:
        return None
    summary_id, etag, as_of = found[0]
    return SummaryRef(summary_id, etag or "", as_of.astimezone(UTC))


_READY_NEWEST_FIRST = (
    select(Summary)
    .where(Summary.status == SummaryStatus.ready)
    .order_by(Summary.as_of.desc(), Summary.generated_at.desc())
    .limit(1)
)


def latest_ready(at: datetime | None = None) -> Summary | None:
    """The newest ready summary by `as_of` (at or before `at`, when given): what the
    dashboard and the email reports show (the API's latest: `latest_ready_ref`)."""
    query = _READY_NEWEST_FIRST
    if at is not None:
        query = query.where(Summary.as_of <= at)
    return db.session.execute(query).scalar_one_or_none()


def mark_failed(summary_id: uuid.UUID, reason: str) -> None:
    failed = db.session.execute(
        update(Summary)
        .where(Summary.id == summary_id, Summary.status == SummaryStatus.pending)
        .values(status=SummaryStatus.failed, error=reason[:2000])
    )
    if failed.rowcount:
        webhooks.summary_failed(summary_id)


def sphere_needs(people: int) -> dict[str, float | int]:
    """Daily needs in Sphere units for this many people (one configurable table)."""
    sphere = setting("SPHERE")
    return {
        "water_litres_per_day": round(people * sphere["water_litres_per_person_per_day"], 1),
        "food_kcal_per_day": round(people * sphere["food_kcal_per_person_per_day"], 1),
        "covered_space_m2": round(people * sphere["covered_space_m2_per_person"], 1),
        "latrines": math.ceil(people / sphere["people_per_latrine"]) if people else 0,
    }


def compose(summary_id: uuid.UUID, as_of: datetime) -> dict[str, Any]:
    """The summary document as of `as_of`: totals, per-site figures, needs and flags."""
    every = interval()
    previous = previous_as_of(as_of, every)
    stale_after = timedelta(hours=setting("STALE_AFTER_HOURS"))
    with aggregation.snapshot(as_of) as now:
        figures = aggregation.site_figures(now, stale_after)
        departed = aggregation.departures(now, since=previous)
        conflicts = aggregation.conflicting_groups(now)
        jumps = aggregation.jumping_groups(now)
    with aggregation.snapshot(previous, "previous_state", with_previous_report=False) as then:
        earlier = aggregation.site_counts(then)
        earlier_departed = aggregation.departures(then, since=previous_as_of(previous, every))
    before = {site_id: fig.people for site_id, fig in earlier.items()}

    site_rows = db.session.execute(select(Site).order_by(Site.id)).scalars().all()
    shown = [s for s in site_rows if s.active or s.id in figures or s.id in departed]
    sites = []
    for site in shown:
        fig = figures.get(site.id) or aggregation.SiteFigures(site_id=site.id)
        left = departed.get(site.id, (0, 0))
        flags = _site_flags(site, fig, stale_after, as_of, conflicts, jumps)
        sites.append(
            {
                "site_id": site.id,
                "name": site.name,
                "kind": site.kind.value,
                "pcode": site.pcode,
                "capacity": site.capacity,
                "people": fig.people,
                "groups": fig.groups,
                "people_previous": before.get(site.id, 0),
                "change_since_previous": fig.people - before.get(site.id, 0),
                "departures": {"groups": left[0], "people": left[1]},
                "sadd": fig.sadd,
                "people_without_sadd": fig.people_without_sadd,
                "vulnerable": fig.vulnerable,
                "needs": sphere_needs(fig.people),
                "reported_needs": fig.reported_needs,
                "last_observed_at": _iso(fig.last_observed_at),
                "flags": flags,
            }
        )
    people = sum(s["people"] for s in sites)
    people_before = sum(s["people_previous"] for s in sites)
    return {
        "id": str(summary_id),
        "as_of": _iso(as_of),
        "generated_at": _iso(utcnow()),
        "previous_as_of": _iso(previous),
        "totals": {
            "people": people,
            "groups": sum(s["groups"] for s in sites),
            "sites": sum(1 for s in sites if s["groups"]),
            "people_previous": people_before,
            "change_since_previous": people - people_before,
            "departures": {
                "groups": sum(s["departures"]["groups"] for s in sites),
                "people": sum(s["departures"]["people"] for s in sites),
            },
            "sadd": _sum_dicts(s["sadd"] for s in sites),
            "people_without_sadd": sum(s["people_without_sadd"] for s in sites),
            "vulnerable": _sum_dicts(s["vulnerable"] for s in sites),
            # Latrines do not travel between sites: totals add up the sites' own figures.
            "needs": _sum_dicts([sphere_needs(0), *(s["needs"] for s in sites)]),
            "reported_needs": _merge_needs(figures.values()),
        },
        "sites": sites,
        "flags": [flag | {"site_id": s["site_id"]} for s in sites for flag in s["flags"]],
        "standards": dict(setting("SPHERE")),
        # people_previous is hidden where readers' view of the previous summary hid people.
        suppression.PREVIOUS_HIDDEN: suppression.hidden_people(
            _people_at(site_rows, earlier, earlier_departed), setting("SMALL_CELL_THRESHOLD")
        ),
    }


def _people_at(
    site_rows: Sequence[Site],
    figures: dict[str, aggregation.SiteFigures],
    departed: dict[str, tuple[int, int]],
) -> dict[str, Any]:
    """The people figures of the summary as of an earlier moment (the sites it shows, and
    what decides which of their people a reader's view hides), as compose writes them."""
    sites = []
    for site in site_rows:
        if not (site.active or site.id in figures or site.id in departed):
            continue
        fig = figures.get(site.id) or aggregation.SiteFigures(site_id=site.id)
        sites.append(
            {
                "site_id": site.id,
                "people": fig.people,
                "people_previous": 0,
                "departures": {"groups": 0, "people": 0},
                "sadd": fig.sadd,
                "people_without_sadd": fig.people_without_sadd,
                "vulnerable": fig.vulnerable,
                "flags": [],
            }
        )
    totals = {
        "people": sum(s["people"] for s in sites),
        "people_previous": 0,
        "departures": {"groups": 0, "people": 0},
        "sadd": _sum_dicts(s["sadd"] for s in sites),
        "people_without_sadd": sum(s["people_without_sadd"] for s in sites),
        "vulnerable": _sum_dicts(s["vulnerable"] for s in sites),
    }
    return {"sites": sites, "totals": totals}


def _site_flags(
    site: Site,
    fig: aggregation.SiteFigures,
    stale_after: timedelta,
    as_of: datetime,
    conflicts: list[dict[str, Any]],
    jumps: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    hours = stale_after.total_seconds() / 3600
    flags: list[dict[str, Any]] = []
    if fig.groups and (fig.last_observed_at is None or fig.last_observed_at < as_of - stale_after):
        flags.append(
            {
                "code": "stale_site",
                "message": f"No head count at this site in the last {hours:g} h.",
            }
        )
    for group_id in fig.stale_groups:
        flags.append(
            {
                "code": "stale_group",
                "group_id": group_id,
                "message": f"Waiting group not counted in the last {hours:g} h.",
            }
        )
    for c in (c for c in conflicts if c["site_id"] == site.id):
        flags.append(
            {
                "code": "conflicting_counts",
                "group_id": c["group_id"],
                "message": f"Counts within an hour disagree: {c['low']} vs {c['high']}.",
            }
        )
    for j in (j for j in jumps if j["site_id"] == site.id):
        flags.append(
            {
                "code": "sudden_jump",
                "group_id": j["group_id"],
                "message": f"Count jumped from {j['before']} to {j['after']}.",
            }
        )
    if site.capacity is not None and fig.people > site.capacity:
        flags.append(
            {
                "code": "over_capacity",
                "message": f"{fig.people} people for a capacity of {site.capacity}.",
            }
        )
    if fig.people and fig.people_without_sadd * 2 > fig.people:
        flags.append(
            {
                "code": "breakdown_missing",
                "message": f"No sex-and-age breakdown for {fig.people_without_sadd} of "
                f"{fig.people} people.",
            }
        )
    return flags


def _merge_needs(figures: Any) -> list[dict[str, Any]]:
    merged: dict[str, dict[int, int]] = {}
    for fig in figures:
        for sector, severities in fig.need_tally.items():
            into = merged.setdefault(sector, {})
            for severity, count in severities.items():
                into[severity] = into.get(severity, 0) + count
    return aggregation.needs_by_sector(merged)


def _sum_dicts(dicts: Any) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for d in dicts:
        for key, value in d.items():
            total[key] = total.get(key, 0) + value
    return {
        key: round(value, 1) if isinstance(value, float) else value for key, value in total.items()
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None
