"""Celery tasks: thin, explicitly named, safe to run twice. The work is in the domain core;
the tasks own the transactions (they commit) and hand work on through service.handoff."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime
from typing import Any

from celery import Task, shared_task
from celery.utils.time import get_exponential_backoff_interval

from service import handoff, importing, mail, webhook_sender
from service.domain import deliveries, subscriptions, summaries, webhooks
from service.domain.attempts import Outcome
from service.domain.availability import database_away
from service.domain.imports import jobs
from service.extensions import db

log = logging.getLogger(__name__)

# The database (or its disk) away: try again, backing off 2, 4, 8 ... up to 120 s (with
# jitter, so workers do not all come back at once), about five minutes in all. Then the
# work is left as stored: the tick's sweep hands out a summary still pending again.
RETRY_BACKOFF_SECONDS = 2
RETRY_BACKOFF_MAX_SECONDS = 120
RETRIES_WHILE_THE_DATABASE_IS_AWAY = 8


def retry_if_the_database_is_away(task: Task, error: BaseException) -> None:
    """Raise the task's retry when `error` is the database being away (the one rule:
    availability.database_away); return when it is a fault in the work itself."""
    if database_away(error) is None:
        return
    countdown = get_exponential_backoff_interval(
        factor=RETRY_BACKOFF_SECONDS,
        retries=task.request.retries,
        maximum=RETRY_BACKOFF_MAX_SECONDS,
        full_jitter=True,
    )
    log.warning(
        "database unavailable; task retried",
        extra={"task": task.name, "retry_in": countdown, "error_type": type(error).__name__},
    )
    raise task.retry(exc=error, countdown=countdown, max_retries=RETRIES_WHILE_THE_DATABASE_IS_AWAY)


def _rollback() -> None:
    # With the connection gone there is nothing to roll back; the pool replaces it.
    with suppress(Exception):
        db.session.rollback()


@shared_task(name=handoff.BUILD_SUMMARY, bind=True)
def build_summary(self: Task, summary_id: str) -> bool:
    try:
        built = summaries.build(uuid.UUID(summary_id))
        db.session.commit()
    except Exception as exc:
        _rollback()
        retry_if_the_database_is_away(self, exc)
        # Not the database away: a retry would fail the same way. Say so on the summary.
        log.exception("summary build failed", extra={"summary_id": summary_id})
        summaries.mark_failed(uuid.UUID(summary_id), type(exc).__name__)
        db.session.commit()
        built = False
    # The events the build made (summary.ready or .failed) go now, not at the next tick.
    try:
        hand_out_webhooks()
    except Exception:  # noqa: BLE001 - the tick's sweep hands them out
        _rollback()
        log.warning("webhooks left for the sweep", extra={"summary_id": summary_id})
    return built


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
    hand_out_webhooks()
    return len(due)


def hand_out_webhooks() -> None:
    """Webhook deliveries never handed out (a build just made them) or whose task was
    lost: a copy handed out twice sends once (the lease)."""
    due = webhooks.due()
    db.session.commit()
    webhooks.not_handed_out(handoff.send_webhooks(due))
    db.session.commit()


@shared_task(name=handoff.SEND_WEBHOOK, bind=True)
def send_webhook(self: Task, delivery_id: str) -> str:
    return _send(self, lambda: attempt_webhook(uuid.UUID(delivery_id)))


def attempt_webhook(delivery_id: uuid.UUID) -> Outcome:
    """One try at a webhook delivery (see `_attempt`)."""
    return _attempt(lambda: webhooks.begin(delivery_id), webhook_sender.send, webhooks.finish)


@shared_task(name=handoff.DISPATCH_SUBSCRIPTIONS)
def dispatch_subscriptions() -> int:
    """Every minute: a delivery for each subscription whose schedule came due (the latest
    moment only, after an outage), and again for deliveries whose task was lost."""
    due = subscriptions.dispatch() + deliveries.lost()
    db.session.commit()
    deliveries.not_handed_out(handoff.send_deliveries(due))
    db.session.commit()
    return len(due)


@shared_task(name=handoff.SEND_DELIVERY, bind=True)
def send_delivery(self: Task, delivery_id: str) -> str:
    return _send(self, lambda: attempt_delivery(uuid.UUID(delivery_id)))


# Running an import again stores nothing twice.
@shared_task(name=handoff.RUN_IMPORT, bind=True)
def run_import(self: Task, job_id: str) -> int | None:
    """An uploaded CSV: its rows imported, its job's counts growing chunk by chunk."""
    try:
        with importing.quick_switching():
            result = importing.run_import(uuid.UUID(job_id))
    except Exception as exc:
        _rollback()
        retry_if_the_database_is_away(self, exc)
        raise
    return result.stored if result else None


def attempt_delivery(delivery_id: uuid.UUID, now: datetime | None = None) -> Outcome:
    """One try at an email delivery (see `_attempt`)."""
    return _attempt(
        lambda: deliveries.begin(delivery_id, now),
        mail.send,
        lambda letter, result: deliveries.finish(letter, result, now),
    )


def _send(task: Task, attempt: Callable[[], Outcome]) -> str:
    """A delivery's task (an email, a webhook): the database away, it is tried again
    soon; a failed attempt (SMTP, a receiver) on the schedule the delivery itself keeps,
    when the outcome says."""
    try:
        outcome = attempt()
    except Exception as exc:
        retry_if_the_database_is_away(task, exc)
        raise
    if outcome.retry_in is not None:
        raise task.retry(countdown=outcome.retry_in, max_retries=None)
    return outcome.status


def _attempt(
    begin: Callable[[], Any], send: Callable[[Any], Any], finish: Callable[[Any, Any], Any]
) -> Outcome:
    """One try at a delivery, in two transactions: the lease and the attempt are committed
    before anything leaves (another worker sees the lease; a worker killed while sending
    still counts the attempt), the outcome after."""
    try:
        step = begin()
        db.session.commit()
        if isinstance(step, Outcome):
            return step
        outcome = finish(step, send(step))
        db.session.commit()
        return outcome
    except BaseException:
        _rollback()
        raise
