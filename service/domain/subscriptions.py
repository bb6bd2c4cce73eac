"""Subscriptions: who gets situation reports by email, on which schedule, and when they are due.

A schedule is a five-field cron expression read in an IANA time zone. It is parsed and
walked with `cronsim` (the parser Healthchecks.io runs its cron checks on): it iterates
in the zone itself, forwards and backwards, and handles daylight-saving changes the way
Debian's cron does (a 02:30 job on the night the clocks skip 02:00-03:00 runs at 03:00,
and once, not twice, on the night they repeat an hour). Doing that by adding hours to a
UTC time would send reports an hour early or late for half the year.

Dispatch runs every minute. Each subscription keeps a watermark (`last_checked_at`):
the scheduled moments in (watermark, now] are due. Only the latest of them is sent:
recipients need the current picture, not a backlog, so after a scheduler outage the
missed moments are logged and skipped. The unique (subscription, scheduled moment) key
on deliveries decides between schedulers firing together, retried dispatch tasks and
restarted workers: one delivery per subscription and moment, whatever happens.

An address the mail server refuses for good (SMTP 5xx) SUBSCRIPTION_SUSPEND_AFTER
times in a row suspends its subscription: no scheduled deliveries, shown in the API and
on the dashboard with since when and why, until an admin resumes it.
"""

from __future__ import annotations

import functools
import logging
import uuid
import zoneinfo
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from cronsim import CronSim, CronSimError
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from service.domain import audit
from service.domain.callers import RECIPIENT, SYSTEM, Caller
from service.domain.errors import FieldError, Invalid, NotFound
from service.domain.settings import setting
from service.extensions import db
from service.models import Delivery, DeliveryStatus, Role, Site, Subscription
from service.types import utcnow

log = logging.getLogger(__name__)

ATTACHMENT_FORMATS = ("csv", "hxl")
# Counting skipped moments for the log stops here (an every-minute schedule after a
# week's outage has ten thousand).
SKIPPED_COUNT_LIMIT = 1000
UNSUBSCRIBE_SALT = "needs-tracker.unsubscribe"


class ScheduleError(ValueError):
    """A cron expression or time zone that cannot be a subscription's schedule."""


# ---------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_time_zone(name: str) -> str:
    """An IANA time zone name ("Asia/Yerevan", "UTC"), as tzdata spells it."""
    if name not in _time_zones():
        raise ScheduleError("Not a known IANA time zone name, such as 'Asia/Yerevan' or 'UTC'.")
    return name


def check_cron(expression: str) -> str:
    """A five-field cron expression (minute hour day-of-month month day-of-week) that fires."""
    fields = expression.split()
    if len(fields) != 5:
        raise ScheduleError(
            "Use five fields: minute hour day-of-month month day-of-week, e.g. '0 6,18 * * *'."
        )
    normalised = " ".join(fields)
    try:
        upcoming = CronSim(normalised, datetime.now(UTC))
        next(upcoming)
    except CronSimError as exc:
        raise ScheduleError(f"Not a valid cron expression: {exc}.") from None
    except StopIteration:
        raise ScheduleError("This schedule never fires.") from None
    return normalised


def _local(moment: datetime, zone: str) -> datetime:
    return moment.astimezone(zoneinfo.ZoneInfo(zone))


def moments_after(cron: str, zone: str, after: datetime) -> Iterator[datetime]:
    """The scheduled moments strictly after `after`, in UTC, oldest first."""
    for moment in CronSim(cron, _local(after, zone)):
        yield moment.astimezone(UTC)


def next_moment(cron: str, zone: str, after: datetime) -> datetime | None:
    return next(moments_after(cron, zone, after), None)


def latest_moment(cron: str, zone: str, now: datetime) -> datetime | None:
    """The latest scheduled moment at or before `now`, in UTC."""
    # Walking backwards, cronsim first steps one second back: start a second later, on
    # a whole second, so a moment exactly at `now` counts.
    start = (now + timedelta(seconds=1)).replace(microsecond=0)
    return next((m.astimezone(UTC) for m in CronSim(cron, _local(start, zone), reverse=True)), None)


def missed_between(cron: str, zone: str, after: datetime, before: datetime) -> list[datetime]:
    """Scheduled moments in (after, before), up to SKIPPED_COUNT_LIMIT of them."""
    missed = []
    for moment in moments_after(cron, zone, after):
        if moment >= before or len(missed) >= SKIPPED_COUNT_LIMIT:
            break
        missed.append(moment)
    return missed


# ---------------------------------------------------------------------------
# Subscriptions
# ---------------------------------------------------------------------------


def subscription_state(subscription: Subscription) -> dict[str, Any]:
    return {
        "email": subscription.email,
        "cron": subscription.cron,
        "timezone": subscription.timezone,
        "site_ids": subscription.site_ids,
        "formats": list(subscription.formats),
        "language": subscription.language,
        "deleted_at": subscription.deleted_at.isoformat() if subscription.deleted_at else None,
        "suspended_at": _iso(subscription.suspended_at),
        "suspended_reason": subscription.suspended_reason,
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _sites(site_ids: list[str]) -> list[Site]:
    found = {
        site.id: site
        for site in db.session.execute(select(Site).where(Site.id.in_(site_ids))).scalars()
    }
    errors = [
        FieldError(f"site_ids.{index}", f"There is no site '{site_id}'.")
        for index, site_id in enumerate(site_ids)
        if site_id not in found
    ]
    if errors:
        raise Invalid("The subscription names sites that do not exist.", errors=errors)
    return [found[site_id] for site_id in site_ids]


def create_subscription(caller: Caller, data: dict[str, Any]) -> Subscription:
    """A new subscription, owned by the caller's token; its first report goes out at its
    first scheduled moment from now."""
    caller.require_manages_own()
    site_ids = list(dict.fromkeys(data.get("site_ids") or []))
    formats = list(dict.fromkeys(data.get("formats", ["csv"])))
    now = utcnow()
    subscription = Subscription(
        email=data["email"],
        cron=data["cron"],
        timezone=data["timezone"],
        formats=formats,
        language=data.get("language", "en"),
        sites=_sites(site_ids),
        created_at=now,
        created_by=caller.token_id,
        owner_token_id=caller.token_id,
        last_checked_at=now,
    )
    db.session.add(subscription)
    db.session.flush()
    audit.record(
        caller,
        "subscription.create",
        "subscription",
        subscription.id,
        after=subscription_state(subscription),
    )
    return subscription


def find_subscription(subscription_id: uuid.UUID, *, deleted: bool = False) -> Subscription:
    """A subscription by id; a deleted one only when `deleted` (its delivery log stays)."""
    subscription = db.session.get(Subscription, subscription_id)
    if subscription is None or (subscription.deleted_at is not None and not deleted):
        raise NotFound(f"There is no subscription '{subscription_id}'.")
    return subscription


def visible_subscriptions(caller: Caller) -> Any:
    """The subscriptions the caller manages, as a query: all for admins, a reader's own
    (deleted ones are left out)."""
    caller.require_manages_own()
    query = select(Subscription).where(Subscription.deleted_at.is_(None))
    if not caller.is_admin:  # a reader's own (Caller.manages)
        query = query.where(Subscription.owner_token_id == caller.token_id)
    return query.order_by(Subscription.created_at, Subscription.id)


def find_own(caller: Caller, subscription_id: uuid.UUID, *, deleted: bool = False) -> Subscription:
    """A subscription the caller manages; another reader's is not found (as if it did not
    exist: its address is not theirs to learn)."""
    caller.require_manages_own()
    subscription = find_subscription(subscription_id, deleted=deleted)
    if not caller.manages(subscription.owner_token_id):
        raise NotFound(f"There is no subscription '{subscription_id}'.")
    return subscription


def delete_subscription(caller: Caller, subscription_id: uuid.UUID) -> Subscription:
    """Stop a subscription's deliveries; the subscription and its delivery log are kept."""
    subscription = find_own(caller, subscription_id)
    _end(caller, subscription, "subscription.delete")
    return subscription


def _end(caller: Caller, subscription: Subscription, action: str) -> None:
    before = subscription_state(subscription)
    subscription.deleted_at = utcnow()
    db.session.flush()
    audit.record(
        caller,
        action,
        "subscription",
        subscription.id,
        before=before,
        after=subscription_state(subscription),
    )


# ---------------------------------------------------------------------------
# Suspension: an address refused for good, again and again
# ---------------------------------------------------------------------------


def refused(subscription: Subscription, reason: str, now: datetime) -> None:
    """The mail server refused the address for good (SMTP 5xx): count it, and suspend the
    subscription at SUBSCRIPTION_SUSPEND_AFTER refusals in a row. Flushed."""
    subscription.permanent_failures += 1
    limit = setting("SUBSCRIPTION_SUSPEND_AFTER")
    if subscription.suspended_at is None and subscription.permanent_failures >= limit:
        before = subscription_state(subscription)
        subscription.suspended_at = now
        subscription.suspended_reason = (
            f"The mail server refused the address {subscription.permanent_failures} times in "
            f"a row; the last time: {reason}"
        )[:1000]
        db.session.flush()
        audit.record(
            SYSTEM,
            "subscription.suspend",
            "subscription",
            subscription.id,
            before=before,
            after=subscription_state(subscription),
        )
        log.warning(
            "subscription suspended",
            extra={
                "subscription_id": str(subscription.id),
                "refusals": subscription.permanent_failures,
            },
        )
    db.session.flush()


def delivered(subscription: Subscription) -> None:
    """An email reached the server: the refusals in a row start again from none."""
    if subscription.permanent_failures:
        subscription.permanent_failures = 0
        db.session.flush()


def resume_subscription(caller: Caller, subscription_id: uuid.UUID) -> Subscription:
    """Deliver again (an admin, once the address is fixed or the recipient is back). The
    moments passed while suspended are not made up: the next report is the next one due."""
    caller.require_role(Role.admin)
    subscription = find_subscription(subscription_id)
    if subscription.suspended_at is None and not subscription.permanent_failures:
        return subscription
    before = subscription_state(subscription)
    subscription.suspended_at = None
    subscription.suspended_reason = None
    subscription.permanent_failures = 0
    subscription.last_checked_at = max(subscription.last_checked_at, utcnow())
    db.session.flush()
    audit.record(
        caller,
        "subscription.resume",
        "subscription",
        subscription.id,
        before=before,
        after=subscription_state(subscription),
    )
    return subscription


def suspended() -> list[Subscription]:
    """Subscriptions suspended now, the longest-suspended first."""
    return list(
        db.session.execute(
            select(Subscription)
            .where(Subscription.deleted_at.is_(None), Subscription.suspended_at.is_not(None))
            .order_by(Subscription.suspended_at, Subscription.id)
        ).scalars()
    )


# ---------------------------------------------------------------------------
# Unsubscribe links
# ---------------------------------------------------------------------------


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(setting("SECRET_KEY"), salt=UNSUBSCRIBE_SALT)


def unsubscribe_token(subscription_id: uuid.UUID) -> str:
    """A signed token naming the subscription; it never expires (links in old emails work)."""
    return _serializer().dumps(str(subscription_id))


def unsubscribe_url(subscription_id: uuid.UUID) -> str:
    """The link in every email; GET shows a confirmation page, POST unsubscribes.

    The token rides in the query string, not the path: the request log records paths.
    """
    base = setting("PUBLIC_BASE_URL")
    return f"{base}/unsubscribe?token={unsubscribe_token(subscription_id)}"


def subscription_for_token(token: str) -> Subscription | None:
    """The subscription a token names, if its signature is good (deleted ones included)."""
    try:
        subscription_id = uuid.UUID(_serializer().loads(token))
    except (BadSignature, ValueError, TypeError):
        return None
    return db.session.get(Subscription, subscription_id)


def unsubscribe(subscription: Subscription) -> bool:
    """End the subscription from its link; False when it had already ended."""
    if subscription.deleted_at is not None:
        return False
    _end(RECIPIENT, subscription, "subscription.unsubscribe")
    return True


# ---------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------


def dispatch(now: datetime | None = None) -> list[uuid.UUID]:
    """Create the deliveries that came due since the last check; returns their ids.

    Per subscription, the watermark moves to `now` and a delivery is added for the
    latest moment in (watermark, now] (flushed; the task commits them all at once).
    Another scheduler doing the same at the same time hits the unique (subscription,
    moment) key and adds nothing.
    """
    now = now or utcnow()
    rows = db.session.execute(
        select(
            Subscription.id, Subscription.cron, Subscription.timezone, Subscription.last_checked_at
        )
        .where(
            Subscription.deleted_at.is_(None),
            Subscription.suspended_at.is_(None),
            Subscription.last_checked_at < now,
        )
        # One order for every scheduler: two dispatching at once lock rows alike.
        .order_by(Subscription.id)
    ).all()
    created = []
    for subscription_id, cron, zone, watermark in rows:
        try:
            due = latest_moment(cron, zone, now)
        except (CronSimError, zoneinfo.ZoneInfoNotFoundError, ValueError):
            log.exception("schedule unreadable", extra={"subscription_id": str(subscription_id)})
            continue
        delivery_id = _claim_moment(subscription_id, due if due and due > watermark else None, now)
        if delivery_id is None:
            continue
        created.append(delivery_id)
        missed = missed_between(cron, zone, watermark, due)
        if missed:
            log.warning(
                "missed scheduled moments skipped; only the latest is sent",
                extra={
                    "subscription_id": str(subscription_id),
                    "skipped": len(missed),
                    "skipped_first": missed[0].isoformat(),
                    "skipped_last": missed[-1].isoformat(),
                    "sent_for": due.isoformat(),
                },
            )
    return created


def _claim_moment(
    subscription_id: uuid.UUID, due: datetime | None, now: datetime
) -> uuid.UUID | None:
    """Move the watermark and, if a moment is due, add its delivery."""
    moved = db.session.execute(
        update(Subscription)
        .where(
            Subscription.id == subscription_id,
            Subscription.deleted_at.is_(None),
            Subscription.suspended_at.is_(None),
            Subscription.last_checked_at < now,
        )
        .values(last_checked_at=now)
    ).rowcount
    if not moved or due is None:
        return None
    delivery = Delivery(
        subscription_id=subscription_id,
        scheduled_for=due,
        status=DeliveryStatus.queued,
        next_attempt_at=now,
    )
    try:
        with db.session.begin_nested():
            db.session.add(delivery)
    except IntegrityError:
        # Another scheduler has this moment's delivery: nothing to add, but the watermark
        # still moves on.
        return None
    log.info(
        "delivery scheduled",
        extra={
            "subscription_id": str(subscription_id),
            "delivery_id": str(delivery.id),
            "scheduled_for": due.isoformat(),
        },
    )
    return delivery.id
