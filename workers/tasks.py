"""Celery tasks: thin, explicitly named, safe to run twice. The work is in the domain core."""

from __future__ import annotations

import logging
import uuid

from celery import shared_task
from sqlalchemy.exc import OperationalError

from service.domain import summaries

log = logging.getLogger(__name__)


@shared_task(
    name="summaries.build",
    # A database that is restarting or briefly unreachable: try again, backing off.
    autoretry_for=(OperationalError,),
    retry_backoff=2,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=6,
)
def build_summary(summary_id: str) -> bool:
    try:
        return summaries.build(uuid.UUID(summary_id))
    except OperationalError:
        raise
    except Exception as exc:
        # Not transient: a retry would fail the same way. Say so on the summary.
        log.exception("summary build failed", extra={"summary_id": summary_id})
        summaries.mark_failed(uuid.UUID(summary_id), type(exc).__name__)
        return False


@shared_task(name="summaries.tick")
def tick() -> int:
    """Every minute: create this period's summary if it is missing, and hand out every
    pending build that was never handed out or whose worker seems to have died."""
    summaries.ensure_scheduled()
    due = summaries.due_for_build()
    for summary_id in due:
        build_summary.delay(str(summary_id))
    return len(due)
