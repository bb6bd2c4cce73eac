"""Subscriptions: the API, what it refuses, schedules in time zones, dispatch, unsubscribe.

Sending itself (SMTP, retries, the email's content) is in tests/test_subscriptions_mail.py.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from service.domain import deliveries, subscriptions
from service.extensions import db
from service.models import Delivery, DeliveryStatus, Subscription
from tests.helpers import AIRPORT, CENTRE, assert_problem, at_once, audit_events, count_rows
from workers.tasks import attempt_delivery

EMAIL = "sitrep@ngo.example.org"


def subscribe(client, headers, **fields) -> dict:
    body = {"email": EMAIL, "cron": "0 7,19 * * *", "timezone": "Asia/Yerevan", **fields}
    response = client.post("/api/v1/subscriptions", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def deliveries_of(app, subscription_id: str) -> list[Delivery]:
    with app.app_context():
        rows = db.session.execute(
            select(Delivery)
            .where(Delivery.subscription_id == uuid.UUID(subscription_id))
            .order_by(Delivery.scheduled_for)
        )
        found = list(rows.scalars())
        db.session.expunge_all()
        return found


def set_watermark(app, subscription_id: str, moment: datetime) -> None:
    with app.app_context():
        db.session.execute(
            update(Subscription)
            .where(Subscription.id == uuid.UUID(subscription_id))
            .values(last_checked_at=moment)
        )
        db.session.commit()


def dispatch_at(app, now: datetime) -> list[uuid.UUID]:
    with app.app_context():
        created = subscriptions.dispatch(now)
        db.session.commit()  # as the dispatch task does
        return created


# ---------------------------------------------------------------------------
# The API
# ---------------------------------------------------------------------------


def test_admin_creates_lists_reads_and_deletes_a_subscription(app, client, auth):
    admin = auth.admin
    response = client.post(
        "/api/v1/subscriptions",
        json={
            "email": EMAIL,
            "cron": "0 7,19 * * *",
            "timezone": "Asia/Yerevan",
            "site_ids": [AIRPORT],
            "formats": ["csv", "hxl"],
        },
        headers=admin,
    )
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert response.headers["Location"] == f"/api/v1/subscriptions/{created['id']}"
    assert created["email"] == EMAIL
    assert created["cron"] == "0 7,19 * * *"
    assert created["timezone"] == "Asia/Yerevan"
    assert created["site_ids"] == [AIRPORT]
    assert created["formats"] == ["csv", "hxl"]
    # 07:00 or 19:00 in Yerevan (UTC+4) is 03:00 or 15:00 UTC.
    next_run = datetime.fromisoformat(created["next_run_at"])
    assert next_run.utcoffset() == timedelta(0)
    assert (next_run.hour, next_run.minute) in {(3, 0), (15, 0)}
    assert datetime.now(UTC) < next_run <= datetime.now(UTC) + timedelta(hours=12)

    listed = client.get("/api/v1/subscriptions", headers=admin)
    assert [s["id"] for s in listed.get_json()] == [created["id"]]
    assert client.get(response.headers["Location"], headers=admin).get_json() == created

    deleted = client.delete(response.headers["Location"], headers=admin)
    assert deleted.status_code == 204
    assert_problem(client.get(response.headers["Location"], headers=admin), 404)
    assert client.get("/api/v1/subscriptions", headers=admin).get_json() == []
    assert_problem(client.delete(response.headers["Location"], headers=admin), 404)

    events = [e for e in audit_events(app) if e["entity_type"] == "subscription"]
    assert [e["action"] for e in events] == ["subscription.create", "subscription.delete"]
    assert events[0]["after"]["email"] == EMAIL
    assert events[1]["before"]["deleted_at"] is None
    assert events[1]["after"]["deleted_at"] is not None


def test_defaults_all_sites_and_a_csv(client, auth):
    created = subscribe(client, auth.admin)
    assert created["site_ids"] == []
    assert created["formats"] == ["csv"]


def test_email_is_stored_normalised(client, auth):
    created = subscribe(client, auth.admin, email="Aid.Team@NGO.Example.ORG")
    assert created["email"] == "Aid.Team@ngo.example.org"


def test_coordinators_manage_no_subscriptions(app, client, auth):
    subscription = subscribe(client, auth.admin)
    headers = auth.headers("coordinator", CENTRE)
    base = f"/api/v1/subscriptions/{subscription['id']}"
    assert_problem(client.get("/api/v1/subscriptions", headers=headers), 403)
    body = {"email": "other@ngo.example.org", "cron": "0 7 * * *", "timezone": "UTC"}
    assert_problem(client.post("/api/v1/subscriptions", json=body, headers=headers), 403)
    assert_problem(client.get(base, headers=headers), 403)
    assert_problem(client.delete(base, headers=headers), 403)
    assert_problem(client.post(f"{base}/send", headers=headers), 403)
    assert_problem(client.get(f"{base}/deliveries", headers=headers), 403)
    assert count_rows(app, Subscription) == 1
    assert count_rows(app, Delivery) == 0


def test_a_reader_manages_only_its_own_subscriptions(app, client, auth):
    admins = subscribe(client, auth.admin)
    reader = auth.headers("reader")
    other_reader = auth.headers("reader")
    body = {"email": "mine@ngo.example.org", "cron": "0 7 * * *", "timezone": "UTC"}
    own = client.post("/api/v1/subscriptions", json=body, headers=reader)
    assert own.status_code == 201, own.get_data(as_text=True)
    own = own.get_json()
    # The reader's list holds its own only; the admin's holds both, with their owners.
    assert [s["id"] for s in client.get("/api/v1/subscriptions", headers=reader).get_json()] == [
        own["id"]
    ]
    every = client.get("/api/v1/subscriptions", headers=auth.admin).get_json()
    assert {s["id"] for s in every} == {admins["id"], own["id"]}
    assert client.get("/api/v1/subscriptions", headers=other_reader).get_json() == []
    # Another's (the admin's, or the other reader's) is not found, for every verb.
    for headers, theirs in ((reader, admins), (other_reader, own)):
        base = f"/api/v1/subscriptions/{theirs['id']}"
        assert_problem(client.get(base, headers=headers), 404)
        assert_problem(client.delete(base, headers=headers), 404)
        assert_problem(client.post(f"{base}/send", headers=headers), 404)
        assert_problem(client.get(f"{base}/deliveries", headers=headers), 404)
        assert_problem(client.post(f"{base}/resume", headers=headers), 403)
    assert count_rows(app, Delivery) == 0
    # Its own: read, its delivery log, deleted.
    base = f"/api/v1/subscriptions/{own['id']}"
    assert client.get(base, headers=reader).get_json()["email"] == "mine@ngo.example.org"
    assert client.get(f"{base}/deliveries", headers=reader).get_json() == []
    assert_problem(client.post(f"{base}/resume", headers=reader), 403)
    assert client.delete(base, headers=reader).status_code == 204
    assert client.get("/api/v1/subscriptions", headers=reader).get_json() == []
    kept = client.get(f"/api/v1/subscriptions/{admins['id']}", headers=auth.admin)
    assert kept.status_code == 200


def test_subscriptions_need_a_token(client):
    assert_problem(client.get("/api/v1/subscriptions"), 401)


@pytest.mark.parametrize(
    "email",
    [
        "a@x.org, b@y.org",
        "a@x.org,b@y.org",
        "a@x.org; b@y.org",
        "a@x.org b@y.org",
        "Aid team <a@x.org>",
        "not-an-address",
        "a@localhost",
        "a" * 250 + "@x.org",
        "",
    ],
)
def test_email_must_be_one_valid_address(app, client, auth, email):
    body = {"email": email, "cron": "0 7 * * *", "timezone": "UTC"}
    response = client.post("/api/v1/subscriptions", json=body, headers=auth.admin)
    assert_problem(response, 422, "email")
    assert count_rows(app, Subscription) == 0


INJECTIONS = [
    ("email", "a@x.org\r\nBcc: everyone@x.org"),
    ("email", "a@x.org\nBcc: everyone@x.org"),
    ("email", "a@x.org\r\n"),
    ("email", "\r\na@x.org"),
    ("email", "a@x.org\x00"),
    ("email", "a@x.org\tb"),
    ("email", "a@x.org\u2028Bcc: everyone@x.org"),
    ("email", "a@x.org\x85Bcc: everyone@x.org"),
    ("timezone", "UTC\r\nBcc: everyone@x.org"),
    ("timezone", "Asia/Yerevan\n"),
    ("cron", "0 7 * * *\r\nBcc: everyone@x.org"),
    ("cron", "0 7 * * *\n"),
    ("site_ids", [f"{AIRPORT}\r\nBcc: everyone@x.org"]),
    ("site_ids", [f"{AIRPORT}\n"]),
    ("formats", ["csv\r\nBcc: everyone@x.org"]),
]


@pytest.mark.parametrize("field, value", INJECTIONS)
def test_header_injection_in_any_field_is_refused(app, client, auth, field, value):
    body = {"email": EMAIL, "cron": "0 7 * * *", "timezone": "UTC", field: value}
    response = client.post("/api/v1/subscriptions", json=body, headers=auth.admin)
    named = field if field in {"email", "timezone", "cron"} else f"{field}.0"
    assert_problem(response, 422, named)
    assert count_rows(app, Subscription) == 0


@pytest.mark.parametrize(
    "cron",
    [
        "0 7 * *",  # four fields
        "0 0 7 * * *",  # six (seconds) is not cron
        "@daily",
        "61 * * * *",
        "0 24 * * *",
        "0 7 * * 8",
        "0 0 30 2 *",  # never fires
        "*/0 * * * *",
        "every morning",
    ],
)
def test_cron_must_be_five_valid_fields(app, client, auth, cron):
    body = {"email": EMAIL, "cron": cron, "timezone": "UTC"}
    response = client.post("/api/v1/subscriptions", json=body, headers=auth.admin)
    assert_problem(response, 422, "cron")
    assert count_rows(app, Subscription) == 0


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus_Mons", "asia/yerevan", "../../etc/passwd", "+04:00", "EST5EDT,M3"]
)
def test_time_zone_must_be_an_iana_name(app, client, auth, zone):
    body = {"email": EMAIL, "cron": "0 7 * * *", "timezone": zone}
    response = client.post("/api/v1/subscriptions", json=body, headers=auth.admin)
    assert_problem(response, 422, "timezone")
    assert count_rows(app, Subscription) == 0


def test_sites_must_exist_and_formats_be_known(app, client, auth):
    body = {"email": EMAIL, "cron": "0 7 * * *", "timezone": "UTC"}
    unknown = client.post(
        "/api/v1/subscriptions",
        json={**body, "site_ids": [AIRPORT, "goris-reception"]},
        headers=auth.admin,
    )
    problem = assert_problem(unknown, 422, "site_ids.1")
    assert "goris-reception" in problem["errors"][0]["message"]
    bad_format = client.post(
        "/api/v1/subscriptions", json={**body, "formats": ["pdf"]}, headers=auth.admin
    )
    assert_problem(bad_format, 422, "formats.0")
    missing = client.post("/api/v1/subscriptions", json={"email": EMAIL}, headers=auth.admin)
    assert_problem(missing, 422, "cron")
    assert_problem(missing, 422, "timezone")
    assert count_rows(app, Subscription) == 0


def test_send_with_no_ready_summary_is_409_and_stores_nothing(app, client, auth):
    subscription = subscribe(client, auth.admin)
    response = client.post(f"/api/v1/subscriptions/{subscription['id']}/send", headers=auth.admin)
    assert_problem(response, 409)
    assert count_rows(app, Delivery) == 0


def test_unknown_subscription_is_404(client, auth):
    missing = f"/api/v1/subscriptions/{uuid.uuid4()}"
    assert_problem(client.get(missing, headers=auth.admin), 404)
    assert_problem(client.post(f"{missing}/send", headers=auth.admin), 404)
    assert_problem(client.get(f"{missing}/deliveries", headers=auth.admin), 404)


# ---------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_schedule_is_read_in_its_time_zone():
    # 09:00 in Yerevan (UTC+4, no daylight saving) is 05:00 UTC.
    assert subscriptions.next_moment("0 9 * * *", "Asia/Yerevan", utc(2023, 9, 26, 12)) == utc(
        2023, 9, 27, 5
    )
    assert subscriptions.latest_moment("0 9 * * *", "Asia/Yerevan", utc(2023, 9, 26, 12)) == utc(
        2023, 9, 26, 5
    )


def test_schedule_follows_daylight_saving_time():
    # London: 09:00 is 09:00 UTC in winter and 08:00 UTC from the last Sunday of March.
    moments = subscriptions.moments_after("0 9 * * *", "Europe/London", utc(2026, 3, 27))
    assert [next(moments) for _ in range(3)] == [
        utc(2026, 3, 27, 9),
        utc(2026, 3, 28, 9),
        utc(2026, 3, 29, 8),
    ]
    # Berlin skips 02:00-03:00 on 29 March 2026: a 02:30 report goes at 03:00 local, once.
    assert subscriptions.next_moment("30 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 12)) == utc(
        2026, 3, 29, 1
    )
    # London repeats 01:00-02:00 on 25 October 2026: a 01:30 report goes once.
    moments = subscriptions.moments_after("30 1 * * *", "Europe/London", utc(2026, 10, 24, 12))
    assert [next(moments) for _ in range(2)] == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_a_moment_exactly_now_is_due():
    assert subscriptions.latest_moment("* * * * *", "UTC", utc(2026, 1, 5, 9, 0)) == utc(
        2026, 1, 5, 9, 0
    )
    just_before = utc(2026, 1, 5, 9, 0) - timedelta(microseconds=1)
    assert subscriptions.latest_moment("* * * * *", "UTC", just_before) == utc(2026, 1, 5, 8, 59)


# ---------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------


def test_dispatch_makes_one_delivery_per_scheduled_moment(app, client, auth):
    subscription = subscribe(client, auth.admin, cron="*/10 * * * *", timezone="UTC")
    moment = utc(2026, 1, 5, 9, 0)
    set_watermark(app, subscription["id"], moment - timedelta(seconds=5))

    first = dispatch_at(app, moment + timedelta(minutes=3, seconds=30))
    assert len(first) == 1
    assert dispatch_at(app, moment + timedelta(minutes=3, seconds=40)) == []  # nothing new
    assert dispatch_at(app, moment + timedelta(minutes=9, seconds=59)) == []  # not due yet
    later = dispatch_at(app, moment + timedelta(minutes=10, seconds=1))
    assert len(later) == 1

    found = deliveries_of(app, subscription["id"])
    assert [d.scheduled_for for d in found] == [moment, moment + timedelta(minutes=10)]
    assert {d.status for d in found} == {DeliveryStatus.queued}
    assert [d.id for d in found] == [*first, *later]
    assert not any(d.manual for d in found)


def test_after_an_outage_only_the_latest_missed_moment_is_sent(app, client, auth, caplog):
    subscription = subscribe(client, auth.admin, cron="0 * * * *", timezone="UTC")
    now = utc(2026, 1, 5, 9, 20)
    # The scheduler was down from 05:50: 06:00, 07:00, 08:00 and 09:00 were missed.
    set_watermark(app, subscription["id"], utc(2026, 1, 5, 5, 50))

    with caplog.at_level(logging.WARNING, logger="service.domain.subscriptions"):
        created = dispatch_at(app, now)

    assert len(created) == 1
    assert [d.scheduled_for for d in deliveries_of(app, subscription["id"])] == [utc(2026, 1, 5, 9)]
    skipped = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 1
    assert skipped[0].skipped == 3
    assert skipped[0].skipped_first == utc(2026, 1, 5, 6).isoformat()
    assert skipped[0].skipped_last == utc(2026, 1, 5, 8).isoformat()
    assert skipped[0].subscription_id == subscription["id"]


def test_two_schedulers_for_the_same_moment_make_one_delivery(app, client, auth):
    subscription = subscribe(client, auth.admin, cron="* * * * *", timezone="UTC")
    moment = utc(2026, 1, 5, 9, 0)
    now = moment + timedelta(seconds=20)
    stale = moment - timedelta(seconds=30)
    set_watermark(app, subscription["id"], stale)
    results: list[list[uuid.UUID]] = []

    def scheduler() -> None:
        with app.app_context():
            results.append(subscriptions.dispatch(now))
            db.session.commit()
            db.session.remove()

    at_once(4, scheduler)
    assert sorted(len(r) for r in results) == [0, 0, 0, 1]

    # A scheduler that read the subscription before the others moved its watermark (or
    # a retried dispatch task) tries the same moment again: the unique key refuses it.
    set_watermark(app, subscription["id"], stale)
    assert dispatch_at(app, now + timedelta(seconds=5)) == []
    found = deliveries_of(app, subscription["id"])
    assert [d.scheduled_for for d in found] == [moment]
    with app.app_context():
        watermark = db.session.get(Subscription, uuid.UUID(subscription["id"])).last_checked_at
    assert watermark == now + timedelta(seconds=5)  # it still moved on


def test_a_deleted_subscription_gets_no_more_deliveries(app, client, auth):
    subscription = subscribe(client, auth.admin, cron="* * * * *", timezone="UTC")
    now = datetime.now(UTC)
    set_watermark(app, subscription["id"], now - timedelta(minutes=3))
    assert len(dispatch_at(app, now)) == 1
    assert (
        client.delete(f"/api/v1/subscriptions/{subscription['id']}", headers=auth.admin).status_code
        == 204
    )
    set_watermark(app, subscription["id"], now)
    assert dispatch_at(app, now + timedelta(minutes=5)) == []

    # The delivery queued before the deletion is not sent either; the log stays readable.
    (queued,) = deliveries_of(app, subscription["id"])
    with app.app_context():
        outcome = attempt_delivery(queued.id)
    assert outcome.status == "failed"
    log = client.get(f"/api/v1/subscriptions/{subscription['id']}/deliveries", headers=auth.admin)
    assert log.status_code == 200
    (entry,) = log.get_json()
    assert entry["status"] == "failed"
    assert entry["attempts"] == 0
    assert "ended" in entry["last_error"]


def test_a_lost_delivery_is_handed_out_again_once_in_a_while(app, client, auth):
    subscription = subscribe(client, auth.admin, cron="* * * * *", timezone="UTC")
    now = datetime.now(UTC)
    set_watermark(app, subscription["id"], now - timedelta(minutes=1))
    (delivery_id,) = dispatch_at(app, now)
    with app.app_context():
        # Its task went nowhere (a broker restart lost it): nothing yet, then the sweep.
        assert deliveries.lost(now + timedelta(minutes=1)) == []
        later = now + deliveries.LOST_AFTER + timedelta(seconds=1)
        assert deliveries.lost(later) == [delivery_id]
        assert deliveries.lost(later + timedelta(seconds=30)) == []
        again = later + deliveries.LOST_AFTER + timedelta(seconds=1)
        assert deliveries.lost(again) == [delivery_id]


def test_a_delivery_whose_tries_never_finished_is_given_up(app, client, auth):
    subscription = subscribe(client, auth.admin, cron="* * * * *", timezone="UTC")
    now = datetime.now(UTC)
    set_watermark(app, subscription["id"], now - timedelta(minutes=1))
    (delivery_id,) = dispatch_at(app, now)
    with app.app_context():
        # Six tries that each died with their worker: the sweep hands it out a 7th time.
        db.session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(attempts=deliveries.MAX_ATTEMPTS, status=DeliveryStatus.retrying)
        )
        db.session.commit()
        assert attempt_delivery(delivery_id).status == "failed"
        delivery = db.session.get(Delivery, delivery_id)
        assert delivery.attempts == deliveries.MAX_ATTEMPTS
        assert delivery.last_error == f"Gave up after {deliveries.MAX_ATTEMPTS} attempts."


# ---------------------------------------------------------------------------
# Unsubscribe
# ---------------------------------------------------------------------------


def unsubscribe_path(app, subscription_id: str) -> str:
    with app.app_context():
        url = subscriptions.unsubscribe_url(uuid.UUID(subscription_id))
    assert url.startswith(app.config["PUBLIC_BASE_URL"] + "/unsubscribe?token=")
    return url.removeprefix(app.config["PUBLIC_BASE_URL"])


def test_unsubscribe_link_confirms_on_get_and_unsubscribes_on_post(app, client, auth):
    subscription = subscribe(client, auth.admin)
    path = unsubscribe_path(app, subscription["id"])

    page = client.get(path)  # no token needed: the link is the key
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    assert EMAIL in page.get_data(as_text=True)
    assert 'method="post"' in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    # Looking is not unsubscribing (link scanners open links).
    assert client.get(f"/api/v1/subscriptions/{subscription['id']}", headers=auth.admin).is_json

    # RFC 8058 one-click: what a mail client POSTs.
    done = client.post(
        path,
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert done.status_code == 200
    assert "unsubscribed" in done.get_data(as_text=True)
    assert_problem(
        client.get(f"/api/v1/subscriptions/{subscription['id']}", headers=auth.admin), 404
    )

    again = client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200
    assert "already unsubscribed" in again.get_data(as_text=True)
    events = [e for e in audit_events(app) if e["action"] == "subscription.unsubscribe"]
    assert len(events) == 1
    assert events[0]["actor"] == "recipient (unsubscribe link)"
    assert events[0]["token_id"] is None


@pytest.mark.parametrize("mangle", ["drop-last", "other-key", "not-a-token", "empty"])
def test_unsubscribe_link_that_is_not_ours_changes_nothing(app, client, auth, mangle):
    subscription = subscribe(client, auth.admin)
    path = unsubscribe_path(app, subscription["id"])
    if mangle == "drop-last":
        path = path[:-1]
    elif mangle == "other-key":
        from itsdangerous import URLSafeSerializer

        forged = URLSafeSerializer("not the key", salt=subscriptions.UNSUBSCRIBE_SALT)
        path = f"/unsubscribe?token={forged.dumps(subscription['id'])}"
    elif mangle == "not-a-token":
        path = "/unsubscribe?token=../../etc/passwd"
    else:
        path = "/unsubscribe"
    assert client.get(path).status_code == 404
    assert client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 404
    assert client.get(f"/api/v1/subscriptions/{subscription['id']}", headers=auth.admin).is_json
    assert not [e for e in audit_events(app) if e["action"] == "subscription.unsubscribe"]


def test_unsubscribe_token_never_reaches_the_request_log(app, client, auth, caplog):
    subscription = subscribe(client, auth.admin)
    path = unsubscribe_path(app, subscription["id"])
    token = path.partition("token=")[2]
    caplog.clear()
    with caplog.at_level(logging.INFO):
        client.get(path)
        client.post(path, data={"List-Unsubscribe": "One-Click"})
    access = [r for r in caplog.records if r.name == "needs_tracker.access"]
    assert [r.path for r in access] == ["/unsubscribe", "/unsubscribe"]
    assert not [r for r in caplog.records if token in r.getMessage() or token in str(r.__dict__)]
