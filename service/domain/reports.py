"""Head counts through the API: one at a time, or an offline batch, exactly once per key.

Append-only: a correction is a new report naming the one it supersedes. Each report is
answered on its own (stored, a resend of one stored before, or refused with why), and
the good ones are stored even when others are refused. The work is set-based: the whole
set is looked up (groups, corrected reports, keys) and written at once, by the one
writer (service/domain/writer; one statement on PostgreSQL).

A report's key (the Idempotency-Key header, or its `client_id`) is unique per token in
the schema. A key stored before answers with the report it names (the same body: a
replay; another body: refused); a key another request is storing right now is "in
progress"; a key taken between the look-up and the write (by an import) is looked up
again and answered the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, select

from service.domain.callers import Caller
from service.domain.errors import DomainError, FieldError, InProgress, Invalid, NotFound
from service.domain.groups import of_sites_seen
from service.domain.headcounts import HeadCount, Need
from service.domain.writer import Found, Written, first_of_each_key, for_session
from service.extensions import db
from service.models import Report, Role
from service.types import utcnow

KEY_REUSED = (
    "This idempotency key was already used for a different report. Use a new key "
    "for a new report; resend the same body to get the first answer."
)
IN_FLIGHT = (
    "The first request with this idempotency key is still being processed; resend "
    "the same request in a moment to get its answer."
)
# A key taken between look-up and write is looked up again; more rounds in a row with
# nothing answered mean something keeps taking keys away, which no resend can fix.
MAX_STALLED_ROUNDS = 3


@dataclass(frozen=True, slots=True)
class StoredReport:
    """A report as stored, for an answer: the same attributes as the Report model."""

    id: int
    group_id: uuid.UUID
    site_id: str
    observed_at: datetime
    received_at: datetime
    total: int
    sadd: dict[str, int] | None
    vulnerable: dict[str, int] | None
    needs: tuple[Need, ...]
    note: str | None
    supersedes_id: int | None
    client_id: str | None


@dataclass(frozen=True, slots=True)
class Submitted:
    """One report's answer: stored now, stored before under its key (`replayed`), or
    refused (`refused` says why)."""

    report: StoredReport | Report | None
    replayed: bool = False
    refused: DomainError | None = None


def submit(
    caller: Caller, items: Sequence[HeadCount | DomainError], now: datetime | None = None
) -> list[Submitted]:
    """Store the sound reports among `items` (flushed; the edge commits), answering each
    in order. An item that is already a DomainError (it failed its checks) is answered
    with it. A report's key is its `client_id` (set it to the Idempotency-Key)."""
    caller.require_role(Role.admin, Role.coordinator)
    received_at = now or utcnow()
    answers: list[Submitted | None] = [
        Submitted(None, refused=item) if isinstance(item, DomainError) else None for item in items
    ]
    pending = [(index, item) for index, item in enumerate(items) if isinstance(item, HeadCount)]
    writer = for_session()
    replays: dict[int, int] = {}  # item index -> the report its key names
    stalled = 0
    while pending and stalled < MAX_STALLED_ROUNDS:
        # A key twice in one set: the first goes now, the others in a next round, where
        # the first one's report answers them.
        batch, later = first_of_each_key(pending, lambda item: item[1].client_id)
        raced: list[tuple[int, HeadCount]] = []
        written = writer.write(caller, received_at, [report for _, report in batch])
        for (index, report), what in zip(batch, written, strict=True):
            if what.report_id is not None:
                answers[index] = Submitted(_as_stored(report, what, received_at))
                continue
            try:
                replayed = _settle(caller, report, what.found)
            except DomainError as refused:
                answers[index] = Submitted(None, refused=refused)
                continue
            if replayed is not None:
                replays[index] = replayed
            else:
                raced.append((index, report))  # its key was stored meanwhile: again
        stalled = stalled + 1 if len(raced) == len(batch) else 0
        pending = sorted(raced + later, key=lambda item: item[0])
    for index, _ in pending:
        answers[index] = Submitted(None, refused=InProgress(IN_FLIGHT, title="Request in progress"))
    if replays:
        earlier = _reports(set(replays.values()))
        for index, report_id in replays.items():
            answers[index] = Submitted(earlier[report_id], replayed=True)
    assert all(answer is not None for answer in answers)
    return answers  # type: ignore[return-value]


def _settle(caller: Caller, report: HeadCount, found: Found) -> int | None:
    """Why `write` did not store a report: its key names a report stored before (the
    answer to a resend, returned), or it may not be stored (raised). None: it could
    have been, but its key was stored meanwhile by another writer (an import)."""
    stored = found.stored
    if stored is not None:
        if stored.fingerprint != report.fingerprint:
            raise Invalid(KEY_REUSED, title="Idempotency key reused")
        return stored.report_id
    if found.in_flight:
        raise InProgress(IN_FLIGHT, title="Request in progress")
    if found.site_id is None:
        raise Invalid(
            f"There is no group '{report.group_id}'; register it first.",
            errors=[FieldError("group_id", "Unknown group.")],
        )
    caller.require_site(found.site_id)
    if report.supersedes is not None and found.supersedes_group != report.group_id:
        raise Invalid(
            "A report can only supersede an earlier report of the same group.",
            errors=[FieldError("supersedes", "No such report for this group.")],
        )
    return None


def _as_stored(report: HeadCount, written: Written, received_at: datetime) -> StoredReport:
    assert report.group_id is not None and written.report_id is not None
    assert written.found.site_id is not None
    return StoredReport(
        id=written.report_id,
        group_id=report.group_id,
        site_id=written.found.site_id,
        observed_at=report.observed_at,
        received_at=received_at,
        total=report.total,
        sadd=report.sadd,
        vulnerable=report.vulnerable,
        needs=report.needs,
        note=report.note,
        supersedes_id=report.supersedes,
        client_id=report.client_id,
    )


def _reports(ids: set[int]) -> dict[int, Report]:
    """Reports stored before, as they are stored (append-only: as first answered)."""
    found = db.session.execute(select(Report).where(Report.id.in_(ids))).scalars()
    return {report.id: report for report in found}


def visible_report(caller: Caller, report_id: int) -> Report:
    """A head count this caller may see (with its notes). Another site's report is "not
    there" (404), the same answer as an id that names nothing, so its id is not confirmed."""
    caller.group_sites()  # readers: refused for their role first
    # Report ids are 32-bit; PostgreSQL refuses to compare one with a larger number.
    report = db.session.get(Report, report_id) if 0 < report_id < 2**31 else None
    if report is None or not caller.sees_groups_of(report.site_id):
        raise NotFound(f"There is no report {report_id}.")
    return report


def visible_reports(
    caller: Caller,
    *,
    group_id: uuid.UUID | None = None,
    site_id: str | None = None,
    since: datetime | None = None,
    received_since: datetime | None = None,
) -> Select[tuple[Report]]:
    """The head counts this caller may see, newest observation first. A `site_id` it may
    not see is refused; another site's `group_id` finds nothing (not confirmed)."""
    newest_first = select(Report).order_by(Report.observed_at.desc(), Report.id.desc())
    query = of_sites_seen(newest_first, Report.site_id, caller, site_id)
    if group_id is not None:
        query = query.where(Report.group_id == group_id)
    if since is not None:
        query = query.where(Report.observed_at >= since)
    if received_since is not None:
        query = query.where(Report.received_at >= received_since)
    return query
