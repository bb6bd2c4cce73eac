"""Deliveries: sending one situation report email, once, retrying while SMTP says "later".

A worker leases a delivery before it sends (a short lease in the database), so two
copies of the same task (a re-delivered message, the dispatcher's sweep) never both
send; the status check makes a copy that arrives afterwards a no-op. The database
holds the attempt count and the next attempt's time, so retries survive a worker or a
broker restart. One gap no SMTP client can close: a worker killed after the server took
the message but before "sent" was stored sends it again once its lease runs out; that
copy has the same Message-ID, which many mail clients use to show it once.

An attempt is two steps with a commit after each, made by the worker (workers/tasks.py):
`begin` leases the delivery and counts the attempt (committed before the email leaves,
so a worker killed while sending still counts it), then the email is sent by
`service.mail` (the core renders nothing), and `finish` records what happened.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update

from service.domain import audit, summaries
from service.domain.attempts import Outcome
from service.domain.callers import Caller
from service.domain.errors import Conflict
from service.domain.settings import TASK_TIME_LIMIT_SECONDS, setting
from service.domain.subscriptions import delivered, find_own, refused, unsubscribe_url
from service.extensions import db
from service.models import Delivery, DeliveryStatus, Subscription, Summary
from service.types import utcnow

log = logging.getLogger(__name__)

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
class Letter:
    """What one attempt sends: the delivery, its recipient and the summary it carries."""

    delivery_id: uuid.UUID
    subscription_id: uuid.UUID
    scheduled_for: datetime
    email: str
    zone: str
    cron: str
    site_ids: list[str]
    formats: list[str]
    summary_id: uuid.UUID
    summary_as_of: datetime
    document: dict[str, Any]
    unsubscribe_url: str
    # The subscription's language: the email is written in it ("en", "hy", "ru").
    language: str = "en"


@dataclass(frozen=True)
class Sent:
    """The server took the message (or it was written to the outbox)."""

    message_id: str
    transport: str  # "smtp" or "outbox"


@dataclass(frozen=True)
class NotSent:
    """The message did not go: `permanent` when trying again cannot help; `refused` when
    it is the mail server that said so (SMTP 5xx), not our own failure to compose it."""

    reason: str
    permanent: bool
    refused: bool = False


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
    subscription = find_own(caller, subscription_id)  # admins: any; readers: their own
    summary = summaries.latest_ready()
    if summary is None:
        raise Conflict(
            "No summary is ready yet; ask for one with POST /api/v1/summaries, then send."
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


def not_handed_out(delivery_ids: list[uuid.UUID]) -> None:
    """The broker did not take these: the dispatcher's next sweep hands them out."""
    if delivery_ids:
        db.session.execute(
            update(Delivery).where(Delivery.id.in_(delivery_ids)).values(next_attempt_at=None)
        )


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
    return ids


def retry_delay(attempts: int) -> int:
    """Seconds before the next try after `attempts` failed ones: base * 2^attempts."""
    return setting("DELIVERY_RETRY_SECONDS") * 2**attempts


def begin(delivery_id: uuid.UUID, now: datetime | None = None) -> Letter | Outcome:
    """Lease the delivery and count the attempt: the Letter to send, or the Outcome when
    there is nothing to send now. Safe to run twice, or at once in two workers."""
    now = now or utcnow()
    if not _lease(delivery_id, now):
        return Outcome("skipped")
    # Read again whatever this session held: the lease above changed the row.
    delivery = db.session.get_one(Delivery, delivery_id, populate_existing=True)
    subscription = db.session.get_one(Subscription, delivery.subscription_id)
    if subscription.deleted_at is not None:
        return _finish(
            delivery, DeliveryStatus.failed, "The subscription ended before it was sent."
        )
    if subscription.suspended_at is not None and not delivery.manual:
        # Queued or retrying when the subscription was suspended. (An admin's manual send
        # still goes: it is how to try the address again.)
        return _finish(
            delivery, DeliveryStatus.failed, "The subscription was suspended before it was sent."
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
            db.session.flush()
            return Outcome("waiting", WAIT_STEP_SECONDS)
        if summary is None:
            delivery.attempts += 1
            return _temporary(delivery, now, "No summary is ready yet.")
        delivery.summary_id = summary.id
    delivery.attempts += 1
    db.session.flush()
    summary = db.session.get_one(Summary, delivery.summary_id)
    return Letter(
        delivery_id=delivery.id,
        subscription_id=subscription.id,
        scheduled_for=delivery.scheduled_for,
        email=subscription.email,
        zone=subscription.timezone,
        cron=subscription.cron,
        site_ids=subscription.site_ids,
        formats=list(subscription.formats),
        summary_id=summary.id,
        summary_as_of=summary.as_of,
        document=summary.document or {},
        unsubscribe_url=unsubscribe_url(subscription.id),
        language=subscription.language,
    )


def finish(letter: Letter, result: Sent | NotSent, now: datetime | None = None) -> Outcome:
    """Record what sending the letter did; a temporary failure schedules the next try."""
    now = now or utcnow()
    delivery = db.session.get_one(Delivery, letter.delivery_id)
    subscription = db.session.get_one(Subscription, letter.subscription_id)
    if isinstance(result, NotSent):
        if result.permanent:
            if result.refused:
                refused(subscription, result.reason, now)
            return _finish(delivery, DeliveryStatus.failed, result.reason)
        return _temporary(delivery, now, result.reason)
    delivered(subscription)
    delivery.message_id = result.message_id
    delivery.sent_at = utcnow()
    log.info(
        "delivery sent",
        extra={
            "delivery_id": str(delivery.id),
            "subscription_id": str(letter.subscription_id),
            "attempts": delivery.attempts,
            "transport": result.transport,
        },
    )
    return _finish(delivery, DeliveryStatus.sent, delivery.last_error)


def _lease(delivery_id: uuid.UUID, now: datetime) -> bool:
    leased = db.session.execute(
        update(Delivery)
        .where(
            Delivery.id == delivery_id,
            Delivery.status.in_(ACTIVE),
            or_(Delivery.claimed_until.is_(None), Delivery.claimed_until < now),
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now + EARLY),
        )
        .values(claimed_until=now + CLAIM)
        .execution_options(synchronize_session=False)
    ).rowcount
    return bool(leased)


def _wait_for_period_summary(delivery: Delivery, latest: Summary | None, now: datetime) -> bool:
    """A scheduled report waits (a few minutes at most) for the summary of its period,
    which the scheduler is making about now, rather than send the one before it."""
    if delivery.manual:
        return False
    period = summaries.period_start(delivery.scheduled_for, summaries.interval())
    if latest is not None and latest.as_of >= period:
        return False
    wait = timedelta(seconds=setting("SUMMARY_BUILD_TIMEOUT_SECONDS"))
    return now < delivery.scheduled_for + wait


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
    db.session.flush()
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
    db.session.flush()
    if status is DeliveryStatus.failed:
        log.warning(
            "delivery failed",
            extra={"delivery_id": str(delivery.id), "attempts": delivery.attempts},
        )
    return Outcome(status.value)
