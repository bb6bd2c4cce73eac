"""Situation reports by email, sent to a real SMTP server on loopback (aiosmtpd) by real
Celery workers: the message, its parts and CSV, its headers, retries, refusals, exactly once.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from zoneinfo import ZoneInfo

import pytest
from celery.contrib.testing.worker import start_worker

from service import handoff
from service.domain import deliveries, subscriptions
from service.domain.callers import OPERATOR
from service.extensions import db
from service.models import Delivery, DeliveryStatus
from tests.browser import CHROMIUM, CHROMIUM_ARGS, OUTPUT, require_chromium
from tests.conftest import Auth
from tests.helpers import (
    AIRPORT,
    CENTRE,
    SADD_40,
    assert_problem,
    at_once,
    audit_events,
    create_group,
    post_report,
    summary_now,
    wait_for,
)
from tests.smtp import SmtpServer, accept_login, self_signed_certificate, server_tls_context
from tests.test_dashboard import signed_in
from tests.test_subscriptions import EMAIL, deliveries_of, dispatch_at, set_watermark, subscribe
from workers.tasks import attempt_delivery, dispatch_subscriptions


@pytest.fixture
def app(make_app, smtp_server):
    """The app sends through the test's SMTP server; retries come after 2, 4, 8... seconds."""
    return make_app(**smtp_server.settings, DELIVERY_RETRY_SECONDS=1)


def situation(app, client, admin) -> dict:
    """Two sites with people, needs and flags, and a ready summary of them."""
    hangar = create_group(client, admin, AIRPORT, label="Hangar 1")
    school = create_group(client, admin, CENTRE, label="School 5")
    post_report(
        client,
        admin,
        hangar["id"],
        5000,
        1,
        needs=[
            {"sector": "water", "severity": 4, "note": "one tank for the hangar"},
            {"sector": "shelter", "severity": 3},
        ],
    )
    post_report(client, admin, school["id"], 40, 1, sadd=SADD_40)
    return summary_now(app, client, admin, build_here=True)


def send_now(client, admin, subscription_id: str) -> str:
    response = client.post(f"/api/v1/subscriptions/{subscription_id}/send", headers=admin)
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["status"] == "queued"
    return response.headers["Location"]


def wait_for_status(client, admin, location: str, *statuses: str, timeout: float = 30) -> dict:
    return wait_for(
        lambda: (d := client.get(location, headers=admin).get_json())["status"] in statuses and d,
        timeout=timeout,
    )


def attachments(message) -> dict[str, object]:
    return {part.get_filename(): part for part in message.iter_attachments()}


def unsubscribe_path(app, message) -> str:
    link = str(message["List-Unsubscribe"])
    assert link.startswith("<") and link.endswith(">"), link
    return link[1:-1].removeprefix(app.config["PUBLIC_BASE_URL"])


def test_report_email_has_both_parts_the_api_csv_and_unsubscribe_headers(
    app, client, auth, smtp_server, celery_worker
):
    admin = auth.admin
    summary = situation(app, client, admin)
    subscription = subscribe(client, admin, timezone="Asia/Yerevan", formats=["csv", "hxl"])

    location = send_now(client, admin, subscription["id"])
    delivery = wait_for_status(client, admin, location, "sent", "failed")
    assert delivery["status"] == "sent", delivery
    assert delivery["attempts"] == 1
    assert delivery["manual"] is True
    assert delivery["summary_id"] == summary["id"]
    assert delivery["last_error"] is None

    (received,) = smtp_server.received
    assert received.rcpt_tos == [EMAIL]
    assert received.mail_from == app.config["MAIL_FROM"]
    message = received.message
    as_of = datetime.fromisoformat(summary["as_of"]).astimezone(ZoneInfo("Asia/Yerevan"))
    assert message["Subject"] == (
        f"Situation {as_of.day} {as_of:%b %Y, %H:%M} +04: 5,040 people waiting"
    )
    assert message["To"] == EMAIL
    assert message["To"].addresses[0].addr_spec == EMAIL
    assert message["From"].addresses[0].addr_spec == app.config["MAIL_FROM"]
    assert message["Message-ID"] == delivery["message_id"]
    assert message["Date"].datetime is not None
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = unsubscribe_path(app, message)
    assert unsubscribe.startswith("/unsubscribe?token=")
    # On the wire as a plain URL on one line: folded into RFC 2047 encoded words, no mail
    # client would read it as a link.
    assert f"\r\nList-Unsubscribe: <{app.config['PUBLIC_BASE_URL']}{unsubscribe}>\r\n".encode() in (
        received.data
    )

    # A text part and an HTML part of the same report, then the attachments.
    assert message.get_content_type() == "multipart/mixed"
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    # Escaped for HTML in the HTML part only.
    assert "Stepanakert airport (peacekeepers' base)" in text
    assert "Stepanakert airport (peacekeepers&#39; base)" in html
    for body in (text, html):
        assert "5,040" in body and "5,000" in body
        assert "Stepanakert (centre)" in body
        assert "water (severity 4, 1 group)" in body
        assert f"{as_of.day} {as_of:%b %Y, %H:%M}" in body
        assert f"/api/v1/summaries/{summary['id']}" in body
        assert unsubscribe in body  # the visible unsubscribe link
    assert "No head count" not in text  # fresh reports: no stale flag...
    assert "No sex-and-age breakdown for 5000 of 5000 people." in text  # ...but this one
    assert "<img" not in html.lower()

    # The same CSV (and HXL) as the API gives, byte for byte, under the same file name.
    files = attachments(message)
    for fmt in ("csv", "hxl"):
        # Email recipients see what a reader sees (small cells suppressed).
        api = client.get(
            f"/api/v1/summaries/{summary['id']}?format={fmt}", headers=auth.headers("reader")
        )
        filename = api.headers["Content-Disposition"].split('filename="')[1].rstrip('"')
        assert files[filename].get_content_type() == "text/csv"
        assert files[filename].get_payload(decode=True) == api.data
    assert len(files) == 2

    # The one-click unsubscribe a mail client would do, from the header it got.
    done = client.post(
        unsubscribe,
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert done.status_code == 200
    assert_problem(client.get(f"/api/v1/subscriptions/{subscription['id']}", headers=admin), 404)
    log = client.get(f"/api/v1/subscriptions/{subscription['id']}/deliveries", headers=admin)
    assert [d["status"] for d in log.get_json()] == ["sent"]
    sends = [e for e in audit_events(app) if e["action"] == "subscription.send"]
    assert [(e["entity_type"], e["entity_id"]) for e in sends] == [("delivery", delivery["id"])]


def test_site_filtered_subscription_gets_its_sites_only(
    app, client, auth, smtp_server, celery_worker
):
    admin = auth.admin
    summary = situation(app, client, admin)
    subscription = subscribe(client, admin, site_ids=[CENTRE], timezone="UTC")
    location = send_now(client, admin, subscription["id"])
    assert wait_for_status(client, admin, location, "sent", "failed")["status"] == "sent"

    (received,) = smtp_server.received
    message = received.message
    assert message["Subject"].endswith(": 40 people waiting")
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "Stepanakert (centre)" in text
    assert "airport" not in text.lower()
    (csv_part,) = attachments(message).values()
    rows = csv_part.get_payload(decode=True).decode().splitlines()
    api_rows = (
        client.get(f"/api/v1/summaries/{summary['id']}?format=csv", headers=auth.headers("reader"))
        .get_data(as_text=True)
        .splitlines()
    )
    centre_row = next(r for r in api_rows if r.startswith(f"{CENTRE},"))
    assert rows[:2] == [api_rows[0], centre_row]
    assert rows[2].split(",")[1] == "Total"
    assert rows[2].split(",")[4] == "40"
    assert len(rows) == 3


def test_site_names_are_escaped_in_the_html(app, client, auth, smtp_server, celery_worker):
    admin = auth.admin
    created = client.post(
        "/api/v1/sites",
        json={
            "id": "goris-hall",
            "name": '<b>Goris</b> & "hall" <script>x()</script>',
            "kind": "reception_centre",
        },
        headers=admin,
    )
    assert created.status_code == 201, created.get_json()
    group = create_group(client, admin, "goris-hall")
    post_report(client, admin, group["id"], 12, 1)
    summary_now(app, client, admin, build_here=True)
    subscription = subscribe(client, admin, site_ids=["goris-hall"], timezone="UTC")
    location = send_now(client, admin, subscription["id"])
    assert wait_for_status(client, admin, location, "sent", "failed")["status"] == "sent"
    message = smtp_server.received[0].message
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "<script>" not in html and "<b>Goris" not in html
    assert "&lt;b&gt;Goris&lt;/b&gt; &amp; &#34;hall&#34; &lt;script&gt;" in html
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert '<b>Goris</b> & "hall"' in text  # plain text stays plain


def test_smtp_down_then_up_is_retried_and_sent_once(app, client, auth, smtp_server, celery_worker):
    admin = auth.admin
    situation(app, client, admin)
    subscription = subscribe(client, admin)
    smtp_server.stop()

    location = send_now(client, admin, subscription["id"])
    retrying = wait_for_status(client, admin, location, "retrying", "sent", "failed")
    assert retrying["status"] == "retrying", retrying
    assert retrying["attempts"] == 1
    assert "ConnectionRefusedError" in retrying["last_error"]
    assert retrying["next_attempt_at"] is not None
    smtp_server.start()

    sent = wait_for_status(client, admin, location, "sent", "failed")
    assert sent["status"] == "sent", sent
    assert sent["attempts"] >= 2
    # A second copy of the task after "sent" is test_one_delivery_attempted_twice_at_once.
    assert len(smtp_server.received) == 1


def test_recipient_refused_with_550_fails_at_once(app, client, auth, smtp_server, celery_worker):
    admin = auth.admin
    situation(app, client, admin)
    subscription = subscribe(client, admin, email="gone@ngo.example.org")
    smtp_server.refuse("gone@ngo.example.org", "550 5.1.1 No such mailbox here")

    location = send_now(client, admin, subscription["id"])
    failed = wait_for_status(client, admin, location, "failed", "sent")
    assert failed["status"] == "failed"
    assert failed["attempts"] == 1
    assert "550" in failed["last_error"] and "No such mailbox" in failed["last_error"]
    assert failed["next_attempt_at"] is None  # no retry planned (a failed one is never claimed)
    assert smtp_server.received == []


def test_recipient_deferred_with_450_is_retried(app, client, auth, smtp_server, celery_worker):
    admin = auth.admin
    situation(app, client, admin)
    subscription = subscribe(client, admin)
    smtp_server.refuse(EMAIL, "450 4.2.1 Mailbox busy, try later")

    location = send_now(client, admin, subscription["id"])
    retrying = wait_for_status(client, admin, location, "retrying", "sent", "failed")
    assert retrying["status"] == "retrying"
    assert "450" in retrying["last_error"]
    smtp_server.handler.refuse.clear()
    sent = wait_for_status(client, admin, location, "sent", "failed")
    assert sent["status"] == "sent"
    assert len(smtp_server.received) == 1


def test_two_schedulers_firing_for_the_same_moment_send_one_email(
    app, client, auth, smtp_server, celery_worker
):
    admin = auth.admin
    situation(app, client, admin)
    moment = datetime.now(UTC).replace(second=0, microsecond=0)
    # Daily at this minute: every scheduler below sees the same one moment due.
    subscription = subscribe(
        client, admin, cron=f"{moment.minute} {moment.hour} * * *", timezone="UTC"
    )
    set_watermark(app, subscription["id"], moment - timedelta(seconds=30))

    celery_app = app.extensions["celery"]
    celery_app.send_task("subscriptions.dispatch")
    celery_app.send_task("subscriptions.dispatch")

    def scheduler() -> None:
        with app.app_context():
            dispatch_subscriptions.run()
            db.session.remove()

    at_once(3, scheduler)

    wait_for(lambda: len(smtp_server.received) >= 1)
    time.sleep(3)  # both dispatch tasks have run by now; a second email would be here
    assert len(smtp_server.received) == 1
    (delivery,) = deliveries_of(app, subscription["id"])
    assert delivery.scheduled_for == moment
    assert delivery.status is DeliveryStatus.sent
    assert smtp_server.received[0].message["Message-ID"] == delivery.message_id


def test_one_delivery_attempted_twice_at_once_is_sent_once(app, client, auth, smtp_server):
    admin = auth.admin
    situation(app, client, admin)
    subscription = subscribe(client, admin)
    with app.app_context():
        delivery = deliveries.request_send(OPERATOR, uuid.UUID(subscription["id"]))
        db.session.commit()
        delivery_id = delivery.id
    outcomes: list[str] = []

    def worker() -> None:
        with app.app_context():
            outcomes.append(attempt_delivery(delivery_id).status)
            db.session.remove()

    at_once(4, worker)
    assert sorted(outcomes) == ["sent", "skipped", "skipped", "skipped"]
    # A re-delivered task after it was sent changes nothing.
    with app.app_context():
        assert attempt_delivery(delivery_id).status == "skipped"
    assert len(smtp_server.received) == 1


def test_temporary_failures_back_off_and_give_up_after_six_tries(make_app, smtp_server):
    app = make_app(**smtp_server.settings, DELIVERY_RETRY_SECONDS=60)
    client, admin = app.test_client(), Auth(app).admin
    situation(app, client, admin)
    subscription = subscribe(client, admin)
    smtp_server.stop()
    with app.app_context():
        delivery_id = deliveries.request_send(OPERATOR, uuid.UUID(subscription["id"])).id
        db.session.commit()
        now = datetime.now(UTC)
        waits = []
        for _ in range(deliveries.MAX_ATTEMPTS):
            outcome = attempt_delivery(delivery_id, now)
            db.session.expire_all()
            delivery = db.session.get(Delivery, delivery_id)
            if outcome.retry_in is None:
                break
            assert delivery.status is DeliveryStatus.retrying
            assert delivery.next_attempt_at == now + timedelta(seconds=outcome.retry_in)
            # Not before its time: a copy of the task that comes early does nothing.
            assert attempt_delivery(delivery_id, now + timedelta(seconds=60)).status == "skipped"
            waits.append(outcome.retry_in)
            now = delivery.next_attempt_at
    assert waits == [120, 240, 480, 960, 1920]  # six tries in about an hour
    assert sum(waits) == pytest.approx(3600, rel=0.05)
    assert delivery.status is DeliveryStatus.failed
    assert delivery.attempts == 6
    assert delivery.last_error.startswith("Gave up after 6 attempts.")


def test_login_over_starttls_and_no_credentials_in_errors_or_logs(
    make_app, tmp_path, monkeypatch, caplog
):
    cert, key = self_signed_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust the test server's certificate
    server = SmtpServer(
        tls_context=server_tls_context(cert, key),
        require_starttls=True,
        authenticator=accept_login("relay-user", "s3cret-Passw0rd"),
    ).start()
    try:
        wrong = make_app(
            **server.settings,
            SMTP_STARTTLS=True,
            SMTP_USERNAME="relay-user",
            SMTP_PASSWORD="not-the-Passw0rd",
        )
        client, admin = wrong.test_client(), Auth(wrong).admin
        situation(wrong, client, admin)
        subscription = subscribe(client, admin)
        with wrong.app_context():
            delivery_id = deliveries.request_send(OPERATOR, uuid.UUID(subscription["id"])).id
            db.session.commit()
            assert attempt_delivery(delivery_id).status == "retrying"
            error = db.session.get(Delivery, delivery_id).last_error
        assert error == "The SMTP login was refused (535)."
        assert server.received == []
        logged = "\n".join(str(r.__dict__) for r in caplog.records)
        assert "not-the-Passw0rd" not in logged and "relay-user" not in logged

        right = make_app(
            **server.settings,
            SMTP_STARTTLS=True,
            SMTP_USERNAME="relay-user",
            SMTP_PASSWORD="s3cret-Passw0rd",
        )
        with right.app_context():
            later = datetime.now(UTC) + timedelta(hours=1)
            assert attempt_delivery(delivery_id, later).status == "sent"
        (received,) = server.received
        assert received.rcpt_tos == [EMAIL]
    finally:
        server.stop()


def test_without_smtp_host_the_email_is_written_to_the_outbox(make_app, tmp_path):
    app = make_app(SMTP_HOST=None, INSTANCE_PATH=str(tmp_path / "outbox-instance"))
    client, admin = app.test_client(), Auth(app).admin
    summary = situation(app, client, admin)
    subscription = subscribe(client, admin)
    celery_app = app.extensions["celery"]
    import workers.tasks  # noqa: F401 - registers the tasks

    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        location = send_now(client, admin, subscription["id"])
        delivery = wait_for_status(client, admin, location, "sent", "failed")
    assert delivery["status"] == "sent"
    (path,) = (tmp_path / "outbox-instance" / "outbox").glob("*.eml")
    assert delivery["id"] in path.name
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert message["To"] == EMAIL
    assert message["Message-ID"] == delivery["message_id"]
    assert "5,040" in message.get_body(preferencelist=("plain",)).get_content()
    assert message.get_body(preferencelist=("html",)) is not None
    (csv_part,) = attachments(message).values()
    reader = Auth(app).headers("reader")
    api_csv = client.get(f"/api/v1/summaries/{summary['id']}?format=csv", headers=reader)
    assert csv_part.get_payload(decode=True) == api_csv.data


def test_an_outbox_that_cannot_be_written_is_retried(make_app, tmp_path):
    instance = tmp_path / "blocked-instance"
    app = make_app(SMTP_HOST=None, INSTANCE_PATH=str(instance))
    (instance / "outbox").write_text("a file where the outbox folder should be")
    client, admin = app.test_client(), Auth(app).admin
    situation(app, client, admin)
    subscription = subscribe(client, admin)
    with app.app_context():
        delivery_id = deliveries.request_send(OPERATOR, uuid.UUID(subscription["id"])).id
        db.session.commit()
        assert attempt_delivery(delivery_id).status == "retrying"
        delivery = db.session.get(Delivery, delivery_id)
        assert delivery.last_error.startswith("Could not write to the outbox")
        (instance / "outbox").unlink()
        later = datetime.now(UTC) + timedelta(hours=1)
        assert attempt_delivery(delivery_id, later).status == "sent"
    assert len(list((instance / "outbox").glob("*.eml"))) == 1


def test_scheduled_report_waits_for_the_summary_of_its_period(make_app, smtp_server):
    app = make_app(**smtp_server.settings)
    client, admin = app.test_client(), Auth(app).admin
    subscription = subscribe(client, admin, cron="* * * * *", timezone="UTC")
    now = datetime.now(UTC)
    set_watermark(app, subscription["id"], now - timedelta(seconds=60))
    with app.app_context():
        (delivery_id,) = subscriptions.dispatch(now)
        db.session.commit()
        # The scheduler is still making this hour's summary: wait for it, not an attempt.
        waiting = attempt_delivery(delivery_id, now)
        assert (waiting.status, waiting.retry_in) == ("waiting", deliveries.WAIT_STEP_SECONDS)
        assert db.session.get(Delivery, delivery_id).attempts == 0
    summary = situation(app, client, admin)
    with app.app_context():
        later = now + timedelta(seconds=deliveries.WAIT_STEP_SECONDS)
        assert attempt_delivery(delivery_id, later).status == "sent"
        assert str(db.session.get(Delivery, delivery_id).summary_id) == summary["id"]
    assert len(smtp_server.received) == 1


def test_scheduled_report_with_no_summary_at_all_is_retried(make_app, smtp_server):
    app = make_app(**smtp_server.settings, SUMMARY_BUILD_TIMEOUT_SECONDS=60)
    client, admin = app.test_client(), Auth(app).admin
    subscription = subscribe(client, admin, cron="* * * * *", timezone="UTC")
    now = datetime.now(UTC)
    set_watermark(app, subscription["id"], now - timedelta(minutes=1))
    with app.app_context():
        (delivery_id,) = subscriptions.dispatch(now)
        db.session.commit()
        # Past the wait for the period's summary, and still none is ready.
        outcome = attempt_delivery(delivery_id, now + timedelta(seconds=90))
        delivery = db.session.get(Delivery, delivery_id)
        assert outcome.status == "retrying"
        assert (delivery.attempts, delivery.last_error) == (1, "No summary is ready yet.")
    assert smtp_server.received == []


def test_html_email_reads_on_a_phone_screen(app, client, auth, smtp_server, celery_worker):
    require_chromium()  # skips loudly where Debian's chromium is missing; fails under CI
    from playwright.sync_api import sync_playwright

    admin = auth.admin
    situation(app, client, admin)
    subscription = subscribe(client, admin, timezone="Asia/Yerevan")
    location = send_now(client, admin, subscription["id"])
    assert wait_for_status(client, admin, location, "sent", "failed")["status"] == "sent"
    html = smtp_server.received[0].message.get_body(preferencelist=("html",)).get_content()

    OUTPUT.mkdir(exist_ok=True)
    screenshot = OUTPUT / "email-report-390px.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            # An iPhone 12-14 screen: 390 CSS pixels wide.
            page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=1)
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.set_content(html, wait_until="load")
            page.screenshot(path=str(screenshot), full_page=True)
            scroll_width = page.evaluate("document.documentElement.scrollWidth")
            smallest_font = page.evaluate(
                "Math.min(...[...document.querySelectorAll('td, th, p, span, a')]"
                ".filter(e => e.offsetParent !== null && e.innerText.trim())"
                ".map(e => parseFloat(getComputedStyle(e).fontSize)))"
            )
            text = page.inner_text("body")
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000
    assert scroll_width <= 390, "the email scrolls sideways on a phone"
    assert smallest_font >= 13, "text too small to read on a phone"
    assert requests == [] or all(r.startswith("about:") for r in requests)  # no images, no CSS
    assert "5,040" in text and "Stepanakert (centre)" in text


def test_worker_logs_carry_no_unsubscribe_token(app, client, auth, smtp_server, caplog):
    admin = auth.admin
    situation(app, client, admin)
    subscription = subscribe(client, admin)
    with app.app_context():
        token = subscriptions.unsubscribe_token(uuid.UUID(subscription["id"]))
        delivery_id = deliveries.request_send(OPERATOR, uuid.UUID(subscription["id"])).id
        db.session.commit()
        with caplog.at_level(logging.DEBUG):
            assert attempt_delivery(delivery_id).status == "sent"
    message = smtp_server.received[0].message
    assert token in str(message["List-Unsubscribe"])
    assert token in message.get_body(preferencelist=("plain",)).get_content()
    # (The test SMTP server's own debug log, "mail.log", prints what it received.)
    ours = [r for r in caplog.records if r.name != "mail.log"]
    assert any(r.getMessage() == "delivery sent" for r in ours)
    assert not [r for r in ours if token in r.getMessage() or token in str(r.__dict__)]


def dashboard_page(app, secret: str) -> str:
    return signed_in(app, secret).get("/").get_data(as_text=True)


def scheduled_deliveries(app, subscription_id: str, moments: list[datetime]) -> list[uuid.UUID]:
    """The scheduler's dispatch at each moment, each delivery handed to the worker."""
    created = []
    for moment in moments:
        ids = dispatch_at(app, moment)
        with app.app_context():
            assert handoff.send_deliveries(ids) == []
        created += ids
    return created


def statuses(app, subscription_id: str) -> list[str]:
    return [d.status.value for d in deliveries_of(app, subscription_id)]


def test_an_address_refused_again_and_again_is_suspended_shown_and_resumed(
    app, client, auth, smtp_server, celery_worker
):
    admin = auth.admin
    situation(app, client, admin)
    subscription = subscribe(client, admin, email="gone@ngo.example.org", cron="* * * * *")
    sid = subscription["id"]
    smtp_server.refuse("gone@ngo.example.org", "550 5.1.1 No such mailbox here")
    limit = app.config["SUBSCRIPTION_SUSPEND_AFTER"]
    assert limit == 3  # the default
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    set_watermark(app, sid, start)
    slots = [start + timedelta(minutes=n, seconds=5) for n in range(1, 8)]

    # Two slots refused: still active (one refusal can be the server's mistake).
    scheduled_deliveries(app, sid, slots[:2])
    wait_for(lambda: statuses(app, sid) == ["failed", "failed"])
    shown = client.get(f"/api/v1/subscriptions/{sid}", headers=admin).get_json()
    assert (shown["status"], shown["suspended_at"]) == ("active", None)

    # The third in a row suspends it: shown with since when and why ...
    scheduled_deliveries(app, sid, slots[2:3])
    wait_for(lambda: statuses(app, sid) == ["failed"] * 3)
    shown = client.get(f"/api/v1/subscriptions/{sid}", headers=admin).get_json()
    assert shown["status"] == "suspended"
    assert datetime.fromisoformat(shown["suspended_at"]) > start
    assert "refused the address 3 times in a row" in shown["suspended_reason"]
    assert "550 5.1.1 No such mailbox here" in shown["suspended_reason"]
    assert shown["next_run_at"] is None
    suspensions = [e for e in audit_events(app) if e["action"] == "subscription.suspend"]
    assert len(suspensions) == 1
    page = dashboard_page(app, auth.token("admin"))
    assert "Suspended email subscriptions" in page and "gone@ngo.example.org" in page
    assert "No such mailbox here" in page
    assert "gone@ngo.example.org" not in dashboard_page(app, auth.token("reader"))

    # ... and the next slots make no delivery at all.
    assert scheduled_deliveries(app, sid, slots[3:5]) == []
    assert statuses(app, sid) == ["failed"] * 3

    # The admin resumes it once the address is fixed: the next slot is sent.
    smtp_server.handler.refuse.clear()
    resumed = client.post(f"/api/v1/subscriptions/{sid}/resume", headers=admin)
    assert resumed.status_code == 200, resumed.get_json()
    assert (resumed.get_json()["status"], resumed.get_json()["suspended_at"]) == ("active", None)
    after = datetime.now(UTC) + timedelta(minutes=1, seconds=5)
    (delivery_id,) = dispatch_at(app, after)
    # Sent once it no longer waits for a summary of its own period (none is being built).
    late = after + timedelta(seconds=app.config["SUMMARY_BUILD_TIMEOUT_SECONDS"] + 1)
    with app.app_context():
        assert attempt_delivery(delivery_id, late).status == "sent"
    assert len(smtp_server.received) == 1
    assert smtp_server.received[0].message["To"] == "gone@ngo.example.org"
    assert smtp_server.received[0].rcpt_tos == ["gone@ngo.example.org"]


def test_a_sent_email_starts_the_refusals_in_a_row_again(app, client, auth, smtp_server):
    admin = auth.admin
    situation(app, client, admin)
    sid = subscribe(client, admin, email="flaky@ngo.example.org")["id"]

    def manual_attempt() -> str:
        with app.app_context():
            delivery_id = deliveries.request_send(OPERATOR, uuid.UUID(sid)).id
            db.session.commit()
            return attempt_delivery(delivery_id).status

    for refused in (True, True, False, True, True):
        if refused:
            smtp_server.refuse("flaky@ngo.example.org", "550 5.7.1 Not now, not ever")
        else:
            smtp_server.handler.refuse.clear()
        assert manual_attempt() == ("failed" if refused else "sent")
    shown = client.get(f"/api/v1/subscriptions/{sid}", headers=admin).get_json()
    assert shown["status"] == "active"  # 2, then a sent one, then 2: never 3 in a row
    assert manual_attempt() == "failed"
    shown = client.get(f"/api/v1/subscriptions/{sid}", headers=admin).get_json()
    assert shown["status"] == "suspended"
