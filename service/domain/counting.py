"""The counting rule.

A group's current count is its latest report by `observed_at` (ties: the latest
received, i.e. the highest report id). "As of T" only looks at reports observed at
or before T, so the same T always gives the same numbers.

The rule is one correlated subquery per group that walks ix_reports_group_observed
backwards: its cost follows the number of groups, not the number of reports.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select

from service.extensions import db
from service.models import Group, Report


@dataclass(frozen=True)
class CurrentCount:
    total: int
    observed_at: datetime
    report_id: int


def latest_report_id(as_of: datetime | None = None, offset: int = 0) -> ColumnElement[int]:
    """The id of the group's latest report by T (`offset=1`: the one before it),
    correlated to the enclosing query's `groups` row."""
    return latest_report(Report.id, Group.id, as_of, offset)


def latest_report(
    value: Any, group_id: Any, as_of: Any = None, offset: int = 0
) -> ColumnElement[Any]:
    """The counting rule as a correlated subquery: `value` of the latest report of the
    group `group_id` (a column of the enclosing query) observed at or before `as_of` (a
    moment or a column), ties to the report received last."""
    query = select(value).where(Report.group_id == group_id)
    if as_of is not None:
        query = query.where(Report.observed_at <= as_of)
    return (
        query.order_by(Report.observed_at.desc(), Report.id.desc())
        .offset(offset)
        .limit(1)
        .correlate_except(Report)
        .scalar_subquery()
    )


def current_counts(
    group_ids: Collection[uuid.UUID], as_of: datetime | None = None
) -> dict[uuid.UUID, CurrentCount]:
    if not group_ids:
        return {}
    latest = (
        select(Group.id.label("group_id"), latest_report_id(as_of).label("report_id"))
        .where(Group.id.in_(list(group_ids)))
        .subquery("latest")
    )
    rows = db.session.execute(
        select(latest.c.group_id, Report.total, Report.observed_at, Report.id).join(
            Report, Report.id == latest.c.report_id
        )
    )
    return {row.group_id: CurrentCount(row.total, row.observed_at, row.id) for row in rows}
