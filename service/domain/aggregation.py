"""The aggregation behind a situation summary, as set-based SQL.

Everything is "as of T". Per group, correlated subqueries walk indexes to find its
latest report observed at or before T (ix_reports_group_observed), and its site and
status at T (from the move and status histories), so the cost grows with the number
of groups, not with the number of reports ever received. That per-group state is
worked out once per summary into a temporary table (`snapshot`), and every aggregate
reads it. The same statements run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    Uuid,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

from service.domain.counting import latest_report_id
from service.extensions import db
from service.models import (
    SADD_KEYS,
    VULNERABLE_KEYS,
    Group,
    GroupMove,
    GroupStatus,
    GroupStatusChange,
    Report,
    ReportNeed,
)
from service.types import UTCDateTime

CONFLICT_WINDOW = timedelta(hours=1)
CONFLICT_SHARE = 0.2  # two reports within the window disagree by more than this share
JUMP_SHARE = 0.5  # consecutive reports differ by more than this share


class hours_before(FunctionElement[datetime]):
    """`moment - N hours`, for a column, on either database."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(hours_before, "postgresql")
def _hours_before_pg(element: hours_before, compiler: Any, **kw: Any) -> str:
    moment, hours = list(element.clauses)
    moment_sql, hours_sql = compiler.process(moment, **kw), compiler.process(hours, **kw)
    return f"({moment_sql} - make_interval(secs => {hours_sql} * 3600))"


@compiles(hours_before, "sqlite")
def _hours_before_sqlite(element: hours_before, compiler: Any, **kw: Any) -> str:
    moment, hours = list(element.clauses)
    # Same text layout as SQLAlchemy stores (with microseconds), so comparisons hold.
    return (
        f"strftime('%Y-%m-%d %H:%M:%f000', {compiler.process(moment, **kw)}, "
        f"'-' || {compiler.process(hours, **kw)} || ' hours')"
    )


def _value_at(
    value_before: Any, group_col: Any, at_col: Any, id_col: Any, current: Any, as_of: datetime
) -> ColumnElement[Any]:
    """A group's value at T from its history: what the first change after T changed it
    from, or, with no change since T, its current value. One index lookup per group,
    which finds nothing at once when T is now."""
    first_change_after = (
        select(value_before)
        .where(group_col == Group.id, at_col > as_of)
        .order_by(at_col, id_col)
        .limit(1)
        .correlate(Group)
        .scalar_subquery()
    )
    return func.coalesce(first_change_after, current)


def group_state(as_of: datetime, with_previous_report: bool = True) -> Select:
    """Per group: its site and status at T, and its latest report observed by T (and the
    one before it, for jumps).

    Groups registered after T count only if a report observed by T names them
    (counted offline first, registered when back online).
    """
    columns = [
        Group.id.label("group_id"),
        _value_at(
            GroupMove.from_site_id,
            GroupMove.group_id,
            GroupMove.moved_at,
            GroupMove.id,
            Group.site_id,
            as_of,
        ).label("site_id"),
        _value_at(
            GroupStatusChange.from_status,
            GroupStatusChange.group_id,
            GroupStatusChange.changed_at,
            GroupStatusChange.id,
            Group.status,
            as_of,
        ).label("status"),
        latest_report_id(as_of).label("report_id"),
        (latest_report_id(as_of, offset=1) if with_previous_report else literal(None)).label(
            "previous_report_id"
        ),
    ]
    known_by_then = or_(
        Group.created_at <= as_of,
        exists().where(Report.group_id == Group.id, Report.observed_at <= as_of),
    )
    return select(*columns).where(known_by_then)


@dataclass
class Snapshot:
    """Every group's state at one moment, worked out once into a temporary table that
    all the aggregates of a summary then read (instead of each recomputing it)."""

    as_of: datetime
    table: Table


@contextmanager
def snapshot(
    as_of: datetime, name: str = "summary_state", with_previous_report: bool = True
) -> Iterator[Snapshot]:
    table = Table(
        name,
        MetaData(),
        Column("group_id", Uuid, primary_key=True),
        Column("site_id", String(64), nullable=False),
        Column("status", String(32), nullable=False),
        Column("report_id", Integer),
        Column("previous_report_id", Integer),
        prefixes=["TEMPORARY"],
    )
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        # The summary is index probes, a few per group. The default random_page_cost (4,
        # for spinning disks) makes PostgreSQL scan all reports instead; 1.1 is the usual
        # value for SSDs or cached data. SET LOCAL: this transaction only.
        connection.exec_driver_sql("SET LOCAL random_page_cost = 1.1")
    table.create(connection)
    try:
        connection.execute(
            table.insert().from_select(
                [c.name for c in table.columns], group_state(as_of, with_previous_report)
            )
        )
        if connection.dialect.name == "postgresql":
            # Fresh temporary tables have no statistics; the joins below need them.
            connection.exec_driver_sql(f"ANALYZE {name}")
        yield Snapshot(as_of, table)
    except BaseException:
        # The transaction may be gone with its connection (a terminated backend, a
        # restart): dropping the table would then fail on its own and hide why. The
        # rollback that follows an error discards the table with the transaction.
        with suppress(Exception):
            table.drop(connection)
        raise
    table.drop(connection)


@dataclass
class SiteFigures:
    site_id: str
    people: int = 0
    groups: int = 0
    people_without_sadd: int = 0
    sadd: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SADD_KEYS, 0))
    vulnerable: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VULNERABLE_KEYS, 0))
    last_observed_at: datetime | None = None
    stale_groups: list[str] = field(default_factory=list)
    departures_groups: int = 0
    departures_people: int = 0
    # sector -> severity -> how many waiting groups' latest report named it
    need_tally: dict[str, dict[int, int]] = field(default_factory=dict)

    @property
    def reported_needs(self) -> list[dict[str, Any]]:
        return needs_by_sector(self.need_tally)


def _waiting(state: Table) -> ColumnElement[bool]:
    return state.c.status == GroupStatus.waiting.value


def site_figures(snap: Snapshot, stale_after: timedelta) -> dict[str, SiteFigures]:
    """People, groups, breakdowns, vulnerabilities, freshness and needs per site at T."""
    figures = site_counts(snap)
    state, report = snap.table, Report.__table__
    cutoff = snap.as_of - stale_after
    stale = db.session.execute(
        select(state.c.site_id, state.c.group_id)
        .select_from(state.outerjoin(report, report.c.id == state.c.report_id))
        .where(_waiting(state), or_(report.c.id.is_(None), report.c.observed_at < cutoff))
        .order_by(state.c.site_id, state.c.group_id)
    )
    for site_id, group_id in stale:
        figures[site_id].stale_groups.append(str(group_id))

    _add_reported_needs(figures, state)
    return figures


def site_counts(snap: Snapshot) -> dict[str, SiteFigures]:
    """People, groups, breakdowns and vulnerabilities per site at T (no freshness, no needs)."""
    state = snap.table
    report = Report.__table__
    sums = [func.sum(report.c[k]).label(k) for k in SADD_KEYS + VULNERABLE_KEYS]
    rows = db.session.execute(
        select(
            state.c.site_id,
            func.count().label("groups"),
            func.coalesce(func.sum(report.c.total), 0).label("people"),
            func.coalesce(
                func.sum(case((report.c.female_0_4.is_(None), report.c.total), else_=0)), 0
            ).label("people_without_sadd"),
            func.max(report.c.observed_at).label("last_observed_at"),
            *sums,
        )
        .select_from(state.outerjoin(report, report.c.id == state.c.report_id))
        .where(_waiting(state))
        .group_by(state.c.site_id)
    ).mappings()
    figures: dict[str, SiteFigures] = {}
    for row in rows:
        figures[row["site_id"]] = SiteFigures(
            site_id=row["site_id"],
            people=int(row["people"]),
            groups=int(row["groups"]),
            people_without_sadd=int(row["people_without_sadd"]),
            sadd={k: int(row[k] or 0) for k in SADD_KEYS},
            vulnerable={k: int(row[k] or 0) for k in VULNERABLE_KEYS},
            last_observed_at=row["last_observed_at"],
        )
    return figures


def _add_reported_needs(figures: dict[str, SiteFigures], state: Table) -> None:
    """Needs named in each waiting group's latest report (a sector named twice in one
    report counts once, at its highest severity)."""
    per_report = (
        select(
            state.c.site_id,
            ReportNeed.sector,
            func.max(ReportNeed.severity).label("severity"),
        )
        .select_from(state.join(ReportNeed, ReportNeed.report_id == state.c.report_id))
        .where(_waiting(state))
        .group_by(state.c.site_id, ReportNeed.report_id, ReportNeed.sector)
        .subquery("per_report")
    )
    rows = db.session.execute(
        select(
            per_report.c.site_id, per_report.c.sector, per_report.c.severity, func.count()
        ).group_by(per_report.c.site_id, per_report.c.sector, per_report.c.severity)
    )
    for site_id, sector, severity, count in rows:
        figures[site_id].need_tally.setdefault(sector, {})[severity] = count


def needs_by_sector(sectors: dict[str, dict[int, int]]) -> list[dict[str, Any]]:
    """Per sector: how many groups named it, the highest severity and the typical one
    (the most frequent; on a tie, the more severe). Sorted most severe first."""
    needs = []
    for sector, severities in sectors.items():
        typical = max(severities, key=lambda s: (severities[s], s))
        needs.append(
            {
                "sector": sector,
                "groups": sum(severities.values()),
                "highest_severity": max(severities),
                "typical_severity": typical,
            }
        )
    return sorted(
        needs, key=lambda n: (-n["highest_severity"], -n["typical_severity"], n["sector"])
    )


def departures(snap: Snapshot, since: datetime) -> dict[str, tuple[int, int]]:
    """Groups (and their people) that departed in (since, T], per site: {site: (groups, people)}."""
    state, as_of = snap.table, snap.as_of
    departed_in_window = exists().where(
        GroupStatusChange.group_id == state.c.group_id,
        GroupStatusChange.to_status == GroupStatus.departed,
        GroupStatusChange.changed_at > since,
        GroupStatusChange.changed_at <= as_of,
    )
    rows = db.session.execute(
        select(
            state.c.site_id,
            func.count(),
            func.coalesce(func.sum(Report.total), 0),
        )
        .select_from(state.outerjoin(Report, Report.id == state.c.report_id))
        .where(state.c.status == GroupStatus.departed.value, departed_in_window)
        .group_by(state.c.site_id)
    )
    return {site_id: (int(groups), int(people)) for site_id, groups, people in rows}


def conflicting_groups(snap: Snapshot) -> list[dict[str, Any]]:
    """Waiting groups with two reports within an hour (ending at the latest) that disagree
    by more than 20%. A report corrected by a later one (`supersedes`) is left out."""
    state = snap.table
    latest = Report.__table__.alias("latest")
    other = Report.__table__.alias("other")
    corrected = Report.__table__.alias("corrected")
    window_start = hours_before(
        latest.c.observed_at, literal(CONFLICT_WINDOW.total_seconds() / 3600)
    )
    low, high = func.min(other.c.total), func.max(other.c.total)
    rows = db.session.execute(
        select(state.c.site_id, state.c.group_id, low.label("low"), high.label("high"))
        .select_from(
            state.join(latest, latest.c.id == state.c.report_id).join(
                other,
                and_(
                    other.c.group_id == state.c.group_id,
                    other.c.observed_at >= window_start,
                    other.c.observed_at <= latest.c.observed_at,
                ),
            )
        )
        .where(
            _waiting(state),
            ~exists().where(corrected.c.supersedes_id == other.c.id),
        )
        .group_by(state.c.site_id, state.c.group_id)
        .having(and_(high > 0, cast(high - low, Float) / high > CONFLICT_SHARE))
        .order_by(state.c.site_id, state.c.group_id)
    )
    return [
        {"site_id": r.site_id, "group_id": str(r.group_id), "low": r.low, "high": r.high}
        for r in rows
    ]


def jumping_groups(snap: Snapshot) -> list[dict[str, Any]]:
    """Waiting groups whose latest report differs from the one before by more than 50%."""
    state = snap.table
    latest = Report.__table__.alias("latest")
    previous = Report.__table__.alias("previous")
    change = cast(func.abs(latest.c.total - previous.c.total), Float) / previous.c.total
    rows = db.session.execute(
        select(
            state.c.site_id,
            state.c.group_id,
            previous.c.total.label("before"),
            latest.c.total.label("after"),
        )
        .select_from(
            state.join(latest, latest.c.id == state.c.report_id).join(
                previous, previous.c.id == state.c.previous_report_id
            )
        )
        .where(_waiting(state), previous.c.total > 0, change > JUMP_SHARE)
        .order_by(state.c.site_id, state.c.group_id)
    )
    return [
        {"site_id": r.site_id, "group_id": str(r.group_id), "before": r.before, "after": r.after}
        for r in rows
    ]
