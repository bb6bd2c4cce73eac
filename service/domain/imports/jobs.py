"""Import jobs: a CSV upload stored, then run by a worker, its progress kept as it runs.

An upload answers at once (202) with the job; a worker takes it (`start`, a lease, so
two copies of its task never both run it), runs the import chunk by chunk, and the
job's counts grow as each chunk is committed (`progress`), so a client polling it sees
rows done, stored and failed so far. When it ends the file is dropped: what it held is
in the reports now, and a spreadsheet of people's whereabouts should not linger.
Importing is safe to repeat (every row has a key), so a job whose worker died is
handed out again by the scheduler's sweep (`lost`) and simply runs again.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from service.domain.callers import Caller
from service.domain.errors import FieldError, NotFound
from service.domain.imports import ImportResult
from service.domain.settings import TASK_TIME_LIMIT_SECONDS
from service.extensions import db
from service.models import ImportJob, ImportStatus, Role
from service.types import utcnow

# The row errors a job keeps (the counts always cover every row).
MAX_ERRORS_KEPT = 1000
# A job taken this long ago and still running was lost with its worker: the task's hard
# time limit, so no job is taken over while its worker may still be in it.
LEASE = timedelta(seconds=TASK_TIME_LIMIT_SECONDS)
# A job never taken this long after it was made: its task was lost (the broker was down).
UNCLAIMED_AFTER = timedelta(minutes=1)


def create_job(caller: Caller, file_name: str, content: bytes | None) -> ImportJob:
    """A job for this file (flushed); `content` None when the file is read from disk by
    the command line that runs it."""
    caller.require_role(Role.admin)
    job = ImportJob(
        token_id=caller.token_id,
        file_name=file_name[:255],
        content=content,
        status=ImportStatus.running,
    )
    db.session.add(job)
    db.session.flush()
    return job


def find_job(job_id: uuid.UUID) -> ImportJob:
    job = db.session.get(ImportJob, job_id)
    if job is None:
        raise NotFound(f"There is no import '{job_id}'.")
    return job


def start(job_id: uuid.UUID, now: datetime | None = None) -> ImportJob | None:
    """Take the job for this worker; None when it is done, failed or taken by another."""
    now = now or utcnow()
    taken = db.session.execute(
        update(ImportJob)
        .where(
            ImportJob.id == job_id,
            ImportJob.status == ImportStatus.running,
            or_(ImportJob.started_at.is_(None), ImportJob.started_at < now - LEASE),
        )
        .values(started_at=now, attempts=ImportJob.attempts + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not taken:
        return None
    return db.session.get_one(ImportJob, job_id, populate_existing=True)


def release(job_id: uuid.UUID) -> None:
    """Give the job back (its worker met a database failure): the retry may take it."""
    db.session.execute(update(ImportJob).where(ImportJob.id == job_id).values(started_at=None))


def counted(job_id: uuid.UUID, total_rows: int) -> None:
    """The file has been read whole: how many rows it has (for "rows done of N")."""
    db.session.execute(
        update(ImportJob).where(ImportJob.id == job_id).values(total_rows=total_rows)
    )


def progress(job_id: uuid.UUID, result: ImportResult, *, with_errors: bool = True) -> None:
    """The counts so far, with the chunk just written (flushed: committed with it), and
    the error rows unless `with_errors` is False (none came since they were written)."""
    db.session.execute(
        update(ImportJob)
        .where(ImportJob.id == job_id)
        .values(
            rows=result.rows,
            stored=result.stored,
            already_imported=result.already_imported,
            failed=result.failed,
            groups_created=result.groups_created,
            **(_errors(result) if with_errors else {}),
        )
    )


def done(job_id: uuid.UUID, result: ImportResult) -> None:
    progress(job_id, result)
    _end(job_id, ImportStatus.done, None)


def failed(job_id: uuid.UUID, why: str, errors: list[FieldError] | None = None) -> None:
    """The job stopped, or its file was refused whole (`errors`: the columns at fault)."""
    values = {}
    if errors:
        values["errors"] = [{"row": 1, "client_id": None, **e.as_dict()} for e in errors]
    _end(job_id, ImportStatus.failed, why, **values)


def _end(job_id: uuid.UUID, status: ImportStatus, why: str | None, **values: object) -> None:
    db.session.execute(
        update(ImportJob)
        .where(ImportJob.id == job_id)
        .values(status=status, error=why, finished_at=utcnow(), content=None, **values)
    )


def _errors(result: ImportResult) -> dict[str, object]:
    errors = sorted(result.errors, key=lambda e: e.row)
    return {
        "errors": [e.as_dict() for e in errors[:MAX_ERRORS_KEPT]],
        "errors_truncated": len(errors) > MAX_ERRORS_KEPT,
    }


def lost(now: datetime | None = None) -> list[uuid.UUID]:
    """Uploaded jobs whose task never came or whose worker died: to hand out again."""
    now = now or utcnow()
    return list(
        db.session.execute(
            select(ImportJob.id)
            .where(
                ImportJob.status == ImportStatus.running,
                ImportJob.content.is_not(None),
                or_(
                    ImportJob.started_at.is_(None) & (ImportJob.created_at < now - UNCLAIMED_AFTER),
                    ImportJob.started_at < now - LEASE,
                ),
            )
            .order_by(ImportJob.created_at)
        ).scalars()
    )
