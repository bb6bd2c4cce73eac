"""The counting rule.

A group's current count is its latest report by `observed_at` (ties: the latest
received, i.e. the highest report id). "As of T" only looks at reports observed at
or before T, so the same T always gives the same numbers.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select

from service.extensions import db
from service.models import Report


@dataclass(frozen=True)
class CurrentCount:
    total: int
    observed_at: datetime
    report_id: int


def latest_reports(
    as_of: datetime | None = None, group_ids: Collection[uuid.UUID] | None = None
) -> Select:
    """Select the latest report of each group (one row per group), as of `as_of`."""
    ranked = select(
        Report,
        func.row_number()
        .over(
            partition_by=Report.group_id,
            order_by=(Report.observed_at.desc(), Report.id.desc()),
        )
        .label("rank"),
    )
    if as_of is not None:
        ranked = ranked.where(Report.observed_at <= as_of)
    if group_ids is not None:
        ranked = ranked.where(Report.group_id.in_(list(group_ids)))
    ranked_sub = ranked.subquery("ranked")
    return select(ranked_sub).where(ranked_sub.c.rank == 1)


def current_counts(
    group_ids: Collection[uuid.UUID], as_of: datetime | None = None
) -> dict[uuid.UUID, CurrentCount]:
    if not group_ids:
        return {}
    latest = latest_reports(as_of, group_ids).subquery("latest")
    rows = db.session.execute(
        select(latest.c.group_id, latest.c.total, latest.c.observed_at, latest.c.id)
    )
    return {row.group_id: CurrentCount(row.total, row.observed_at, row.id) for row in rows}
