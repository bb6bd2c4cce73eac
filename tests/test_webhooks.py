"""Webhooks sent by real Celery workers to a real HTTP receiver on loopback, each delivery
verified with the Standard Webhooks library's own verifier: signed, retried on 5xx and
timeouts with one webhook-id, one delivery per event however many sweep at once, no
private address, no redirect followed, secrets rotated with a grace period, endpoints
disabled after failures, readers kept to their own.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import subprocess
import threading
import time
import uuid
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service import webhook_sender
from service.domain import summaries, webhooks
from service.extensions import db
from service.models import Summary, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from service.types import utcnow
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
from workers.tasks import attempt_webhook, hand_out_webhooks

RECEIVER_TIMEOUT = 1.0


class Receiver:
    """An HTTP server on a free loopback port that records every request it gets and
    answers as told: `plan` is a list of answers for the next requests ("slow", a status
    code, or ("redirect", url)); then 200."""

    def __init__(
        self, tls: ssl.SSLContext | None = None, family: socket.AddressFamily = socket.AF_INET
    ) -> None:
        self.requests: list[dict[str, Any]] = []
        self.plan: list[Any] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body}
                    )
                    answer = receiver.plan.pop(0) if receiver.plan else 200
                if answer == "slow":
                    time.sleep(RECEIVER_TIMEOUT * 3)
                    answer = 200
                if isinstance(answer, tuple):
                    self.send_response(307)
                    self.send_header("Location", answer[1])
                else:
                    self.send_response(answer)
                self.send_header("Content-Length", "2")
                self.end_headers()
                try:
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender gave up waiting (the slow answer)

            def log_message(self, *args: Any) -> None:
                pass

        server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family})
        host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
        self.server = server_class((host, 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture
def app(make_app):
    """Loopback allowed (as an admin would list it), quick retries and timeouts."""
    return make_app(
        WEBHOOK_ALLOWED_HOSTS=("127.0.0.1",),
        WEBHOOK_TIMEOUT_SECONDS=RECEIVER_TIMEOUT,
        WEBHOOK_RETRY_SCHEDULE=(1, 1, 1),
    )


def register(client, headers, url: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/v1/webhooks", json={"url": url, **fields}, headers=headers)
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created["secret"].startswith("whsec_")
    assert response.headers["Location"] == f"/api/v1/webhooks/{created['id']}"
    return created


def deliveries(client, headers, webhook_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/webhooks/{webhook_id}/deliveries", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def wait_for_delivery(client, headers, webhook_id: str, *statuses: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        found = deliveries(client, headers, webhook_id)
        return found[0] if found and found[0]["status"] in statuses else None

    return wait_for(done, timeout=30)


def verified(secret: str, request: dict[str, Any]) -> dict[str, Any]:
    """The payload, once the library's own verifier has accepted the request."""
    return Webhook(secret).verify(request["body"], request["headers"])


def situation(app, client, admin, *, build_here: bool = False) -> dict[str, Any]:
    """People at both sites (3 at the airport: a small cell for readers) and a summary."""
    school = create_group(client, admin, CENTRE, label="School 5")
    hangar = create_group(client, admin, AIRPORT, label="Hangar 1")
    post_report(client, admin, school["id"], 40, 1, sadd=SADD_40)
    post_report(client, admin, hangar["id"], 3, 1)
    return summary_now(app, client, admin, build_here=build_here)


def rows(app, model, **where: Any) -> list[Any]:
    with app.app_context():
        query = select(model).filter_by(**where)
        return list(db.session.execute(query).scalars())


# ---------------------------------------------------------------------------
# End to end, with a real worker
# ---------------------------------------------------------------------------


def test_a_ready_summary_is_delivered_signed_as_each_owner_sees_it(
    app, client, auth, receiver, celery_worker
):
    admin = auth.admin
    reader = auth.headers("reader")
    mine = register(client, admin, receiver.url("/admin"), formats=["json", "csv", "hxl"])
    theirs = register(client, reader, receiver.url("/reader"), formats=["json"])

    summary = situation(app, client, admin)  # built by the worker, which hands the events out

    wait_for(lambda: len(receiver.requests) == 2)
    by_path = {r["path"]: r for r in receiver.requests}
    payload = verified(mine["secret"], by_path["/admin"])
    assert payload["type"] == "summary.ready"
    data = payload["data"]
    assert data["summary_id"] == summary["id"]
    assert data["as_of"] == summary["as_of"]
    assert data["links"]["self"].endswith(f"/api/v1/summaries/{summary['id']}")
    assert data["json"]["totals"]["people"] == 43
    airport = next(s for s in data["json"]["sites"] if s["site_id"] == AIRPORT)
    assert airport["people"] == 3
    assert data["csv"].splitlines()[0].startswith("site_id,site_name")
    assert data["hxl"].splitlines()[1].startswith("#loc+code")
    assert by_path["/admin"]["headers"]["webhook-id"].startswith("msg_")

    # The reader's endpoint gets the reader's view: the small cell suppressed.
    seen = verified(theirs["secret"], by_path["/reader"])["data"]["json"]
    airport = next(s for s in seen["sites"] if s["site_id"] == AIRPORT)
    assert airport["people"] is None
    assert seen["suppression"]["applied"] is True
    assert "csv" not in verified(theirs["secret"], by_path["/reader"])["data"]
    with pytest.raises(WebhookVerificationError):  # each endpoint has its own secret
        verified(mine["secret"], by_path["/reader"])

    delivery = wait_for_delivery(client, admin, mine["id"], "delivered")
    # "Each new summary within a minute": handed out as soon as the build commits.
    took = datetime.fromisoformat(delivery["delivered_at"]) - datetime.fromisoformat(
        summary["generated_at"]
    )
    assert took < timedelta(seconds=60)
    assert delivery["attempts"] == 1
    assert delivery["last_response_code"] == 200
    assert delivery["webhook_id"] == by_path["/admin"]["headers"]["webhook-id"]
    assert delivery["event_type"] == "summary.ready"
    (attempt,) = delivery["attempt_log"]
    assert attempt["response_code"] == 200 and attempt["error"] is None


def test_a_500_then_a_200_is_delivered_once_with_one_webhook_id(
    app, client, auth, receiver, celery_worker
):
    admin = auth.admin
    webhook = register(client, admin, receiver.url())
    receiver.plan = [500]

    situation(app, client, admin)

    delivery = wait_for_delivery(client, admin, webhook["id"], "delivered", "failed")
    assert delivery["status"] == "delivered", delivery
    assert delivery["attempts"] == 2
    assert [a["response_code"] for a in delivery["attempt_log"]] == [500, 200]
    assert len(receiver.requests) == 2
    ids = {r["headers"]["webhook-id"] for r in receiver.requests}
    assert ids == {delivery["webhook_id"]}
    for request in receiver.requests:  # each attempt signed anew, both verify
        verified(webhook["secret"], request)


def test_a_slow_receiver_times_out_and_is_retried(app, client, auth, receiver, celery_worker):
    admin = auth.admin
    webhook = register(client, admin, receiver.url())
    receiver.plan = ["slow"]

    situation(app, client, admin)

    delivery = wait_for_delivery(client, admin, webhook["id"], "delivered", "failed")
    assert delivery["status"] == "delivered", delivery
    first, second = delivery["attempt_log"]
    assert first["response_code"] is None and "Timed out" in first["error"]
    assert first["duration_ms"] >= RECEIVER_TIMEOUT * 1000 * 0.9
    assert second["response_code"] == 200
    assert {r["headers"]["webhook-id"] for r in receiver.requests} == {delivery["webhook_id"]}


def test_two_schedulers_at_once_make_one_delivery_per_event(
    app, client, auth, receiver, celery_worker
):
    admin = auth.admin
    webhook = register(client, admin, receiver.url(), events=["summary.ready", "flag.raised"])
    summary = situation(app, client, admin, build_here=True)

    def create_again() -> None:
        with app.app_context():
            found = db.session.get_one(Summary, uuid.UUID(summary["id"]))
            webhooks.summary_ready(found)  # what a second build of it would do
            db.session.commit()

    def sweep() -> None:
        with app.app_context():
            hand_out_webhooks()

    at_once(2, create_again)
    at_once(2, sweep)

    def all_delivered() -> list[dict[str, Any]] | None:
        found = deliveries(client, admin, webhook["id"])
        return found if found and all(d["status"] == "delivered" for d in found) else None

    found = wait_for(all_delivered)
    events = [(d["event_type"]) for d in found]
    assert events.count("summary.ready") == 1
    # One flag is new (the airport's 3 people have no breakdown): one flag.raised.
    assert events.count("flag.raised") == 1
    assert len(receiver.requests) == len(found)
    assert len({r["headers"]["webhook-id"] for r in receiver.requests}) == len(found)
    with app.app_context():
        attempts = db.session.execute(select(func.count()).select_from(WebhookAttempt))
        assert attempts.scalar_one() == len(found)


# ---------------------------------------------------------------------------
# Addresses and redirects
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://100.64.0.1/hook",
        "https://224.0.0.1/hook",
        "https://0.0.0.0/hook",
        "http://203.0.113.9/hook",
        "ftp://127.0.0.1/hook",
        "https://user:secret@127.0.0.1/hook",
        "not a url",
        "https://hooks.ngo.example.org/\u0431",
    ],
)
def test_an_endpoint_at_a_private_address_or_not_https_is_refused(app, client, auth, url):
    problem = assert_problem(
        client.post("/api/v1/webhooks", json={"url": url}, headers=auth.admin), 422, "url"
    )
    assert problem["errors"][0]["message"]
    assert rows(app, WebhookEndpoint) == []


def test_an_endpoint_whose_host_turns_private_is_refused_at_delivery(
    app, client, auth, monkeypatch
):
    # DNS cannot be changed here: the resolver is the one thing faked, to answer a public
    # address at registration and a loopback one (not listed) at delivery.
    answers = {"hooks.ngo.example.org": ["93.184.215.14"]}
    monkeypatch.setattr(webhooks, "resolve", lambda host, port: answers[host])
    admin = auth.admin
    webhook = register(client, admin, "https://hooks.ngo.example.org/needs")
    situation(app, client, admin, build_here=True)
    (delivery,) = rows(app, WebhookDelivery)

    answers["hooks.ngo.example.org"] = ["127.0.0.2"]
    with app.app_context():
        outcome = attempt_webhook(delivery.id)
    assert outcome.status == "failed"
    (found,) = deliveries(client, admin, webhook["id"])
    assert found["status"] == "failed"
    assert "127.0.0.2" in found["last_error"] and "private" in found["last_error"]
    (attempt,) = found["attempt_log"]
    assert attempt["response_code"] is None


def test_a_redirect_is_not_followed(app, client, auth, receiver):
    elsewhere = Receiver()
    try:
        admin = auth.admin
        webhook = register(client, admin, receiver.url())
        receiver.plan = [("redirect", elsewhere.url("/stolen"))]
        situation(app, client, admin, build_here=True)
        (delivery,) = rows(app, WebhookDelivery)
        with app.app_context():
            assert attempt_webhook(delivery.id).status == "failed"
        (found,) = deliveries(client, admin, webhook["id"])
        assert found["last_response_code"] == 307
        assert "redirect" in found["last_error"]
        assert len(receiver.requests) == 1
        assert elsewhere.requests == []  # the attempt is over: had it followed, it would be here
    finally:
        elsewhere.stop()


def certificate_for(name: str, folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for a host name, made with the openssl command line."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_https_goes_to_the_checked_address_with_the_hosts_name_and_certificate(
    app, client, auth, monkeypatch, tmp_path
):
    # The receiver's certificate is for hooks.ngo.test, trusted as a CA would be; the
    # name resolves (faked: DNS cannot be changed here) to loopback, which is listed.
    cert, key = certificate_for("hooks.ngo.test", tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    monkeypatch.setattr(webhooks, "resolve", lambda host, port: ["127.0.0.1"])
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    secure = Receiver(tls)
    try:
        admin = auth.admin
        webhook = register(client, admin, f"https://hooks.ngo.test:{secure.port}/in?k=1")
        situation(app, client, admin, build_here=True)
        (delivery,) = rows(app, WebhookDelivery)
        with app.app_context():
            assert attempt_webhook(delivery.id).status == "delivered"
        (request,) = secure.requests
        assert request["headers"]["Host"] == f"hooks.ngo.test:{secure.port}"
        assert request["path"] == "/in?k=1"
        verified(webhook["secret"], request)

        # A certificate for another name is refused (and retried: it may be fixed).
        other = register(client, admin, f"https://other.ngo.test:{secure.port}/in")
        situation(app, client, admin, build_here=True)
        (pending,) = rows(app, WebhookDelivery, endpoint_id=uuid.UUID(other["id"]))
        with app.app_context():
            assert attempt_webhook(pending.id).status == "retrying"
        (found,) = deliveries(client, admin, other["id"])
        assert "TLS" in found["last_error"]
        assert len(secure.requests) == 1
    finally:
        secure.stop()


# ---------------------------------------------------------------------------
# Secrets, failures, who sees what
# ---------------------------------------------------------------------------


def test_after_a_rotation_both_secrets_verify_until_the_grace_period_ends(
    app, client, auth, receiver
):
    admin = auth.admin
    webhook = register(client, admin, receiver.url())
    old = webhook["secret"]
    response = client.post(f"/api/v1/webhooks/{webhook['id']}/rotate-secret", headers=admin)
    assert response.status_code == 200
    new = response.get_json()["secret"]
    assert new.startswith("whsec_") and new != old
    assert response.get_json()["previous_secret_until"]

    situation(app, client, admin, build_here=True)
    (delivery,) = rows(app, WebhookDelivery)
    with app.app_context():
        assert attempt_webhook(delivery.id).status == "delivered"
    (request,) = receiver.requests
    assert len(request["headers"]["webhook-signature"].split(" ")) == 2
    assert verified(old, request) == verified(new, request)

    # The grace period over: only the new secret signs.
    with app.app_context():
        endpoint = db.session.get_one(WebhookEndpoint, uuid.UUID(webhook["id"]))
        endpoint.previous_secret_until = utcnow() - timedelta(seconds=1)
        found = db.session.get_one(WebhookDelivery, delivery.id)
        found.status, found.next_attempt_at = "queued", None
        db.session.commit()
        assert attempt_webhook(delivery.id).status == "delivered"
    later = receiver.requests[-1]
    verified(new, later)
    with pytest.raises(WebhookVerificationError):
        verified(old, later)


def test_repeated_failures_disable_the_endpoint_and_say_why(make_app, auth, receiver):
    app = make_app(WEBHOOK_ALLOWED_HOSTS=("127.0.0.1",), WEBHOOK_DISABLE_AFTER=2)
    client = app.test_client()
    admin = auth.admin
    webhook = register(client, admin, receiver.url())
    receiver.plan = [410, 410]
    school = create_group(client, admin, CENTRE)
    for hours in (3, 2):
        post_report(client, admin, school["id"], 40 + hours, hours + 0.5)
        with app.app_context():
            as_of = utcnow() - timedelta(hours=hours)
            requested = summaries.request_summary(None, as_of)
            summaries.build(requested.summary.id)
            db.session.commit()
            for delivery in db.session.execute(
                select(WebhookDelivery.id).where(WebhookDelivery.status == "queued")
            ).scalars():
                assert attempt_webhook(delivery).status == "failed"

    shown = client.get(f"/api/v1/webhooks/{webhook['id']}", headers=admin).get_json()
    assert shown["status"] == "disabled"
    assert "2 deliveries in a row failed" in shown["disabled_reason"]
    assert "410" in shown["disabled_reason"]
    assert any(e["action"] == "webhook.disable" for e in audit_events(app))
    # Nothing more is made for it.
    post_report(client, admin, school["id"], 50, 0.5)
    summary_now(app, client, admin, build_here=True)
    assert len(rows(app, WebhookDelivery)) == 2


def test_summary_failed_and_new_flags_are_events_of_their_own(app, client, auth, receiver):
    admin = auth.admin
    register(client, admin, receiver.url(), events=["summary.failed", "flag.raised"])
    situation(app, client, admin, build_here=True)
    (flag,) = rows(app, WebhookDelivery, event_type="flag.raised")
    assert flag.payload["data"]["flag"]["code"] == "breakdown_missing"
    assert flag.payload["data"]["flag"]["site_id"] == AIRPORT

    # The same flag in the next summary is not new: no event.
    summary_now(app, client, admin, build_here=True)
    assert len(rows(app, WebhookDelivery, event_type="flag.raised")) == 1

    with app.app_context():
        pending = summaries.request_summary(None, utcnow() - timedelta(minutes=7)).summary.id
        db.session.commit()
        summaries.mark_failed(pending, "ValueError")
        db.session.commit()
    (failed,) = rows(app, WebhookDelivery, event_type="summary.failed")
    assert failed.payload["data"]["summary_id"] == str(pending)
    with app.app_context():
        assert attempt_webhook(failed.id).status == "delivered"
    assert json.loads(receiver.requests[-1]["body"])["type"] == "summary.failed"


def test_readers_see_and_manage_only_their_own_and_coordinators_none(app, client, auth, receiver):
    admin, reader, other = auth.admin, auth.headers("reader"), auth.headers("reader")
    theirs = register(client, reader, receiver.url("/r"), site_ids=[AIRPORT])
    mine = register(client, admin, receiver.url("/a"))

    assert [w["id"] for w in client.get("/api/v1/webhooks", headers=reader).get_json()] == [
        theirs["id"]
    ]
    assert client.get("/api/v1/webhooks", headers=other).get_json() == []
    assert {w["id"] for w in client.get("/api/v1/webhooks", headers=admin).get_json()} == {
        theirs["id"],
        mine["id"],
    }
    for path in ("", "/deliveries"):
        assert_problem(client.get(f"/api/v1/webhooks/{theirs['id']}{path}", headers=other), 404)
    assert_problem(
        client.post(f"/api/v1/webhooks/{theirs['id']}/rotate-secret", headers=other), 404
    )
    assert_problem(client.delete(f"/api/v1/webhooks/{mine['id']}", headers=reader), 404)
    coordinator = auth.headers("coordinator", CENTRE)
    assert_problem(client.get("/api/v1/webhooks", headers=coordinator), 403)
    assert_problem(
        client.post("/api/v1/webhooks", json={"url": receiver.url()}, headers=coordinator), 403
    )

    assert client.delete(f"/api/v1/webhooks/{theirs['id']}", headers=reader).status_code == 204
    assert client.get("/api/v1/webhooks", headers=reader).get_json() == []
    # Its log is kept.
    assert (
        client.get(f"/api/v1/webhooks/{theirs['id']}/deliveries", headers=reader).status_code == 200
    )


def test_bad_fields_are_refused_with_what_to_fix(app, client, auth, receiver):
    admin = auth.admin
    for body, field in [
        ({"url": receiver.url(), "site_ids": ["nowhere"]}, "site_ids.0"),
        ({"url": receiver.url(), "formats": ["pdf"]}, "formats.0"),
        ({"url": receiver.url(), "events": ["summary.deleted"]}, "events.0"),
        ({"url": receiver.url(), "events": []}, "events"),
        ({}, "url"),
    ]:
        assert_problem(client.post("/api/v1/webhooks", json=body, headers=admin), 422, field)
    assert rows(app, WebhookEndpoint) == []


def test_the_secret_is_shown_once_and_never_logged_or_audited(app, client, auth, receiver, caplog):
    caplog.set_level(logging.DEBUG)
    admin = auth.admin
    webhook = register(client, admin, receiver.url())
    rotated = client.post(f"/api/v1/webhooks/{webhook['id']}/rotate-secret", headers=admin)
    secrets = [webhook["secret"], rotated.get_json()["secret"]]
    situation(app, client, admin, build_here=True)
    (delivery,) = rows(app, WebhookDelivery)
    with app.app_context():
        attempt_webhook(delivery.id)

    listed = client.get("/api/v1/webhooks", headers=admin).get_json()
    one = client.get(f"/api/v1/webhooks/{webhook['id']}", headers=admin).get_json()
    shown = json.dumps([listed, one, deliveries(client, admin, webhook["id"])])
    assert "secret" not in listed[0] and "secret" not in one
    for secret in secrets:
        assert secret not in shown
        assert secret not in caplog.text
        assert secret not in json.dumps(audit_events(app))


def test_a_delivery_whose_worker_died_is_handed_out_again_by_the_sweep(app, client, auth, receiver):
    admin = auth.admin
    register(client, admin, receiver.url())
    situation(app, client, admin, build_here=True)
    with app.app_context():
        (delivery_id,) = webhooks.due()  # never handed out: the build's sweep takes it
        assert webhooks.due() == []  # handed out: left alone for a while
        step = webhooks.begin(delivery_id)  # a worker leases it, counts the attempt...
        db.session.commit()
        assert isinstance(step, webhooks.Message)
        # ... and dies before any answer. Its lease runs out; the sweep hands it out again.
        later = utcnow() + webhooks.LOST_AFTER + timedelta(minutes=2)
        assert webhooks.due(later) == [delivery_id]
        db.session.commit()
        again = webhooks.begin(delivery_id, later)
        db.session.commit()
        assert isinstance(again, webhooks.Message)
        assert again.headers["webhook-id"] == step.headers["webhook-id"]
        assert webhooks.begin(delivery_id, later) == webhooks.Outcome("skipped")  # leased
        db.session.rollback()
        assert webhooks.finish(again, webhook_sender.send(again), later).status == "delivered"
        db.session.commit()
        found = db.session.get_one(WebhookDelivery, delivery_id, populate_existing=True)
        assert found.attempts == 2
    (request,) = receiver.requests
    assert request["headers"]["webhook-id"] == found.message_id


def test_a_delivery_whose_workers_keep_dying_gives_up_after_the_schedule(
    app, client, auth, receiver
):
    admin = auth.admin
    webhook = register(client, admin, receiver.url())
    situation(app, client, admin, build_here=True)
    with app.app_context():
        (found,) = db.session.execute(select(WebhookDelivery)).scalars()
        # Every attempt the schedule allows (1 + 3 retries) began, none came to an outcome.
        found.attempts, found.last_error = 4, "Timed out or cut off: ReadTimeoutError."
        db.session.commit()
        assert attempt_webhook(found.id).status == "failed"
    (shown,) = deliveries(client, admin, webhook["id"])
    assert shown["attempts"] == 4
    assert shown["last_error"].startswith("Gave up after 4 attempts. Timed out")
    assert receiver.requests == []


def test_two_workers_given_one_delivery_at_once_send_it_once(app, client, auth, receiver):
    admin = auth.admin
    register(client, admin, receiver.url())
    situation(app, client, admin, build_here=True)
    (delivery,) = rows(app, WebhookDelivery)
    outcomes: list[str] = []

    def work() -> None:
        with app.app_context():
            outcomes.append(attempt_webhook(delivery.id).status)

    at_once(2, work)
    assert sorted(outcomes) == ["delivered", "skipped"]
    assert len(receiver.requests) == 1
    assert len(rows(app, WebhookAttempt)) == 1


def test_an_ipv6_loopback_endpoint_listed_is_reached_with_its_host_in_brackets(make_app, auth):
    app = make_app(WEBHOOK_ALLOWED_HOSTS=("::1",))
    client = app.test_client()
    try:
        v6 = Receiver(family=socket.AF_INET6)
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    try:
        admin = auth.admin
        webhook = register(client, admin, f"http://[::1]:{v6.port}/six")
        situation(app, client, admin, build_here=True)
        (delivery,) = rows(app, WebhookDelivery)
        with app.app_context():
            assert attempt_webhook(delivery.id).status == "delivered"
        (request,) = v6.requests
        assert request["headers"]["Host"] == f"[::1]:{v6.port}"
        verified(webhook["secret"], request)
    finally:
        v6.stop()
