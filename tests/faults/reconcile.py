"""After a fault: what the clients were told against what the database and the mail
server hold. Exactly once, counted, not assumed:

- every report answered 2xx is stored once, under its key, as answered (id and total);
  nothing is stored under a key that was never sent;
- every summary answered 202 comes to `ready`; every scheduled period since the stack
  the load began has its one summary, ready; a summary a reader saw never changed its ETag;
- every delivery (each moment of the subscription's schedule since the load began, and every
  "send now" answered 202) comes to `sent`, and the SMTP server received exactly one
  message for each (by Message-ID), and no other.

`reconcile()` waits (bounded) for the work still in flight, then asserts, and returns
the figures for docs/reliability.md.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from service import handoff
from service.domain import subscriptions as subscription_rules
from service.domain import summaries as summary_rules
from service.extensions import db
from service.models import Delivery, Report, Subscription, Summary, SummaryStatus
from service.models.subscriptions import DeliveryStatus
from tests.faults.load import Load
from tests.faults.stack import Stack, wait_until


def server_errors(load: Load) -> dict[str, int]:
    """The 5xx answers the clients got, by method, path and status."""
    return {k: n for k, n in load.figures.statuses.items() if int(k.rsplit(" ", 1)[1]) >= 500}


def reconcile(stack: Stack, load: Load, timeout: float = 60) -> dict[str, Any]:
    """Assert exactly once everywhere; return the figures. Call after `load.stop()`.
    (What clients were answered on the way, 503s included, is the caller's to judge:
    `load.figures.statuses`, `server_errors(load)`.)"""
    ended = datetime.now(UTC)
    figures: dict[str, Any] = {"load": load.figures.as_dict()}
    assert not load.refused, f"final refusals the load did not expect: {load.refused[:5]}"
    waited = {}
    for name, check in (
        ("reports", lambda: _reports(stack, load)),
        ("summaries", lambda: _summaries(stack, load, ended, timeout)),
        ("emails", lambda: _emails(stack, load, ended, timeout)),
    ):
        began = time.monotonic()
        figures[name] = check()
        waited[name] = round(time.monotonic() - began, 1)
    figures["reconcile_waited_s"] = waited
    return figures


def _reports(stack: Stack, load: Load) -> dict[str, int]:
    token_ids = [token_id for token_id, _, _ in stack.tokens.coordinators]  # type: ignore[union-attr]

    def stored() -> list[tuple[int, str | None, int, int]]:
        rows = db.session.execute(
            select(Report.token_id, Report.client_id, Report.id, Report.total).where(
                Report.token_id.in_(token_ids)
            )
        )
        return [tuple(row) for row in rows]

    rows = stack.read(stored)
    per_key = Counter((token_id, key) for token_id, key, _, _ in rows)
    twice = [key for key, n in per_key.items() if n > 1]
    assert not twice, f"stored more than once: {twice[:5]}"
    by_key = {key: (report_id, total) for _, key, report_id, total in rows}
    strangers = set(by_key) - stack.keys_sent
    assert not strangers, f"stored under keys never sent: {sorted(strangers)[:5]}"
    wrong = {
        key: (answer.report_id, answer.total, by_key.get(key))
        for key, answer in load.answered.items()
        if by_key.get(key) != (answer.report_id, answer.total)
    }
    assert not wrong, f"answered 2xx but not stored as answered: {list(wrong.items())[:5]}"
    return {
        "keys_sent": len(load.sent),
        "answered_2xx": len(load.answered),
        "stored": len(set(by_key) & load.sent),
        "never_answered": len(load.unanswered),
        "never_answered_but_stored": len(load.unanswered & set(by_key)),
    }


def _summaries(stack: Stack, load: Load, ended: datetime, timeout: float) -> dict[str, int]:
    requested = [uuid.UUID(i) for i in load.summaries]
    every = timedelta(minutes=int(stack.settings["SUMMARY_INTERVAL_MINUTES"]))
    since = max(datetime.fromtimestamp(stack.started_at, UTC), load.began)
    first = summary_rules.period_start(since, every)
    last = summary_rules.period_start(ended, every)
    periods = []
    moment = first
    while moment <= last:
        periods.append(moment)
        moment += every

    def settled() -> list[Summary] | None:
        rows = db.session.execute(
            select(Summary).where(Summary.id.in_(requested) | Summary.period.in_(periods))
        ).scalars()
        found = list(rows)
        if any(s.status is SummaryStatus.pending for s in found):
            return None
        if len({s.period for s in found if s.period is not None}) < len(periods):
            return None
        db.session.expunge_all()
        return found

    try:
        found = wait_until(lambda: stack.read(settled), timeout, "summaries still pending")
    except AssertionError:
        pending = stack.read(
            lambda: [
                (str(s.id), s.period, s.status.value, s.attempts)
                for s in db.session.execute(
                    select(Summary).where(Summary.status == SummaryStatus.pending)
                ).scalars()
            ]
        )
        have = stack.read(
            lambda: set(
                db.session.execute(select(Summary.period).where(Summary.period.in_(periods)))
                .scalars()
                .all()
            )
        )
        missing = [p.isoformat() for p in periods if p not in have]
        raise AssertionError(f"pending: {pending}; periods without a summary: {missing}") from None
    not_ready = [(str(s.id), s.status.value, s.error) for s in found if s.status.value != "ready"]
    assert not not_ready, f"summaries that did not become ready: {not_ready}"
    per_period = Counter(s.period for s in found if s.period is not None)
    assert set(per_period) == set(periods), (sorted(per_period), periods)
    assert all(n == 1 for n in per_period.values()), per_period
    assert {str(s.id) for s in found} >= load.summaries
    etags = {str(s.id): s.etag for s in found}

    def etag_of(summary_id: str) -> str | None:
        summary = db.session.get(Summary, uuid.UUID(summary_id))
        return summary.etag if summary else None

    def unchanged(summary_id: str, seen: set[str]) -> bool:
        """One ETag for all a reader was shown, and it is the stored summary's (a
        reader's view adds its own suffix: small cells suppressed, groups it sees)."""
        stored = etags.get(summary_id) or stack.read(lambda: etag_of(summary_id))
        return len(seen) == 1 and bool(stored) and next(iter(seen)).startswith(f'"{stored}')

    changed = {
        summary_id: seen
        for summary_id, seen in load.seen_etags.items()
        if not unchanged(summary_id, seen)
    }
    assert not changed, f"a summary readers saw changed afterwards: {changed}"
    return {
        "requested_202": len(requested),
        "periods": len(periods),
        "seen_by_readers": len(load.seen_etags),
    }


def _hand_out_again(stack: Stack, subscription_id: uuid.UUID) -> list[tuple[int, bool]]:
    """End the leases of the deliveries still in flight and hand them out again; returns
    (attempts, was leased) of each."""
    now = datetime.now(UTC)

    def bring_forward() -> list[tuple[uuid.UUID, int, bool]]:
        rows = db.session.execute(
            select(Delivery).where(
                Delivery.subscription_id == subscription_id,
                Delivery.status == DeliveryStatus.queued,
            )
        ).scalars()
        # Leased far beyond any send (its worker is dead), or due, handed out and never
        # begun. Retrying ones, and scheduled ones waiting for their period's summary,
        # wait for their own moment: that is the behaviour under test.
        stuck = [
            (d.id, d.attempts, d.claimed_until is not None)
            for d in rows
            if (d.claimed_until and _aware(d.claimed_until) > now + timedelta(seconds=60))
            or (
                d.claimed_until is None
                and d.attempts == 0
                and _aware(d.next_attempt_at or now) <= now - timedelta(seconds=5)
            )
        ]
        db.session.execute(
            update(Delivery)
            .where(Delivery.id.in_([i for i, _, _ in stuck]))
            .values(claimed_until=None, next_attempt_at=now)
        )
        db.session.commit()
        return stuck

    stuck = stack.read(bring_forward)
    with stack.app.app_context():
        assert not handoff.send_deliveries([i for i, _, _ in stuck]), "the broker refused"
    return [(attempts, leased) for _, attempts, leased in stuck]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _emails(stack: Stack, load: Load, ended: datetime, timeout: float) -> dict[str, int]:
    if stack.subscription_id is None:
        return {}
    subscription_id = uuid.UUID(stack.subscription_id)

    def deliveries() -> list[Delivery]:
        rows = db.session.execute(
            select(Delivery).where(Delivery.subscription_id == subscription_id)
        ).scalars()
        found = list(rows)
        db.session.expunge_all()
        return found

    def schedule() -> tuple[datetime, str, str]:
        subscription = db.session.get_one(Subscription, subscription_id)
        return _aware(subscription.created_at), subscription.cron, subscription.timezone

    began, cron, zone = stack.read(schedule)
    # Every moment of its schedule since the load began (and the subscription), up to a
    # few seconds before the end: the dispatcher runs at the start of each minute.
    due = []
    for moment in subscription_rules.moments_after(cron, zone, max(began, load.began)):
        if moment > ended - timedelta(seconds=5):
            break
        due.append(moment)

    def settled() -> tuple[list[Delivery]] | None:
        # The deliveries due by the end (later ones are the next load's); in a tuple, so
        # that none at all is an answer too.
        found = [d for d in stack.read(deliveries) if _aware(d.scheduled_for) <= ended]
        scheduled = {_aware(d.scheduled_for) for d in found if not d.manual}
        manual = {str(d.id) for d in found if d.manual}
        active = [d for d in found if d.status in (DeliveryStatus.queued, DeliveryStatus.retrying)]
        if active or not scheduled >= set(due) or not manual >= load.deliveries:
            return None
        return (found,)

    deferred: list[tuple[int, bool]] = []
    try:
        (found,) = wait_until(settled, min(timeout, 10), "deliveries still in flight")
    except AssertionError:
        # A worker killed inside a send leaves its delivery leased for the task time limit
        # (15 min), and one killed holding a reserved task leaves it to the dispatcher's
        # lost-task sweep (5 min). Bring that moment forward: end those leases and hand
        # them out, as the sweep will; each must still go out once.
        deferred = _hand_out_again(stack, subscription_id)
        try:
            (found,) = wait_until(settled, timeout, "deliveries still in flight")
        except AssertionError as exc:
            state = [
                (d.scheduled_for, d.manual, d.status.value, d.attempts, d.claimed_until)
                for d in stack.read(deliveries)
            ]
            raise AssertionError(f"{exc}; due {due}; deliveries {state}") from exc
    not_sent = [(str(d.id), d.status.value, d.last_error) for d in found]
    not_sent = [d for d in not_sent if d[1] != "sent"]
    assert not not_sent, f"deliveries not sent: {not_sent}"
    # The last message may still be on its way from the worker to the SMTP server's log.
    time.sleep(0.5)
    received = Counter(r.message["Message-ID"] for r in stack.smtp.received)
    expected = Counter(d.message_id for d in found)
    everyone = {str(d.id) for d in stack.read(deliveries)}
    problems = {
        "twice": [m for m, n in received.items() if n > 1],
        "not_received": sorted(m for m in expected if received[m] != 1),
        # Every message names its delivery (Message-ID <delivery id@...>).
        "unknown": sorted(m for m in received if m.strip("<").split("@")[0] not in everyone),
    }
    assert not any(problems.values()), problems
    return {
        "scheduled_due": len(due),
        "scheduled_delivered": sum(1 for d in found if not d.manual),
        "manual_202": len(load.deliveries),
        "emails_received": sum(received.values()) - load.emails_before,
        # Deliveries a killed worker held, sent once their lease was brought forward:
        # those leased mid-send, and those only reserved (not begun).
        "deferred_leased": sum(1 for attempts, leased in deferred if leased),
        "deferred_reserved": sum(1 for attempts, leased in deferred if not leased),
    }
