"""Running an import job: the edge that drives the core's Importer and owns its
transactions. The worker (an uploaded file) and `needs-tracker import` (a file on disk,
with its progress bar) both run imports here.

Each chunk is committed with the job's counts, so a client polling the job sees the
rows done so far and a failure keeps every chunk before it. The job is leased first
(`jobs.start`): two copies of its task never both run it.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy.exc import OperationalError

from service import handoff, sqlite
from service.domain import imports
from service.domain.callers import Caller
from service.domain.imports import jobs
from service.domain.tokens import caller_for_token
from service.extensions import db
from service.models import ImportJob

log = logging.getLogger(__name__)

REVOKED = "The token that uploaded this file was revoked before the import ran; nothing stored."
STOPPED = (
    "The import stopped after {rows:,} rows ({error}); the rows before are stored. Import "
    "the file again: rows stored already count as already imported."
)


def start_upload(caller: Caller, content: bytes, name: str) -> ImportJob:
    """An uploaded file (the API's, the dashboard's): what can be told at once is checked
    (raising `ImportFileError`), then a job is made, committed and handed to a worker.
    If the broker is down, the scheduler's sweep hands it out once it is back."""
    imports.CsvSource.from_bytes(content, name).check_header()
    job = jobs.create_job(caller, name, content)
    db.session.commit()
    handoff.run_import(job.id)
    return job


def run_import(
    job_id: uuid.UUID,
    source: imports.CsvSource | None = None,
    on_progress: Callable[[imports.ImportResult], None] | None = None,
) -> imports.ImportResult | None:
    """Run the job (its uploaded file, or `source`); None when another worker has it or it
    has ended. A file that cannot be read fails the job, with why."""
    job = jobs.start(job_id)
    db.session.commit()
    if job is None:
        return None
    caller = caller_for_token(job.token_id)
    if caller is None:
        jobs.failed(job_id, REVOKED)
        db.session.commit()
        return None
    if source is None:
        source = imports.CsvSource.from_bytes(job.content or b"", job.file_name)
    try:
        if not source.checked:
            source.check()
    except imports.ImportFileError as refused:
        jobs.failed(job_id, refused.detail, refused.errors)
        db.session.commit()
        return None
    jobs.counted(job_id, source.row_count)
    db.session.commit()

    errors_written = 0

    def chunk_written(result: imports.ImportResult) -> None:
        # The error rows (up to a thousand, sorted) are written again only when new ones
        # came: a clean file's chunks write their counts alone.
        nonlocal errors_written
        jobs.progress(job_id, result, with_errors=len(result.errors) != errors_written)
        db.session.commit()
        sqlite.give_writers_a_turn()
        errors_written = len(result.errors)
        if on_progress:
            on_progress(result)

    importer = imports.Importer(caller, job.file_name, on_chunk=chunk_written)
    try:
        importer.feed(source.rows())
    except Exception as exc:
        _stopped(importer, job_id, exc)
        raise
    result = importer.finish()
    jobs.done(job_id, result)
    db.session.commit()
    return result


def _stopped(importer: imports.Importer, job_id: uuid.UUID, exc: Exception) -> None:
    """A chunk failed: it is rolled back, the chunks before it stay. The audit trail says
    so. The database itself failing leaves the job to be run again (its task retries);
    anything else fails it, with why."""
    log.exception("import stopped", extra={"job_id": str(job_id)})
    db.session.rollback()
    try:
        importer.interrupted()
        if isinstance(exc, OperationalError):
            jobs.release(job_id)
        else:
            jobs.failed(job_id, STOPPED.format(rows=importer.result.rows, error=type(exc).__name__))
        db.session.commit()
    except Exception:  # noqa: BLE001 - the database may still be away; the sweep catches up
        db.session.rollback()
        log.warning("import's stop not recorded", extra={"job_id": str(job_id)})


# Seconds the import's checking thread may keep the interpreter while the importing one
# waits on the database's answer (5 ms by default, and a chunk takes a dozen round trips).
SWITCH_INTERVAL = 0.0005


@contextmanager
def quick_switching() -> Iterator[None]:
    """A short switch interval while an import runs in this process: each answer from the
    database is taken up sooner, and the database kept busy. Process-wide, so only the
    command line and the worker's task (one task at a time in a process) set it, never a
    web request."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
