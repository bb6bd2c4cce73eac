"""Celery tasks: thin, explicitly named, safe to run twice. The work is in the domain core."""

from __future__ import annotations

import logging
import uuid

from celery import Task, shared_task
from sqlalchemy.exc import OperationalError

from service.domain import deliveries, subscriptions, summaries

log = logging.getLogger(__name__)


@shared_task(
    name=summaries.BUILD_TASK,
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


@shared_task(name="subscriptions.dispatch")
def dispatch_subscriptions() -> int:
    """Every minute: a delivery for each subscription whose schedule came due (the latest
    moment only, after an outage), and again for deliveries whose task was lost."""
    due = subscriptions.dispatch() + deliveries.lost()
    deliveries.hand_out(due)
    return len(due)


@shared_task(
    name="deliveries.send",
    bind=True,
    # The database restarting: try again soon. (SMTP failures are retried below, on the
    # schedule the delivery itself keeps.)
    autoretry_for=(OperationalError,),
    retry_backoff=2,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=6,
)
def send_delivery(self: Task, delivery_id: str) -> str:
    outcome = deliveries.attempt(uuid.UUID(delivery_id))
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in, max_retries=None)
    return outcome.status
