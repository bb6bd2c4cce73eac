"""Celery tasks: thin, explicitly named, safe to run twice. The work is in the domain core;
the tasks own the transactions (they commit) and hand work on through service.handoff."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from celery import Task, shared_task
from sqlalchemy.exc import OperationalError

from service import handoff, importing, mail
from service.domain import deliveries, subscriptions, summaries
from service.domain.imports import jobs
from service.extensions import db

log = logging.getLogger(__name__)

# A database that is restarting or briefly unreachable: try again, backing off.
RETRY_WHILE_THE_DATABASE_IS_AWAY = {
    "autoretry_for": (OperationalError,),
    "retry_backoff": 2,
    "retry_backoff_max": 120,
    "retry_jitter": True,
    "max_retries": 6,
}


@shared_task(name=handoff.BUILD_SUMMARY, **RETRY_WHILE_THE_DATABASE_IS_AWAY)
def build_summary(summary_id: str) -> bool:
    try:
        built = summaries.build(uuid.UUID(summary_id))
        db.session.commit()
        return built
    except OperationalError:
        db.session.rollback()
        raise
    except Exception as exc:
        # Not transient: a retry would fail the same way. Say so on the summary.
        log.exception("summary build failed", extra={"summary_id": summary_id})
        db.session.rollback()
        summaries.mark_failed(uuid.UUID(summary_id), type(exc).__name__)
        db.session.commit()
        return False


@shared_task(name=handoff.TICK)
def tick() -> int:
    """Every minute: create this period's summary if it is missing, and hand out every
    pending build that was never handed out or whose worker seems to have died."""
    summaries.ensure_scheduled()
    due = summaries.due_for_build()
    asked_for = summaries.on_demand_among(due)
    db.session.commit()
    for summary_id in due:
        if not handoff.build_summary(summary_id, on_demand=summary_id in asked_for):
            summaries.not_handed_out(summary_id)
    db.session.commit()
    # Uploaded imports whose task was lost: running one again stores nothing twice.
    for job_id in jobs.lost():
        handoff.run_import(job_id)
    return len(due)


@shared_task(name=handoff.DISPATCH_SUBSCRIPTIONS)
def dispatch_subscriptions() -> int:
    """Every minute: a delivery for each subscription whose schedule came due (the latest
    moment only, after an outage), and again for deliveries whose task was lost."""
    due = subscriptions.dispatch() + deliveries.lost()
    db.session.commit()
    deliveries.not_handed_out(handoff.send_deliveries(due))
    db.session.commit()
    return len(due)


# SMTP failures are retried below, on the schedule the delivery itself keeps.
@shared_task(name=handoff.SEND_DELIVERY, bind=True, **RETRY_WHILE_THE_DATABASE_IS_AWAY)
def send_delivery(self: Task, delivery_id: str) -> str:
    outcome = attempt_delivery(uuid.UUID(delivery_id))
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in, max_retries=None)
    return outcome.status


# Running an import again stores nothing twice.
@shared_task(name=handoff.RUN_IMPORT, **RETRY_WHILE_THE_DATABASE_IS_AWAY)
def run_import(job_id: str) -> int | None:
    """An uploaded CSV: its rows imported, its job's counts growing chunk by chunk."""
    with importing.quick_switching():
        result = importing.run_import(uuid.UUID(job_id))
    return result.stored if result else None


def attempt_delivery(delivery_id: uuid.UUID, now: datetime | None = None) -> deliveries.Outcome:
    """One try at a delivery, in two transactions: the lease and the attempt are committed
    before the email leaves (another worker sees the lease; a worker killed while sending
    still counts the attempt), the outcome after."""
    try:
        step = deliveries.begin(delivery_id, now)
        db.session.commit()
        if isinstance(step, deliveries.Outcome):
            return step
        outcome = deliveries.finish(step, mail.send(step), now)
        db.session.commit()
        return outcome
    except BaseException:
        db.session.rollback()
        raise
