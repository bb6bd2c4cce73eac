"""`needs-tracker demo`: a replay of 20 September - 3 October 2023 (see SOURCES.md).

The replay goes through the same paths as real data: groups are registered and moved
and marked departed through the domain (with their historical moments), head counts
are imported by the CSV import, and the summaries are built by the function a worker
runs, as of every scheduled period of those days. Everything has a fixed id or key
(group ids and client_ids are uuid5, summaries are one per period), so running it
again stores nothing new.
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from service.domain import summaries
from service.domain.callers import OPERATOR, Caller
from service.domain.groups import create_group, update_group
from service.domain.imports import CsvSource, Importer, ImportResult
from service.domain.sites import seed_sites
from service.domain.tokens import system_caller
from service.extensions import db
from service.models import Group, GroupStatus, Summary, SummaryStatus
from service.types import utcnow

HERE = Path(__file__).resolve().parent
GROUPS_CSV = HERE / "groups.csv"
REPLAY_CSV = HERE / "replay.csv"
TOKEN_NAME = "demo replay"
# The summaries of the replay: one per scheduled period over these days (UTC).
START = datetime(2023, 9, 20, 0, 0, tzinfo=UTC)
END = datetime(2023, 10, 3, 18, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Event:
    """A move or a departure, at its historical moment."""

    at: datetime
    group_id: uuid.UUID
    changes: dict[str, Any]


def demo_groups() -> list[dict[str, str]]:
    with GROUPS_CSV.open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def events(groups: list[dict[str, str]]) -> list[Event]:
    found = []
    for row in groups:
        group_id = uuid.UUID(row["group_id"])
        if row["moved_to"]:
            moved = datetime.fromisoformat(row["moved_at"])
            found.append(Event(moved, group_id, {"site_id": row["moved_to"]}))
        if row["departed_at"]:
            departed = datetime.fromisoformat(row["departed_at"])
            found.append(Event(departed, group_id, {"status": GroupStatus.departed}))
    return sorted(found, key=lambda e: (e.at, str(e.group_id)))


def periods(every: Any) -> list[datetime]:
    moment = summaries.period_start(START, every)
    if moment < START:
        moment += every
    found = []
    while moment <= END:
        found.append(moment)
        moment += every
    return found


def register_groups(caller: Caller, groups: list[dict[str, str]]) -> int:
    created = 0
    for row in groups:
        group_id = uuid.UUID(row["group_id"])
        if db.session.get(Group, group_id) is None:
            create_group(
                caller,
                {
                    "id": group_id,
                    "site_id": row["site_id"],
                    "label": row["group_label"],
                    "origin": row["origin"] or None,
                },
            )
            created += 1
    db.session.commit()
    return created


def apply(caller: Caller, event: Event) -> bool:
    """Apply a move or departure unless the group already shows it (a second run)."""
    group = db.session.get(Group, event.group_id)
    assert group is not None
    if "site_id" in event.changes and group.site_id == event.changes["site_id"]:
        return False
    if "status" in event.changes and group.status == event.changes["status"]:
        return False
    update_group(caller, event.group_id, dict(event.changes), at=event.at)
    db.session.commit()
    return True


def _observed(cells: dict[str, str]) -> datetime:
    return datetime.fromisoformat(cells["observed_at"])


def replay_reports(
    caller: Caller,
    timeline: list[Event],
    on_progress: Callable[[ImportResult], None] | None = None,
) -> tuple[ImportResult, int]:
    """Import the head counts in order of observation, applying each move and departure
    when its moment comes, so every report is filed at the site its group was at."""
    source = CsvSource.from_path(REPLAY_CSV).check()

    def chunk_written(result: ImportResult) -> None:
        db.session.commit()  # each chunk its own transaction, as an import job's
        if on_progress:
            on_progress(result)

    importer = Importer(caller, REPLAY_CSV.name, on_chunk=chunk_written)
    rows = sorted(source.rows(), key=lambda row: _observed(row[1]))
    applied = 0
    position = 0

    def until(moment: datetime) -> Iterator[tuple[int, dict[str, str]]]:
        nonlocal position
        while position < len(rows) and _observed(rows[position][1]) <= moment:
            yield rows[position]
            position += 1

    for event in timeline:
        importer.feed(until(event.at))
        applied += apply(caller, event)
    importer.feed(rows[position:])
    result = importer.finish()
    db.session.commit()
    return result, applied


def build_summaries(on_step: Callable[[int], None] | None = None) -> tuple[int, int]:
    """The summary of each scheduled period of the replay (the `period` key makes it one
    per period, however often this runs), built in-process. Returns (built, total)."""
    moments = periods(summaries.interval())
    built = 0
    for moment in moments:
        summary = db.session.execute(
            select(Summary).where(Summary.period == moment)
        ).scalar_one_or_none()
        if summary is None:
            # Marked as handed out, so a running scheduler leaves it to this command.
            summary = Summary(as_of=moment, period=moment, enqueued_at=utcnow(), attempts=1)
            db.session.add(summary)
            try:
                db.session.commit()
            except IntegrityError:
                db.session.rollback()
                summary = db.session.execute(
                    select(Summary).where(Summary.period == moment)
                ).scalar_one()
        if summary.status is SummaryStatus.pending:
            built += summaries.build(summary.id)
            db.session.commit()
        if on_step:
            on_step(1)
    return built, len(moments)


def prepare() -> Caller:
    """The default sites, and the token the replay's writes are made with."""
    seed_sites(OPERATOR)
    caller = system_caller(TOKEN_NAME)
    db.session.commit()
    return caller


def replay_rows() -> int:
    return CsvSource.from_path(REPLAY_CSV).check().row_count
