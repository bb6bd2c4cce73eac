"""Periods inside an outage are built once the service is back: the scheduler, which saw
no tick for hours (the clock moved on, as it does while the database or the scheduler
is away), creates each missed period's summary, oldest first, once, bounded; each is
built as of its own moment, so it counts what was known then."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from service.domain import summaries
from service.extensions import db
from service.models import Summary
from service.types import utcnow
from tests.conftest import Auth
from tests.helpers import CENTRE, create_group, iso

HOUR = timedelta(hours=1)  # SUMMARY_INTERVAL_MINUTES' default


def _report(client, headers, group_id: str, total: int, observed) -> None:
    body = {"group_id": group_id, "observed_at": iso(observed), "total": total}
    response = client.post("/api/v1/reports", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()


def _periods() -> dict:
    rows = db.session.execute(
        select(Summary.period, func.count())
        .where(Summary.period.is_not(None))
        .group_by(Summary.period)
    )
    return dict(rows.tuples().all())


def test_periods_missed_in_an_outage_are_built_oldest_first_as_of_their_moment(
    make_app,
):
    app = make_app(SUMMARY_CATCH_UP_PERIODS=6)
    client, admin = app.test_client(), Auth(app).admin
    start = summaries.period_start(utcnow(), HOUR) - 8 * HOUR
    group = create_group(client, admin, CENTRE)
    _report(client, admin, group["id"], 100, start - HOUR / 2)
    _report(client, admin, group["id"], 200, start + 2.5 * HOUR)
    with app.app_context():
        assert summaries.ensure_scheduled(start + timedelta(minutes=1)) is not None
        db.session.commit()
        # No tick for four periods; the fifth finds the service back.
        back = start + 5 * HOUR + timedelta(minutes=3)
        current = summaries.ensure_scheduled(back)
        db.session.commit()
        assert current is not None and current.period == start + 5 * HOUR
        expected = [start + n * HOUR for n in range(6)]
        assert _periods() == dict.fromkeys(expected, 1)
        # Ticks again, and two schedulers: still one summary per period.
        assert summaries.ensure_scheduled(back + timedelta(minutes=20)) is None
        db.session.commit()
        assert _periods() == dict.fromkeys(expected, 1)

        due = summaries.due_for_build(back)
        db.session.commit()
        built = {}
        for summary_id in due:  # oldest first, as the tick hands them out
            assert summaries.build(summary_id) is True
            db.session.commit()
            summary = db.session.get_one(Summary, summary_id)
            built[summary.period] = summary
        assert list(built) == expected
        for period, summary in built.items():
            assert summary.as_of == period
            # Counted as of the period's moment, as if built on time.
            people = 200 if period > start + 2.5 * HOUR else 100
            assert summary.document["totals"]["people"] == people, period


def test_catching_up_is_bounded_and_a_new_service_starts_at_its_first_period(
    make_app,
):
    app = make_app(SUMMARY_CATCH_UP_PERIODS=3)
    with app.app_context():
        start = summaries.period_start(utcnow(), HOUR) - 100 * HOUR
        # A new service: no periods before its first.
        summaries.ensure_scheduled(start)
        db.session.commit()
        assert list(_periods()) == [start]
        # Back after 40 periods away: the latest three only (the current one with them).
        summaries.ensure_scheduled(start + 40 * HOUR)
        db.session.commit()
        assert list(sorted(_periods())) == [start] + [start + n * HOUR for n in (38, 39, 40)]


def test_a_period_failed_by_an_outage_before_builds_were_retried_is_built_again(make_app):
    """Before builds that lost their database were retried, such a build was marked
    failed (`PendingRollbackError`) and its period never built. The tick builds those
    again, within the catch-up window; other failures stay failed."""
    app = make_app(SUMMARY_CATCH_UP_PERIODS=4)
    with app.app_context():
        now = summaries.period_start(utcnow(), HOUR)
        marks = {
            now - 5 * HOUR: "PendingRollbackError",  # outside the window
            now - 2 * HOUR: "PendingRollbackError",
            now - HOUR: "KeyError",  # a fault in the work: a retry would fail the same way
        }
        for period, error in marks.items():
            db.session.add(
                Summary(as_of=period, period=period, status="failed", error=error, attempts=1)
            )
        db.session.commit()
        summaries.ensure_scheduled(now)
        db.session.commit()
        due = summaries.due_for_build(now)
        db.session.commit()
        for summary_id in due:
            summaries.build(summary_id)
            db.session.commit()
        status = dict(db.session.execute(select(Summary.period, Summary.status)).tuples().all())
    assert {period: s.value for period, s in status.items()} == {
        now - 5 * HOUR: "failed",
        now - 2 * HOUR: "ready",
        now - HOUR: "failed",
        now: "ready",
    }
