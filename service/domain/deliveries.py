"""Deliveries: sending one situation report email, once, retrying while SMTP says "later".

A worker claims a delivery before it sends (a short lease in the database), so two
copies of the same task (a re-delivered message, the dispatcher's sweep) never both
send; the status check makes a copy that arrives afterwards a no-op. The database
holds the attempt count and the next attempt's time, so retries survive a worker or a
broker restart. One gap no SMTP client can close: a worker killed after the server took
the message but before "sent" was stored sends it again once its lease runs out; that
copy has the same Message-ID, which many mail clients use to show it once.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import or_, select, update

from service import audit
from service.auth import Caller
from service.celery_app import TASK_TIME_LIMIT_SECONDS
from service.domain import mail, summaries
from service.domain.subscriptions import find_subscription, unsubscribe_url
from service.errors import Problem
from service.extensions import db
from service.models import Delivery, DeliveryStatus, Role, Subscription, Summary
from service.types import utcnow

log = logging.getLogger(__name__)

TASK = "deliveries.send"
# Six tries: the first, then after 2, 4, 8, 16 and 32 minutes (DELIVERY_RETRY_SECONDS=60).
MAX_ATTEMPTS = 6
# Longer than a send can run: the worker's hard time limit. No second worker takes a
# delivery while the first may be in it.
CLAIM = timedelta(seconds=TASK_TIME_LIMIT_SECONDS)
# A retry whose task arrives a little early (clocks of two machines) still runs.
EARLY = timedelta(seconds=30)
# A queued or retrying delivery this long past its time was lost: hand it out again.
LOST_AFTER = timedelta(minutes=5)
# A scheduled report waits for the summary of its period (at most
# SUMMARY_BUILD_TIMEOUT_SECONDS), looking again this often.
WAIT_STEP_SECONDS = 15
ACTIVE = (DeliveryStatus.queued, DeliveryStatus.retrying)


@dataclass(frozen=True)
class Outcome:
    """What an attempt did, and when the task should run again (None: not again)."""

    status: str
    retry_in: int | None = None


def delivery_state(delivery: Delivery) -> dict[str, Any]:
    return {
        "subscription_id": str(delivery.subscription_id),
        "scheduled_for": delivery.scheduled_for.isoformat(),
        "manual": delivery.manual,
        "summary_id": str(delivery.summary_id) if delivery.summary_id else None,
        "status": delivery.status.value,
    }


def request_send(caller: Caller, subscription_id: uuid.UUID) -> Delivery:
    """A delivery of the latest ready summary, now (POST .../send)."""
    caller.require_role(Role.admin)
    subscription = find_subscription(subscription_id)
    summary = summaries.latest_ready()
    if summary is None:
        raise Problem(
            409, "No summary is ready yet; ask for one with POST /api/v1/summaries, then send."
        )
    now = utcnow()
    delivery = Delivery(
        subscription_id=subscription.id,
        scheduled_for=now,
        manual=True,
        summary_id=summary.id,
        status=DeliveryStatus.queued,
        next_attempt_at=now,
    )
    db.session.add(delivery)
    db.session.flush()
    audit.record(
        caller, "subscription.send", "delivery", delivery.id, after=delivery_state(delivery)
    )
    return delivery


def hand_out(delivery_ids: list[uuid.UUID]) -> None:
    """Give each delivery to a worker. If the broker is down, the delivery stays in the
    database and the dispatcher's sweep hands it out when the broker is back."""
    celery_app = current_app.extensions["celery"]
    for delivery_id in delivery_ids:
        try:
            celery_app.send_task(TASK, args=[str(delivery_id)])
        except Exception as exc:  # noqa: BLE001 - any broker failure: the sweep catches up
            log.warning(
                "broker unavailable; delivery left for the sweep",
                extra={"delivery_id": str(delivery_id), "error_type": type(exc).__name__},
            )
            db.session.rollback()
            db.session.execute(
                update(Delivery).where(Delivery.id == delivery_id).values(next_attempt_at=None)
            )
            db.session.commit()


def lost(now: datetime | None = None) -> list[uuid.UUID]:
    """Queued or retrying deliveries whose task never came (broker down, dead worker)."""
    now = now or utcnow()
    due = (
        Delivery.status.in_(ACTIVE),
        or_(Delivery.claimed_until.is_(None), Delivery.claimed_until < now),
        or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at < now - LOST_AFTER),
    )
    ids = list(db.session.execute(select(Delivery.id).where(*due)).scalars())
    if ids:
        # Handed out now: the next sweep leaves them alone for LOST_AFTER.
        db.session.execute(
            update(Delivery).where(Delivery.id.in_(ids), *due).values(next_attempt_at=now)
        )
    db.session.commit()
    return ids


def retry_delay(attempts: int) -> int:
    """Seconds before the next try after `attempts` failed ones: base * 2^attempts."""
    return current_app.config["DELIVERY_RETRY_SECONDS"] * 2**attempts


def attempt(delivery_id: uuid.UUID, now: datetime | None = None) -> Outcome:
    """Try to send one delivery. Safe to run twice, or at the same time in two workers."""
    now = now or utcnow()
    if not _claim(delivery_id, now):
        return Outcome("skipped")
    delivery = db.session.get(Delivery, delivery_id)
    subscription = db.session.get(Subscription, delivery.subscription_id)
    if subscription.deleted_at is not None:
        return _finish(
            delivery, DeliveryStatus.failed, "The subscription ended before it was sent."
        )
    if delivery.attempts >= MAX_ATTEMPTS:
        # Tries that never came to an outcome (a worker killed in each of them).
        error = f"Gave up after {delivery.attempts} attempts. {delivery.last_error or ''}"
        return _finish(delivery, DeliveryStatus.failed, error.strip())

    if delivery.summary_id is None:
        summary = summaries.latest_ready()
        if _wait_for_period_summary(delivery, summary, now):
            delivery.next_attempt_at = now + timedelta(seconds=WAIT_STEP_SECONDS)
            delivery.claimed_until = None
            db.session.commit()
            return Outcome("waiting", WAIT_STEP_SECONDS)
        if summary is None:
            delivery.attempts += 1
            return _temporary(delivery, now, "No summary is ready yet.")
        delivery.summary_id = summary.id
    delivery.attempts += 1
    db.session.commit()

    try:
        outgoing = _compose(delivery, subscription)
    except Exception as exc:
        log.exception("email could not be composed", extra={"delivery_id": str(delivery.id)})
        return _finish(
            delivery,
            DeliveryStatus.failed,
            f"The email could not be composed ({type(exc).__name__}).",
        )
    try:
        where = mail.deliver(outgoing)
    except mail.PermanentFailure as exc:
        return _finish(delivery, DeliveryStatus.failed, str(exc))
    except mail.TemporaryFailure as exc:
        return _temporary(delivery, now, str(exc))
    delivery.message_id = outgoing.message["Message-ID"]
    delivery.sent_at = utcnow()
    log.info(
        "delivery sent",
        extra={
            "delivery_id": str(delivery.id),
            "subscription_id": str(subscription.id),
            "attempts": delivery.attempts,
            "transport": "smtp" if where == "smtp" else "outbox",
        },
    )
    return _finish(delivery, DeliveryStatus.sent, delivery.last_error)


def _claim(delivery_id: uuid.UUID, now: datetime) -> bool:
    claimed = db.session.execute(
        update(Delivery)
        .where(
            Delivery.id == delivery_id,
            Delivery.status.in_(ACTIVE),
            or_(Delivery.claimed_until.is_(None), Delivery.claimed_until < now),
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now + EARLY),
        )
        .values(claimed_until=now + CLAIM)
    ).rowcount
    db.session.commit()
    return bool(claimed)


def _wait_for_period_summary(delivery: Delivery, latest: Summary | None, now: datetime) -> bool:
    """A scheduled report waits (a few minutes at most) for the summary of its period,
    which the scheduler is making about now, rather than send the one before it."""
    if delivery.manual:
        return False
    period = summaries.period_start(delivery.scheduled_for, summaries.interval())
    if latest is not None and latest.as_of >= period:
        return False
    wait = timedelta(seconds=current_app.config["SUMMARY_BUILD_TIMEOUT_SECONDS"])
    return now < delivery.scheduled_for + wait


def _compose(delivery: Delivery, subscription: Subscription) -> mail.Outgoing:
    summary = db.session.get(Summary, delivery.summary_id)
    return mail.compose(
        delivery_id=str(delivery.id),
        scheduled_for=delivery.scheduled_for,
        email=subscription.email,
        zone=subscription.timezone,
        cron=subscription.cron,
        site_ids=subscription.site_ids,
        formats=list(subscription.formats),
        summary_id=str(summary.id),
        summary_as_of=summary.as_of,
        document=summary.document,
        unsubscribe_url=unsubscribe_url(subscription.id),
    )


def _temporary(delivery: Delivery, now: datetime, error: str) -> Outcome:
    if delivery.attempts >= MAX_ATTEMPTS:
        return _finish(
            delivery, DeliveryStatus.failed, f"Gave up after {delivery.attempts} attempts. {error}"
        )
    delay = retry_delay(delivery.attempts)
    delivery.status = DeliveryStatus.retrying
    delivery.last_error = error
    delivery.next_attempt_at = now + timedelta(seconds=delay)
    delivery.claimed_until = None
    db.session.commit()
    log.warning(
        "delivery will be retried",
        extra={"delivery_id": str(delivery.id), "attempts": delivery.attempts, "retry_in": delay},
    )
    return Outcome(DeliveryStatus.retrying.value, delay)


def _finish(delivery: Delivery, status: DeliveryStatus, error: str | None) -> Outcome:
    delivery.status = status
    delivery.last_error = error
    delivery.claimed_until = None
    delivery.next_attempt_at = None
    db.session.commit()
    if status is DeliveryStatus.failed:
        log.warning(
            "delivery failed",
            extra={"delivery_id": str(delivery.id), "attempts": delivery.attempts},
        )
    return Outcome(status.value)
